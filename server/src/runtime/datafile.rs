//! Data files: a ZIP holding a CSV of a bulk run's participants, behind a
//! download link signed with HMAC-SHA256 and valid for 24 hours.
//!
//! The link names the file and its expiry; the signature covers both, so
//! neither can be changed. The signing key is made once per installation
//! and kept in the database (`installation.link_secret`). The link goes out
//! by email through the SMTP settings, as an absolute URL under the app's
//! public address (`WAYMARK_PUBLIC_URL`). A file whose email could not be
//! sent is not kept: a run either emails its link or leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use sha2::Sha256;

use crate::channels::email::{Mailer, Outgoing};
use crate::channels::settings::Integrations;
use crate::error::{Error, Result};
use crate::db::Pool;

/// How long a link works.
pub const LINK_VALIDITY: SignedDuration = SignedDuration::from_hours(24);

/// Where data files are written, and the address their links start with.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub dir: PathBuf,
    /// The app's public base URL, e.g. `https://waymark.example.com`.
    pub public_url: String,
}

/// Refused (422 `email_not_configured`) when no SMTP server is set up.
pub fn not_configured() -> Error {
    Error::Invalid {
        code: "email_not_configured",
        message: "Email is not set up (Integrations → SMTP), so a data file's link cannot be sent; nothing was made.".into(),
    }
}

/// The installation's signing key, made on first use.
async fn secret(pool: &Pool) -> Result<Vec<u8>> {
    if let Some(hex_key) = sqlx::query_scalar::<_, String>("SELECT value FROM installation WHERE key = 'link_secret'").fetch_optional(pool).await? {
        return hex::decode(hex_key).map_err(|err| Error::Internal(anyhow::anyhow!("link secret unreadable: {err}")));
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|err| Error::Internal(anyhow::anyhow!("no randomness for the link secret: {err}")))?;
    // Two first uses at once: the first write wins, both read it back.
    sqlx::query("INSERT INTO installation (key, value) VALUES ('link_secret', $1) ON CONFLICT DO NOTHING").bind(hex::encode(key)).execute(pool).await?;
    let stored: String = sqlx::query_scalar("SELECT value FROM installation WHERE key = 'link_secret'").fetch_one(pool).await?;
    hex::decode(stored).map_err(|err| Error::Internal(anyhow::anyhow!("link secret unreadable: {err}")))
}

fn mac(key: &[u8], id: i64, expires: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("waymark-data-file:{id}:{expires}").as_bytes());
    mac
}

/// The signed path and query of a data file's download.
pub fn link(key: &[u8], id: i64, expires: Timestamp) -> String {
    let expires = expires.as_second();
    let sig = hex::encode(mac(key, id, expires).finalize().into_bytes());
    format!("/api/v1/data-files/{id}?expires={expires}&sig={sig}")
}

/// Checks a link's signature, then its expiry (a tampered link is refused
/// as invalid even when it is also old).
pub fn verify(key: &[u8], id: i64, expires: i64, sig: &str, now: Timestamp) -> Result<()> {
    let sig = hex::decode(sig).map_err(|_| Error::LinkInvalid)?;
    mac(key, id, expires).verify_slice(&sig).map_err(|_| Error::LinkInvalid)?;
    if now.as_second() > expires {
        let at = Timestamp::from_second(expires).map(|t| t.to_string()).unwrap_or_else(|_| expires.to_string());
        return Err(Error::LinkExpired(at));
    }
    Ok(())
}

/// A made data file.
pub struct DataFile {
    pub id: i64,
    pub rows: u64,
    pub link: String,
    pub expires_at: Timestamp,
    pub email_status: String,
}

/// Writes run `run`'s participants as `participants.csv` in a ZIP under
/// the delivery's folder, records the file with its signed link, and emails
/// the link to `to`. Without SMTP settings nothing is made; when the email
/// cannot be sent the file and its record are removed again.
pub async fn make(pool: &Pool, delivery: &Delivery, run: i64, to: &[String], by: &str, now: Timestamp) -> Result<DataFile> {
    let (smtp, password) = Integrations::load(pool).await?.smtp.ok_or_else(not_configured)?;
    forget(pool, run).await?;
    let dir = &delivery.dir;
    std::fs::create_dir_all(dir).map_err(|err| Error::Internal(err.into()))?;
    let path: PathBuf = dir.join(format!("bulk-run-{run}.zip"));
    let rows = match write_zip(pool, run, &path).await {
        Ok(rows) => rows,
        Err(err) => {
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
    };
    let key = secret(pool).await?;
    let expires_at = now + LINK_VALIDITY;
    let mut tx = crate::db::begin_write(pool).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO data_files (run_id, path, rows, recipients, link, expires_at, email_status, created_by, created_at)
         VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8) RETURNING id",
    )
    .bind(run)
    .bind(path.display().to_string())
    .bind(rows as i64)
    .bind(serde_json::to_string(to).expect("addresses serialize"))
    .bind(expires_at.to_string())
    .bind("sending")
    .bind(by)
    .bind(now.to_string())
    .fetch_one(&mut *tx)
    .await?;
    let link = link(&key, id, Timestamp::from_second(expires_at.as_second()).unwrap_or(expires_at));
    sqlx::query("UPDATE data_files SET link = $1 WHERE id = $2").bind(&link).bind(id).execute(&mut *tx).await?;
    tx.commit().await?;

    let url = format!("{}{link}", delivery.public_url.trim_end_matches('/'));
    let mail = Outgoing {
        to: to.to_vec(),
        subject: format!("Your Waymark data file: {rows} participant(s) from bulk run {run}"),
        text: message(rows, run, &url, expires_at, by),
        id: crate::channels::message_id(&format!("data-file-{id}"), &smtp),
        ..Outgoing::default()
    };
    if let Err(failure) = Mailer::default().send(&smtp, &password, mail).await {
        forget(pool, run).await?;
        return Err(Error::BadBody {
            status: axum::http::StatusCode::BAD_GATEWAY,
            code: "email_failed",
            message: format!("The data file's link could not be emailed ({}), so the file was not kept.", failure.reason),
        });
    }
    let email_status = format!("sent to {}", to.join(", "));
    sqlx::query("UPDATE data_files SET email_status = $1 WHERE id = $2").bind(&email_status).bind(id).execute(pool).await?;
    Ok(DataFile { id, rows, link, expires_at, email_status })
}

/// The run's participants as `participants.csv` in a ZIP at `path`; the
/// data rows written. Page by page into the deflate stream: the CSV is
/// never whole in memory.
async fn write_zip(pool: &Pool, run: i64, path: &Path) -> Result<u64> {
    let file = std::fs::File::create(path).map_err(|err| Error::Internal(err.into()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    zip.start_file("participants.csv", options).map_err(|err| Error::Internal(err.into()))?;
    let rows = super::export::write_all(pool, &super::bulk::run_export(run), &mut zip).await?;
    zip.finish().map_err(|err| Error::Internal(err.into()))?.flush().map_err(|err| Error::Internal(err.into()))?;
    Ok(rows)
}

/// The email's text: what the file holds, the link, and until when it works.
fn message(rows: u64, run: i64, url: &str, expires_at: Timestamp, by: &str) -> String {
    format!(
        "Hello,\n\n\
         The data file {by} asked for is ready: {rows} participant row(s) from bulk run {run}, as a CSV in a ZIP.\n\n\
         Download it here (the link works until {expires_at}, 24 hours after it was made; anyone with it can download the file):\n\n\
         {url}\n\n\
         -- Waymark\n"
    )
}

/// Removes a run's data files and their records (an earlier try, or one whose email failed).
async fn forget(pool: &Pool, run: i64) -> Result<()> {
    let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM data_files WHERE run_id = $1").bind(run).fetch_all(pool).await?;
    for path in &paths {
        delete_file(path)?;
    }
    sqlx::query("DELETE FROM data_files WHERE run_id = $1").bind(run).execute(pool).await?;
    Ok(())
}

/// Deletes a data file's ZIP; one already gone is fine.
fn delete_file(path: &str) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::Internal(anyhow::anyhow!("data file {path} cannot be removed: {err}"))),
    }
}

/// The file behind a verified link: its path on disk. 410
/// `data_file_removed` when a contact in it was erased since.
pub async fn open(pool: &Pool, id: i64, expires: i64, sig: &str, now: Timestamp) -> Result<PathBuf> {
    let key = secret(pool).await?;
    verify(&key, id, expires, sig, now)?;
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT path, removed_at FROM data_files WHERE id = $1").bind(id).fetch_optional(pool).await?;
    match row {
        None => Err(Error::LinkInvalid),
        Some((_, Some(_))) => Err(Error::DataFileRemoved),
        Some((path, None)) => Ok(PathBuf::from(path)),
    }
}

/// Removes the ZIPs of data files whose links have expired: nobody can
/// download them any more, and each holds contacts' data. Their records
/// stay, marked `removed_at`. The scheduler calls this now and then;
/// returns how many were removed.
pub async fn sweep(pool: &Pool, now: Timestamp) -> Result<usize> {
    let kept: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, path, expires_at FROM data_files WHERE removed_at IS NULL").fetch_all(pool).await?;
    let expired: Vec<(i64, String)> = kept
        .into_iter()
        .filter(|(_, _, expires_at)| expires_at.parse::<Timestamp>().is_ok_and(|at| at < now))
        .map(|(id, path, _)| (id, path))
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let mut conn = pool.acquire().await?;
    remove(&mut conn, &expired, &now.to_string()).await?;
    Ok(expired.len())
}

/// Removes the ZIPs of the data files made of runs that included any of
/// `participants` (an id list): erasing a contact takes its row out of the
/// files made before, by removing them. In the caller's transaction.
pub async fn remove_including(conn: &mut crate::db::Conn, participants: &str, now: &str) -> Result<()> {
    let files: Vec<(i64, String)> = sqlx::query_as(&format!(
        "SELECT id, path FROM data_files WHERE removed_at IS NULL
             AND run_id IN (SELECT run_id FROM bulk_run_items WHERE participant_id IN ({participants}))"
    ))
    .fetch_all(&mut *conn)
    .await?;
    remove(conn, &files, now).await
}

/// Deletes the files and marks their records.
async fn remove(conn: &mut crate::db::Conn, files: &[(i64, String)], now: &str) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    for (_, path) in files {
        delete_file(path)?;
    }
    let ids = crate::db::id_list(&files.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    sqlx::query(&format!("UPDATE data_files SET removed_at = $1 WHERE id IN ({ids})")).bind(now).execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_until_it_expires_and_not_when_changed() {
        let key = b"0123456789abcdef0123456789abcdef";
        let now: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        let link = link(key, 7, now + LINK_VALIDITY);
        let query = link.split_once('?').unwrap().1;
        let expires: i64 = query.split('&').next().unwrap().trim_start_matches("expires=").parse().unwrap();
        let sig = query.split_once("sig=").unwrap().1;
        assert!(verify(key, 7, expires, sig, now + SignedDuration::from_hours(23)).is_ok());
        assert_eq!(verify(key, 7, expires, sig, now + SignedDuration::from_hours(25)).unwrap_err().code(), "link_expired");
        assert_eq!(verify(key, 8, expires, sig, now).unwrap_err().code(), "link_invalid", "another file");
        assert_eq!(verify(key, 7, expires + 3600, sig, now).unwrap_err().code(), "link_invalid", "a longer life");
        assert_eq!(verify(b"another key", 7, expires, sig, now).unwrap_err().code(), "link_invalid");
        assert_eq!(verify(key, 7, expires, "zz", now).unwrap_err().code(), "link_invalid");
    }
}
