//! Rate limits: a token bucket per limit and key (an email, an address, a
//! user), refilled continuously. The buckets live in the database, so every
//! `serve` process on it counts against the same ones: running several
//! does not multiply an attacker's attempts. A bucket is written
//! compare-and-set on its version; buckets full again are deleted now and
//! then ([`forget_full`]).

use std::time::Duration;

use sqlx::Row;

use crate::db::Pool;
use crate::error::Result;

pub struct Limiter {
    /// Which limit, in the table (`sign_in_email`, `enroll`...).
    name: &'static str,
    burst: f64,
    /// Tokens per millisecond.
    rate: f64,
}

/// A bucket as stored: its tokens when last counted, at `at` (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// Writes to one bucket that keep losing to other processes: the request
/// is refused rather than let through uncounted.
const TRIES: usize = 8;

impl Limiter {
    /// `burst` requests at once, then `per_minute` a minute.
    pub fn new(name: &'static str, burst: u32, per_minute: u32) -> Self {
        Limiter { name, burst: f64::from(burst), rate: f64::from(per_minute) / 60_000.0 }
    }

    /// Takes one request's token for `key`, or says how long until one is free.
    pub async fn check(&self, pool: &Pool, key: &str) -> Result<std::result::Result<(), Duration>> {
        let now = jiff::Timestamp::now().as_millisecond();
        for _ in 0..TRIES {
            // A write turn of its own (`BEGIN IMMEDIATE` on SQLite): a bare
            // statement would poll for the write lock behind the requests'
            // own write transactions.
            let mut tx = crate::db::begin_write(pool).await?;
            let stored = sqlx::query("SELECT tokens, at, version FROM rate_buckets WHERE name = $1 AND subject = $2")
                .bind(self.name)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            let before = stored.as_ref().map(|row| (Bucket { tokens: row.get("tokens"), at: row.get("at") }, row.get::<i64, _>("version")));
            let (after, verdict) = self.take(before.map(|(bucket, _)| bucket), now);
            let full_at = after.at + ((self.burst - after.tokens) / self.rate).ceil() as i64;
            let written = match before {
                None => sqlx::query(
                    "INSERT INTO rate_buckets (name, subject, tokens, at, full_at, version) VALUES ($1, $2, $3, $4, $5, 1)
                     ON CONFLICT (name, subject) DO NOTHING",
                )
                .bind(self.name)
                .bind(key)
                .bind(after.tokens)
                .bind(after.at)
                .bind(full_at)
                .execute(&mut *tx)
                .await?,
                Some((_, version)) => sqlx::query(
                    "UPDATE rate_buckets SET tokens = $1, at = $2, full_at = $3, version = version + 1
                     WHERE name = $4 AND subject = $5 AND version = $6",
                )
                .bind(after.tokens)
                .bind(after.at)
                .bind(full_at)
                .bind(self.name)
                .bind(key)
                .bind(version)
                .execute(&mut *tx)
                .await?,
            };
            tx.commit().await?;
            if written.rows_affected() == 1 {
                return Ok(verdict);
            }
        }
        Ok(Err(Duration::from_secs(1)))
    }

    /// The bucket after one request at `now`, and whether it may go ahead.
    fn take(&self, bucket: Option<Bucket>, now: i64) -> (Bucket, std::result::Result<(), Duration>) {
        let (tokens, last) = bucket.map_or((self.burst, now), |b| (b.tokens, b.at));
        // Clocks of several machines: never count time backwards.
        let (elapsed, at) = ((now - last).max(0), last.max(now));
        let refilled = (tokens + elapsed as f64 * self.rate).min(self.burst);
        if refilled >= 1.0 {
            (Bucket { tokens: refilled - 1.0, at }, Ok(()))
        } else {
            let wait_ms = (1.0 - refilled) / self.rate;
            let wait = Duration::from_secs_f64((wait_ms / 1_000.0).max(1.0)).min(Duration::from_secs(3600));
            (Bucket { tokens: refilled, at }, Err(wait))
        }
    }
}

/// Deletes the buckets that are full again (they say nothing a fresh one
/// would not): keeps the table as small as the recent traffic.
pub async fn forget_full(pool: &Pool) -> Result<u64> {
    let now = jiff::Timestamp::now().as_millisecond();
    Ok(sqlx::query("DELETE FROM rate_buckets WHERE full_at < $1").bind(now).execute(pool).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs requests at the given times (ms) through one bucket.
    fn run(limiter: &Limiter, times: &[i64]) -> Vec<std::result::Result<(), Duration>> {
        let mut bucket = None;
        times
            .iter()
            .map(|&now| {
                let (after, verdict) = limiter.take(bucket, now);
                bucket = Some(after);
                verdict
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::new("test", 3, 60);
        let verdicts = run(&limiter, &[0, 0, 0, 0, 1_100, 1_200]);
        assert_eq!(verdicts[..3], [Ok(()), Ok(()), Ok(())]);
        assert_eq!(verdicts[3], Err(Duration::from_secs(1)));
        assert_eq!(verdicts[4], Ok(()), "one token a second");
        assert!(verdicts[5].is_err());
    }

    #[test]
    fn the_wait_is_how_long_until_a_token_and_a_clock_behind_gives_nothing_back() {
        let limiter = Limiter::new("test", 1, 1);
        let verdicts = run(&limiter, &[0, 30_000]);
        assert_eq!(verdicts[1], Err(Duration::from_secs(30)), "half a token in, half a minute to go");
        let (after, _) = limiter.take(Some(Bucket { tokens: 0.0, at: 10_000 }), 5_000);
        assert_eq!(after, Bucket { tokens: 0.0, at: 10_000 }, "another machine's clock ran ahead: no refill, no going back");
    }
}
