//! Integration secrets are encrypted at rest (security audit finding 3).
//!
//! Secrets are saved through the admin page's backend
//! (`Admin::save_integration`, which calls `settings::update` as the REST
//! API does), then the database is read raw. The same tests run on
//! PostgreSQL when `WAYMARK_TEST_POSTGRES` is set, except the checks on the
//! database FILE's bytes: those are SQLite-only (a PostgreSQL database is no
//! single file here), and there the stored column values are checked
//! instead.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use app::admin_api::AdminBackend;
use serde_json::{json, Value};
use sqlx::Row;

use server::admin::Admin;
use server::channels::settings::Integrations;
use server::db::Pool;
use server::secrets::{self, Keyring};
use server::store;

/// One secret per channel that has one; distinctive enough to search a file for.
const SECRETS: [(&str, &str); 5] = [
    ("smtp", "smtp-pass-Quokka-7731"),
    ("sms", "sms-token-Narwhal-4412"),
    ("s3", "s3-secret-Axolotl-9090"),
    ("ftp", "ftp-pass-Pangolin-2288"),
    ("crm", "crm-token-Okapi-5567"),
];

fn settings(channel: &str) -> Value {
    match channel {
        "smtp" => json!({"host": "smtp.example.test", "port": 587, "tls": "starttls", "username": "mailer", "from": "Waymark <news@waymark.test>"}),
        "sms" => json!({"base_url": "https://api.sms.example.test", "account_sid": "AC123", "senders": ["+15551234567"]}),
        "s3" => json!({"endpoint": "https://s3.example.test", "region": "eu-west-1", "access_key_id": "AKIAEXAMPLE"}),
        "ftp" => json!({"host": "ftp.example.test", "username": "uploader"}),
        "crm" => json!({"provider": "zoho", "base_url": "https://www.zohoapis.example.test"}),
        other => panic!("no settings for {other}"),
    }
}

struct World {
    pool: Pool,
    db: support::TestDb,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    if db.is_postgres() {
        // The default would be data/waymark.key in the working directory.
        secrets::use_key_file(&pool, &dir.path().join("waymark.key")).unwrap();
    }
    World { pool, db, dir }
}

impl World {
    /// The key file: chosen for PostgreSQL, the default one beside the
    /// SQLite file otherwise.
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("waymark.key")
    }

    fn admin(&self) -> Admin {
        Admin { pool: self.pool.clone() }
    }

    /// Saves every channel's settings and secret the way the admin page does.
    async fn save_all(&self) {
        for (channel, secret) in SECRETS {
            self.admin().save_integration("admin@x.test", channel.into(), settings(channel), Some(secret.into())).await.unwrap();
        }
    }

    async fn raw_secrets(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT channel, secret FROM integration_settings WHERE secret IS NOT NULL ORDER BY channel")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("channel"), row.get("secret")))
            .collect()
    }

    /// The SQLite database's bytes after a checkpoint, with its WAL if one
    /// is left; none on PostgreSQL.
    async fn file_bytes(&self) -> Option<Vec<u8>> {
        if self.db.is_postgres() {
            return None;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await.unwrap();
        let file = self.dir.path().join("waymark.db");
        let mut bytes = std::fs::read(&file).unwrap();
        assert!(bytes.len() > 4096, "the database file was read");
        if let Ok(wal) = std::fs::read(file.with_extension("db-wal")) {
            bytes.extend(wal);
        }
        Some(bytes)
    }

    async fn rotate_with_cli(&self) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_waymark"));
        command.args(["secrets", "rotate"]).env("DATABASE_URL", &self.db.url).env_remove(secrets::KEY_ENV).env_remove(secrets::KEY_FILE_ENV);
        if self.db.is_postgres() {
            command.env(secrets::KEY_FILE_ENV, self.key_file());
        }
        command.output().unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn secret_of(all: &Integrations, channel: &str) -> Option<String> {
    let secret = match channel {
        "smtp" => all.smtp.as_ref().and_then(|(_, s)| s.clone()),
        "sms" => all.sms.as_ref().and_then(|(_, s)| s.clone()),
        "s3" => all.s3.as_ref().and_then(|(_, s)| s.clone()),
        "ftp" => all.ftp.as_ref().and_then(|(_, s)| s.clone()),
        "crm" => all.crm.as_ref().and_then(|(_, s)| s.clone()),
        other => panic!("no channel {other}"),
    };
    secret.map(|s| s.expose().to_owned())
}

fn key_ids(path: &Path) -> Vec<String> {
    let keyring = Keyring::parse(&std::fs::read_to_string(path).unwrap(), "test").unwrap();
    keyring.ids().into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn no_secret_reaches_the_database_in_plain_text_and_each_reads_back() {
    let w = world().await;
    w.save_all().await;

    let loaded = Integrations::load(&w.pool).await.unwrap();
    for (channel, secret) in SECRETS {
        assert_eq!(secret_of(&loaded, channel).as_deref(), Some(secret), "{channel} reads back");
    }

    let keyring = secrets::keyring(&w.pool).unwrap();
    let raw = w.raw_secrets().await;
    assert_eq!(raw.len(), SECRETS.len());
    for (channel, stored) in &raw {
        assert!(stored.starts_with(&format!("v1:{}:", keyring.current_id())), "{channel}: {stored}");
        assert!(SECRETS.iter().all(|(_, secret)| !stored.contains(secret)), "{channel} is stored encrypted");
    }

    // The key is outside the database: beside the SQLite file by default,
    // readable by its owner only.
    let key_text = std::fs::read_to_string(w.key_file()).unwrap();
    assert_eq!(std::fs::metadata(w.key_file()).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(key_ids(&w.key_file()), [keyring.current_id()]);

    // SQLite only: the database file's raw bytes hold no secret, nor the key.
    if let Some(bytes) = w.file_bytes().await {
        for (channel, secret) in SECRETS {
            assert!(!contains(&bytes, secret.as_bytes()), "the {channel} secret is in the database file");
        }
        assert!(contains(&bytes, b"smtp.example.test"), "the settings themselves are in the file (the search works)");
        let key_line = key_text.lines().find(|l| !l.starts_with('#')).unwrap();
        assert!(!contains(&bytes, key_line.as_bytes()), "the key is not in the database file");
    }
}

#[tokio::test]
async fn a_copy_of_the_database_with_another_key_cannot_read_the_secrets() {
    let w = world().await;
    w.save_all().await;
    let original_key = secrets::keyring(&w.pool).unwrap().current_id().to_owned();
    let copy_dir = tempfile::tempdir().unwrap();

    // The copy, opened the way the server opens it: for SQLite the file is
    // copied elsewhere, where no key file is, so a new key is made for it.
    let mut postgres_copy = None;
    let copy_pool = if let Some(_bytes) = w.file_bytes().await {
        w.pool.close().await;
        std::fs::copy(w.dir.path().join("waymark.db"), copy_dir.path().join("waymark.db")).unwrap();
        store::connect(&format!("sqlite://{}/waymark.db", copy_dir.path().display())).await.unwrap()
    } else {
        w.pool.close().await;
        let server = std::env::var("WAYMARK_TEST_POSTGRES").unwrap();
        let original = url::Url::parse(&w.db.url).unwrap().path().trim_start_matches('/').to_owned();
        let copy = format!("{original}_copy");
        create_copy(&server, &original, &copy).await;
        let mut url = url::Url::parse(&w.db.url).unwrap();
        url.set_path(&copy);
        let pool = store::connect(url.as_str()).await.unwrap();
        secrets::use_key_file(&pool, &copy_dir.path().join("waymark.key")).unwrap();
        postgres_copy = Some((server, copy));
        pool
    };
    let other_key = secrets::keyring(&copy_pool).unwrap().current_id().to_owned();
    assert_ne!(other_key, original_key);
    assert!(copy_dir.path().join("waymark.key").exists(), "the copy got a key of its own");

    let err = Integrations::load(&copy_pool).await.unwrap_err();
    assert_eq!(err.code(), "secret_unreadable");
    let message = err.public_message();
    assert!(message.contains(&original_key) && message.contains(&other_key), "{message}");
    assert!(SECRETS.iter().any(|(channel, _)| message.contains(&format!("The {channel} secret"))), "{message}");
    assert!(SECRETS.iter().all(|(_, secret)| !message.contains(secret)), "{message}");

    // Each channel's value names that channel and the key it needs.
    let keyring = secrets::keyring(&copy_pool).unwrap();
    let rows = sqlx::query("SELECT channel, secret FROM integration_settings WHERE secret IS NOT NULL").fetch_all(&copy_pool).await.unwrap();
    assert_eq!(rows.len(), SECRETS.len());
    for row in rows {
        let (channel, stored): (String, String) = (row.get("channel"), row.get("secret"));
        let err = keyring.decrypt(&channel, &stored).unwrap_err().to_string();
        assert!(err.contains(&format!("The {channel} secret")) && err.contains(&original_key), "{err}");
    }
    copy_pool.close().await;
    if let Some((server, copy)) = postgres_copy {
        admin_sql(&server, &format!("DROP DATABASE IF EXISTS {copy} WITH (FORCE)")).await;
    }

    // The original, with its own key, still reads them.
    let pool = store::connect(&w.db.url).await.unwrap();
    let loaded = Integrations::load(&pool).await.unwrap();
    assert_eq!(secret_of(&loaded, "crm").as_deref(), Some("crm-token-Okapi-5567"));
}

/// `CREATE DATABASE copy TEMPLATE original`, once the original's last
/// session is gone: a closed pool's server processes end a moment after
/// their sockets close, and until then PostgreSQL refuses the template
/// as "being accessed by other users" (55006).
async fn create_copy(server: &str, original: &str, copy: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    for _ in 0..100 {
        match sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {copy} TEMPLATE {original}").as_str()).await {
            Ok(_) => return,
            Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("55006") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(err) => panic!("copying {original}: {err}"),
        }
    }
    panic!("{original} was still in use after 5 s");
}

async fn admin_sql(server: &str, sql: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    sqlx::Executor::execute(&mut admin, sql).await.unwrap();
}

#[tokio::test]
async fn a_secret_copied_into_another_channels_row_does_not_decrypt() {
    let w = world().await;
    w.save_all().await;
    let smtp: String = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'smtp'").fetch_one(&w.pool).await.unwrap();
    sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = 'ftp'").bind(&smtp).execute(&w.pool).await.unwrap();
    let err = Integrations::load(&w.pool).await.unwrap_err();
    let message = err.public_message();
    assert!(message.contains("The ftp secret") && message.contains(secrets::stored_key_id(&smtp).unwrap()), "{message}");
    assert!(!message.contains("smtp-pass"), "{message}");
}

#[tokio::test]
async fn rotation_reencrypts_every_secret_and_drops_the_old_key() {
    let w = world().await;
    w.save_all().await;
    let old_key = secrets::keyring(&w.pool).unwrap().current_id().to_owned();
    let old_text = std::fs::read_to_string(w.key_file()).unwrap();
    let before = w.raw_secrets().await;

    let output = w.rotate_with_cli().await;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("re-encrypted 5 secret(s)"), "{stdout}");

    // The key file holds the new key only, still private.
    let ids = key_ids(&w.key_file());
    assert_eq!(ids.len(), 1, "the old key is gone");
    let new_key = ids[0].clone();
    assert_ne!(new_key, old_key);
    let new_text = std::fs::read_to_string(w.key_file()).unwrap();
    let old_line = old_text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(!new_text.contains(old_line));
    assert_eq!(std::fs::metadata(w.key_file()).unwrap().permissions().mode() & 0o777, 0o600);

    // Every value changed, to the new key; this process sees the changed
    // key file and reads every secret.
    let after = w.raw_secrets().await;
    assert_eq!(after.len(), before.len());
    for ((channel, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{channel} was re-encrypted");
        assert_eq!(secrets::stored_key_id(new), Some(new_key.as_str()), "{channel}");
    }
    let loaded = Integrations::load(&w.pool).await.unwrap();
    for (channel, secret) in SECRETS {
        assert_eq!(secret_of(&loaded, channel).as_deref(), Some(secret), "{channel} reads after the rotation");
    }
    let old_only = Keyring::parse(old_line, "the old key").unwrap();
    for (channel, stored) in &after {
        assert!(old_only.decrypt(channel, stored).is_err(), "the old key no longer opens {channel}");
    }
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'secrets.rotated'").fetch_one(&w.pool).await.unwrap();
    assert_eq!(audited, 1);

    // A second rotation works the same from the new key.
    assert!(w.rotate_with_cli().await.status.success());
    assert_ne!(key_ids(&w.key_file()), [new_key]);
    assert_eq!(secret_of(&Integrations::load(&w.pool).await.unwrap(), "sms").as_deref(), Some("sms-token-Narwhal-4412"));
}

#[tokio::test]
async fn a_failed_rotation_keeps_every_secret_readable() {
    let w = world().await;
    w.save_all().await;
    let old_key = secrets::keyring(&w.pool).unwrap().current_id().to_owned();
    // A value no key of ours opens (saved with a key since lost).
    let foreign = Keyring::generate().encrypt("crm", "lost");
    sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = 'crm'").bind(&foreign).execute(&w.pool).await.unwrap();
    let before = w.raw_secrets().await;

    let err = secrets::rotate(&w.pool, |_| panic!("a key file rotation prints no key")).await.unwrap_err().to_string();
    assert!(err.contains("The crm secret") && err.contains("No secret was re-encrypted"), "{err}");
    assert_eq!(w.raw_secrets().await, before, "nothing changed in the database");
    let ids = key_ids(&w.key_file());
    assert_eq!((ids.len(), ids[1].as_str()), (2, old_key.as_str()), "the new key first, the old one kept");
    let keyring = secrets::keyring(&w.pool).unwrap();
    for (channel, stored) in before.iter().filter(|(channel, _)| channel != "crm") {
        let secret = SECRETS.iter().find(|(c, _)| c == channel).unwrap().1;
        assert_eq!(keyring.decrypt(channel, stored).unwrap(), secret);
    }

    // Once the unreadable secret is entered again, the rotation completes.
    w.admin().save_integration("admin@x.test", "crm".into(), settings("crm"), Some("crm-token-new".into())).await.unwrap();
    let rotation = secrets::rotate(&w.pool, |_| {}).await.unwrap();
    assert_eq!(rotation.secrets, 5, "every secret moves to the newest key");
    assert_eq!(key_ids(&w.key_file()), [rotation.new.as_str()]);
    let loaded = Integrations::load(&w.pool).await.unwrap();
    assert_eq!(secret_of(&loaded, "crm").as_deref(), Some("crm-token-new"));
    assert_eq!(secret_of(&loaded, "ftp").as_deref(), Some("ftp-pass-Pangolin-2288"));
}

#[tokio::test]
async fn a_plain_secret_from_before_is_read_then_encrypted() {
    let w = world().await;
    if !w.db.is_postgres() {
        // Nothing stored yet: no key file is made for nothing.
        secrets::startup(&w.pool).await.unwrap();
        assert!(!w.key_file().exists());
    }
    let legacy = [("smtp", "legacy-smtp-Wombat-1"), ("sms", "legacy-sms-Kiwi-2")];
    for (channel, secret) in legacy {
        sqlx::query("INSERT INTO integration_settings (channel, settings, secret, updated_at) VALUES ($1, $2, $3, '2026-01-01T00:00:00Z')")
            .bind(channel)
            .bind(settings(channel).to_string())
            .bind(secret)
            .execute(&w.pool)
            .await
            .unwrap();
    }
    let loaded = Integrations::load(&w.pool).await.unwrap();
    for (channel, secret) in legacy {
        assert_eq!(secret_of(&loaded, channel).as_deref(), Some(secret), "plain {channel} reads");
    }

    // The startup step encrypts what is left in plain text, once.
    secrets::startup(&w.pool).await.unwrap();
    let raw = w.raw_secrets().await;
    assert_eq!(raw.len(), 2);
    for (channel, stored) in &raw {
        assert!(secrets::stored_key_id(stored).is_some(), "{channel} is encrypted: {stored}");
    }
    assert_eq!(secrets::encrypt_plain(&w.pool).await.unwrap(), 0, "nothing left to do");
    assert_eq!(w.raw_secrets().await, raw, "a second run changes nothing");
    let loaded = Integrations::load(&w.pool).await.unwrap();
    for (channel, secret) in legacy {
        assert_eq!(secret_of(&loaded, channel).as_deref(), Some(secret), "{channel} reads once encrypted");
    }
    // SQLite only: the plain text does not linger in the file's free space.
    if let Some(bytes) = w.file_bytes().await {
        for (channel, secret) in legacy {
            assert!(!contains(&bytes, secret.as_bytes()), "the old plain {channel} secret is still in the database file");
        }
    }

    // A plain value written after startup is encrypted at its channel's
    // next save, even one that keeps the secret.
    sqlx::query("INSERT INTO integration_settings (channel, settings, secret, updated_at) VALUES ('ftp', $1, 'legacy-ftp-Emu-3', '2026-01-01T00:00:00Z')")
        .bind(settings("ftp").to_string())
        .execute(&w.pool)
        .await
        .unwrap();
    let mut changed = settings("ftp");
    changed["port"] = json!(2121);
    w.admin().save_integration("admin@x.test", "ftp".into(), changed, None).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'ftp'").fetch_one(&w.pool).await.unwrap();
    assert!(secrets::stored_key_id(&stored).is_some() && !stored.contains("legacy-ftp"), "{stored}");
    let loaded = Integrations::load(&w.pool).await.unwrap();
    assert_eq!(loaded.ftp.as_ref().map(|(ftp, _)| ftp.port), Some(2121));
    assert_eq!(secret_of(&loaded, "ftp").as_deref(), Some("legacy-ftp-Emu-3"));
}

#[tokio::test]
async fn a_worker_refuses_to_start_with_a_key_file_others_can_read() {
    let w = world().await;
    w.save_all().await;
    std::fs::set_permissions(w.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_waymark"));
    command.arg("worker").env("DATABASE_URL", &w.db.url).env_remove(secrets::KEY_ENV).env(secrets::KEY_FILE_ENV, w.key_file());
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker started with a key file others can read");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("chmod 600") && stderr.contains("waymark.key"), "{stderr}");
}

#[tokio::test]
async fn rotation_with_an_environment_key_prints_the_new_key_first() {
    let w = world().await;
    let env_key = Keyring::generate().to_text().trim().to_owned();
    secrets::use_keyring(&w.pool, Keyring::parse(&env_key, secrets::KEY_ENV).unwrap());
    w.save_all().await;
    let key_file = std::fs::read(w.key_file()).ok();

    let output = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &w.db.url)
        .env(secrets::KEY_ENV, &env_key)
        .env_remove(secrets::KEY_FILE_ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let new_key = stdout.lines().find_map(|line| line.strip_prefix("new key: ")).expect("the new key is printed").to_owned();
    assert!(stdout.find("new key: ") < stdout.find("re-encrypted 5 secret(s)"), "{stdout}");
    assert_eq!(std::fs::read(w.key_file()).ok(), key_file, "no key file is written for an environment key");

    let new = Keyring::parse(&new_key, secrets::KEY_ENV).unwrap();
    let old = Keyring::parse(&env_key, secrets::KEY_ENV).unwrap();
    for (channel, stored) in w.raw_secrets().await {
        let secret = SECRETS.iter().find(|(c, _)| *c == channel).unwrap().1;
        assert_eq!(new.decrypt(&channel, &stored).unwrap(), secret);
        assert!(old.decrypt(&channel, &stored).is_err(), "the old key no longer opens {channel}");
    }
}
