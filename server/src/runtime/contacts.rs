//! Contacts and their list memberships on SQLite, read and written as the
//! engine's [`Contact`].

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use app::core::contact::Contact;

use crate::error::{Error, Result};

/// A stored contact with its id.
#[derive(Clone, Debug, Serialize)]
pub struct StoredContact {
    pub id: i64,
    #[serde(flatten)]
    pub contact: Contact,
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

fn json<T: serde::de::DeserializeOwned + Default>(row: &sqlx::sqlite::SqliteRow, column: &str) -> T {
    serde_json::from_str(row.get::<&str, _>(column)).unwrap_or_default()
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> StoredContact {
    StoredContact {
        id: row.get("id"),
        contact: Contact {
            email: row.get("email"),
            mobile: row.get("mobile"),
            timezone: row.get("timezone"),
            owner: row.get("owner"),
            fields: json(row, "fields"),
            lists: BTreeSet::new(),
            opted_out: json(row, "opted_out"),
            blocked: row.get::<i64, _>("blocked") != 0,
        },
    }
}

/// Creates a contact (and any lists it names). An email already used by
/// another contact is refused.
pub async fn insert(conn: &mut SqliteConnection, contact: &Contact) -> Result<i64> {
    let at = now_text();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO contacts (email, mobile, timezone, owner, fields, opted_out, blocked, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&contact.email)
    .bind(&contact.mobile)
    .bind(&contact.timezone)
    .bind(&contact.owner)
    .bind(serde_json::to_string(&contact.fields).expect("maps serialize"))
    .bind(serde_json::to_string(&contact.opted_out).expect("sets serialize"))
    .bind(contact.blocked)
    .bind(&at)
    .bind(&at)
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::ContactExists(contact.email.clone().unwrap_or_default())
        }
        _ => Error::Database(err),
    })?;
    save_lists(conn, id, &BTreeSet::new(), &contact.lists).await?;
    Ok(id)
}

/// Loads contacts with their lists, by id.
pub async fn load_many(conn: &mut SqliteConnection, ids: &[i64]) -> Result<HashMap<i64, Contact>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT id, email, mobile, timezone, owner, fields, opted_out, blocked FROM contacts WHERE id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut contacts: HashMap<i64, Contact> = rows.iter().map(from_row).map(|c| (c.id, c.contact)).collect();

    let mut query: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT m.contact_id, l.name FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    for row in query.build().fetch_all(&mut *conn).await? {
        if let Some(contact) = contacts.get_mut(&row.get::<i64, _>(0)) {
            contact.lists.insert(row.get(1));
        }
    }
    Ok(contacts)
}

pub async fn load(conn: &mut SqliteConnection, id: i64) -> Result<Contact> {
    load_many(conn, &[id]).await?.remove(&id).ok_or(Error::ContactNotFound(id))
}

/// Writes what the flow changed; lists are diffed against `before`.
pub async fn save(conn: &mut SqliteConnection, id: i64, before: &Contact, after: &Contact) -> Result<()> {
    if before == after {
        return Ok(());
    }
    sqlx::query(
        "UPDATE contacts SET email = ?, mobile = ?, timezone = ?, owner = ?, fields = ?, opted_out = ?, blocked = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&after.email)
    .bind(&after.mobile)
    .bind(&after.timezone)
    .bind(&after.owner)
    .bind(serde_json::to_string(&after.fields).expect("maps serialize"))
    .bind(serde_json::to_string(&after.opted_out).expect("sets serialize"))
    .bind(after.blocked)
    .bind(now_text())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    save_lists(conn, id, &before.lists, &after.lists).await
}

async fn save_lists(conn: &mut SqliteConnection, id: i64, before: &BTreeSet<String>, after: &BTreeSet<String>) -> Result<()> {
    for added in after.difference(before) {
        sqlx::query("INSERT OR IGNORE INTO lists (name) VALUES (?)").bind(added).execute(&mut *conn).await?;
        sqlx::query(
            "INSERT OR IGNORE INTO list_members (list_id, contact_id, added_at) SELECT id, ?, ? FROM lists WHERE name = ?",
        )
        .bind(id)
        .bind(now_text())
        .bind(added)
        .execute(&mut *conn)
        .await?;
    }
    for removed in before.difference(after) {
        sqlx::query("DELETE FROM list_members WHERE contact_id = ? AND list_id = (SELECT id FROM lists WHERE name = ?)")
            .bind(id)
            .bind(removed)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The ids of a list's members.
pub async fn list_members(conn: &mut SqliteConnection, list: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT m.contact_id FROM list_members m JOIN lists l ON l.id = m.list_id WHERE l.name = ? ORDER BY m.contact_id",
    )
    .bind(list)
    .fetch_all(&mut *conn)
    .await?)
}
