//! The database: SQLite (embedded, the default) or PostgreSQL, chosen by the
//! URL's scheme. Every query in the server is written once, in SQL both
//! engines accept (`$1` placeholders, `ON CONFLICT`, `lower()` instead of
//! `COLLATE NOCASE`), and runs through sqlx's `Any` driver. SQLite's JSON
//! functions and `group_concat` exist on PostgreSQL too (its first
//! migration defines them); the two fragments that still differ, `json_set`
//! and row locks, come from [`Backend`].
//!
//! # Writing on SQLite
//!
//! Connections use WAL (readers never wait for the writer, nor it for
//! them), `synchronous = NORMAL` (with WAL a crash loses no committed data;
//! a power cut may lose the last commits, never the file) and a
//! `busy_timeout` of 10 s (how long a statement waits for the write lock).
//! SQLite has one writer at a time. A plain `BEGIN` is deferred: the
//! transaction starts as a reader on a snapshot and asks for the write lock
//! at its first write. If another connection committed after that snapshot
//! was taken (a job heartbeat, the scheduler, an API call), the upgrade can
//! never succeed and fails at once with `SQLITE_BUSY_SNAPSHOT` (517), or with
//! `SQLITE_BUSY` (5) while the other still holds the lock; `busy_timeout`
//! does not help, since waiting cannot make the snapshot current. So every
//! transaction that will write opens with [`begin_write`], which on SQLite
//! is `BEGIN IMMEDIATE`: it takes the write lock first (waiting for it up
//! to `busy_timeout`), and its reads then see the newest data. Read-only
//! work needs no transaction, or a plain `begin()` (WAL readers never wait).
//! On PostgreSQL `begin_write` is a plain `BEGIN`; row locks do the rest.
//!
//! Waiting for the lock is fair. SQLite's own waiting is polling (at most
//! 100 ms apart), which favors whoever asks again first: an import writing
//! batch after batch would keep single-statement writers (heartbeats, the
//! scheduler's claims) out past their `busy_timeout`. So on SQLite a write
//! transaction first waits for this process's turn to write, first come
//! first served, and after 2 s of (mostly) back-to-back write
//! transactions the next one leaves the lock free for 120 ms (`BREATHER`)
//! so that writers outside the turns (single statements, other processes)
//! get in. A breather that let nobody in (no commit by another connection
//! meanwhile) doubles the run before the next, up to 6 s; one that let
//! someone in brings it back to 2 s. So a writer that keeps writing beside
//! the turns waits about 2 s plus one transaction at most, one that arrives
//! after a quiet spell 6 s plus one transaction, both inside `busy_timeout`;
//! the longest writers lose 6% of their speed to breathers while others
//! write beside them, 2% when nobody does.
//!
//! Write transactions are kept short, since every other writer waits for
//! them: the longest are an import batch (5,000 rows), a bulk run's chunk
//! (20,000 participants) and a scheduler batch (500 participants). What can
//! still fail busy (a wait for the lock that outlasts `busy_timeout`, a
//! PostgreSQL deadlock) is tried again, a few times with a jittered
//! backoff, by [`retry_busy`] where the whole unit of work can run again
//! safely.

use std::fmt::{Display, Write};
use std::hash::BuildHasher;
use std::path::Path;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Any, Arguments, Encode, Type};

pub use sqlx::any::AnyRow as DbRow;
pub use sqlx::{AnyConnection as Conn, AnyPool as Pool};

/// A transaction on either engine.
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names: `sqlite:` or `postgres:`/`postgresql:`.
    pub fn of_url(url: &str) -> anyhow::Result<Backend> {
        match url.split(':').next().unwrap_or_default() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            other => anyhow::bail!(
                "unsupported database URL scheme {other:?}: use sqlite:// or postgres://"
            ),
        }
    }

    pub fn of(pool: &Pool) -> Backend {
        match pool.connect_options().database_url.scheme() {
            "sqlite" => Backend::Sqlite,
            _ => Backend::Postgres,
        }
    }

    pub fn of_conn(conn: &Conn) -> Backend {
        if conn.backend_name() == "SQLite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// `target` (a JSON text column or expression) with top-level `keys` set
    /// to SQL expressions, as JSON text.
    pub fn json_set(self, target: &str, keys: &[(&str, &str)]) -> String {
        match self {
            Backend::Sqlite => {
                let mut sql = format!("json_set({target}");
                for (key, value) in keys {
                    let _ = write!(sql, ", '$.{key}', {value}");
                }
                sql + ")"
            }
            Backend::Postgres => {
                let mut sql = format!("(CAST({target} AS jsonb) || jsonb_build_object(");
                for (i, (key, value)) in keys.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(sql, "{sep}'{key}', {value}");
                }
                sql + "))::text"
            }
        }
    }

    /// A JSON value written out in `json` (trusted text, not user input).
    pub fn json_literal(self, json: &str) -> String {
        match self {
            Backend::Sqlite => format!("json('{json}')"),
            Backend::Postgres => format!("CAST('{json}' AS jsonb)"),
        }
    }

    /// The clause that locks claimed rows and skips the ones another worker
    /// holds; SQLite has one writer at a time and needs none.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Begins a transaction that will write: `BEGIN IMMEDIATE` on SQLite (it
/// holds the write lock from the start, so it cannot fail busy part-way),
/// after waiting for this process's turn to write; a plain `BEGIN` on
/// PostgreSQL. See the module's notes.
pub async fn begin_write(pool: &Pool) -> Result<WriteTx, sqlx::Error> {
    let options = pool.connect_options();
    if options.database_url.scheme() != "sqlite" {
        return Ok(WriteTx { tx: pool.begin().await?, _turn: None });
    }
    let turn = Gate::of(options.database_url.as_str()).turn(pool).await?;
    let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    Ok(WriteTx { tx, _turn: Some(turn) })
}

/// A transaction from [`begin_write`]: use it as a connection (`&mut tx`,
/// `&mut *tx`), then [`commit`](WriteTx::commit) it; dropped, it rolls
/// back. On SQLite it holds this process's turn to write until it ends.
pub struct WriteTx {
    // Declared first, dropped first: the transaction ends before the turn.
    tx: Tx<'static>,
    _turn: Option<Turn>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.tx
    }
}

/// How long a write transaction waits for its turn at most (only a
/// transaction opened inside another, a bug, should ever wait this long).
const TURN_WAIT: Duration = Duration::from_secs(30);

/// After write transactions held the lock back to back for this long...
const RUN_LIMIT: Duration = Duration::from_millis(2_000);

/// ...the next waits this long with the lock free, so that writers outside
/// the turns (single statements, other processes), whose `busy_timeout`
/// polls at most 100 ms apart, get in.
const BREATHER: Duration = Duration::from_millis(120);

/// A breather that let nobody in doubles the run allowed before the next,
/// up to this; one that let someone in brings it back to [`RUN_LIMIT`]. A
/// writer arriving after a quiet spell waits this (plus one transaction) at
/// most, well inside `busy_timeout` (10 s).
const QUIET_RUN_LIMIT: Duration = Duration::from_millis(6_000);

/// One SQLite database's turns to write in this process: first come, first
/// served (SQLite's own waiting, by polling, favors whoever is quickest, so
/// a job writing batch after batch could keep everyone else out).
struct Gate {
    turns: std::sync::Arc<tokio::sync::Semaphore>,
    run: std::sync::Mutex<Run>,
}

/// The current run of write transactions with less than [`BREATHER`]
/// between them.
struct Run {
    started: Option<std::time::Instant>,
    /// How long the run's transactions held the lock.
    held: Duration,
    /// When the latest turn began, and when it ended.
    began: Option<std::time::Instant>,
    ended: Option<std::time::Instant>,
    /// How long this run may go on before it breathes (kept from run to run).
    limit: Duration,
}

impl Run {
    fn new(started: Option<std::time::Instant>, limit: Duration) -> Run {
        Run { started, held: Duration::ZERO, began: None, ended: None, limit }
    }
}

/// A transaction's turn to write; the next begins once it is dropped.
struct Turn {
    gate: std::sync::Arc<Gate>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Gate {
    fn of(url: &str) -> std::sync::Arc<Gate> {
        static GATES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Gate>>>> =
            std::sync::OnceLock::new();
        let mut gates = GATES.get_or_init(Default::default).lock().expect("gates lock");
        if let Some(gate) = gates.get(url) {
            return gate.clone();
        }
        let gate = std::sync::Arc::new(Gate {
            turns: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            run: std::sync::Mutex::new(Run::new(None, RUN_LIMIT)),
        });
        gates.insert(url.to_owned(), gate.clone());
        gate
    }

    async fn turn(self: std::sync::Arc<Self>, pool: &Pool) -> Result<Turn, sqlx::Error> {
        let permit = tokio::time::timeout(TURN_WAIT, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("waited {} s for this process's turn to write to the database", TURN_WAIT.as_secs()),
                ))
            })?
            .expect("the turns are never closed");
        let breather = {
            let run = self.run.lock().expect("run lock");
            let now = std::time::Instant::now();
            match (run.started, run.ended) {
                // Mostly holding the lock for a while: let the others in.
                (Some(started), Some(ended))
                    if now - ended < BREATHER && now - started >= run.limit && run.held * 5 >= (now - started) * 4 =>
                {
                    Some(BREATHER - (now - ended))
                }
                _ => None,
            }
        };
        if let Some(breather) = breather {
            let let_in = breathe(pool, breather).await;
            let mut run = self.run.lock().expect("run lock");
            run.limit = if let_in { RUN_LIMIT } else { (run.limit * 2).min(QUIET_RUN_LIMIT) };
            tracing::debug!(let_in, next_run_ms = run.limit.as_millis() as u64, "the SQLite write turns breathed");
        }
        let mut run = self.run.lock().expect("run lock");
        let now = std::time::Instant::now();
        if run.ended.is_none_or(|ended| now - ended >= BREATHER) {
            *run = Run::new(Some(now), run.limit);
        }
        run.began = Some(now);
        drop(run);
        Ok(Turn { gate: self, _permit: permit })
    }
}

/// Waits `wait` with the lock free (holding the turn), and tells whether a
/// writer outside the turns committed meanwhile: `PRAGMA data_version`, read
/// before and after on one connection, changes when any other connection
/// commits, and none of this process's turns can. Without a connection to
/// ask in time, or an answer, it says yes, which keeps the breathers
/// frequent.
async fn breathe(pool: &Pool, wait: Duration) -> bool {
    let until = tokio::time::Instant::now() + wait;
    let Ok(Ok(mut conn)) = tokio::time::timeout(wait / 4, pool.acquire()).await else {
        tokio::time::sleep_until(until).await;
        return true;
    };
    let before: Result<i64, _> = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut *conn).await;
    tokio::time::sleep_until(until).await;
    let after: Result<i64, _> = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut *conn).await;
    !matches!((before, after), (Ok(before), Ok(after)) if before == after)
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut run = self.gate.run.lock().expect("run lock");
        let now = std::time::Instant::now();
        if let Some(began) = run.began.take() {
            run.held += now - began;
        }
        run.ended = Some(now);
    }
}

/// Whether `err` says only that another connection was in the way, so that
/// the same work can succeed a moment later: SQLite's `SQLITE_BUSY` (5) and
/// `SQLITE_LOCKED` (6) with their extended codes (`SQLITE_BUSY_SNAPSHOT`,
/// 517, among them); PostgreSQL's serialization failure and deadlock.
pub fn is_busy(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    let code = db.code();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The primary code is the extended code's low byte.
        let code = code.and_then(|code| code.parse::<i32>().ok()).unwrap_or_default();
        return matches!(code & 0xff, 5 | 6);
    }
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

/// Errors that [`retry_busy`] recognizes as the database being busy.
pub trait Busy: Display {
    fn is_busy(&self) -> bool;
}

impl Busy for sqlx::Error {
    fn is_busy(&self) -> bool {
        is_busy(self)
    }
}

impl Busy for crate::error::Error {
    fn is_busy(&self) -> bool {
        match self {
            crate::error::Error::Database(err) => is_busy(err),
            // Another writer recorded sends for a contact first (contact
            // pressure's compare-and-set): the unit of work runs again.
            crate::error::Error::Conflict { code: "contact_sends_changed", .. } => true,
            _ => false,
        }
    }
}

/// How many times [`retry_busy`] runs a unit of work at most.
pub const BUSY_ATTEMPTS: u32 = 5;

/// Runs the unit of work that `work` makes (one that begins, writes and
/// commits its own transaction), and makes and runs it again (at most
/// [`BUSY_ATTEMPTS`] times in all, after 25, 50, 100, 200 ms plus as much
/// again at random) while it fails only because the database was busy.
/// Only for work that can safely run again after a failed attempt: its
/// transaction was rolled back, and it did nothing outside it.
///
/// `work` is a closure returning a future that owns or shares what it uses
/// (`move || async move { .. }` over references), not one borrowing from
/// the closure: an `AsyncFnMut` would do, but its future cannot be shown
/// to be `Send` where it is spawned.
pub async fn retry_busy<T, E, F>(what: &str, mut work: impl FnMut() -> F) -> Result<T, E>
where
    E: Busy,
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match work().await {
            Err(err) if attempt < BUSY_ATTEMPTS && err.is_busy() => {
                let base = 25u64 << (attempt - 1);
                let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % (base + 1);
                let wait = Duration::from_millis(base + jitter);
                tracing::warn!(what, attempt, wait_ms = wait.as_millis() as u64, error = %err, "the database was busy; trying again");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// Opens the database at `url` (creating a SQLite file and its folder if
/// missing) and applies the migrations.
pub async fn connect(url: &str) -> anyhow::Result<Pool> {
    install_drivers();
    let backend = Backend::of_url(url)?;
    // Before the pool exists: see `Sql`.
    let engine = if backend == Backend::Sqlite { 1 } else { 2 };
    ENGINES.fetch_or(engine, std::sync::atomic::Ordering::AcqRel);
    let pool = match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            if let Some(parent) = Path::new(options.get_filename()).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = if url.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                // sqlx pings a connection each time it is handed out, to
                // find ones whose server hung up. A SQLite connection is a
                // file this process holds open: it cannot hang up, and the
                // ping is one more round trip to the connection's thread on
                // every acquire. (Work for nothing; the tracking bench did
                // not move measurably without it.)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "journal_mode = WAL",
                            "synchronous = NORMAL",
                            "busy_timeout = 10000",
                            "foreign_keys = ON",
                            // 32 MiB of page cache per connection (the
                            // default is 2 MiB): the contact indexes of a
                            // large import stay in memory.
                            "cache_size = -32768",
                            // WAL checkpoints run beside the writers, not
                            // in the commit that fills the log: see
                            // `checkpoints`.
                            "wal_autocheckpoint = 0",
                            // What a delete or an update frees is overwritten
                            // with zeros, so an erased contact's data (and
                            // older versions of rows that copied it) do not
                            // stay in the file's free space.
                            "secure_delete = ON",
                        ] {
                            sqlx::Executor::execute(
                                &mut *conn,
                                format!("PRAGMA {pragma}").as_str(),
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(AnyConnectOptions::from_str(&url)?)
                .await?;
            tokio::spawn(checkpoints(pool.clone()));
            pool
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(AnyConnectOptions::from_str(url)?)
                .await?
        }
    };
    migrate(&pool).await?;
    Ok(pool)
}

/// How often the SQLite log is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the SQLite write-ahead log into the database file now and then,
/// from a connection of its own (`PRAGMA wal_checkpoint(PASSIVE)`, which
/// takes no write lock and waits for no one), until the pool is closed.
///
/// SQLite's own rule (`wal_autocheckpoint`) runs the checkpoint inside the
/// commit that fills the log past 1,000 pages: under a steady stream of
/// write transactions that is nearly every commit of a big batch, and the
/// writer's turn (see the module's notes) lasts until it is done, so every
/// other writer of the process waits for a copy that needs no lock. Here
/// the copy runs beside them, and a page written by several transactions
/// in between is copied once. The last connection to close checkpoints
/// what is left, as before.
async fn checkpoints(pool: Pool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = pool.close_event() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_all(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %err, "a WAL checkpoint failed; tried again shortly");
        }
    }
}

/// Applies the migrations of the pool's backend.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    match Backend::of(pool) {
        Backend::Sqlite => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
        Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(pool).await?,
    }
    Ok(())
}

/// `1, 2, 3`: ids for an `IN (…)` list, written into the SQL. Safe, since
/// they are integers; and far faster than binds on SQLite, which looks each
/// numbered bind up by name (quadratic in the number of binds).
pub fn id_list(ids: &[i64]) -> String {
    let mut list = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        let _ = write!(list, "{id}");
    }
    list
}

/// The engines this process opened pools on (bits: 1 SQLite, 2 PostgreSQL).
static ENGINES: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// A query assembled from pieces, its binds in the order they are pushed:
/// numbered `$n`, which both engines read (sqlx's own builder writes `?`
/// under `Any`, which PostgreSQL does not), or plain `?` in a process that
/// opened SQLite databases only. SQLite finds a numbered bind's number by
/// its name, walking the statement's list of names, so a statement with
/// thousands of them (an import's 1,000-row insert has 8,000) spent most of
/// its time there; plain `?` are numbered in order with no look-up. A
/// query built with `?` can only be run on SQLite, then: the PostgreSQL
/// flag is set before a PostgreSQL pool exists.
pub struct Sql<'a> {
    text: String,
    args: AnyArguments<'a>,
    anonymous: bool,
}

impl<'a> Sql<'a> {
    pub fn new(init: impl Display) -> Self {
        Sql {
            text: init.to_string(),
            args: AnyArguments::default(),
            anonymous: ENGINES.load(std::sync::atomic::Ordering::Acquire) == 1,
        }
    }

    pub fn push(&mut self, sql: impl Display) -> &mut Self {
        let _ = write!(self.text, "{sql}");
        self
    }

    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.args
            .add(value)
            .expect("binding a plain value cannot fail");
        if self.anonymous {
            self.text.push('?');
        } else {
            let _ = write!(self.text, "${}", self.args.len());
        }
        self
    }

    /// Pushes items with `separator` between them.
    pub fn separated(&mut self, separator: &'static str) -> Separated<'_, 'a> {
        Separated {
            sql: self,
            separator,
            first: true,
        }
    }

    /// ` VALUES (..), (..)`: one parenthesised row per item, filled by `row`.
    pub fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'a>, I::Item),
    {
        self.text.push_str(" VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(self.separated(", "), item);
            self.text.push(')');
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.text
    }

    pub fn build(&mut self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query_with(&self.text, std::mem::take(&mut self.args))
    }

    pub fn build_query_as<O>(&mut self) -> QueryAs<'_, Any, O, AnyArguments<'_>>
    where
        O: for<'r> sqlx::FromRow<'r, DbRow>,
    {
        sqlx::query_as_with(&self.text, std::mem::take(&mut self.args))
    }

    pub fn build_query_scalar<O>(&mut self) -> QueryScalar<'_, Any, O, AnyArguments<'_>>
    where
        (O,): for<'r> sqlx::FromRow<'r, DbRow>,
    {
        sqlx::query_scalar_with(&self.text, std::mem::take(&mut self.args))
    }
}

/// Items pushed with a separator between them: see [`Sql::separated`].
pub struct Separated<'s, 'a> {
    sql: &'s mut Sql<'a>,
    separator: &'static str,
    first: bool,
}

impl<'a> Separated<'_, 'a> {
    fn next(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.sql.text.push_str(self.separator);
        }
    }

    pub fn push(&mut self, sql: impl Display) -> &mut Self {
        self.next();
        self.sql.push(sql);
        self
    }

    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.next();
        self.sql.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text with `$n` binds, whichever this process writes.
    fn numbered(sql: &Sql) -> String {
        if !sql.anonymous {
            return sql.sql().to_owned();
        }
        let mut n = 0;
        sql.sql()
            .chars()
            .map(|c| match c {
                '?' => {
                    n += 1;
                    format!("${n}")
                }
                c => c.to_string(),
            })
            .collect()
    }

    /// The checkpoint task moves what commits wrote to the log into the
    /// database file soon after.
    #[tokio::test]
    async fn the_log_is_checkpointed_beside_the_writers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waymark.db");
        let pool = connect(&format!("sqlite://{}", file.display())).await.unwrap();
        // Let a checkpoint take the migrations in, then measure from there.
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = std::fs::metadata(&file).unwrap().len();
        let mut tx = begin_write(&pool).await.unwrap();
        sqlx::query("CREATE TABLE filler (body TEXT)").execute(&mut *tx).await.unwrap();
        for _ in 0..20 {
            sqlx::query("INSERT INTO filler VALUES ($1)").bind("x".repeat(100_000)).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        // 2 MB is about 500 pages, under SQLite's own threshold of 1,000:
        // without the task, nothing would reach the file.
        tokio::time::sleep(CHECKPOINT_EVERY * 4).await;
        let after = std::fs::metadata(&file).unwrap().len();
        assert!(after >= before + 2_000_000, "2 MB checkpointed into the file: {before} -> {after} bytes");
    }

    #[test]
    fn binds_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT id FROM t WHERE a = ");
        sql.push_bind(1_i64).push(" AND b IN (");
        let mut list = sql.separated(", ");
        list.push_bind("x").push_bind("y");
        sql.push(")");
        assert_eq!(numbered(&sql), "SELECT id FROM t WHERE a = $1 AND b IN ($2, $3)");
    }

    #[test]
    fn values_rows_are_parenthesised() {
        let mut sql = Sql::new("INSERT INTO t (a, b)");
        sql.push_values([(1_i64, "p"), (2, "q")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        assert_eq!(numbered(&sql), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }

    #[test]
    fn json_fragments_per_backend() {
        let set = [("status", "'paused'")];
        assert_eq!(
            Backend::Sqlite.json_set("state", &set),
            "json_set(state, '$.status', 'paused')"
        );
        assert_eq!(
            Backend::Postgres.json_set("state", &set),
            "(CAST(state AS jsonb) || jsonb_build_object('status', 'paused'))::text"
        );
        assert_eq!(
            Backend::of_url("postgresql://x/y").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://x").is_err());
    }
}
