//! Rate limits: a token bucket per key (an email, an address, a user),
//! refilled continuously. Kept in memory: a restart forgets them, which
//! costs an attacker nothing they did not already have.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Limiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// `burst` requests at once, then `per_minute` a minute.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Limiter { burst: f64::from(burst), per_second: f64::from(per_minute) / 60.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request's token for `key`, or says how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > 100_000 {
            // Forget full buckets so an attacker cycling keys cannot grow memory.
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        let refilled = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            let wait = (1.0 - refilled) / self.per_second;
            Err(Duration::from_secs_f64(wait.max(1.0)).min(Duration::from_secs(3600)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::new(3, 60);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", start).is_ok());
        }
        let wait = limiter.check_at("a", start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(limiter.check_at("b", start).is_ok(), "keys are independent");
        assert!(limiter.check_at("a", start + Duration::from_millis(1100)).is_ok(), "one token a second");
        assert!(limiter.check_at("a", start + Duration::from_millis(1200)).is_err());
    }
}
