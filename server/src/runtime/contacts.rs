//! Contacts and their list memberships on SQLite, read and written as the
//! engine's [`Contact`].

use std::collections::{BTreeSet, HashMap, HashSet};

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
            recent: Vec::new(),
            sends_version: row.try_get("sends_version").unwrap_or(0),
        },
    }
}

/// Creates a contact (and any lists it names). An email already used by
/// another contact is refused.
pub async fn insert(conn: &mut Conn, contact: &Contact) -> Result<i64> {
    app::core::limits::check_contact(contact)?;
    check_addresses(contact, None)?;
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
        Sql::new("SELECT id, email, mobile, timezone, owner, fields, opted_out, blocked, sends_version FROM contacts WHERE id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut contacts: HashMap<i64, Contact> = rows.iter().map(from_row).map(|c| (c.id, c.contact)).collect();

    // Their recent sends, within the longest window a policy may have.
    let from = super::millis(jiff::Timestamp::now()) - 24 * 3_600_000 * app::core::pressure::MAX_WINDOW_DAYS;
    let sql = format!(
        "SELECT contact_id, channel, at FROM contact_sends WHERE contact_id IN ({}) AND at > {from} ORDER BY at",
        crate::db::id_list(ids)
    );
    for row in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        if let (Some(contact), Ok(at)) = (contacts.get_mut(&row.get::<i64, _>(0)), jiff::Timestamp::from_millisecond(row.get(2))) {
            contact.recent.push(app::core::pressure::RecentSend { channel: row.get(1), at });
        }
    }

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
    save_except(conn, id, before, after, &Keep::default()).await
}

/// The sends in `after.recent` that `before.recent` does not have.
fn new_sends<'a>(before: &Contact, after: &'a Contact) -> Vec<&'a app::core::pressure::RecentSend> {
    let mut known: Vec<&app::core::pressure::RecentSend> = before.recent.iter().collect();
    after
        .recent
        .iter()
        .filter(|send| match known.iter().position(|k| *k == *send) {
            Some(i) => {
                known.swap_remove(i);
                false
            }
            None => true,
        })
        .collect()
}

/// An advance sent messages (`after` has sends `before` lacks): the next
/// copy of the contact must be read at a newer sends version. Called on
/// the advanced copy, so that a later participant of the same contact in
/// the same batch builds on it.
pub fn note_sends(before: &Contact, after: &mut Contact) {
    if !new_sends(before, after).is_empty() {
        after.sends_version = before.sends_version + 1;
    }
}

/// Writes the sends an advance made, over the sends version it read:
/// false, with nothing written, when another writer recorded sends for the
/// contact (or changed its data) meanwhile: its caps must be checked
/// again with them. See [`claim_many`].
pub async fn claim_sends(conn: &mut Conn, id: i64, before: &Contact, after: &Contact) -> Result<bool> {
    Ok(claim_many(conn, &[(id, before, after)]).await?.is_empty())
}

/// Claims what advances did to contacts, each `(id, before, after)` and
/// each once, in a constant number of statements: every contact they
/// changed moves on from the version it was read at (`sends_version`), and
/// the sends they made are recorded. Returns the contacts another writer
/// changed meanwhile (sent to them, or wrote their data):
/// nothing is written for them, and what was worked out over the stale copy
/// must not be kept. So two workers can neither both take a cap's last slot
/// nor both add 1 to a field and keep one.
pub async fn claim_many(conn: &mut Conn, changes: &[(i64, &Contact, &Contact)]) -> Result<HashSet<i64>> {
    let claims: Vec<(i64, &Contact, &Contact, Vec<&app::core::pressure::RecentSend>)> = changes
        .iter()
        .filter(|(_, before, after)| before != after)
        .map(|(id, before, after)| (*id, *before, *after, new_sends(before, after)))
        .collect();
    let mut claimed: HashSet<i64> = HashSet::with_capacity(claims.len());
    for chunk in claims.chunks(super::writes::ROWS) {
        // `cid`, not `id`: the RETURNING below names the contact's id unqualified.
        let mut query: Sql = Sql::new("WITH v (cid, read_version, new_version) AS (");
        query.push_values(chunk, |mut row, (id, before, after, _)| {
            row.push_bind(*id).push_bind(before.sends_version).push_bind(after.sends_version.max(before.sends_version + 1));
        });
        query.push(
            ") UPDATE contacts SET sends_version = v.new_version FROM v
             WHERE contacts.id = v.cid AND contacts.sends_version = v.read_version RETURNING id",
        );
        claimed.extend(query.build_query_scalar::<i64>().fetch_all(&mut *conn).await?);
    }
    let sends: Vec<(i64, &app::core::pressure::RecentSend)> = claims
        .iter()
        .filter(|(id, ..)| claimed.contains(id))
        .flat_map(|(id, _, _, sends)| sends.iter().map(move |send| (*id, *send)))
        .collect();
    for chunk in sends.chunks(super::writes::ROWS) {
        let mut query: Sql = Sql::new("INSERT INTO contact_sends (contact_id, channel, at) ");
        query.push_values(chunk, |mut row, (id, send)| {
            row.push_bind(*id).push_bind(send.channel.clone()).push_bind(super::millis(send.at));
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(claims.iter().map(|(id, ..)| *id).filter(|id| !claimed.contains(id)).collect())
}

/// Participants a contact's change need not wake ([`nudge`]): those that
/// already saw it (the advance that made it), and those the writing worker
/// holds (a scheduler batch threads each contact through its participants).
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep<'a> {
    pub participants: &'a [i64],
    pub leased_by: Option<&'a str>,
}

/// [`save`], keeping `keep` from being woken.
pub async fn save_except(conn: &mut Conn, id: i64, before: &Contact, after: &Contact, keep: &Keep<'_>) -> Result<()> {
    save_many_except(conn, &[(id, before, after)], keep).await
}

/// [`save_except`] for many contacts at once, each `(id, before, after)`:
/// one statement wakes the participants of those whose data changed and
/// one writes them all; only a change of lists costs statements of its own.
/// Each written contact's version moves on, whoever writes (a flow, the
/// API, the contact page, an unsubscribe): a scheduler batch that read it
/// before cannot write its copy over this change ([`claim_many`] fails for
/// it, and its participants run again with the new data).
pub async fn save_many_except(conn: &mut Conn, changes: &[(i64, &Contact, &Contact)], keep: &Keep<'_>) -> Result<()> {
    // Sends are written by `claim_sends`; only the contacts' data here.
    let data = |c: &Contact| Contact { recent: Vec::new(), sends_version: 0, ..c.clone() };
    let changed: Vec<&(i64, &Contact, &Contact)> = changes.iter().filter(|(_, before, after)| data(before) != data(after)).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = changed.iter().map(|(id, _, _)| *id).collect();
    nudge(conn, &ids, keep).await?;
    let updated = now_text();
    for chunk in changed.chunks(500) {
        let mut query: Sql = Sql::new("WITH v (id, email, mobile, timezone, owner, fields, opted_out, blocked, search_name) AS (");
        query.push_values(chunk, |mut row, (id, _, after)| {
            row.push_bind(*id)
                .push_bind(after.email.clone())
                .push_bind(after.mobile.clone())
                .push_bind(after.timezone.clone())
                .push_bind(after.owner.clone())
                .push_bind(serde_json::to_string(&after.fields).expect("maps serialize"))
                .push_bind(serde_json::to_string(&after.opted_out).expect("sets serialize"))
                .push_bind(after.blocked as i64)
                .push_bind(search_name(&after.fields));
        });
        query.push(
            ") UPDATE contacts SET email = v.email, mobile = v.mobile, timezone = v.timezone, owner = v.owner, fields = v.fields,
                 opted_out = v.opted_out, blocked = v.blocked, search_name = v.search_name, sends_version = sends_version + 1, updated_at = ",
        );
        query.push_bind(updated.clone());
        query.push(" FROM v WHERE contacts.id = v.id");
        query.build().execute(&mut *conn).await?;
    }
    for (id, before, after) in changed {
        if before.lists != after.lists {
            save_lists(conn, *id, &before.lists, &after.lists).await?;
        }
    }
    Ok(())
}

/// The contacts `ids` changed: their active participants that have
/// entered the flow are woken at once (`next_run_at` 0, before anything
/// else due, whatever the clock), so that `wait_until` criteria, held
/// guards and the goal are checked against the new data (FLOW_FORMAT: a
/// criteria matcher is "re-checked when the contact changes"). A wake with
/// nothing met changes nothing and restores each one's own next run.
///
/// The revision moves and a claim is released: a worker that read the
/// participant (and the old contact) before this change cannot commit what
/// it worked out; the participant is claimed again at once, with the new
/// data.
pub async fn nudge(conn: &mut Conn, ids: &[i64], keep: &Keep<'_>) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut sql = format!(
        "UPDATE participants SET next_run_at = 0, revision = revision + 1, lease_owner = NULL, lease_until = NULL
         WHERE contact_id IN ({}) AND status IN ('ready', 'waiting', 'held') AND step IS NOT NULL
           AND (lease_owner IS NULL OR lease_owner <> $1)",
        crate::db::id_list(ids)
    );
    if !keep.participants.is_empty() {
        sql.push_str(&format!(" AND id NOT IN ({})", crate::db::id_list(keep.participants)));
    }
    // No worker is named "": without one every claim is released.
    let worker = keep.leased_by.unwrap_or("");
    Ok(sqlx::query(&sql).bind(worker).execute(&mut *conn).await?.rows_affected())
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
        let mut tx = crate::db::begin_write(pool).await?;
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

/// A contact's email and mobile (when given) usable as such, by the rules
/// the import and the events API apply: an address with one `@`, a dotted
/// domain and no spaces, commas or semicolons; a mobile of 7 to 15 digits.
/// Before, the API and the contact page stored "not an email" or
/// "a@x.test, b@y.test" as they came. On an update only a changed address
/// is judged: one stored before these rules does not stop a list or a
/// field being changed.
fn check_addresses(contact: &Contact, before: Option<&Contact>) -> Result<()> {
    fn changed<'a>(now: &'a Option<String>, was: Option<&Option<String>>) -> Option<&'a str> {
        now.as_deref().filter(|_| was != Some(now))
    }
    if let Some(email) = changed(&contact.email, before.map(|b| &b.email)).filter(|e| !super::import::valid_email(e)) {
        return Err(super::import::refused_email("email".into(), email));
    }
    if let Some(mobile) = changed(&contact.mobile, before.map(|b| &b.mobile)).filter(|m| super::import::normalize_mobile(m).is_none()) {
        return Err(super::import::refused_mobile("mobile".into(), mobile));
    }
    Ok(())
}

/// Replaces a contact's data (lists diffed); a deleted contact cannot be edited.
pub async fn update(conn: &mut Conn, id: i64, after: &Contact) -> Result<()> {
    app::core::limits::check_contact(after)?;
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
    check_addresses(after, Some(&before))?;
    save(conn, id, &before, after).await.map_err(|err| match err {
        Error::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => Error::ContactExists(after.email.clone().unwrap_or_default()),
        other => other,
    })
}

/// What an erased contact's address, number and name become in the records
/// that keep them (messages, calls, the timeline): the same for every record
/// of one contact, so its history still reads as one person's.
pub fn erased_placeholder(id: i64) -> String {
    format!("erased-contact-{id}")
}

/// Why an erased contact's queued messages and calls were not sent.
pub const NOT_SENT: &str = "The contact was deleted; not sent.";

/// Erases the personal data of the contacts `ids_sql` selects (a subquery
/// of contact ids without parameters), in the caller's transaction (one per
/// batch). Email, mobile, zone, owner, fields, consent and list memberships
/// go; the row stays so its calls, messages and timeline keep pointing at
/// it. Their active participants are cancelled and their queued messages
/// and calls cancelled, not sent.
///
/// Every copy of the data goes too, and what the history needs stays
/// (times, outcomes, dispositions, counts):
///
/// - conversations (emails, texts, calls, notifications): the address
///   becomes [`erased_placeholder`], the subject goes, the provider's error
///   is scrubbed; status, provider id, times and durations stay;
/// - the outbox: recipients become the placeholder, bodies, subjects,
///   scripts and headers are blanked, URLs and errors scrubbed;
/// - the timeline (task subjects such as "Call Ada"), the participants'
///   reasons, webhook calls (URL and reply): the data is replaced by the
///   placeholder wherever it appears;
/// - records shared by everyone (refused import rows, import jobs, bulk
///   runs' criteria, the audit log's details): what identifies the contact
///   on its own (its address, number, full name) is replaced;
/// - rate-limit buckets keyed by its address are dropped.
///
/// "Scrubbed" means each value the contact held (address, number with and
/// without `+`, names and their words, custom field values), also
/// URL-encoded, is replaced wherever it appears, whatever its case.
///
/// On SQLite every connection overwrites what it frees with zeros
/// (`secure_delete`, set in `db::connect`), so neither the erased values
/// nor older versions of rows that copied them stay in the file's free
/// space. Contacts erased before (whose data is already gone) get the
/// structural part again. Returns how many contacts
/// were erased now.
pub async fn erase(conn: &mut Conn, ids_sql: &str, now: &str) -> Result<u64> {
    // The ids first: `ids_sql` may select by the very data erased below.
    let rows = sqlx::query(&format!("SELECT id, email, mobile, fields FROM contacts WHERE id IN ({ids_sql}) ORDER BY id")).fetch_all(&mut *conn).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let people = erasure::People::new(
        rows.iter().map(|row| erasure::Person::new(row.get("id"), row.get("email"), row.get("mobile"), row.get("fields"))).collect(),
    );
    let ids = crate::db::id_list(&people.ids());
    let erased = sqlx::query(&format!(
        "UPDATE contacts SET email = NULL, mobile = NULL, timezone = NULL, owner = NULL, fields = '{{}}', opted_out = '[]',
             blocked = 0, search_name = NULL, deleted_at = $1, updated_at = $1 WHERE deleted_at IS NULL AND id IN ({ids})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!("DELETE FROM list_members WHERE contact_id IN ({ids})")).execute(&mut *conn).await?;
    // What the contact did (a form's fields, a purchase's properties) goes:
    // its events, and the copies every participant keeps in its history.
    sqlx::query(&format!("DELETE FROM contact_events WHERE contact_id IN ({ids})")).execute(&mut *conn).await?;
    // What came back about its messages: reply excerpts, bounce diagnostics.
    let conversations: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT id FROM conversations WHERE contact_id IN ({ids})")).fetch_all(&mut *conn).await?;
    crate::channels::feedback::forget(conn, &conversations).await?;
    crate::workspace::forget(conn, &conversations).await?;
    let backend = Backend::of_conn(conn);
    let forget = backend.json_set("state", &[("history", &backend.json_literal("{}"))]);
    sqlx::query(&format!("UPDATE participants SET state = {forget} WHERE contact_id IN ({ids})")).execute(&mut *conn).await?;
    let state = Backend::of_conn(conn).json_set("state", &[("status", "'cancelled'"), ("reason", "'The contact was deleted.'")]);
    sqlx::query(&format!(
        "UPDATE participants SET status = 'cancelled', prior_status = NULL, next_run_at = NULL, reserved_for = NULL,
             callback_at = NULL, callback_owner = NULL, revision = revision + 1, updated_at = $1,
             state = {state}
         WHERE status NOT IN ('completed', 'converted', 'exited', 'cancelled') AND contact_id IN ({ids})"
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let participants: Vec<(i64, i64)> =
        sqlx::query_as(&format!("SELECT id, contact_id FROM participants WHERE contact_id IN ({ids}) ORDER BY id")).fetch_all(&mut *conn).await?;
    let of: HashMap<i64, i64> = participants.iter().copied().collect();
    for slice in participants.chunks(1_000) {
        let pids = crate::db::id_list(&slice.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        sqlx::query(&format!(
            "UPDATE outbox SET status = 'cancelled', last_error = $1, lease_until = NULL, done_at = $2
             WHERE status = 'queued' AND participant_id IN ({pids})"
        ))
        .bind(NOT_SENT)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        erasure::participants(conn, &people, &pids).await?;
        erasure::timeline(conn, &people, &of, &pids).await?;
        erasure::outbox(conn, &people, &of, &pids).await?;
        erasure::http_calls(conn, &people, &of, &pids).await?;
        erasure::conversations(conn, &people, &of, &format!("participant_id IN ({pids}) AND contact_id IS NULL")).await?;
        super::datafile::remove_including(conn, &pids, now).await?;
    }
    erasure::conversations(conn, &people, &of, &format!("contact_id IN ({ids})")).await?;
    // Its consent choices go with its consent; its messages' tracked links
    // (merge tags may have put its data in them) are scrubbed, their counts kept.
    sqlx::query(&format!("DELETE FROM consent_changes WHERE contact_id IN ({ids})")).execute(&mut *conn).await?;
    erasure::conversation_links(conn, &people, &ids).await?;
    erasure::shared(conn, &people).await?;
    erasure::rate_buckets(conn, &people).await?;
    Ok(erased)
}

/// Of `participants`, those whose contact was erased.
pub(crate) async fn erased_participants(conn: &mut Conn, participants: &[i64]) -> Result<std::collections::HashSet<i64>> {
    if participants.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT p.id FROM participants p JOIN contacts c ON c.id = p.contact_id WHERE c.deleted_at IS NOT NULL AND p.id IN ({})",
        crate::db::id_list(participants)
    );
    Ok(sqlx::query_scalar::<_, i64>(&sql).fetch_all(&mut *conn).await?.into_iter().collect())
}

/// The records an effect in flight wrote after its contact was erased
/// (its message record, a webhook's call): the address becomes the
/// placeholder, the subject and error go, a called URL keeps only its
/// origin and the reply goes. `keys`: the effects' idempotency keys.
pub(crate) async fn erase_in_flight(conn: &mut Conn, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let matching = |select: &str| {
        let mut query: Sql<'static> = Sql::new(select);
        let mut list = query.separated(", ");
        for key in keys {
            list.push_bind(key.clone());
        }
        query.push(")");
        query
    };
    let rows: Vec<(i64, i64, String)> = matching(
        "SELECT v.id, p.contact_id, v.channel FROM conversations v JOIN participants p ON p.id = v.participant_id
         JOIN contacts c ON c.id = p.contact_id WHERE c.deleted_at IS NOT NULL AND v.idempotency_key IN (",
    )
    .build_query_as()
    .fetch_all(&mut *conn)
    .await?;
    for (id, contact, channel) in rows {
        if erasure::to_the_contact(&channel) {
            sqlx::query("UPDATE conversations SET address = $1 WHERE id = $2").bind(erased_placeholder(contact)).bind(id).execute(&mut *conn).await?;
        }
        sqlx::query("UPDATE conversations SET subject = NULL, error = NULL WHERE id = $1").bind(id).execute(&mut *conn).await?;
    }
    let calls: Vec<(i64, String)> = matching(
        "SELECT h.id, h.url FROM http_calls h JOIN participants p ON p.id = h.participant_id
         JOIN contacts c ON c.id = p.contact_id WHERE c.deleted_at IS NOT NULL AND h.idempotency_key IN (",
    )
    .build_query_as()
    .fetch_all(&mut *conn)
    .await?;
    for (id, url) in calls {
        let origin = url::Url::parse(&url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        sqlx::query("UPDATE http_calls SET url = $1, excerpt = NULL WHERE id = $2").bind(origin).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// How [`erase`] finds and replaces a contact's data in the records that copied it.
mod erasure {
    use std::collections::{BTreeSet, HashMap};

    use serde_json::{Map, Value};
    use sqlx::Row;

    use super::{erased_placeholder, search_name};
    use crate::db::{Conn, Sql};
    use crate::error::Result;

    /// Messages whose address is the contact's own (not a user's, as notifications are).
    pub fn to_the_contact(channel: &str) -> bool {
        matches!(channel, "email" | "sms" | "call")
    }

    /// A value looked for, case-folded. Short ones match whole words only
    /// (`Al` in "Call Al", not in "Alice").
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Needle(Vec<char>);

    fn fold(c: char) -> char {
        c.to_lowercase().next().unwrap_or(c)
    }

    impl Needle {
        fn whole_word(&self) -> bool {
            self.0.len() < 6
        }

        /// The longest run of letters and digits inside it (not at its
        /// edges, where the text around may run on), else the longest: any
        /// text holding the needle holds this as a word of its own.
        fn key(&self) -> Option<String> {
            let mut runs: Vec<(usize, usize)> = Vec::new();
            let mut start = None;
            for (i, c) in self.0.iter().enumerate() {
                match (c.is_alphanumeric(), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        runs.push((s, i));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                runs.push((s, self.0.len()));
            }
            let len = |r: &&(usize, usize)| r.1 - r.0;
            let inner = runs.iter().filter(|r| r.0 > 0 && r.1 < self.0.len() && len(r) >= 3).max_by_key(len);
            inner.or_else(|| runs.iter().max_by_key(len)).map(|(s, e)| self.0[*s..*e].iter().collect())
        }

        /// `text` with every match replaced by `with`; None when none matched.
        fn replace(&self, text: &str, with: &str) -> Option<String> {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            let n = self.0.len();
            if n == 0 || chars.len() < n {
                return None;
            }
            let word = |c: char| c.is_alphanumeric();
            let (first, last) = (self.0[0], self.0[n - 1]);
            let mut out = String::new();
            let (mut copied, mut i, mut found) = (0, 0, false);
            while i + n <= chars.len() {
                let hit = fold(chars[i].1) == first
                    && (1..n).all(|k| fold(chars[i + k].1) == self.0[k])
                    && (!self.whole_word()
                        || ((i == 0 || !word(first) || !word(chars[i - 1].1)) && (i + n == chars.len() || !word(last) || !word(chars[i + n].1))));
                if hit {
                    out.push_str(&text[copied..chars[i].0]);
                    out.push_str(with);
                    copied = chars.get(i + n).map_or(text.len(), |c| c.0);
                    i += n;
                    found = true;
                } else {
                    i += 1;
                }
            }
            found.then(|| {
                out.push_str(&text[copied..]);
                out
            })
        }
    }

    /// Letters and digits, case-folded, as the words of a text.
    fn words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.chars().map(fold).collect())
    }

    /// The needles for `values` and their URL-encoded spellings, longest first.
    fn needles(values: Vec<String>) -> Vec<Needle> {
        let mut set = BTreeSet::new();
        for value in values {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            let letters = value.chars().filter(|c| c.is_alphabetic()).count();
            let digits = value.chars().filter(char::is_ascii_digit).count();
            if letters < 2 && digits < 7 {
                continue; // too little to be anyone's ("3", "42", "x")
            }
            let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let spaced = encoded.replace('+', "%20");
            for spelling in [value, encoded, spaced] {
                set.insert(Needle(spelling.chars().map(fold).collect()));
            }
        }
        let mut list: Vec<Needle> = set.into_iter().collect();
        list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        list
    }

    /// Every text inside a JSON value, numbers written out (long ones,
    /// such as a customer number, are looked for too).
    fn texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Number(number) => out.push(number.to_string()),
            Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
            Value::Object(map) => map.values().for_each(|v| texts(v, out)),
            _ => {}
        }
    }

    /// A field name as `search_name` reads it: `First name` is `first_name`.
    fn loose(key: &str) -> String {
        key.trim().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect()
    }

    /// One erased contact's data, as needles.
    pub struct Person {
        pub id: i64,
        pub placeholder: String,
        /// Everything it held: for its own records.
        own: Vec<Needle>,
        /// What identifies it on its own (address, number, full name): for
        /// records everyone shares, where a first name or a custom value
        /// ("north") may be someone else's.
        strong: Vec<Needle>,
        /// Its email and mobile, lower-cased (rate-limit keys).
        pub addresses: Vec<String>,
    }

    impl Person {
        pub fn new(id: i64, email: Option<String>, mobile: Option<String>, fields: Option<String>) -> Person {
            let (mut strong, mut weak, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
            for value in [email, mobile].into_iter().flatten().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                addresses.push(value.to_lowercase());
                if let Some(digits) = value.strip_prefix('+') {
                    strong.push(digits.to_owned());
                }
                strong.push(value);
            }
            let fields: Map<String, Value> = fields.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or_default();
            strong.extend(search_name(&fields).filter(|name| name.contains(' ')));
            for (key, value) in &fields {
                let key = loose(key);
                let contact_like = ["email", "mail", "phone", "mobile", "tel", "telephone", "cell", "fax"]
                    .iter()
                    .any(|k| key == *k || key.ends_with(&format!("_{k}")) || key.starts_with(&format!("{k}_")));
                let mut found = Vec::new();
                texts(value, &mut found);
                for text in found {
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    let digits = text.chars().filter(char::is_ascii_digit).count();
                    if contact_like && (text.contains('@') || digits >= 7) {
                        strong.push(text.clone());
                    }
                    if key.contains("name") {
                        if text.split(' ').filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2).count() >= 2 {
                            strong.push(text.clone());
                        }
                        weak.extend(text.split(' ').map(str::to_owned));
                    }
                    weak.push(text);
                }
            }
            weak.extend(strong.iter().cloned());
            Person { id, placeholder: erased_placeholder(id), own: needles(weak), strong: needles(strong), addresses }
        }

        /// `text` with everything the contact held replaced; None when unchanged.
        pub fn scrub(&self, text: &str) -> Option<String> {
            replace_all(text, &self.own, &self.placeholder)
        }

        pub fn scrub_opt(&self, text: &Option<String>) -> Option<String> {
            text.as_deref().and_then(|t| self.scrub(t)).or_else(|| text.clone())
        }

        /// Every text inside `value` scrubbed; whether any changed.
        fn scrub_json(&self, value: &mut Value) -> bool {
            match value {
                Value::String(text) => match self.scrub(text) {
                    Some(new) => {
                        *text = new;
                        true
                    }
                    None => false,
                },
                Value::Array(items) => items.iter_mut().fold(false, |changed, v| self.scrub_json(v) | changed),
                Value::Object(map) => map.values_mut().fold(false, |changed, v| self.scrub_json(v) | changed),
                _ => false,
            }
        }
    }

    fn replace_all(text: &str, needles: &[Needle], with: &str) -> Option<String> {
        let mut current: Option<String> = None;
        for needle in needles {
            if let Some(next) = needle.replace(current.as_deref().unwrap_or(text), with) {
                current = Some(next);
            }
        }
        current
    }

    /// The contacts one erasure covers.
    pub struct People {
        list: Vec<Person>,
        by_id: HashMap<i64, usize>,
        /// A word of each strong needle → the people it may be: texts
        /// everyone shares are matched against these words first.
        by_word: HashMap<String, Vec<usize>>,
    }

    impl People {
        pub fn new(list: Vec<Person>) -> People {
            let by_id = list.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
            let mut by_word: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, person) in list.iter().enumerate() {
                for key in person.strong.iter().filter_map(Needle::key) {
                    let who = by_word.entry(key).or_default();
                    if who.last() != Some(&i) {
                        who.push(i);
                    }
                }
            }
            People { list, by_id, by_word }
        }

        pub fn ids(&self) -> Vec<i64> {
            self.list.iter().map(|p| p.id).collect()
        }

        fn get(&self, contact: i64) -> Option<&Person> {
            self.by_id.get(&contact).map(|&i| &self.list[i])
        }

        fn of(&self, of: &HashMap<i64, i64>, participant: i64) -> Option<&Person> {
            of.get(&participant).and_then(|&contact| self.get(contact))
        }

        /// A text everyone's records share, with what identifies any of
        /// these contacts replaced by that contact's placeholder.
        fn scrub_shared(&self, text: &str) -> Option<String> {
            let mut who: Vec<usize> = words(text).filter_map(|w| self.by_word.get(&w)).flatten().copied().collect();
            if who.is_empty() {
                return None;
            }
            who.sort_unstable();
            who.dedup();
            let mut current: Option<String> = None;
            for i in who {
                let person = &self.list[i];
                if let Some(next) = replace_all(current.as_deref().unwrap_or(text), &person.strong, &person.placeholder) {
                    current = Some(next);
                }
            }
            current
        }

        fn has_strong(&self) -> bool {
            self.list.iter().any(|p| !p.strong.is_empty())
        }

        /// What the database can look for first in records everyone shares
        /// (`LIKE` patterns, lower case): the longest run of ASCII letters
        /// and digits of each strong needle, which any text holding the
        /// needle holds too, whatever its case. None when some needle has
        /// no such run, or when there are so many that reading every row
        /// once is cheaper than a scan per few patterns.
        fn patterns(&self) -> Option<Vec<String>> {
            let mut patterns = BTreeSet::new();
            for needle in self.list.iter().flat_map(|p| &p.strong) {
                let run = needle
                    .0
                    .split(|c| !c.is_ascii_alphanumeric())
                    .max_by_key(|run| run.len())
                    .filter(|run| run.len() >= 3)?;
                patterns.insert(format!("%{}%", run.iter().collect::<String>().to_ascii_lowercase()));
            }
            (patterns.len() <= MAX_PATTERNS).then(|| patterns.into_iter().collect())
        }
    }

    /// Patterns looked for at once by [`People::patterns`]: beyond this
    /// (a bulk chunk of many contacts), every shared row is read once instead.
    const MAX_PATTERNS: usize = 200;

    /// ` AND (lower(c) LIKE p OR …)` over `columns` and `patterns`; nothing without patterns.
    fn push_prefilter(query: &mut Sql<'static>, columns: &[&str], patterns: &Option<Vec<String>>) {
        let Some(patterns) = patterns else { return };
        query.push(" AND (");
        for (i, (column, pattern)) in columns.iter().flat_map(|c| patterns.iter().map(move |p| (c, p))).enumerate() {
            if i > 0 {
                query.push(" OR ");
            }
            query.push(format!("lower({column}) LIKE ")).push_bind(pattern.clone());
        }
        query.push(")");
    }

    /// A timeline row's words: participant, visit, subject, reason, why.
    type ActionWords = (i64, i64, Option<String>, Option<String>, Option<String>);

    /// A message record's: id, participant, contact, channel, address, subject, error.
    type ConversationWords = (i64, Option<i64>, Option<i64>, String, String, Option<String>, Option<String>);

    /// The participants' stored reasons (a failure's words may quote an address).
    pub async fn participants(conn: &mut Conn, people: &People, pids: &str) -> Result<()> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as(&format!("SELECT id, contact_id, state FROM participants WHERE id IN ({pids})")).fetch_all(&mut *conn).await?;
        for (id, contact, state) in rows {
            let (Some(person), Ok(mut state)) = (people.get(contact), serde_json::from_str::<Value>(&state)) else { continue };
            let Some(Value::String(reason)) = state.get_mut("reason") else { continue };
            let Some(scrubbed) = person.scrub(reason) else { continue };
            *reason = scrubbed;
            sqlx::query("UPDATE participants SET state = $1, revision = revision + 1 WHERE id = $2")
                .bind(state.to_string())
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The timeline's words: task subjects ("Call Ada"), reasons, how due times were reached.
    pub async fn timeline(conn: &mut Conn, people: &People, of: &HashMap<i64, i64>, pids: &str) -> Result<()> {
        let rows: Vec<ActionWords> = sqlx::query_as(&format!(
            "SELECT participant_id, visit, subject, reason, why FROM participant_actions
             WHERE participant_id IN ({pids}) AND (subject IS NOT NULL OR reason IS NOT NULL OR why IS NOT NULL)"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for (participant, visit, subject, reason, why) in rows {
            let Some(person) = people.of(of, participant) else { continue };
            let after = (person.scrub_opt(&subject), person.scrub_opt(&reason), person.scrub_opt(&why));
            if after == (subject, reason, why) {
                continue;
            }
            sqlx::query("UPDATE participant_actions SET subject = $1, reason = $2, why = $3 WHERE participant_id = $4 AND visit = $5")
                .bind(after.0)
                .bind(after.1)
                .bind(after.2)
                .bind(participant)
                .bind(visit)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// An effect as it stays in the outbox once its contact is erased:
    /// the contact's address becomes the placeholder; what was written to
    /// the contact (subjects, bodies, a call's script, a webhook's headers
    /// and body) goes; URLs, keys and paths are scrubbed. Still an effect
    /// of its kind (the fields are there, blank).
    fn erase_effect(effect: &str, kind: &str, person: &Person) -> String {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(effect) else {
            return serde_json::json!({ "kind": kind }).to_string();
        };
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or(kind).to_owned();
        for (key, value) in map.iter_mut() {
            match key.as_str() {
                "to" if to_the_contact(&kind) => *value = Value::String(person.placeholder.clone()),
                "subject" | "html" | "text" | "title" => *value = Value::String(String::new()),
                "script" if kind == "call" => *value = Value::String(String::new()),
                "body" => *value = Value::Null,
                "headers" => *value = Value::Object(Map::new()),
                "to" | "cc" | "bcc" | "url" | "key" | "path" | "attachments" => {
                    person.scrub_json(value);
                }
                _ => {}
            }
        }
        Value::Object(map).to_string()
    }

    /// Every outbox entry of the participants, sent or not.
    pub async fn outbox(conn: &mut Conn, people: &People, of: &HashMap<i64, i64>, pids: &str) -> Result<()> {
        let rows: Vec<(i64, i64, String, String, Option<String>)> =
            sqlx::query_as(&format!("SELECT id, participant_id, kind, effect, last_error FROM outbox WHERE participant_id IN ({pids})"))
                .fetch_all(&mut *conn)
                .await?;
        for (id, participant, kind, effect, error) in rows {
            let Some(person) = people.of(of, participant) else { continue };
            let after = (erase_effect(&effect, &kind, person), person.scrub_opt(&error));
            if after == (effect, error) {
                continue;
            }
            sqlx::query("UPDATE outbox SET effect = $1, last_error = $2 WHERE id = $3").bind(after.0).bind(after.1).bind(id).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Webhooks and data appends: the URL called (merge tags may have put
    /// the address in it) and the start of the reply.
    pub async fn http_calls(conn: &mut Conn, people: &People, of: &HashMap<i64, i64>, pids: &str) -> Result<()> {
        let rows: Vec<(i64, i64, String, Option<String>)> =
            sqlx::query_as(&format!("SELECT id, participant_id, url, excerpt FROM http_calls WHERE participant_id IN ({pids})")).fetch_all(&mut *conn).await?;
        for (id, participant, url, excerpt) in rows {
            let Some(person) = people.of(of, participant) else { continue };
            let after = (person.scrub(&url).unwrap_or_else(|| url.clone()), person.scrub_opt(&excerpt));
            if after == (url, excerpt) {
                continue;
            }
            sqlx::query("UPDATE http_calls SET url = $1, excerpt = $2 WHERE id = $3").bind(after.0).bind(after.1).bind(id).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Message and call records (`filter`: which): the contact's address
    /// becomes its placeholder, the subject goes, the error is scrubbed.
    /// Status, provider id, sender (ours), times and durations stay.
    pub async fn conversations(conn: &mut Conn, people: &People, of: &HashMap<i64, i64>, filter: &str) -> Result<()> {
        let rows: Vec<ConversationWords> = sqlx::query_as(&format!(
            "SELECT id, participant_id, contact_id, channel, address, subject, error FROM conversations WHERE {filter}"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for (id, participant, contact, channel, address, subject, error) in rows {
            let person = contact.and_then(|c| people.get(c)).or_else(|| participant.and_then(|p| people.of(of, p)));
            let Some(person) = person else { continue };
            let new_address = if to_the_contact(&channel) { person.placeholder.clone() } else { person.scrub(&address).unwrap_or_else(|| address.clone()) };
            let after = (new_address, None, person.scrub_opt(&error));
            if after == (address, subject, error) {
                continue;
            }
            sqlx::query("UPDATE conversations SET address = $1, subject = $2, error = $3 WHERE id = $4")
                .bind(after.0)
                .bind(after.1)
                .bind(after.2)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The tracked links of the contacts' messages.
    pub async fn conversation_links(conn: &mut Conn, people: &People, ids: &str) -> Result<()> {
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(&format!(
            "SELECT l.conversation_id, l.position, l.url, v.contact_id FROM conversation_links l JOIN conversations v ON v.id = l.conversation_id
             WHERE v.contact_id IN ({ids})"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for (conversation, position, url, contact) in rows {
            let Some(scrubbed) = people.get(contact).and_then(|person| person.scrub(&url)) else { continue };
            sqlx::query("UPDATE conversation_links SET url = $1 WHERE conversation_id = $2 AND position = $3")
                .bind(scrubbed)
                .bind(conversation)
                .bind(position)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Rows of a table everyone shares read at a time.
    const PAGE: i64 = 2_000;

    /// Records not tied to one contact: refused import rows (their reason
    /// quotes the cell), import jobs, bulk runs (their criteria may name an
    /// address), the audit log (a bulk run's criteria). Only what
    /// identifies a contact on its own is replaced there. Users' own audit
    /// entries (sign-ins, accounts, tokens) keep their subject.
    pub async fn shared(conn: &mut Conn, people: &People) -> Result<()> {
        if !people.has_strong() {
            return Ok(());
        }
        let patterns = people.patterns();
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let mut page: Sql<'static> = Sql::new("SELECT import_id, line, reason FROM import_errors WHERE (import_id, line) > (");
            page.push_bind(after.0).push(", ").push_bind(after.1).push(")");
            push_prefilter(&mut page, &["reason"], &patterns);
            page.push(" ORDER BY import_id, line LIMIT ").push_bind(PAGE);
            let rows: Vec<(i64, i64, String)> = page.build_query_as().fetch_all(&mut *conn).await?;
            let Some(last) = rows.last() else { break };
            after = (last.0, last.1);
            for (import, line, reason) in &rows {
                if let Some(scrubbed) = people.scrub_shared(reason) {
                    sqlx::query("UPDATE import_errors SET reason = $1 WHERE import_id = $2 AND line = $3")
                        .bind(scrubbed)
                        .bind(import)
                        .bind(line)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        table(conn, people, &patterns, "contact_imports", &["file_name", "error"], "").await?;
        table(conn, people, &patterns, "bulk_runs", &["criteria", "params", "message"], "").await?;
        table(conn, people, &patterns, "audit_log", &["detail"], "").await?;
        table(conn, people, &patterns, "audit_log", &["subject"], " AND action NOT LIKE 'user.%' AND action NOT LIKE 'token.%'").await
    }

    /// [`shared`] for one table with an `id`: `columns` of the rows `only` keeps.
    async fn table(conn: &mut Conn, people: &People, patterns: &Option<Vec<String>>, table: &str, columns: &[&str], only: &str) -> Result<()> {
        let mut after = i64::MIN;
        loop {
            let mut page: Sql<'static> = Sql::new(format!("SELECT id, {} FROM {table} WHERE id > ", columns.join(", ")));
            page.push_bind(after).push(only);
            push_prefilter(&mut page, columns, patterns);
            page.push(" ORDER BY id LIMIT ").push_bind(PAGE);
            let rows = page.build().fetch_all(&mut *conn).await?;
            let Some(last) = rows.last() else { break };
            after = last.get("id");
            for row in &rows {
                let mut update: Sql = Sql::new(format!("UPDATE {table} SET "));
                let mut changed = false;
                for column in columns {
                    let text: Option<String> = row.get(*column);
                    let Some(scrubbed) = text.as_deref().and_then(|t| people.scrub_shared(t)) else { continue };
                    if changed {
                        update.push(", ");
                    }
                    update.push(format!("{column} = ")).push_bind(scrubbed);
                    changed = true;
                }
                if changed {
                    update.push(" WHERE id = ").push_bind(row.get::<i64, _>("id"));
                    update.build().execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }

    /// Rate-limit buckets kept under the contact's address.
    pub async fn rate_buckets(conn: &mut Conn, people: &People) -> Result<()> {
        let addresses: Vec<&String> = people.list.iter().flat_map(|p| &p.addresses).collect();
        for part in addresses.chunks(500) {
            let mut query: Sql = Sql::new("DELETE FROM rate_buckets WHERE lower(subject) IN (");
            let mut list = query.separated(", ");
            for address in part {
                list.push_bind((*address).clone());
            }
            query.push(")");
            query.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn person() -> Person {
            let fields = serde_json::json!({"First name": "Zebulon", "last_name": "Quirke", "region": "north", "score": 42, "customer": 98765432,
                                            "work_phone": "+1 555 0100 999", "company": {"name": "Quirke & Sons"}});
            Person::new(7, Some("Erase-Me@X.test".into()), Some("+15550199871".into()), Some(fields.to_string()))
        }

        #[test]
        fn a_contacts_data_is_replaced_wherever_it_appears_in_its_own_records() {
            let p = person();
            assert_eq!(p.scrub("Call Zebulon Quirke on +15550199871").as_deref(), Some("Call erased-contact-7 on erased-contact-7"));
            assert_eq!(p.scrub("https://h.test/x?e=erase-me%40x.test&m=%2B15550199871").as_deref(), Some("https://h.test/x?e=erased-contact-7&m=erased-contact-7"));
            assert_eq!(p.scrub("to ERASE-ME@x.TEST, 15550199871").as_deref(), Some("to erased-contact-7, erased-contact-7"));
            assert_eq!(p.scrub("Zebulon%20Quirke / Zebulon+Quirke").as_deref(), Some("erased-contact-7 / erased-contact-7"));
            assert_eq!(p.scrub("the north region").as_deref(), Some("the erased-contact-7 region"), "its custom values, in its own records");
            assert_eq!(p.scrub("the northern lights"), None, "short values match whole words only");
            assert_eq!(p.scrub("the call lasted 42 s"), None, "numbers too short to be anyone's stay");
            assert_eq!(p.scrub("customer 98765432").as_deref(), Some("customer erased-contact-7"));
            assert_eq!(p.scrub("Quirke & Sons Ltd").as_deref(), Some("erased-contact-7 Ltd"));
            assert_eq!(p.scrub("nothing here"), None);
        }

        #[test]
        fn shared_records_lose_only_what_identifies_a_contact_on_its_own() {
            let people = People::new(vec![person(), Person::new(9, Some("b@x.test".into()), None, None)]);
            let scrub = |t: &str| people.scrub_shared(t);
            assert_eq!(scrub("“+15550199871 ext 9” is not a mobile number").as_deref(), Some("“erased-contact-7 ext 9” is not a mobile number"));
            assert_eq!(scrub(r#"{"contact":[{"field":"email","value":"erase-me@x.test"}]}"#).as_deref(), Some(r#"{"contact":[{"field":"email","value":"erased-contact-7"}]}"#));
            assert_eq!(scrub("mail b@x.test and zebulon quirke").as_deref(), Some("mail erased-contact-9 and erased-contact-7"));
            assert_eq!(scrub("the north region, Zebulon alone"), None, "a first name or a custom value may be someone else's");
            assert_eq!(scrub("+1 555 0100 999 called").as_deref(), Some("erased-contact-7 called"), "contact-like fields identify it");
        }

        #[test]
        fn shared_records_are_narrowed_down_by_the_database_on_ascii_words() {
            let patterns = People::new(vec![person()]).patterns().unwrap();
            for word in ["%erase%", "%15550199871%", "%zebulon%", "%0100%"] {
                assert!(patterns.contains(&word.to_owned()), "{word} in {patterns:?}");
            }
            let fields = serde_json::json!({"name": "山田 太郎"}).to_string();
            assert_eq!(People::new(vec![Person::new(1, None, None, Some(fields))]).patterns(), None, "no ASCII word: every row is read");
            let many: Vec<Person> = (0..300).map(|i| Person::new(i, Some(format!("person{i}@x.test")), None, None)).collect();
            assert_eq!(People::new(many).patterns(), None, "too many patterns: every row is read once");
        }

        #[test]
        fn effects_keep_their_kind_and_shape_without_the_contact() {
            let p = person();
            let email = r#"{"kind":"email","to":"erase-me@x.test","subject":"Hi Zebulon","html":"<p>Hi</p>","cc":["boss@x.test","erase-me@x.test"]}"#;
            let erased: Value = serde_json::from_str(&erase_effect(email, "email", &p)).unwrap();
            assert_eq!(erased, serde_json::json!({"kind": "email", "to": "erased-contact-7", "subject": "", "html": "", "cc": ["boss@x.test", "erased-contact-7"]}));
            let hook = r#"{"kind":"webhook","method":"POST","url":"https://h.test/u?e=erase-me@x.test","format":"json","headers":{"X":"erase-me@x.test"},"body":{"n":"Zebulon"}}"#;
            let erased: Value = serde_json::from_str(&erase_effect(hook, "webhook", &p)).unwrap();
            assert_eq!(erased, serde_json::json!({"kind": "webhook", "method": "POST", "url": "https://h.test/u?e=erased-contact-7", "format": "json", "headers": {}, "body": null}));
            let notify = r#"{"kind":"notify_email","to":"user:1","subject":"Zebulon replied","text":"Zebulon"}"#;
            let erased: Value = serde_json::from_str(&erase_effect(notify, "notify_email", &p)).unwrap();
            assert_eq!(erased, serde_json::json!({"kind": "notify_email", "to": "user:1", "subject": "", "text": ""}));
            assert_eq!(erase_effect("not json", "sms", &p), r#"{"kind":"sms"}"#);
        }
    }
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
