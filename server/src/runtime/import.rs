//! Streamed CSV contact import: a file of any size becomes contacts without
//! being held in memory.
//!
//! The file (saved from the request body as it arrives) is read by the
//! `csv` crate on a blocking thread, which hands batches of rows to the
//! writer over a small channel; each batch is one transaction that also
//! moves the import's progress, so what the progress says is exactly what
//! is committed. Rows that cannot be imported are listed by line number
//! (`import_errors`); every other row is imported. Nothing is half-imported:
//! a row is either written whole or listed.
//!
//! Dedupe: a row matches an existing contact by email (case-insensitive)
//! when it has one, else by mobile (`match_on: mobile` turns that order
//! round). A match is updated with the row's non-empty values (custom
//! fields merged, lists added) with `dedupe: update` (the default), or left
//! alone and counted as skipped with `dedupe: skip`. A later row matching
//! an earlier row of the same file is treated the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;

use crate::error::{Error, Result};

use super::Runtime;
use crate::db::{Conn, Sql};

/// Rows per transaction.
const BATCH_ROWS: usize = 5_000;
/// Refused rows kept per import; more are counted but not listed.
pub const MAX_LISTED_ERRORS: i64 = 100_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedupe {
    /// An existing contact gets the row's non-empty values.
    #[default]
    Update,
    /// An existing contact is left as it is.
    Skip,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOn {
    /// By email, or by mobile for rows without an email.
    #[default]
    Email,
    /// By mobile, or by email for rows without a mobile.
    Mobile,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportOptions {
    /// CSV column (case-insensitive) → `email`, `mobile`, `timezone`,
    /// `owner`, `lists` (names separated by `;`) or a custom field; `""`
    /// leaves the column out. Columns not named here keep their own name.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub dedupe: Dedupe,
    #[serde(default)]
    pub match_on: MatchOn,
    /// A list every imported contact joins.
    pub list: Option<String>,
}

/// Where a column goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Target {
    Email,
    Mobile,
    Timezone,
    Owner,
    Lists,
    Field(String),
    Skip,
}

fn invalid(message: String) -> Error {
    Error::BadBody { status: axum::http::StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_import", message }
}

/// A custom field name usable in criteria and JSON paths: at most
/// [`app::core::limits::FIELD_NAME`] bytes, no quote, `$`, `.`, bracket,
/// backslash, NUL or other control character. Names still reach SQL only as
/// bound values (a JSON path parameter), never as SQL text.
pub fn valid_field_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= app::core::limits::FIELD_NAME
        && !name.contains(['"', '\'', '$', '.', '[', ']', '\\'])
        && !name.chars().any(char::is_control)
}

/// Each column's target, from the header row and the options.
fn plan(headers: &[String], options: &ImportOptions) -> Result<Vec<Target>> {
    let lower: Vec<String> = headers.iter().map(|h| h.trim().to_lowercase()).collect();
    let mapping: HashMap<String, String> = options.mapping.iter().map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned())).collect();
    if let Some(missing) = mapping.keys().find(|k| !lower.contains(k)) {
        return Err(invalid(format!("The mapping names a column “{missing}” the file does not have (it has: {}).", headers.join(", "))));
    }
    let mut targets = Vec::with_capacity(headers.len());
    let mut seen: HashSet<Target> = HashSet::new();
    for column in &lower {
        let name = mapping.get(column).cloned().unwrap_or_else(|| column.clone());
        let target = match name.to_lowercase().as_str() {
            "" => Target::Skip,
            "email" => Target::Email,
            "mobile" => Target::Mobile,
            "timezone" => Target::Timezone,
            "owner" => Target::Owner,
            "lists" => Target::Lists,
            _ if valid_field_name(&name) => Target::Field(name.clone()),
            _ => return Err(invalid(format!("“{name}” (column “{column}”) is not a usable field name: no quotes, dots, brackets or $."))),
        };
        if target != Target::Skip && !seen.insert(target.clone()) {
            return Err(invalid(format!("Two columns go to “{name}”; map one of them elsewhere or to \"\".")));
        }
        targets.push(target);
    }
    if !seen.contains(&Target::Email) && !seen.contains(&Target::Mobile) {
        return Err(invalid(format!("No column goes to `email` or `mobile` (the file has: {}); map one.", headers.join(", "))));
    }
    Ok(targets)
}

/// One row, checked.
#[derive(Clone, Debug, Default, PartialEq)]
struct Row_ {
    line: u64,
    email: Option<String>,
    mobile: Option<String>,
    timezone: Option<String>,
    owner: Option<String>,
    fields: Map<String, Value>,
    lists: Vec<String>,
}

impl Row_ {
    /// Later non-empty values win, except the email and mobile the
    /// contact was matched by; fields merge; lists add up.
    fn merge(&mut self, later: Row_) {
        self.email = self.email.take().or(later.email);
        self.mobile = self.mobile.take().or(later.mobile);
        self.timezone = later.timezone.or(self.timezone.take());
        self.owner = later.owner.or(self.owner.take());
        self.fields.extend(later.fields);
        for list in later.lists {
            if !self.lists.contains(&list) {
                self.lists.push(list);
            }
        }
    }
}

/// Undoes the formula escaping our exports add (`'=…`, `'+…`), so an
/// exported file imports back as it was.
fn unescape(value: &str) -> &str {
    match value.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => value,
    }
}

pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && local.len() <= app::core::limits::EMAIL_LOCAL
        && email.len() <= app::core::limits::EMAIL
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c == ',' || c == ';')
}

/// 422 `invalid_email` for `field`, the refused value quoted back (at most
/// 80 characters).
pub fn refused_email(field: String, email: &str) -> Error {
    let shown: String = email.chars().take(80).collect();
    Error::InvalidField { code: "invalid_email", field, message: format!("“{shown}” is not an email address.") }
}

/// 422 `invalid_mobile` for `field`, as [`refused_email`].
pub fn refused_mobile(field: String, mobile: &str) -> Error {
    let shown: String = mobile.chars().take(80).collect();
    Error::InvalidField { code: "invalid_mobile", field, message: format!("“{shown}” is not a mobile number (7 to 15 digits).") }
}

/// `+1 (555) 010-0123` → `+15550100123`; None when it is not 7–15 digits.
pub fn normalize_mobile(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push(c),
            '0'..='9' => out.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (7..=15).contains(&digits).then_some(out)
}

/// Reads rows into checked values, caching time-zone look-ups.
struct RowReader {
    targets: Vec<Target>,
    zones: HashMap<String, bool>,
}

impl RowReader {
    fn read(&mut self, line: u64, record: &csv::StringRecord) -> std::result::Result<Row_, String> {
        let mut row = Row_ { line, ..Row_::default() };
        for (target, raw) in self.targets.iter().zip(record.iter()) {
            let value = unescape(raw.trim());
            if value.is_empty() {
                continue;
            }
            match target {
                Target::Skip => {}
                Target::Email => {
                    if !valid_email(value) {
                        return Err(format!("“{value}” is not an email address."));
                    }
                    row.email = Some(value.to_owned());
                }
                Target::Mobile => match normalize_mobile(value) {
                    Some(mobile) => row.mobile = Some(mobile),
                    None => return Err(format!("“{value}” is not a mobile number (7 to 15 digits, optionally starting with +).")),
                },
                Target::Timezone => {
                    let known = *self.zones.entry(value.to_owned()).or_insert_with(|| jiff::tz::TimeZone::get(value).is_ok());
                    if !known {
                        return Err(format!("“{value}” is not a time zone such as Europe/Paris."));
                    }
                    row.timezone = Some(value.to_owned());
                }
                Target::Owner => row.owner = Some(value.to_owned()),
                Target::Lists => {
                    row.lists = value.split(';').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                }
                Target::Field(name) => {
                    row.fields.insert(name.clone(), Value::String(value.to_owned()));
                }
            }
        }
        if row.email.is_none() && row.mobile.is_none() {
            return Err("The row has neither an email nor a mobile number.".into());
        }
        let limited = |field: &str, value: &Option<String>, limit| app::core::limits::check(field, value.as_deref().unwrap_or_default(), limit);
        limited("owner", &row.owner, app::core::limits::OWNER).map_err(|err| err.to_string())?;
        for (name, value) in &row.fields {
            app::core::limits::check(&format!("fields.{name}"), value.as_str().unwrap_or_default(), app::core::limits::FIELD_VALUE).map_err(|err| err.to_string())?;
        }
        for list in &row.lists {
            app::core::limits::check("a list's name", list, app::core::limits::NAME).map_err(|err| err.to_string())?;
        }
        Ok(row)
    }
}

/// What the reader hands the writer.
#[derive(Clone)]
struct Batch {
    rows: Vec<Row_>,
    errors: Vec<(u64, String)>,
    /// Bytes of the file read so far.
    bytes: u64,
    /// Data rows read in this batch (good and bad).
    read: u64,
}

fn open_reader(path: &Path) -> std::io::Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path)?;
    Ok(csv::ReaderBuilder::new().trim(csv::Trim::Headers).buffer_capacity(1 << 16).from_reader(file))
}

/// Reads the header row and works out the column plan, refusing a file or
/// options that cannot work before anything is written.
pub async fn check(path: &Path, options: &ImportOptions) -> Result<()> {
    let path = path.to_owned();
    let headers = tokio::task::spawn_blocking(move || -> std::result::Result<Vec<String>, String> {
        let mut reader = open_reader(&path).map_err(|err| format!("The file cannot be opened: {err}"))?;
        let headers = reader.headers().map_err(|err| format!("The header row cannot be read: {err}"))?;
        Ok(headers.iter().map(str::to_owned).collect())
    })
    .await
    .map_err(|err| Error::Internal(anyhow::anyhow!("header reader stopped: {err}")))?
    .map_err(invalid)?;
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(invalid("The file is empty: it needs a header row naming its columns.".into()));
    }
    if let Some(list) = &options.list {
        if list.trim().is_empty() {
            return Err(invalid("The list to add everyone to has no name.".into()));
        }
    }
    plan(&headers, options).map(|_| ())
}

/// Starts an import job for a file already checked with [`check`]: the row
/// the UI polls. Run it with [`run`].
pub async fn create_job(runtime: &Runtime, path: &Path, file_name: Option<&str>, options: &ImportOptions, by: &str) -> Result<i64> {
    let bytes = tokio::fs::metadata(path).await.map_err(|err| Error::Internal(err.into()))?.len();
    Ok(sqlx::query_scalar(
        "INSERT INTO contact_imports (file_name, options, status, bytes_total, started_by, started_at, owner, heartbeat_at)
         VALUES ($1, $2, 'running', $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(file_name)
    .bind(serde_json::to_string(options).expect("options serialize"))
    .bind(bytes as i64)
    .bind(by)
    .bind(runtime.now().to_string())
    .bind(runtime.worker())
    .bind(super::millis(runtime.now()))
    .fetch_one(runtime.pool())
    .await?)
}

/// Imports the file into job `job`, then records how it ended. A failure
/// part-way stops the job as `failed` with the reason; the batches before
/// it stay imported and counted. Only the job's owner (the process that
/// created it) writes to it; if it went quiet and the job was marked
/// failed meanwhile ([`super::jobs::recover`]), the import stops there.
#[tracing::instrument(name = "job", skip_all, fields(job_kind = "import", job_id = job))]
pub async fn run(runtime: &Runtime, job: i64, path: PathBuf, options: ImportOptions) -> Result<()> {
    let outcome = super::jobs::beating(runtime, super::jobs::Table::Imports, job, import(runtime, job, path, &options)).await;
    let now = runtime.now().to_string();
    match &outcome {
        Err(Error::JobTakenOver(_)) => {}
        Ok(rows) => {
            sqlx::query(
                "UPDATE contact_imports SET status = 'done', rows_total = $1, bytes_done = bytes_total, finished_at = $2
                 WHERE id = $3 AND owner = $4 AND status = 'running'",
            )
            .bind(*rows as i64)
            .bind(&now)
            .bind(job)
            .bind(runtime.worker())
            .execute(runtime.pool())
            .await?;
            tracing::info!(rows, "contact import done");
        }
        Err(err) => {
            tracing::error!(job, error = %err, "contact import failed");
            sqlx::query("UPDATE contact_imports SET status = 'failed', error = $1, finished_at = $2 WHERE id = $3 AND owner = $4 AND status = 'running'")
                .bind(format!("Stopped after the rows counted as done: {}", err.public_message()))
                .bind(&now)
                .bind(job)
                .bind(runtime.worker())
                .execute(runtime.pool())
                .await?;
        }
    }
    outcome.map(|_| ())
}

async fn import(runtime: &Runtime, job: i64, path: PathBuf, options: &ImportOptions) -> Result<u64> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
    let reader_options = options.clone();
    let reader = tokio::task::spawn_blocking(move || -> std::result::Result<u64, String> {
        let mut reader = open_reader(&path).map_err(|err| format!("The file cannot be opened: {err}"))?;
        let headers: Vec<String> =
            reader.headers().map_err(|err| format!("The header row cannot be read: {err}"))?.iter().map(str::to_owned).collect();
        let targets = plan(&headers, &reader_options).map_err(|err| err.public_message())?;
        let mut rows = RowReader { targets, zones: HashMap::new() };
        let mut batch = Batch { rows: Vec::with_capacity(BATCH_ROWS), errors: Vec::new(), bytes: 0, read: 0 };
        let mut record = csv::StringRecord::new();
        let mut total = 0u64;
        loop {
            let line = reader.position().line();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map(|p| p.line()).unwrap_or(line);
                    match rows.read(line, &record) {
                        Ok(row) => batch.rows.push(row),
                        Err(reason) => batch.errors.push((line, reason)),
                    }
                }
                Err(err) => {
                    let line = err.position().map(|p| p.line()).unwrap_or(line);
                    match err.kind() {
                        csv::ErrorKind::Io(_) => return Err(format!("Reading the file failed at line {line}: {err}")),
                        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                            batch.errors.push((line, format!("The row has {len} columns; the header has {expected_len}.")))
                        }
                        csv::ErrorKind::Utf8 { .. } => batch.errors.push((line, "The row is not valid UTF-8 text.".into())),
                        _ => batch.errors.push((line, format!("The row cannot be read: {err}"))),
                    }
                }
            }
            total += 1;
            batch.read += 1;
            if batch.read as usize >= BATCH_ROWS {
                batch.bytes = reader.position().byte();
                let full = std::mem::replace(&mut batch, Batch { rows: Vec::with_capacity(BATCH_ROWS), errors: Vec::new(), bytes: 0, read: 0 });
                if tx.blocking_send(full).is_err() {
                    return Err("the writer stopped".into());
                }
            }
        }
        batch.bytes = reader.position().byte();
        if batch.read > 0 && tx.blocking_send(batch).is_err() {
            return Err("the writer stopped".into());
        }
        Ok(total)
    });

    let mut writer = Writer { runtime, job, options, lists: HashMap::new(), entry_flows: HashMap::new() };
    let mut written = Ok(());
    while let Some(batch) = rx.recv().await {
        // A batch is one transaction, all or nothing: safe to run again. Each
        // attempt writes with a copy of the writer, whose list ids are kept
        // only once its transaction committed.
        let outcome = crate::db::retry_busy("an import batch", || {
            let (mut attempt, batch) = (writer.clone(), batch.clone());
            async move { attempt.write(batch).await.map(|()| attempt) }
        })
        .await;
        match outcome {
            Ok(attempt) => writer = attempt,
            Err(err) => {
                written = Err(err);
                break;
            }
        }
    }
    drop(rx); // a reader still sending sees the writer stopped
    let read = reader.await.map_err(|err| Error::Internal(anyhow::anyhow!("CSV reader stopped: {err}")))?;
    written?;
    read.map_err(|message| Error::Internal(anyhow::anyhow!(message)))
}

/// Writes batches, remembering list ids and the flows lists enroll into.
#[derive(Clone)]
struct Writer<'a> {
    runtime: &'a Runtime,
    job: i64,
    options: &'a ImportOptions,
    lists: HashMap<String, i64>,
    entry_flows: HashMap<i64, Vec<i64>>,
}

/// What a row of the batch becomes.
enum Plan {
    Insert(Row_),
    Update(i64, Row_),
}

/// How a row is matched: lower-cased email, or normalized mobile.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Email(String),
    Mobile(String),
}

impl Writer<'_> {
    async fn write(&mut self, batch: Batch) -> Result<()> {
        let mut tx = crate::db::begin_write(self.runtime.pool()).await?;
        let mut errors = batch.errors;
        let (mut created, mut updated, mut skipped) = (0i64, 0i64, 0i64);

        // Existing contacts for the batch's emails and mobiles, in two look-ups.
        let emails: Vec<String> = batch.rows.iter().filter_map(|r| r.email.as_ref().map(|e| e.to_lowercase())).collect();
        let mobiles: Vec<String> = batch.rows.iter().filter_map(|r| r.mobile.clone()).collect();
        // `IS NOT NULL` lets SQLite use the partial indexes on email and mobile.
        let by_email =
            existing(&mut tx, "SELECT id, lower(email) FROM contacts WHERE email IS NOT NULL AND lower(email) IN (", &emails, "").await?;
        let by_mobile = existing(
            &mut tx,
            "SELECT min(id), mobile FROM contacts WHERE mobile IS NOT NULL AND deleted_at IS NULL AND mobile IN (",
            &mobiles,
            " GROUP BY mobile",
        )
        .await?;

        // Where each key of this batch went: the index of its plan.
        let mut seen: HashMap<Key, usize> = HashMap::new();
        let mut plans: Vec<Plan> = Vec::with_capacity(batch.rows.len());
        for row in batch.rows {
            let email_key = row.email.as_ref().map(|e| Key::Email(e.to_lowercase()));
            let mobile_key = row.mobile.clone().map(Key::Mobile);
            let key = match self.options.match_on {
                MatchOn::Email => email_key.clone().or(mobile_key.clone()),
                MatchOn::Mobile => mobile_key.clone().or(email_key.clone()),
            }
            .expect("a checked row has an email or a mobile");
            let stored = |k: &Key| match k {
                Key::Email(e) => by_email.get(e).copied(),
                Key::Mobile(m) => by_mobile.get(m).copied(),
            };
            // Its email is another contact's (matched otherwise, or an earlier row's): refuse rather than merge two people.
            let email_elsewhere = |seen: &HashMap<Key, usize>, mine: Option<usize>, mine_stored: Option<i64>| {
                email_key.as_ref().filter(|e| **e != key).and_then(|e| {
                    let earlier = seen.get(e).copied().filter(|i| Some(*i) != mine).map(|_| "an earlier row's contact".to_owned());
                    earlier.or_else(|| stored(e).filter(|id| Some(*id) != mine_stored).map(|id| format!("contact {id}")))
                })
            };
            match (seen.get(&key).copied(), stored(&key)) {
                (Some(i), _) => {
                    if self.options.dedupe == Dedupe::Skip {
                        skipped += 1;
                        continue;
                    }
                    let mine_stored = match &plans[i] {
                        Plan::Update(id, _) => Some(*id),
                        Plan::Insert(_) => None,
                    };
                    if let Some(other) = email_elsewhere(&seen, Some(i), mine_stored) {
                        errors.push((row.line, format!("The email already belongs to {other}; not merged.")));
                        continue;
                    }
                    for k in [&email_key, &mobile_key].into_iter().flatten() {
                        seen.entry(k.clone()).or_insert(i);
                    }
                    match &mut plans[i] {
                        Plan::Insert(earlier) | Plan::Update(_, earlier) => earlier.merge(row),
                    }
                    updated += 1;
                }
                (None, stored_id) => {
                    if stored_id.is_some() && self.options.dedupe == Dedupe::Skip {
                        skipped += 1;
                        continue;
                    }
                    if let Some(other) = email_elsewhere(&seen, None, stored_id) {
                        errors.push((row.line, format!("The email already belongs to {other}; not merged.")));
                        continue;
                    }
                    for k in [&email_key, &mobile_key].into_iter().flatten() {
                        seen.entry(k.clone()).or_insert(plans.len());
                    }
                    plans.push(match stored_id {
                        Some(id) => Plan::Update(id, row),
                        None => Plan::Insert(row),
                    });
                }
            }
        }

        // New contacts, many per statement. Both engines number one
        // statement's rows in the order they are written, so the returned
        // ids, ascending, line up with the rows.
        let mut members: Vec<(i64, String)> = Vec::new();
        let at = self.runtime.now().to_string();
        let inserts: Vec<&Row_> = plans.iter().filter_map(|p| if let Plan::Insert(r) = p { Some(r) } else { None }).collect();
        for chunk in inserts.chunks(1_000) {
            let mut query: Sql =
                Sql::new("INSERT INTO contacts (email, mobile, timezone, owner, fields, created_at, updated_at, search_name) ");
            query.push_values(chunk, |mut b, r| {
                b.push_bind(r.email.clone())
                    .push_bind(r.mobile.clone())
                    .push_bind(r.timezone.clone())
                    .push_bind(r.owner.clone())
                    .push_bind(serde_json::to_string(&r.fields).expect("maps serialize"))
                    .push_bind(&at)
                    .push_bind(&at)
                    .push_bind(super::contacts::search_name(&r.fields));
            });
            query.push(" RETURNING id");
            let mut ids: Vec<i64> = query.build_query_scalar().fetch_all(&mut *tx).await?;
            ids.sort_unstable();
            for (id, row) in ids.into_iter().zip(chunk) {
                self.join(&mut members, id, &row.lists);
            }
            created += chunk.len() as i64;
        }
        for plan in &plans {
            let Plan::Update(id, row) = plan else { continue };
            // An email that is another contact's is refused here rather than
            // by the unique index: a failed statement would end the whole
            // transaction on PostgreSQL. The version moves on, so that a
            // scheduler batch that read the contact before does not write
            // its copy over the import's (`contacts::claim_many`).
            let result = sqlx::query_scalar::<_, String>(
                "UPDATE contacts SET email = coalesce($1, email), mobile = coalesce($2, mobile), timezone = coalesce($3, timezone),
                     owner = coalesce($4, owner), fields = json_patch(fields, $5), updated_at = $6,
                     sends_version = sends_version + 1
                 WHERE id = $7 AND ($1 IS NULL OR NOT EXISTS (
                     SELECT 1 FROM contacts o WHERE o.email IS NOT NULL AND lower(o.email) = lower($1) AND o.id <> $7))
                 RETURNING fields",
            )
            .bind(&row.email)
            .bind(&row.mobile)
            .bind(&row.timezone)
            .bind(&row.owner)
            .bind(serde_json::to_string(&row.fields).expect("maps serialize"))
            .bind(&at)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match result {
                Some(fields) => {
                    // A row naming the contact: the merged fields give its name now.
                    if super::contacts::search_name(&row.fields).is_some() {
                        let fields: Map<String, Value> = serde_json::from_str(&fields).unwrap_or_default();
                        sqlx::query("UPDATE contacts SET search_name = $1 WHERE id = $2")
                            .bind(super::contacts::search_name(&fields))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    updated += 1;
                    self.join(&mut members, *id, &row.lists);
                }
                None => {
                    errors.push((row.line, format!("The email is already another contact's; contact {id} was not changed.")));
                }
            }
        }
        self.add_members(&mut tx, &members, &at).await?;
        // Participants of the contacts this batch changed re-check what they wait on.
        let changed: Vec<i64> = plans.iter().filter_map(|p| if let Plan::Update(id, _) = p { Some(*id) } else { None }).collect();
        super::contacts::nudge(&mut tx, &changed, &super::contacts::Keep::default()).await?;

        errors.sort_by_key(|(line, _)| *line);
        let failed = errors.len() as i64;
        let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM import_errors WHERE import_id = $1").bind(self.job).fetch_one(&mut *tx).await?;
        let room = (MAX_LISTED_ERRORS - listed).max(0) as usize;
        for chunk in errors[..errors.len().min(room)].chunks(1_000) {
            let mut query: Sql = Sql::new("INSERT INTO import_errors (import_id, line, reason) ");
            query.push_values(chunk, |mut b, (line, reason)| {
                b.push_bind(self.job).push_bind(*line as i64).push_bind(reason.clone());
            });
            query.push(" ON CONFLICT DO NOTHING");
            query.build().execute(&mut *tx).await?;
        }
        let progress = sqlx::query(
            "UPDATE contact_imports SET bytes_done = $1, rows_done = rows_done + $2, created = created + $3, updated = updated + $4,
                 skipped = skipped + $5, failed = failed + $6 WHERE id = $7 AND owner = $8 AND status = 'running'",
        )
        .bind(batch.bytes as i64)
        .bind(batch.read as i64)
        .bind(created)
        .bind(updated)
        .bind(skipped)
        .bind(failed)
        .bind(self.job)
        .bind(self.runtime.worker())
        .execute(&mut *tx)
        .await?;
        if progress.rows_affected() == 0 {
            // Marked failed while this process was quiet: the batch is rolled back.
            return Err(Error::JobTakenOver(self.job));
        }
        tx.commit().await?;
        crate::ops::metrics::import_rows(created, updated, skipped, failed);
        Ok(())
    }

    fn join(&self, members: &mut Vec<(i64, String)>, id: i64, lists: &[String]) {
        for list in lists.iter().chain(self.options.list.iter()) {
            members.push((id, list.trim().to_owned()));
        }
    }

    /// List memberships; joining a list enrolls into the flows whose start
    /// admits its members (by their re-entry rule), as joining one by one does.
    async fn add_members(&mut self, tx: &mut Conn, members: &[(i64, String)], at: &str) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut by_list: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (contact, name) in members {
            let list = match self.lists.get(&name.to_lowercase()) {
                Some(id) => *id,
                None => {
                    sqlx::query("INSERT INTO lists (name) VALUES ($1) ON CONFLICT DO NOTHING").bind(name).execute(&mut *tx).await?;
                    let id: i64 = sqlx::query_scalar("SELECT id FROM lists WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
                    let flows: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM flows WHERE entry_list = $1 COLLATE NOCASE AND EXISTS (SELECT 1 FROM flow_versions v WHERE v.flow_id = flows.id)",
                    )
                    .bind(name)
                    .fetch_all(&mut *tx)
                    .await?;
                    self.entry_flows.insert(id, flows);
                    self.lists.insert(name.to_lowercase(), id);
                    id
                }
            };
            by_list.entry(list).or_default().push(*contact);
        }
        for (list, contacts) in by_list {
            let mut joined = Vec::new();
            for chunk in contacts.chunks(5_000) {
                let mut query: Sql = Sql::new("INSERT INTO list_members (list_id, contact_id, added_at) ");
                query.push_values(chunk, |mut b, id| {
                    b.push_bind(list).push_bind(*id).push_bind(at);
                });
                query.push(" ON CONFLICT DO NOTHING RETURNING contact_id");
                joined.extend(query.build_query_scalar::<i64>().fetch_all(&mut *tx).await?);
            }
            for flow in self.entry_flows.get(&list).cloned().unwrap_or_default() {
                self.runtime.enroll_in(tx, flow, &joined).await?;
            }
        }
        Ok(())
    }
}

/// `prefix` + placeholders for `values` + `suffix`, as a map from the second column to the first.
pub(crate) async fn existing<S: AsRef<str>>(conn: &mut Conn, prefix: &str, values: &[S], suffix: &str) -> Result<HashMap<String, i64>> {
    let mut found = HashMap::new();
    for chunk in values.chunks(2_000) {
        let mut query: Sql = Sql::new(prefix);
        let mut list = query.separated(", ");
        for value in chunk {
            list.push_bind(value.as_ref().to_owned());
        }
        query.push(")").push(suffix);
        for row in query.build().fetch_all(&mut *conn).await? {
            found.insert(row.get::<String, _>(1), row.get::<i64, _>(0));
        }
    }
    Ok(found)
}

/// An import as the API and the UI show it.
#[derive(Clone, Debug, Serialize)]
pub struct ImportJob {
    pub id: i64,
    pub file_name: Option<String>,
    pub status: String,
    pub bytes_total: i64,
    pub bytes_done: i64,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    pub error: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The first refused rows: (line, reason).
    pub errors: Vec<(i64, String)>,
}

pub async fn job(conn: &mut Conn, id: i64, errors: i64) -> Result<ImportJob> {
    let row = sqlx::query(
        "SELECT id, file_name, status, bytes_total, bytes_done, rows_done, rows_total, created, updated, skipped, failed, error,
                started_by, started_at, finished_at FROM contact_imports WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::ImportNotFound(id))?;
    let listed: Vec<(i64, String)> = sqlx::query_as("SELECT line, reason FROM import_errors WHERE import_id = $1 ORDER BY line LIMIT $2")
        .bind(id)
        .bind(errors)
        .fetch_all(&mut *conn)
        .await?;
    Ok(ImportJob {
        id: row.get("id"),
        file_name: row.get("file_name"),
        status: row.get("status"),
        bytes_total: row.get("bytes_total"),
        bytes_done: row.get("bytes_done"),
        rows_done: row.get("rows_done"),
        rows_total: row.get("rows_total"),
        created: row.get("created"),
        updated: row.get("updated"),
        skipped: row.get("skipped"),
        failed: row.get("failed"),
        error: row.get("error"),
        started_by: row.get("started_by"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        errors: listed,
    })
}

/// The newest `limit` imports, without their refused rows.
pub async fn recent(conn: &mut Conn, limit: i64) -> Result<Vec<ImportJob>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM contact_imports ORDER BY id DESC LIMIT $1").bind(limit).fetch_all(&mut *conn).await?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        jobs.push(job(conn, id, 0).await?);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_keep_their_name_unless_mapped() {
        let options = ImportOptions {
            mapping: [("E-Mail".to_owned(), "email".to_owned()), ("Notes".to_owned(), String::new()), ("Firma".to_owned(), "company".to_owned())]
                .into(),
            ..ImportOptions::default()
        };
        let plan = plan(&headers(&["e-mail", "Firma", "notes", "Timezone", "score"]), &options).unwrap();
        assert_eq!(
            plan,
            [Target::Email, Target::Field("company".into()), Target::Skip, Target::Timezone, Target::Field("score".into())]
        );
    }

    #[test]
    fn plans_that_cannot_work_are_refused() {
        let no_key = plan(&headers(&["name", "company"]), &ImportOptions::default()).unwrap_err();
        assert!(no_key.to_string().contains("`email` or `mobile`"), "{no_key}");
        let unknown = ImportOptions { mapping: [("mail".to_owned(), "email".to_owned())].into(), ..ImportOptions::default() };
        assert!(plan(&headers(&["email"]), &unknown).unwrap_err().to_string().contains("“mail”"));
        let twice = ImportOptions { mapping: [("a".to_owned(), "email".to_owned())].into(), ..ImportOptions::default() };
        assert!(plan(&headers(&["a", "email"]), &twice).unwrap_err().to_string().contains("Two columns"));
        let bad = ImportOptions { mapping: [("a".to_owned(), "x.y".to_owned())].into(), ..ImportOptions::default() };
        assert!(plan(&headers(&["a", "email"]), &bad).is_err());
    }

    #[test]
    fn rows_are_checked_one_by_one() {
        let mut reader = RowReader {
            targets: plan(&headers(&["email", "mobile", "timezone", "lists", "score"]), &ImportOptions::default()).unwrap(),
            zones: HashMap::new(),
        };
        let read = |r: &mut RowReader, cells: &[&str]| r.read(2, &csv::StringRecord::from(cells.to_vec()));
        let row = read(&mut reader, &["ada@example.com", "'+44 (20) 7946-0018", "Europe/London", "VIP; News ;", "7"]).unwrap();
        assert_eq!(row.mobile.as_deref(), Some("+442079460018"), "export escaping undone, punctuation dropped");
        assert_eq!(row.lists, ["VIP", "News"]);
        assert_eq!(row.fields["score"], "7");
        assert!(read(&mut reader, &["not-an-email", "", "", "", ""]).unwrap_err().contains("not an email"));
        assert!(read(&mut reader, &["", "12ab", "", "", ""]).unwrap_err().contains("not a mobile"));
        assert!(read(&mut reader, &["a@b.co", "", "Mars/Base", "", ""]).unwrap_err().contains("time zone"));
        assert!(read(&mut reader, &["", "", "", "", "9"]).unwrap_err().contains("neither"));
    }

    #[test]
    fn merging_keeps_earlier_values_the_later_row_leaves_empty() {
        let mut first = Row_ { email: Some("a@b.co".into()), owner: Some("ann".into()), lists: vec!["A".into()], ..Row_::default() };
        first.fields.insert("x".into(), "1".into());
        let mut later = Row_ {
            email: Some("other@b.co".into()),
            mobile: Some("+15550100".into()),
            timezone: Some("UTC".into()),
            owner: Some("bob".into()),
            lists: vec!["A".into(), "B".into()],
            ..Row_::default()
        };
        later.fields.insert("y".into(), "2".into());
        first.merge(later);
        assert_eq!(
            (first.email.as_deref(), first.mobile.as_deref(), first.owner.as_deref(), first.timezone.as_deref()),
            (Some("a@b.co"), Some("+15550100"), Some("bob"), Some("UTC"))
        );
        assert_eq!(first.lists, ["A", "B"]);
        assert_eq!(first.fields.len(), 2);
    }
}
