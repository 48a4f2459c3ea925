//! Users, their passwords (argon2id), sign-in sessions and API tokens.
//! Session cookies and token secrets are random 256-bit values; only their
//! SHA-256 is stored, so a copy of the database signs no one in.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use sqlx::Row;

use app::auth::{Role, Viewer};

use crate::error::{Error, Result};
use crate::db::{DbRow, Pool};

/// How long a sign-in lasts.
pub const SESSION_LIFETIME: SignedDuration = SignedDuration::from_hours(12);

/// A user as listed (never with the password hash).
pub type User = app::admin_api::UserInfo;
/// An API token as listed (never with its secret).
pub type Token = app::admin_api::TokenInfo;

/// A new random secret, URL-safe.
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| Error::Internal(anyhow::anyhow!("hashing a password: {err}")))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A password must be long enough to resist guessing.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 10 {
        return Err(Error::Invalid { code: "weak_password", message: "A password needs at least 10 characters.".into() });
    }
    // Hashing is the slow part by design: a megabyte of password is not taken.
    app::core::limits::check("password", password, 1_024)?;
    Ok(())
}

fn user_from(row: &DbRow) -> User {
    User {
        id: row.get("id"),
        email: row.get("email"),
        name: row.get("name"),
        role: Role::parse(row.get::<&str, _>("role")).unwrap_or(Role::Agent),
        disabled: row.get::<i64, _>("disabled") != 0,
        created_at: row.get("created_at"),
    }
}

/// A new user's email, display name and password hash, after the checks
/// every way of adding a user applies.
fn checked_new_user<'a>(email: &'a str, name: &'a str, password: &str) -> Result<(&'a str, &'a str, String)> {
    let email = email.trim();
    if !email.contains('@') {
        return Err(Error::Invalid { code: "invalid_email", message: format!("“{email}” is not an email address.") });
    }
    app::core::limits::check("email", email, app::core::limits::EMAIL)?;
    app::core::limits::check("name", name.trim(), app::core::limits::NAME)?;
    check_password(password)?;
    let name = if name.trim().is_empty() { email } else { name.trim() };
    Ok((email, name, hash_password(password)?))
}

pub async fn add_user(pool: &Pool, email: &str, name: &str, role: Role, password: &str) -> Result<User> {
    let (email, name, hash) = checked_new_user(email, name, password)?;
    let row = sqlx::query(
        "INSERT INTO users (email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, name, role, disabled, created_at",
    )
    .bind(email)
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(Timestamp::now().to_string())
    .fetch_one(pool)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Conflict { code: "user_exists", message: format!("A user with the email “{email}” already exists.") }
        }
        _ => Error::Database(err),
    })?;
    Ok(user_from(&row))
}

/// Adds the first admin, only while there is none: one statement, so two
/// set-ups at once cannot both make one. `None` when an admin exists.
pub async fn add_first_admin(pool: &Pool, email: &str, name: &str, password: &str) -> Result<Option<User>> {
    let (email, name, hash) = checked_new_user(email, name, password)?;
    let row = sqlx::query(
        "INSERT INTO users (email, name, role, password_hash, created_at)
         SELECT $1, $2, 'admin', $3, $4 WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')
         RETURNING id, email, name, role, disabled, created_at",
    )
    .bind(email)
    .bind(name)
    .bind(hash)
    .bind(Timestamp::now().to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(user_from))
}

/// Changes a user's name, role, disabled flag and (when given) password.
/// Disabling or demoting signs them out everywhere.
pub async fn update_user(pool: &Pool, id: i64, name: &str, role: Role, disabled: bool, password: Option<&str>) -> Result<User> {
    app::core::limits::check("name", name.trim(), app::core::limits::NAME)?;
    let hash = match password.filter(|p| !p.is_empty()) {
        Some(password) => {
            check_password(password)?;
            Some(hash_password(password)?)
        }
        None => None,
    };
    let mut tx = crate::db::begin_write(pool).await?;
    let before = sqlx::query("SELECT role, disabled FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let Some(before) = before else {
        return Err(Error::Invalid { code: "user_not_found", message: format!("There is no user with id {id}.") });
    };
    let row = sqlx::query(
        "UPDATE users SET name = $1, role = $2, disabled = $3, password_hash = COALESCE($4, password_hash) WHERE id = $5
         RETURNING id, email, name, role, disabled, created_at",
    )
    .bind(name.trim())
    .bind(role.as_str())
    .bind(disabled as i64)
    .bind(hash.as_deref())
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let changed = before.get::<&str, _>("role") != role.as_str() || (disabled && before.get::<i64, _>("disabled") == 0) || hash.is_some();
    if changed {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    }
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0").fetch_one(&mut *tx).await?;
    if admins == 0 {
        return Err(Error::Conflict { code: "last_admin", message: "Keep at least one active admin.".into() });
    }
    tx.commit().await?;
    Ok(user_from(&row))
}

pub async fn users(pool: &Pool) -> Result<Vec<User>> {
    let rows = sqlx::query("SELECT id, email, name, role, disabled, created_at FROM users ORDER BY email").fetch_all(pool).await?;
    Ok(rows.iter().map(user_from).collect())
}

pub async fn has_admin(pool: &Pool) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users WHERE role = 'admin'").fetch_one(pool).await? > 0)
}

/// The user with this email and password, if both match and they are active.
pub async fn verify(pool: &Pool, email: &str, password: &str) -> Result<Option<User>> {
    let row = sqlx::query("SELECT id, email, name, role, disabled, created_at, password_hash FROM users WHERE email = $1")
        .bind(email.trim())
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        // Spend the same time as a real check, so timing does not tell which emails exist.
        let _ = password_matches(password, DUMMY_HASH);
        return Ok(None);
    };
    let user = user_from(&row);
    Ok((password_matches(password, row.get("password_hash")) && !user.disabled).then_some(user))
}

/// argon2id of a random password nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Q9r2sTG6xkq3jcq0+Ywz8M8p5T+0cw9g3T4WCA7E2bU";

/// Opens a session; answers the cookie value.
pub async fn open_session(pool: &Pool, user_id: i64) -> Result<String> {
    let value = secret();
    let now = Timestamp::now();
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now.to_string()).execute(pool).await?;
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(digest(&value))
        .bind(user_id)
        .bind(now.to_string())
        .bind((now + SESSION_LIFETIME).to_string())
        .execute(pool)
        .await?;
    Ok(value)
}

pub async fn close_session(pool: &Pool, value: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(digest(value)).execute(pool).await?;
    Ok(())
}

/// The active user a session cookie belongs to.
pub async fn session_viewer(pool: &Pool, value: &str) -> Result<Option<Viewer>> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.name, u.role FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
    )
    .bind(digest(value))
    .bind(Timestamp::now().to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| Viewer {
        id: row.get("id"),
        email: row.get("email"),
        name: row.get("name"),
        role: Role::parse(row.get::<&str, _>("role")).unwrap_or(Role::Agent),
        token: false,
    }))
}

/// Creates an API token; answers it and the secret, shown this once.
pub async fn create_token(pool: &Pool, name: &str, scope: &str, created_by: &str) -> Result<(Token, String)> {
    if name.trim().is_empty() {
        return Err(Error::Invalid { code: "invalid_name", message: "A token needs a name.".into() });
    }
    app::core::limits::check("name", name.trim(), app::core::limits::NAME)?;
    if !matches!(scope, "read" | "write") {
        return Err(Error::Invalid { code: "invalid_scope", message: "A token's scope is read or write.".into() });
    }
    let value = format!("wm_{}", secret());
    let row = sqlx::query(
        "INSERT INTO api_tokens (name, token_hash, prefix, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, prefix, scope, created_by, created_at, revoked_at, last_used_at",
    )
    .bind(name.trim())
    .bind(digest(&value))
    .bind(&value[..9])
    .bind(scope)
    .bind(created_by)
    .bind(Timestamp::now().to_string())
    .fetch_one(pool)
    .await?;
    Ok((token_from(&row), value))
}

fn token_from(row: &DbRow) -> Token {
    Token {
        id: row.get("id"),
        name: row.get("name"),
        prefix: row.get("prefix"),
        scope: row.get("scope"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
        last_used_at: row.get("last_used_at"),
    }
}

pub async fn tokens(pool: &Pool) -> Result<Vec<Token>> {
    let rows = sqlx::query("SELECT id, name, prefix, scope, created_by, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY id DESC")
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(token_from).collect())
}

pub async fn revoke_token(pool: &Pool, id: i64) -> Result<Token> {
    let row = sqlx::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2
         RETURNING id, name, prefix, scope, created_by, created_at, revoked_at, last_used_at",
    )
    .bind(Timestamp::now().to_string())
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| token_from(&row))
        .ok_or_else(|| Error::Invalid { code: "token_not_found", message: format!("There is no API token with id {id}.") })
}

/// Who an API token acts for: a marketer named after the token, and
/// whether it may write.
pub async fn token_viewer(pool: &Pool, value: &str) -> Result<Option<(Viewer, bool)>> {
    let row = sqlx::query("SELECT id, name, scope, last_used_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(digest(value))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: i64 = row.get("id");
    // Written at most once a minute, so busy tokens do not write on every
    // request: a write, even one that changes no row, would wait for the
    // database's write lock (SQLite) behind the requests' own writes.
    let now = Timestamp::now();
    let a_minute_ago = now - SignedDuration::from_mins(1);
    let last_used: Option<Timestamp> = row.get::<Option<String>, _>("last_used_at").and_then(|at| at.parse().ok());
    if last_used.is_none_or(|at| at < a_minute_ago) {
        let mut tx = crate::db::begin_write(pool).await?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(now.to_string())
            .bind(id)
            .bind(a_minute_ago.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let viewer = Viewer { id, email: String::new(), name: row.get("name"), role: Role::Marketer, token: true };
    Ok(Some((viewer, row.get::<&str, _>("scope") == "write")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_salt_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(password_matches("correct horse battery", &a));
        assert!(!password_matches("wrong horse battery", &a));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok(), "the timing decoy is a real hash");
    }

    #[test]
    fn secrets_are_random_and_stored_as_digests() {
        assert_ne!(secret(), secret());
        assert_eq!(secret().len(), 43);
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
