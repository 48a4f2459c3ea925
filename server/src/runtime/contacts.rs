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

/// Which contacts a list or an export shows: deleted contacts never;
/// `q` matches email, mobile, owner or any custom field value (contains,
/// case-insensitive); `list` keeps a list's members.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ContactSearch {
    pub q: Option<String>,
    pub list: Option<String>,
}

impl ContactSearch {
    /// Appends the conditions on `c` (contacts) to `query`.
    pub fn push_where(&self, query: &mut QueryBuilder<'_, Sqlite>) {
        query.push("c.deleted_at IS NULL");
        if let Some(q) = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let like = format!("%{}%", q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            query
                .push(" AND (lower(coalesce(c.email, '')) LIKE ")
                .push_bind(like.clone())
                .push(" ESCAPE '\\' OR coalesce(c.mobile, '') LIKE ")
                .push_bind(like.clone())
                .push(" ESCAPE '\\' OR lower(coalesce(c.owner, '')) LIKE ")
                .push_bind(like.clone())
                .push(" ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each(c.fields) j WHERE lower(CAST(j.value AS TEXT)) LIKE ")
                .push_bind(like)
                .push(" ESCAPE '\\'))");
        }
        if let Some(list) = self.list.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            query
                .push(" AND EXISTS (SELECT 1 FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id = c.id AND l.name = ")
                .push_bind(list.to_owned())
                .push(")");
        }
    }
}

/// One page of contacts, newest first, and how many match in all.
pub async fn search(conn: &mut SqliteConnection, search: &ContactSearch, page: i64, per_page: i64) -> Result<(i64, Vec<StoredContact>)> {
    let mut count: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT count(*) FROM contacts c WHERE ");
    search.push_where(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT c.id FROM contacts c WHERE ");
    search.push_where(&mut query);
    query.push(" ORDER BY c.id DESC LIMIT ").push_bind(per_page.clamp(1, 200)).push(" OFFSET ").push_bind(page.max(0) * per_page.clamp(1, 200));
    let ids: Vec<i64> = query.build_query_scalar().fetch_all(&mut *conn).await?;
    let mut found = load_many(conn, &ids).await?;
    Ok((total, ids.into_iter().filter_map(|id| found.remove(&id).map(|contact| StoredContact { id, contact })).collect()))
}

/// Replaces a contact's data (lists diffed); a deleted contact cannot be edited.
pub async fn update(conn: &mut SqliteConnection, id: i64, after: &Contact) -> Result<()> {
    let deleted: Option<Option<String>> = sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = ?").bind(id).fetch_optional(&mut *conn).await?;
    match deleted {
        None => return Err(Error::ContactNotFound(id)),
        Some(Some(_)) => {
            return Err(Error::BadBody {
                status: axum::http::StatusCode::CONFLICT,
                code: "contact_deleted",
                message: format!("Contact {id} was deleted; its data cannot be edited."),
            })
        }
        Some(None) => {}
    }
    let before = load(conn, id).await?;
    save(conn, id, &before, after).await.map_err(|err| match err {
        Error::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => Error::ContactExists(after.email.clone().unwrap_or_default()),
        other => other,
    })
}

/// Erases the personal data of the contacts `ids_sql` selects (a subquery
/// of contact ids without parameters): email, mobile, zone,
/// owner, fields, consent and list memberships go; the row stays so its
/// calls, messages and timeline keep pointing at it. Their active
/// participants are cancelled and their queued messages are not sent.
/// Returns how many contacts were erased.
pub async fn erase(conn: &mut SqliteConnection, ids_sql: &str, now: &str) -> Result<u64> {
    let erased = sqlx::query(&format!(
        "UPDATE contacts SET email = NULL, mobile = NULL, timezone = NULL, owner = NULL, fields = '{{}}', opted_out = '[]',
             blocked = 0, deleted_at = ?1, updated_at = ?1 WHERE deleted_at IS NULL AND id IN ({ids_sql})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!("DELETE FROM list_members WHERE contact_id IN ({ids_sql})")).execute(&mut *conn).await?;
    sqlx::query(&format!(
        "UPDATE participants SET status = 'cancelled', prior_status = NULL, next_run_at = NULL, reserved_for = NULL,
             callback_at = NULL, callback_owner = NULL, revision = revision + 1, updated_at = ?1,
             state = json_set(state, '$.status', 'cancelled', '$.reason', 'The contact was deleted.')
         WHERE status NOT IN ('completed', 'exited', 'cancelled') AND contact_id IN ({ids_sql})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE outbox SET status = 'failed', last_error = 'The contact was deleted; not sent.', done_at = ?1
         WHERE status = 'queued' AND participant_id IN (SELECT id FROM participants WHERE contact_id IN ({ids_sql}))"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(erased)
}
