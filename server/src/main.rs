use std::process::ExitCode;

use clap::Parser;

use server::cli::{self, Cli, Command};
use std::sync::Arc;

use server::channels::Channels;
use server::runtime::outbox::Dispatcher;
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, seed, AppState};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    server::ops::logs::init(cli.log_format);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the Tokio runtime starts");
    let code = tokio.block_on(async {
        match run(cli).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("waymark: {err:#}");
                ExitCode::FAILURE
            }
        }
    });
    // A blocking task still under way (an import's file reader, whose job
    // was handed back) does not hold up the exit.
    tokio.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { file, json } => Ok(cli::validate_command(&file, json)),
        Command::Simulate { file, contact, start, window, manual_after, json } => {
            Ok(cli::simulate_command(cli::SimulateArgs { file, contact, start, window, manual_after, json }))
        }
        Command::Import { file, name } => cli::import_command(&cli.database_url, &file, name).await,
        Command::Export { flow_id, output } => cli::export_command(&cli.database_url, flow_id, output).await,
        Command::ImportContacts { file, map, dedupe, match_on, list } => {
            cli::import_contacts_command(&cli.database_url, &file, &map, &dedupe, &match_on, list).await
        }
        Command::Demo { reset, contacts, days } => {
            let store = Store::new(store::connect(&cli.database_url).await?);
            let options = server::demo::Options { contacts, days, ..Default::default() };
            let summary = if reset {
                server::demo::reset(&store, &options, jiff::Timestamp::now()).await?
            } else {
                server::demo::run(&store, &options, jiff::Timestamp::now()).await?
            };
            println!(
                "Live demo: flow {} with {} sample contacts, {} participants, {} messages recorded (none sent), {} events.",
                summary.flow_id, summary.contacts, summary.participants, summary.sends, summary.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            store::connect(&cli.database_url).await?;
            println!("database at {} is up to date", cli.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => cli::user_command(&cli.database_url, command).await,
        Command::Token(command) => cli::token_command(&cli.database_url, command).await,
        Command::Secrets(command) => cli::secrets_command(&cli.database_url, command).await,
        Command::Worker { lease_secs, batch, concurrency, idle_ms, public_url, metrics } => {
            let pool = store::connect(&cli.database_url).await?;
            server::secrets::startup(&pool).await?;
            let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), server::runtime::worker_name("worker"))
                .with_lease(jiff::SignedDuration::from_secs(lease_secs))
                .with_batch(batch)
                .with_concurrency(concurrency.unwrap_or_else(|| default_concurrency(&pool)))
                .with_files_dir(files_dir(&cli.database_url));
            let mut channels = Channels::new(pool);
            match public_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
                Some(url) => channels = channels.with_public_url(cli::public_url(Some(url), "127.0.0.1:3000".parse()?)?),
                None => tracing::warn!("no --public-url: emails this worker sends are not tracked unless the tracking settings name a base_url"),
            }
            let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(channels));
            tracing::info!(worker = runtime.worker(), "Waymark worker running");
            let stop = CancellationToken::new();
            if let Some(listener) = metrics.listener() {
                server::ops::serve_metrics(listener, runtime.clone(), stop.clone()).await?;
            }
            let workers = server::runtime::spawn_workers_until(runtime.clone(), dispatcher, std::time::Duration::from_millis(idle_ms), stop.clone());
            shutdown().await;
            // Graceful: no new claims; what is claimed is finished or handed back within the lease.
            let since = tokio::time::Instant::now();
            tracing::info!(worker = runtime.worker(), "stopping: taking no new work, finishing or handing back what is claimed");
            stop.cancel();
            stopped(&runtime, since, runtime.wind_down(workers, since).await).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { addr, no_demo, no_demo_data, lease_secs, concurrency, secure_cookies, public_url, metrics } => {
            let public_url = cli::public_url(public_url.as_deref(), addr)?;
            let store = Store::new(store::connect(&cli.database_url).await?);
            server::secrets::startup(store.pool()).await?;
            if !no_demo && seed::seed_demo(&store).await? {
                tracing::info!("seeded the demo flow");
            }
            if !no_demo && !no_demo_data {
                // Before the workers start: the demo's participants run on its own clock.
                if let Some(summary) = server::demo::seed_once(&store, &server::demo::Options::default()).await? {
                    tracing::info!(?summary, "seeded the live demo (sample contacts, 30 days run by the engine; `waymark demo --reset` redoes it)");
                }
            }
            let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), server::runtime::worker_name("serve"))
                .with_lease(jiff::SignedDuration::from_secs(lease_secs))
                .with_files_dir(files_dir(&cli.database_url))
                .with_public_url(public_url.clone())
                .with_concurrency(concurrency.unwrap_or_else(|| default_concurrency(store.pool())));
            let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Channels::new(store.pool().clone()).with_public_url(public_url)));
            let stop = CancellationToken::new();
            if let Some(listener) = metrics.listener() {
                server::ops::serve_metrics(listener, runtime.clone(), stop.clone()).await?;
            }
            let workers = server::runtime::spawn_workers_until(runtime.clone(), dispatcher, std::time::Duration::from_millis(250), stop.clone());
            let mut state = AppState::new(leptos_options(addr), store, runtime.clone());
            state.configure().auth.secure_cookies = secure_cookies;
            if !server::auth::accounts::has_admin(state.store.pool()).await? {
                tracing::warn!("no admin yet: open http://{addr}/setup to create the first one (or run `waymark user add --admin`)");
            }
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!("Waymark listening on http://{addr}");
            let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
            let mut server = tokio::spawn(async move { serving.await });
            tokio::select! {
                _ = shutdown() => {}
                ended = &mut server => {
                    stop.cancel();
                    workers.abort();
                    ended??;
                    return Ok(ExitCode::FAILURE);
                }
            }
            // Graceful: the listener closes, requests under way end (an
            // upload they carry starts its import), no new claims are made,
            // and what is claimed is finished or handed back within the lease.
            let since = tokio::time::Instant::now();
            tracing::info!(worker = runtime.worker(), "stopping: taking no new work, finishing or handing back what is claimed");
            stop.cancel();
            if tokio::time::timeout_at(since + runtime.grace(), &mut server).await.is_err() {
                tracing::warn!("requests still under way at the end of the grace period were cut short");
                server.abort();
            }
            stopped(&runtime, since, runtime.wind_down(workers, since).await).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Data files live beside the database file (`data/files` for `data/waymark.db`).
fn files_dir(database_url: &str) -> std::path::PathBuf {
    let path = database_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    std::path::Path::new(path).parent().map(|p| p.join("files")).unwrap_or_else(|| std::path::PathBuf::from("files"))
}

/// Logs how a graceful stop that began at `since` ended, and closes the
/// database connections, within the lease (a task still holding one does
/// not hold up the exit).
async fn stopped(runtime: &Runtime, since: tokio::time::Instant, handed: server::error::Result<server::runtime::HandedBack>) {
    if let Err(err) = handed {
        tracing::warn!(error = %err, "claims not handed back run out with their lease");
    }
    let lease = std::time::Duration::try_from(runtime.lease()).unwrap_or_default();
    let _ = tokio::time::timeout_at(since + lease * 19 / 20, runtime.pool().close()).await;
}

/// SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

/// Scheduler loops per process unless told: two on PostgreSQL, one on SQLite.
fn default_concurrency(pool: &server::db::Pool) -> usize {
    match server::db::Backend::of(pool) {
        server::db::Backend::Postgres => 2,
        server::db::Backend::Sqlite => 1,
    }
}
