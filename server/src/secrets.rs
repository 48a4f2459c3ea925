//! Integration secrets (the SMTP password, the SMS token, the S3 secret
//! key, the FTP password, the CRM token) encrypted at rest, with a key kept
//! outside the database: a copy of the database alone does not reveal them.
//!
//! # The key
//!
//! Waymark takes the key from, in this order:
//!
//! 1. `WAYMARK_SECRET_KEY`: the key in base64 (32 bytes; make one with
//!    `head -c 32 /dev/urandom | base64`). Several keys may be given,
//!    separated by commas, newest first: the first encrypts, all decrypt.
//! 2. The key file named by `WAYMARK_KEY_FILE`.
//! 3. The key file `waymark.key` beside a SQLite database file
//!    (`data/waymark.key` for `sqlite://data/waymark.db`); for PostgreSQL,
//!    `data/waymark.key` in the working directory.
//!
//! A key file holds one key per line in base64, newest first (blank lines
//! and lines starting with `#` are skipped). When it does not exist, the
//! first process that needs it (`waymark serve` and `waymark worker` at
//! startup once a secret is stored, else whichever saves the first one)
//! creates it with a new random key, readable by its owner only (mode
//! 0600). Waymark refuses to start when the key file can be read by
//! its group or by others: `chmod 600 data/waymark.key`.
//!
//! Back the key up, apart from the database's backups: without it the
//! stored secrets cannot be read (re-enter them on the Settings page), and
//! with it a database copy reveals them. Every server and worker sharing a
//! PostgreSQL database needs the same key: copy the key file to each
//! machine, or give each the same `WAYMARK_SECRET_KEY`.
//!
//! # What is stored
//!
//! `integration_settings.secret` holds `v1:<key id>:<base64 of nonce and
//! ciphertext>`: XChaCha20-Poly1305 with a random 24-byte nonce, and the
//! channel's name as associated data, so a value copied into another
//! channel's row does not decrypt. The key id is the first 8 hex digits of
//! the SHA-256 of the key; it tells which key a value needs, and reveals
//! nothing of it.
//!
//! Values stored by earlier versions in plain text are still read. At
//! startup (`waymark serve`, `waymark worker`) every plain value is
//! encrypted; saving a channel's settings also re-encrypts its secret with
//! the current key. Copies of the database taken before the upgrade still
//! hold the plain values: change those passwords and tokens at their
//! providers if such a copy may have gone astray.
//!
//! # Rotating the key
//!
//! ```text
//! waymark secrets rotate
//! ```
//!
//! With a key file:
//!
//! 1. A new key is made and written to the key file ahead of the old
//!    one(s), so every process reads both (running servers and workers on
//!    this machine notice the changed file at their next use of a secret
//!    and save with the new key from then on).
//! 2. Every stored secret is decrypted and encrypted again with the new
//!    key, in one transaction.
//! 3. The old key(s) are removed from the key file.
//!
//! If step 2 fails (a secret no key decrypts, say), nothing is re-encrypted
//! and the key file keeps the old key(s) after the new one: every secret
//! reads as before. Fix the cause (enter the unreadable secret again) and
//! run the command again. Machines holding their own copy of the key file
//! need the new file afterwards.
//!
//! With `WAYMARK_SECRET_KEY`, the command prints the new key before it
//! re-encrypts anything, then re-encrypts every secret with it in one
//! transaction. Set `WAYMARK_SECRET_KEY` to the new key for every server
//! and worker and restart them: until then they cannot read the secrets.
//!
//! # In the code
//!
//! [`keyring`] gives the [`Keyring`] for a pool's database, loaded on
//! first use by the rules above and kept per database URL for the life of
//! the process (a key file is read again when it changes). The settings
//! code reaches it through the pool it already has, so no caller passes a
//! key around; [`use_key_file`] and [`use_keyring`] choose a key for a
//! pool explicitly (tests do).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Backend, Pool};

/// The key(s) in base64, newest first, separated by commas.
pub const KEY_ENV: &str = "WAYMARK_SECRET_KEY";
/// A key file to use instead of the default one.
pub const KEY_FILE_ENV: &str = "WAYMARK_KEY_FILE";

const PREFIX: &str = "v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// One 256-bit key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; KEY_LEN],
}

impl Key {
    fn new(bytes: [u8; KEY_LEN]) -> Key {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        Key { id, bytes }
    }

    fn random() -> Key {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes).expect("the operating system's random source works");
        Key::new(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// The current key, which encrypts, and older ones, which still decrypt.
#[derive(Clone)]
pub struct Keyring {
    /// Newest first; never empty.
    keys: Vec<Key>,
    /// Where the keys came from, for messages (`the key file data/waymark.key`).
    origin: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).field("origin", &self.origin).finish()
    }
}

/// A stored secret that cannot be decrypted. Names the channel and the key,
/// never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "The {channel} secret was encrypted with key {key_id}, which is not among this server's keys ({have}, from {origin}). \
         Restore the key it was saved with, or enter the {channel} secret again."
    )]
    UnknownKey { channel: String, key_id: String, have: String, origin: String },
    #[error(
        "The {channel} secret does not decrypt with key {key_id}: it was altered, or copied from another channel's row. \
         Enter the {channel} secret again."
    )]
    Altered { channel: String, key_id: String },
}

impl Keyring {
    /// One new random key, held in memory only.
    pub fn generate() -> Keyring {
        Keyring { keys: vec![Key::random()], origin: "a key held in memory".into() }
    }

    /// Keys in base64, one per line or separated by commas, newest first.
    /// Blank lines and `#` comments are skipped. Errors never quote a key.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Keyring> {
        let mut keys = Vec::new();
        let entries = text.lines().filter(|line| !line.trim_start().starts_with('#')).flat_map(|line| line.split(','));
        for (n, entry) in entries.map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let bytes = BASE64.decode(entry).ok().and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok());
            let Some(bytes) = bytes else {
                bail!("key {} in {origin} is not a key: a key is 32 bytes in base64 (44 characters)", n + 1);
            };
            keys.push(Key::new(bytes));
        }
        if keys.is_empty() {
            bail!("{origin} holds no key");
        }
        Ok(Keyring { keys, origin: origin.to_owned() })
    }

    /// The keys in base64, one per line, newest first: a key file's text.
    pub fn to_text(&self) -> String {
        self.keys.iter().map(|key| BASE64.encode(key.bytes) + "\n").collect()
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key's id, newest first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.id.as_str()).collect()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// This keyring with a new random key in front.
    pub fn with_new_key(&self) -> Keyring {
        let mut keys = vec![Key::random()];
        keys.extend(self.keys.iter().cloned());
        Keyring { keys, origin: self.origin.clone() }
    }

    /// This keyring without its older keys.
    pub fn current_only(&self) -> Keyring {
        Keyring { keys: self.keys[..1].to_vec(), origin: self.origin.clone() }
    }

    /// `v1:<key id>:<base64 of nonce and ciphertext>`, bound to `channel`.
    pub fn encrypt(&self, channel: &str, plaintext: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).expect("the operating system's random source works");
        let sealed = key
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: channel.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any secret of a sane size");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, BASE64.encode(blob))
    }

    /// The plain secret `channel`'s row holds: decrypted, or as it is when
    /// it was stored in plain text by an earlier version.
    pub fn decrypt(&self, channel: &str, stored: &str) -> Result<String, SecretError> {
        let Some((key_id, blob)) = sealed_parts(stored) else {
            return Ok(stored.to_owned());
        };
        let Some(key) = self.keys.iter().find(|key| key.id == key_id) else {
            return Err(SecretError::UnknownKey {
                channel: channel.to_owned(),
                key_id: key_id.to_owned(),
                have: self.ids().join(", "),
                origin: self.origin.clone(),
            });
        };
        let altered = || SecretError::Altered { channel: channel.to_owned(), key_id: key_id.to_owned() };
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| altered())?;
        let plain = key.cipher().decrypt(&nonce, Payload { msg: sealed, aad: channel.as_bytes() }).map_err(|_| altered())?;
        String::from_utf8(plain).map_err(|_| altered())
    }

    /// Whether `stored` is encrypted with the current key (else it is plain
    /// text, or needs an older key).
    pub fn is_current(&self, stored: &str) -> bool {
        stored_key_id(stored) == Some(self.current_id())
    }
}

/// The id of the key a stored value was encrypted with; none for plain text.
pub fn stored_key_id(stored: &str) -> Option<&str> {
    sealed_parts(stored).map(|(id, _)| id)
}

/// The key id and the nonce-and-ciphertext of an encrypted value. Anything
/// not in that exact form is plain text from before encryption.
fn sealed_parts(stored: &str) -> Option<(&str, Vec<u8>)> {
    let (key_id, encoded) = stored.strip_prefix(PREFIX)?.split_once(':')?;
    if key_id.len() != 8 || !key_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let blob = BASE64.decode(encoded).ok()?;
    (blob.len() >= NONCE_LEN + TAG_LEN).then_some((key_id, blob))
}

/// Where a database's key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `WAYMARK_SECRET_KEY`.
    Env,
    /// A key file, created on first use.
    File(PathBuf),
    /// In memory only: an in-memory SQLite database, or a keyring given to
    /// [`use_keyring`].
    Memory,
}

impl KeySource {
    /// The source the rules in the module documentation pick for the
    /// database at `url`.
    pub fn for_database(url: &str) -> KeySource {
        if std::env::var(KEY_ENV).is_ok_and(|key| !key.trim().is_empty()) {
            return KeySource::Env;
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|path| !path.is_empty()) {
            return KeySource::File(PathBuf::from(path));
        }
        if Backend::of_url(url).ok() != Some(Backend::Sqlite) {
            return KeySource::File(PathBuf::from("data/waymark.key"));
        }
        let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
            return KeySource::File(PathBuf::from("data/waymark.key"));
        };
        let file = options.get_filename();
        if url.contains("mode=memory") || file.to_string_lossy().starts_with("file:sqlx-in-memory-") {
            return KeySource::Memory;
        }
        KeySource::File(file.parent().unwrap_or(Path::new("")).join("waymark.key"))
    }

    /// Reads the keys, creating the key file when it does not exist yet;
    /// [`KeySource::Memory`] makes a new key.
    pub fn load(&self) -> anyhow::Result<Keyring> {
        match self {
            KeySource::Env => {
                let text = std::env::var(KEY_ENV).map_err(|_| anyhow!("{KEY_ENV} is not set"))?;
                Keyring::parse(&text, KEY_ENV)
            }
            KeySource::File(path) => match read_key_file(path) {
                Err(err) if err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {
                    create_key_file(path)
                }
                other => other,
            },
            KeySource::Memory => Ok(Keyring::generate()),
        }
    }
}

fn file_origin(path: &Path) -> String {
    format!("the key file {}", path.display())
}

/// A key file's keys; refused when its group or others may read it.
fn read_key_file(path: &Path) -> anyhow::Result<Keyring> {
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the key file {} can be read by its group or others (mode {:03o}); it holds the key to the stored integration secrets. \
             Run `chmod 600 {}` and start again",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).with_context(|| format!("cannot read the key file {}", path.display()))?;
    Keyring::parse(&text, &file_origin(path))
}

/// Writes `keyring` to a new file beside `path`, readable by its owner
/// only, and returns that file's path.
fn write_temporary(path: &Path, keyring: &Keyring) -> anyhow::Result<PathBuf> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {} for the key file", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "waymark.key".into());
    let mut salt = [0u8; 6];
    getrandom::getrandom(&mut salt).expect("the operating system's random source works");
    let temporary = dir.join(format!(".{name}.{}.tmp", hex::encode(salt)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(b"# Waymark's keys for integration secrets, newest first. Keep this file apart from database backups.\n")?;
        file.write_all(keyring.to_text().as_bytes())?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(anyhow!("cannot write the key file {}: {err}", path.display()));
    }
    Ok(temporary)
}

/// Creates the key file with a new key. When another process creates it
/// first, its key is the one used.
fn create_key_file(path: &Path) -> anyhow::Result<Keyring> {
    let mut keyring = Keyring::generate();
    keyring.origin = file_origin(path);
    let temporary = write_temporary(path, &keyring)?;
    // A link never replaces an existing file: of two processes starting
    // together, one creates the key and the other reads it.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::warn!(
                key = keyring.current_id(),
                "created the key file {} for integration secrets: back it up, apart from the database's backups",
                path.display()
            );
            Ok(keyring)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(err) => Err(anyhow!("cannot create the key file {}: {err}", path.display())),
    }
}

/// Replaces the key file's contents with `keyring` in one step.
fn replace_key_file(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let temporary = write_temporary(path, keyring)?;
    if let Err(err) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        bail!("cannot replace the key file {}: {err}", path.display());
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// What tells a changed key file from the one read.
type Stamp = (u64, u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len()))
}

struct Entry {
    source: KeySource,
    keyring: Arc<Keyring>,
    stamp: Option<Stamp>,
}

impl Entry {
    fn load(source: KeySource) -> anyhow::Result<Entry> {
        let keyring = Arc::new(source.load()?);
        let stamp = match &source {
            KeySource::File(path) => stamp(path),
            _ => None,
        };
        Ok(Entry { source, keyring, stamp })
    }

    /// Reads the key file again when it changed (a rotation by another process).
    fn refresh(&mut self) -> anyhow::Result<()> {
        if let KeySource::File(path) = &self.source {
            let now = stamp(path);
            if now.is_some() && now != self.stamp {
                *self = Entry::load(self.source.clone())?;
            }
        }
        Ok(())
    }
}

/// Each database's keys, by the URL its pool was opened with.
static KEYRINGS: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(Mutex::default);

fn database(pool: &Pool) -> String {
    pool.connect_options().database_url.to_string()
}

fn keyrings() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    KEYRINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The keys for the pool's database: the ones chosen for it, else those the
/// rules in the module documentation give (loaded on first use, the key
/// file created if missing, and read again when it changes).
pub fn keyring(pool: &Pool) -> anyhow::Result<Arc<Keyring>> {
    let url = database(pool);
    let mut keyrings = keyrings();
    if let Some(entry) = keyrings.get_mut(&url) {
        entry.refresh()?;
        return Ok(entry.keyring.clone());
    }
    let entry = Entry::load(KeySource::for_database(&url))?;
    let keyring = entry.keyring.clone();
    keyrings.insert(url, entry);
    Ok(keyring)
}

/// Uses the key file at `path` (created if missing) for the pool's database.
pub fn use_key_file(pool: &Pool, path: &Path) -> anyhow::Result<Arc<Keyring>> {
    let entry = Entry::load(KeySource::File(path.to_owned()))?;
    let keyring = entry.keyring.clone();
    keyrings().insert(database(pool), entry);
    Ok(keyring)
}

/// Uses `keyring`, held in memory only, for the pool's database.
pub fn use_keyring(pool: &Pool, keyring: Keyring) -> Arc<Keyring> {
    let keyring = Arc::new(keyring);
    keyrings().insert(database(pool), Entry { source: KeySource::Memory, keyring: keyring.clone(), stamp: None });
    keyring
}

fn source(pool: &Pool) -> anyhow::Result<KeySource> {
    keyring(pool)?;
    Ok(keyrings().get(&database(pool)).map(|entry| entry.source.clone()).expect("keyring() registered the database"))
}

fn set_keyring(pool: &Pool, keyring: Keyring) {
    let url = database(pool);
    let mut keyrings = keyrings();
    if let Some(entry) = keyrings.get_mut(&url) {
        entry.keyring = Arc::new(keyring);
        if let KeySource::File(path) = &entry.source {
            entry.stamp = stamp(path);
        }
    }
}

/// At startup: loads the key (refusing a key file others may read) and
/// encrypts the secrets still stored in plain text. Safe to run any number
/// of times. While no secret is stored and the key file does not exist, it
/// is left to be created with the first secret saved.
pub async fn startup(pool: &Pool) -> anyhow::Result<()> {
    let url = database(pool);
    let chosen = keyrings().contains_key(&url);
    if let (false, KeySource::File(path)) = (chosen, KeySource::for_database(&url)) {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_settings WHERE secret IS NOT NULL").fetch_one(pool).await?;
        if stored == 0 && !path.exists() {
            tracing::info!("no integration secret is stored yet; the key file {} will be created with the first one", path.display());
            return Ok(());
        }
    }
    let keyring = keyring(pool)?;
    let encrypted = encrypt_plain(pool).await?;
    if encrypted > 0 {
        tracing::info!(key = keyring.current_id(), "encrypted {encrypted} integration secret(s) stored in plain text");
    }
    tracing::info!(key = keyring.current_id(), "integration secrets are encrypted with key {} from {}", keyring.current_id(), keyring.origin());
    Ok(())
}

/// Encrypts every secret still stored in plain text with the current key;
/// returns how many there were.
pub async fn encrypt_plain(pool: &Pool) -> anyhow::Result<usize> {
    let keyring = keyring(pool)?;
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query("SELECT channel, secret FROM integration_settings WHERE secret IS NOT NULL").fetch_all(&mut *conn).await?;
    let plain: Vec<(String, String)> = rows
        .iter()
        .map(|row| (row.get::<String, _>("channel"), row.get::<String, _>("secret")))
        .filter(|(_, secret)| stored_key_id(secret).is_none())
        .collect();
    if plain.is_empty() {
        return Ok(0);
    }
    // SQLite overwrites what the update frees (every connection has
    // `secure_delete` on, see `db::connect`), so the plain text does not
    // linger in the file's free space.
    let written = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for (channel, secret) in &plain {
            sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = $2 AND secret = $3")
                .bind(keyring.encrypt(channel, secret))
                .bind(channel)
                .bind(secret)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await;
    written?;
    Ok(plain.len())
}

/// What [`rotate`] did.
#[derive(Debug)]
pub struct Rotation {
    /// The ids of the keys dropped.
    pub old: Vec<String>,
    /// The id of the key every secret is now encrypted with.
    pub new: String,
    /// How many secrets were re-encrypted.
    pub secrets: usize,
    pub source: KeySource,
}

/// Encrypts every secret with a new key, then drops the old one(s): see
/// the module documentation. With `WAYMARK_SECRET_KEY`, `new_key` is given
/// the new key in base64 before anything is re-encrypted.
pub async fn rotate(pool: &Pool, new_key: impl FnOnce(&str)) -> anyhow::Result<Rotation> {
    let source = source(pool)?;
    let before = keyring(pool)?;
    let during = before.with_new_key();
    let new = during.current_id().to_owned();
    match &source {
        KeySource::File(path) => replace_key_file(path, &during)?,
        KeySource::Env => new_key(during.current_only().to_text().trim()),
        KeySource::Memory => {}
    }
    set_keyring(pool, during.clone());
    let kept = |err: anyhow::Error| match &source {
        KeySource::File(path) => anyhow!(
            "{err:#}\nNo secret was re-encrypted, and {} lists the new key {new} before the old one(s), so every secret reads as before. \
             Fix the cause (enter an unreadable secret again, or clear it) and run `waymark secrets rotate` again.",
            path.display()
        ),
        _ => anyhow!("{err:#}\nNo secret was re-encrypted: keep using the old key."),
    };
    // A secret saved with an old key while this ran is caught by another pass.
    let mut secrets = 0;
    for pass in 0.. {
        let (done, left) = reencrypt(pool, &during).await.map_err(kept)?;
        secrets += done;
        if left == 0 {
            break;
        }
        if pass == 4 {
            return Err(kept(anyhow!("secrets kept being saved with an old key during the rotation")));
        }
    }
    let after = during.current_only();
    if let KeySource::File(path) = &source {
        replace_key_file(path, &after)?;
    }
    set_keyring(pool, after);
    let old = before.ids().into_iter().map(str::to_owned).collect();
    Ok(Rotation { old, new, secrets, source })
}

/// Re-encrypts, in one transaction, every secret not under `keyring`'s
/// current key; returns how many it did, and how many remain after.
async fn reencrypt(pool: &Pool, keyring: &Keyring) -> anyhow::Result<(usize, usize)> {
    let mut tx = crate::db::begin_write(pool).await?;
    let rows = sqlx::query("SELECT channel, secret FROM integration_settings WHERE secret IS NOT NULL").fetch_all(&mut *tx).await?;
    let mut done = 0;
    for row in rows {
        let (channel, stored): (String, String) = (row.get("channel"), row.get("secret"));
        if keyring.is_current(&stored) {
            continue;
        }
        let plain = keyring.decrypt(&channel, &stored)?;
        sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = $2 AND secret = $3")
            .bind(keyring.encrypt(&channel, &plain))
            .bind(&channel)
            .bind(&stored)
            .execute(&mut *tx)
            .await?;
        done += 1;
    }
    tx.commit().await?;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT secret FROM integration_settings WHERE secret IS NOT NULL").fetch_all(pool).await?;
    Ok((done, stored.iter().filter(|s| !keyring.is_current(s)).count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_and_its_stored_form_reveals_nothing() {
        let keyring = Keyring::generate();
        let stored = keyring.encrypt("smtp", "hunter2");
        assert!(stored.starts_with(&format!("v1:{}:", keyring.current_id())), "{stored}");
        assert!(!stored.contains("hunter2"));
        assert_ne!(stored, keyring.encrypt("smtp", "hunter2"), "a fresh nonce each time");
        assert_eq!(keyring.decrypt("smtp", &stored).unwrap(), "hunter2");
        assert!(keyring.is_current(&stored));
        assert_eq!(keyring.decrypt("smtp", "").unwrap(), "");
        assert_eq!(keyring.decrypt("smtp", &keyring.encrypt("smtp", "")).unwrap(), "");
    }

    #[test]
    fn a_value_moved_to_another_channel_or_altered_does_not_decrypt() {
        let keyring = Keyring::generate();
        let stored = keyring.encrypt("smtp", "hunter2");
        let err = keyring.decrypt("ftp", &stored).unwrap_err().to_string();
        assert!(err.contains("ftp") && err.contains(keyring.current_id()) && !err.contains("hunter2"), "{err}");
        let mut blob = BASE64.decode(stored.rsplit(':').next().unwrap()).unwrap();
        *blob.last_mut().unwrap() ^= 1;
        let altered = format!("v1:{}:{}", keyring.current_id(), BASE64.encode(blob));
        assert!(matches!(keyring.decrypt("smtp", &altered), Err(SecretError::Altered { .. })));
    }

    #[test]
    fn another_key_names_the_channel_and_the_key_id() {
        let (one, two) = (Keyring::generate(), Keyring::generate());
        let stored = one.encrypt("sms", "token-123");
        let err = two.decrypt("sms", &stored).unwrap_err().to_string();
        assert!(err.contains("sms") && err.contains(one.current_id()) && err.contains(two.current_id()), "{err}");
        assert!(!err.contains("token-123"));
    }

    #[test]
    fn plain_text_from_before_reads_as_it_is() {
        let keyring = Keyring::generate();
        for plain in ["hunter2", "v1:", "v1:abc", "v1:0123abcd:not base64!", "v1:0123abcd:aGVsbG8=", "V1:0123ABCD:xx"] {
            assert_eq!(stored_key_id(plain), None, "{plain}");
            assert_eq!(keyring.decrypt("crm", plain).unwrap(), plain);
            assert!(!keyring.is_current(plain));
        }
    }

    #[test]
    fn older_keys_decrypt_and_the_newest_encrypts() {
        let old = Keyring::generate();
        let stored = old.encrypt("s3", "secret-key");
        let rotated = old.with_new_key();
        assert_eq!(rotated.ids()[1], old.current_id());
        assert_eq!(rotated.decrypt("s3", &stored).unwrap(), "secret-key");
        assert!(!rotated.is_current(&stored));
        assert!(rotated.encrypt("s3", "x").starts_with(&format!("v1:{}:", rotated.current_id())));
        assert!(rotated.current_only().decrypt("s3", &stored).is_err());
    }

    #[test]
    fn key_text_parses_lines_or_commas_and_never_echoes_a_bad_key() {
        let keyring = Keyring::generate().with_new_key();
        let text = keyring.to_text();
        let parsed = Keyring::parse(&format!("# comment\n\n{text}"), "test").unwrap();
        assert_eq!(parsed.ids(), keyring.ids());
        let commas = text.trim().replace('\n', ",");
        assert_eq!(Keyring::parse(&commas, "test").unwrap().ids(), keyring.ids());
        let err = Keyring::parse("c2hvcnQ=", "WAYMARK_SECRET_KEY").unwrap_err().to_string();
        assert!(err.contains("WAYMARK_SECRET_KEY") && !err.contains("c2hvcnQ"), "{err}");
        assert!(Keyring::parse("  \n# only a comment\n", "test").is_err());
        assert!(!format!("{keyring:?}").contains(text.lines().next().unwrap()));
    }

    #[test]
    fn the_key_file_is_created_private_and_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("waymark.key");
        let created = KeySource::File(path.clone()).load().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(KeySource::File(path.clone()).load().unwrap().ids(), created.ids());
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file is left");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeySource::File(path.clone()).load().unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn the_default_key_file_sits_beside_a_sqlite_database() {
        if std::env::var_os(KEY_ENV).is_some() || std::env::var_os(KEY_FILE_ENV).is_some() {
            return;
        }
        assert_eq!(KeySource::for_database("sqlite://data/waymark.db"), KeySource::File("data/waymark.key".into()));
        assert_eq!(KeySource::for_database("sqlite:///srv/wm/x.db?mode=rwc"), KeySource::File("/srv/wm/waymark.key".into()));
        assert_eq!(KeySource::for_database("postgres://db/waymark"), KeySource::File("data/waymark.key".into()));
        assert_eq!(KeySource::for_database("sqlite::memory:"), KeySource::Memory);
    }
}
