//! Upgrades: a database made and filled by an earlier version, then opened
//! by this one (which applies the migrations it lacks), keeps its rows. The
//! earlier version is the migrations up to a given one, copied into a
//! folder of their own and applied with sqlx's migrator; the rest come
//! from `db::connect` as in production. On SQLite, and on PostgreSQL when
//! `WAYMARK_TEST_POSTGRES` is set.

mod support;

use std::path::{Path, PathBuf};

use sqlx::Row;

use server::db::Pool;
use server::store;

/// The engine's migration folder.
fn migrations(postgres: bool) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(if postgres { "postgres" } else { "sqlite" })
}

/// A database at `url` migrated up to `version` only (as the version that
/// shipped with it left it), and a pool on it.
async fn at_version(url: &str, postgres: bool, version: i64, dir: &Path) -> Pool {
    let earlier = dir.join("earlier-migrations");
    std::fs::create_dir_all(&earlier).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(migrations(postgres)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(number) = name.split('_').next().and_then(|n| n.parse::<i64>().ok()) else { continue };
        if number <= version {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 0, "no migration up to {version}");
    sqlx::any::install_default_drivers();
    let url = if postgres { url.to_owned() } else { format!("{url}?mode=rwc") };
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path()).await.unwrap().run(&pool).await.unwrap();
    pool
}

#[tokio::test]
async fn data_files_made_before_their_removal_was_tracked_are_kept_and_not_yet_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    // Version 22: before `data_files.removed_at` (migration 23).
    let before = at_version(&db.url, db.is_postgres(), 20261122000022, dir.path()).await;
    let columns: Vec<String> = if db.is_postgres() {
        sqlx::query_scalar("SELECT column_name::text FROM information_schema.columns WHERE table_name = 'data_files'").fetch_all(&before).await.unwrap()
    } else {
        sqlx::query_scalar("SELECT name FROM pragma_table_info('data_files')").fetch_all(&before).await.unwrap()
    };
    assert!(columns.iter().any(|c| c == "expires_at") && !columns.iter().any(|c| c == "removed_at"), "{columns:?}");
    sqlx::query(
        "INSERT INTO data_files (run_id, path, rows, recipients, link, expires_at, email_status, created_by, created_at)
         VALUES (NULL, '/files/bulk-run-7.zip', 3, '[\"boss@x.test\"]', '/api/v1/data-files/1?expires=1&sig=ab', '2026-11-24T09:00:00Z', 'sent to boss@x.test', 'mo@x.test', '2026-11-23T09:00:00Z')",
    )
    .execute(&before)
    .await
    .unwrap();
    before.close().await;

    // This version opens it: the missing migrations apply, the row stays.
    let pool = store::connect(&db.url).await.unwrap();
    let row = sqlx::query("SELECT path, rows, recipients, email_status, created_by, removed_at FROM data_files").fetch_one(&pool).await.unwrap();
    assert_eq!(row.get::<String, _>("path"), "/files/bulk-run-7.zip");
    assert_eq!(row.get::<i64, _>("rows"), 3);
    assert_eq!(row.get::<String, _>("recipients"), "[\"boss@x.test\"]");
    assert_eq!(row.get::<String, _>("email_status"), "sent to boss@x.test");
    assert_eq!(row.get::<String, _>("created_by"), "mo@x.test");
    assert_eq!(row.get::<Option<String>, _>("removed_at"), None, "on disk until swept");
    // And the sweep treats it as any other: its link expired long ago.
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    assert_eq!(server::runtime::datafile::sweep(&pool, now).await.unwrap(), 1);
    let removed: Option<String> = sqlx::query_scalar("SELECT removed_at FROM data_files").fetch_one(&pool).await.unwrap();
    assert_eq!(removed.as_deref(), Some("2026-12-01T00:00:00Z"));
    pool.close().await;
}
