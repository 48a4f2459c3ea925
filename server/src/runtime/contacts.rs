//! Contacts and their list memberships on SQLite, read and written as the
//! engine's [`Contact`].

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sqlx::Execute;
use sqlx::Row;

use app::core::contact::Contact;

use crate::error::{Error, Result};
use crate::db::{Backend, Conn, DbRow, Pool, Sql};

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

fn json<T: serde::de::DeserializeOwned + Default>(row: &DbRow, column: &str) -> T {
    serde_json::from_str(row.get::<&str, _>(column)).unwrap_or_default()
}

fn from_row(row: &DbRow) -> StoredContact {
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
pub async fn insert(conn: &mut Conn, contact: &Contact) -> Result<i64> {
    let at = now_text();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO contacts (email, mobile, timezone, owner, fields, opted_out, blocked, created_at, updated_at, search_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id",
    )
    .bind(&contact.email)
    .bind(&contact.mobile)
    .bind(&contact.timezone)
    .bind(&contact.owner)
    .bind(serde_json::to_string(&contact.fields).expect("maps serialize"))
    .bind(serde_json::to_string(&contact.opted_out).expect("sets serialize"))
    .bind(contact.blocked as i64)
    .bind(&at)
    .bind(search_name(&contact.fields))
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
pub async fn load_many(conn: &mut Conn, ids: &[i64]) -> Result<HashMap<i64, Contact>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query: Sql =
        Sql::new("SELECT id, email, mobile, timezone, owner, fields, opted_out, blocked FROM contacts WHERE id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut contacts: HashMap<i64, Contact> = rows.iter().map(from_row).map(|c| (c.id, c.contact)).collect();

    let mut query: Sql =
        Sql::new("SELECT m.contact_id, l.name FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id IN (");
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

pub async fn load(conn: &mut Conn, id: i64) -> Result<Contact> {
    load_many(conn, &[id]).await?.remove(&id).ok_or(Error::ContactNotFound(id))
}

/// Writes what the flow changed; lists are diffed against `before`.
pub async fn save(conn: &mut Conn, id: i64, before: &Contact, after: &Contact) -> Result<()> {
    if before == after {
        return Ok(());
    }
    sqlx::query(
        "UPDATE contacts SET email = $1, mobile = $2, timezone = $3, owner = $4, fields = $5, opted_out = $6, blocked = $7, updated_at = $8,
             search_name = $9
         WHERE id = $10",
    )
    .bind(&after.email)
    .bind(&after.mobile)
    .bind(&after.timezone)
    .bind(&after.owner)
    .bind(serde_json::to_string(&after.fields).expect("maps serialize"))
    .bind(serde_json::to_string(&after.opted_out).expect("sets serialize"))
    .bind(after.blocked as i64)
    .bind(now_text())
    .bind(search_name(&after.fields))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    save_lists(conn, id, &before.lists, &after.lists).await
}

async fn save_lists(conn: &mut Conn, id: i64, before: &BTreeSet<String>, after: &BTreeSet<String>) -> Result<()> {
    for added in after.difference(before) {
        sqlx::query("INSERT INTO lists (name) VALUES ($1) ON CONFLICT DO NOTHING").bind(added).execute(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO list_members (list_id, contact_id, added_at) SELECT id, $1, $2 FROM lists WHERE name = $3 ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(now_text())
        .bind(added)
        .execute(&mut *conn)
        .await?;
    }
    for removed in before.difference(after) {
        sqlx::query("DELETE FROM list_members WHERE contact_id = $1 AND list_id = (SELECT id FROM lists WHERE name = $2)")
            .bind(id)
            .bind(removed)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The ids of a list's members.
pub async fn list_members(conn: &mut Conn, list: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT m.contact_id FROM list_members m JOIN lists l ON l.id = m.list_id WHERE l.name = $1 ORDER BY m.contact_id",
    )
    .bind(list)
    .fetch_all(&mut *conn)
    .await?)
}

/// The name a contact is found by: its `name` (or `full_name`) field, else
/// its first and last name, lower-cased, spaces made single. Field names
/// are compared loosely (`First name` is `first_name`).
pub fn search_name(fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let field = |wanted: &str| {
        fields.iter().find_map(|(key, value)| {
            let key: String = key.trim().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect();
            match value {
                serde_json::Value::String(text) if key == wanted && !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            }
        })
    };
    let whole = field("name").or_else(|| field("full_name")).map(str::to_owned);
    let name = whole.unwrap_or_else(|| [field("first_name"), field("last_name")].into_iter().flatten().collect::<Vec<_>>().join(" "));
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    (!name.is_empty()).then_some(name)
}

/// Fills `search_name` for contacts stored before it existed, once per
/// database (`installation.search_names`), in batches.
pub async fn fill_search_names(pool: &Pool) -> Result<u64> {
    let done: Option<String> = sqlx::query_scalar("SELECT value FROM installation WHERE key = 'search_names'").fetch_optional(pool).await?;
    if done.is_some() {
        return Ok(0);
    }
    let (mut after, mut filled) = (0i64, 0u64);
    loop {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, fields FROM contacts WHERE id > $1 AND deleted_at IS NULL AND search_name IS NULL ORDER BY id LIMIT 5000")
                .bind(after)
                .fetch_all(pool)
                .await?;
        let Some(last) = rows.last().map(|(id, _)| *id) else { break };
        let mut tx = pool.begin().await?;
        for (id, fields) in rows {
            let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&fields).unwrap_or_default();
            if let Some(name) = search_name(&fields) {
                sqlx::query("UPDATE contacts SET search_name = $1 WHERE id = $2").bind(name).bind(id).execute(&mut *tx).await?;
                filled += 1;
            }
        }
        tx.commit().await?;
        after = last;
    }
    sqlx::query("INSERT INTO installation (key, value) VALUES ('search_names', $1) ON CONFLICT (key) DO NOTHING")
        .bind(now_text())
        .execute(pool)
        .await?;
    Ok(filled)
}

/// Which contacts a list or an export shows: deleted contacts never; `q`
/// finds contacts whose email, name or mobile starts with it
/// (case-insensitive), each through its own index; `list` keeps a list's
/// members.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ContactSearch {
    pub q: Option<String>,
    pub list: Option<String>,
}

/// One indexed way a search finds contacts: `column` starts with the prefix
/// (`lo <= column < hi`), where `present` holds (a partial index's condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub column: &'static str,
    pub present: &'static str,
    pub lo: String,
    pub hi: String,
}

impl Branch {
    fn new(column: &'static str, present: &'static str, prefix: String) -> Branch {
        // Every string starting with the prefix sorts below prefix + the last code point.
        let hi = format!("{prefix}\u{10FFFF}");
        Branch { column, present, lo: prefix, hi }
    }

    fn push(&self, query: &mut Sql<'_>) {
        query
            .push(format!("({} AND {} >= ", self.present, self.column))
            .push_bind(self.lo.clone())
            .push(format!(" AND {} < ", self.column))
            .push_bind(self.hi.clone())
            .push(")");
    }
}

/// How many matches a search counts before it says "more than".
pub const COUNT_CAP: i64 = 10_000;

/// A page of a search: the contacts, how many match (at most
/// [`COUNT_CAP`], `more` when there are more), and the cursor of the next page.
#[derive(Clone, Debug, Serialize)]
pub struct SearchPage {
    pub total: i64,
    pub more: bool,
    pub contacts: Vec<StoredContact>,
    pub next: Option<String>,
}

impl ContactSearch {
    fn q(&self) -> Option<String> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase)
    }

    fn list(&self) -> Option<String> {
        self.list.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned)
    }

    /// The indexed prefix look-ups `q` stands for: a mobile number's digits
    /// (with and without `+`); an address with `@` by email alone; other
    /// words by email and by name.
    pub fn branches(&self) -> Vec<Branch> {
        let Some(q) = self.q() else { return Vec::new() };
        let phone: String = q.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
        let digits = phone.trim_start_matches('+');
        if digits.len() >= 3 && digits.chars().all(|c| c.is_ascii_digit()) && phone.matches('+').count() <= 1 {
            let mut branches = vec![Branch::new("c.mobile", "c.mobile IS NOT NULL", format!("+{digits}"))];
            if !phone.starts_with('+') {
                branches.push(Branch::new("c.mobile", "c.mobile IS NOT NULL", digits.to_owned()));
            }
            return branches;
        }
        let mut branches = vec![Branch::new("lower(c.email)", "c.email IS NOT NULL", q.clone())];
        if !q.contains('@') {
            branches.push(Branch::new("c.search_name", "c.search_name IS NOT NULL", q.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        branches
    }

    /// Appends the conditions on `c` (contacts) to `query`: any branch.
    pub fn push_where(&self, query: &mut Sql<'_>) {
        query.push("c.deleted_at IS NULL");
        let branches = self.branches();
        if !branches.is_empty() {
            query.push(" AND (");
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    query.push(" OR ");
                }
                branch.push(query);
            }
            query.push(")");
        }
        self.push_list(query);
    }

    fn push_list(&self, query: &mut Sql<'_>) {
        if let Some(list) = self.list() {
            query
                .push(" AND EXISTS (SELECT 1 FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id = c.id AND l.name = ")
                .push_bind(list)
                .push(")");
        }
    }

    /// The conditions of branch `i`: it, and none of the branches before it
    /// (a contact is listed once, under the first branch it matches).
    fn push_branch(&self, query: &mut Sql<'_>, branches: &[Branch], i: usize) {
        query.push("c.deleted_at IS NULL AND ");
        branches[i].push(query);
        for earlier in &branches[..i] {
            query.push(" AND NOT ");
            earlier.push(query);
        }
        self.push_list(query);
    }

    /// The queries a page runs: per branch, the next `limit` (key, id)
    /// after `after` in key order; without `q`, the next ids below `after`.
    fn page_queries(&self, after: &Cursor, limit: i64) -> Vec<Sql<'static>> {
        let branches = self.branches();
        if branches.is_empty() {
            let mut query: Sql = Sql::new("SELECT c.id, '' FROM contacts c WHERE c.deleted_at IS NULL");
            self.push_list(&mut query);
            if let Cursor::Id(id) = after {
                query.push(" AND c.id < ").push_bind(*id);
            }
            query.push(" ORDER BY c.id DESC LIMIT ").push_bind(limit);
            return vec![query];
        }
        (0..branches.len())
            .map(|i| {
                let column = branches[i].column;
                let mut query: Sql = Sql::new(format!("SELECT c.id, {column} FROM contacts c WHERE "));
                self.push_branch(&mut query, &branches, i);
                if let Cursor::Key(key, id) = after {
                    query.push(format!(" AND ({column}, c.id) > (")).push_bind(key.clone()).push(", ").push_bind(*id).push(")");
                }
                query.push(format!(" ORDER BY {column}, c.id LIMIT ")).push_bind(limit);
                query
            })
            .collect()
    }

    /// The queries that count matches, each stopping after the cap.
    fn count_queries(&self) -> Vec<Sql<'static>> {
        let branches = self.branches();
        let count = |query: &mut Sql<'static>| {
            query.push(" LIMIT ").push_bind(COUNT_CAP + 1).push(") AS matches");
        };
        if branches.is_empty() {
            let mut query: Sql = Sql::new("SELECT count(*) FROM (SELECT 1 FROM contacts c WHERE c.deleted_at IS NULL");
            self.push_list(&mut query);
            count(&mut query);
            return vec![query];
        }
        (0..branches.len())
            .map(|i| {
                let mut query: Sql = Sql::new("SELECT count(*) FROM (SELECT 1 FROM contacts c WHERE ");
                self.push_branch(&mut query, &branches, i);
                count(&mut query);
                query
            })
            .collect()
    }
}

/// Where a page starts: after a contact id (newest first, without `q`) or
/// after a (key, id) in key order (with `q`). Written `ID` or `ID:KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cursor {
    Start,
    Id(i64),
    Key(String, i64),
}

impl Cursor {
    fn parse(text: Option<&str>, keyed: bool) -> Result<Cursor> {
        let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(Cursor::Start) };
        let bad = || Error::Invalid { code: "invalid_cursor", message: format!("“{text}” is not a page of this search; start from the first page.") };
        let (id, key) = match text.split_once(':') {
            Some((id, key)) => (id, Some(key)),
            None => (text, None),
        };
        let id: i64 = id.parse().map_err(|_| bad())?;
        match (keyed, key) {
            (true, Some(key)) => Ok(Cursor::Key(key.to_owned(), id)),
            (false, None) => Ok(Cursor::Id(id)),
            _ => Err(bad()),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Cursor::Start => None,
            Cursor::Id(id) => Some(id.to_string()),
            Cursor::Key(key, id) => Some(format!("{id}:{key}")),
        }
    }
}

/// One page of contacts after the cursor `after` (from a previous page's
/// `next`): without `q` newest first, with `q` in the order of what matched
/// (email, name or mobile). Every look-up walks an index.
pub async fn search(conn: &mut Conn, search: &ContactSearch, after: Option<&str>, per_page: i64) -> Result<SearchPage> {
    let per_page = per_page.clamp(1, 200);
    let keyed = !search.branches().is_empty();
    let cursor = Cursor::parse(after, keyed)?;
    let mut total = 0;
    for mut query in search.count_queries() {
        total += query.build_query_scalar::<i64>().fetch_one(&mut *conn).await?;
    }
    let mut found: Vec<(String, i64)> = Vec::new();
    for mut query in search.page_queries(&cursor, per_page + 1) {
        let rows: Vec<(i64, Option<String>)> = query.build_query_as().fetch_all(&mut *conn).await?;
        found.extend(rows.into_iter().map(|(id, key)| (key.unwrap_or_default(), id)));
    }
    if keyed {
        found.sort();
    }
    let next = (found.len() as i64 > per_page).then(|| {
        let (key, id) = found[per_page as usize - 1].clone();
        if keyed { Cursor::Key(key, id) } else { Cursor::Id(id) }
    });
    found.truncate(per_page as usize);
    let ids: Vec<i64> = found.iter().map(|(_, id)| *id).collect();
    let mut loaded = load_many(conn, &ids).await?;
    Ok(SearchPage {
        total: total.min(COUNT_CAP),
        more: total > COUNT_CAP,
        contacts: ids.into_iter().filter_map(|id| loaded.remove(&id).map(|contact| StoredContact { id, contact })).collect(),
        next: next.and_then(|c| c.text()),
    })
}

/// What the database does for a search's queries (SQLite's `EXPLAIN QUERY
/// PLAN`, one line per step; PostgreSQL's `EXPLAIN`, asked to avoid table
/// scans where an index can serve, so a few test rows show the same plan
/// as millions): for the benchmark and the test that no search scans the table.
pub async fn query_plan(conn: &mut Conn, search: &ContactSearch) -> Result<Vec<String>> {
    let backend = Backend::of_conn(conn);
    if backend == Backend::Postgres {
        sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await?;
    }
    let keyed = !search.branches().is_empty();
    let later = if keyed { Cursor::Key("m".into(), 1) } else { Cursor::Id(1_000_000) };
    let mut plan = Vec::new();
    let queries = search.count_queries().into_iter().chain(search.page_queries(&Cursor::Start, 51)).chain(search.page_queries(&later, 51));
    for mut query in queries {
        let explain = match backend {
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {}", query.sql()),
            Backend::Postgres => format!("EXPLAIN {}", query.sql()),
        };
        let arguments = query.build().take_arguments().map_err(|err| Error::Internal(anyhow::anyhow!("{err}")))?.unwrap_or_default();
        let rows = sqlx::query_with(&explain, arguments).fetch_all(&mut *conn).await?;
        plan.extend(rows.iter().map(|r| r.get::<String, _>(if backend == Backend::Sqlite { "detail" } else { "QUERY PLAN" }).trim().to_owned()));
    }
    if backend == Backend::Postgres {
        sqlx::query("RESET enable_seqscan").execute(&mut *conn).await?;
    }
    Ok(plan)
}

/// Replaces a contact's data (lists diffed); a deleted contact cannot be edited.
pub async fn update(conn: &mut Conn, id: i64, after: &Contact) -> Result<()> {
    let deleted: Option<Option<String>> = sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
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
pub async fn erase(conn: &mut Conn, ids_sql: &str, now: &str) -> Result<u64> {
    let erased = sqlx::query(&format!(
        "UPDATE contacts SET email = NULL, mobile = NULL, timezone = NULL, owner = NULL, fields = '{{}}', opted_out = '[]',
             blocked = 0, search_name = NULL, deleted_at = $1, updated_at = $1 WHERE deleted_at IS NULL AND id IN ({ids_sql})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!("DELETE FROM list_members WHERE contact_id IN ({ids_sql})")).execute(&mut *conn).await?;
    let state = Backend::of_conn(conn).json_set("state", &[("status", "'cancelled'"), ("reason", "'The contact was deleted.'")]);
    sqlx::query(&format!(
        "UPDATE participants SET status = 'cancelled', prior_status = NULL, next_run_at = NULL, reserved_for = NULL,
             callback_at = NULL, callback_owner = NULL, revision = revision + 1, updated_at = $1,
             state = {state}
         WHERE status NOT IN ('completed', 'exited', 'cancelled') AND contact_id IN ({ids_sql})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE outbox SET status = 'failed', last_error = 'The contact was deleted; not sent.', done_at = $1
         WHERE status = 'queued' AND participant_id IN (SELECT id FROM participants WHERE contact_id IN ({ids_sql}))"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_contact_is_named_by_its_name_or_first_and_last_name() {
        assert_eq!(search_name(&fields(json!({"first_name": "Ada", "last_name": " Lovelace "}))).as_deref(), Some("ada lovelace"));
        assert_eq!(search_name(&fields(json!({"First name": "Ada"}))).as_deref(), Some("ada"));
        assert_eq!(search_name(&fields(json!({"Last-Name": "Hopper"}))).as_deref(), Some("hopper"));
        assert_eq!(search_name(&fields(json!({"name": "Grace  Brewster Hopper", "first_name": "G"}))).as_deref(), Some("grace brewster hopper"));
        assert_eq!(search_name(&fields(json!({"Full name": "Ada L"}))).as_deref(), Some("ada l"));
        assert_eq!(search_name(&fields(json!({"company": "Acme", "name": " ", "score": 3}))), None);
        assert_eq!(search_name(&fields(json!({"first_name": 7}))), None, "only text names");
    }

    #[test]
    fn a_query_becomes_the_prefix_look_ups_it_stands_for() {
        let branches = |q: &str| {
            ContactSearch { q: Some(q.into()), list: None }.branches().into_iter().map(|b| (b.column, b.lo)).collect::<Vec<_>>()
        };
        assert_eq!(branches("  Ada  Lo "), [("lower(c.email)", "ada  lo".to_owned()), ("c.search_name", "ada lo".to_owned())]);
        assert_eq!(branches("Ada@X"), [("lower(c.email)", "ada@x".to_owned())]);
        assert_eq!(branches("+1 (555) 01"), [("c.mobile", "+155501".to_owned())]);
        assert_eq!(branches("555-01"), [("c.mobile", "+55501".to_owned()), ("c.mobile", "55501".to_owned())]);
        assert_eq!(branches("12"), [("lower(c.email)", "12".to_owned()), ("c.search_name", "12".to_owned())], "too short for a number");
        assert!(branches("   ").is_empty());
        let hi = &ContactSearch { q: Some("ab".into()), list: None }.branches()[0].hi;
        assert!("abzzz" < hi.as_str() && "ab\u{10FFFE}" < hi.as_str() && "ac" > hi.as_str());
    }
}
