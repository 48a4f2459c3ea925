//! The database: SQLite (embedded, the default) or PostgreSQL, chosen by the
//! URL's scheme. Every query in the server is written once, in SQL both
//! engines accept (`$1` placeholders, `ON CONFLICT`, `lower()` instead of
//! `COLLATE NOCASE`), and runs through sqlx's `Any` driver. SQLite's JSON
//! functions and `group_concat` exist on PostgreSQL too (its first
//! migration defines them); the two fragments that still differ, `json_set`
//! and row locks, come from [`Backend`].

use std::fmt::{Display, Write};
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

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// Opens the database at `url` (creating a SQLite file and its folder if
/// missing) and applies the migrations.
pub async fn connect(url: &str) -> anyhow::Result<Pool> {
    install_drivers();
    let pool = match Backend::of_url(url)? {
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
            AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "journal_mode = WAL",
                            "synchronous = NORMAL",
                            "busy_timeout = 5000",
                            "foreign_keys = ON",
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
                .await?
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

/// A query assembled from pieces with numbered `$n` binds, which both
/// engines read (sqlx's own builder writes `?` under `Any`, which PostgreSQL
/// does not).
pub struct Sql<'a> {
    text: String,
    args: AnyArguments<'a>,
}

impl<'a> Sql<'a> {
    pub fn new(init: impl Display) -> Self {
        Sql {
            text: init.to_string(),
            args: AnyArguments::default(),
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
        let _ = write!(self.text, "${}", self.args.len());
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

    #[test]
    fn binds_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT id FROM t WHERE a = ");
        sql.push_bind(1_i64).push(" AND b IN (");
        let mut list = sql.separated(", ");
        list.push_bind("x").push_bind("y");
        sql.push(")");
        assert_eq!(sql.sql(), "SELECT id FROM t WHERE a = $1 AND b IN ($2, $3)");
    }

    #[test]
    fn values_rows_are_parenthesised() {
        let mut sql = Sql::new("INSERT INTO t (a, b)");
        sql.push_values([(1_i64, "p"), (2, "q")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        assert_eq!(sql.sql(), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
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
