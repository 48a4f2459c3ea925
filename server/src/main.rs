use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use server::cli::{self, Cli, Command};
use std::sync::Arc;

use server::channels::Channels;
use server::runtime::outbox::Dispatcher;
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, seed, AppState};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("waymark: {err:#}");
            ExitCode::FAILURE
        }
    }
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
        Command::Migrate => {
            store::connect(&cli.database_url).await?;
            println!("database at {} is up to date", cli.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => cli::user_command(&cli.database_url, command).await,
        Command::Token(command) => cli::token_command(&cli.database_url, command).await,
        Command::Worker { lease_secs, batch, idle_ms } => {
            let pool = store::connect(&cli.database_url).await?;
            let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), server::runtime::worker_name("worker"))
                .with_lease(jiff::SignedDuration::from_secs(lease_secs))
                .with_batch(batch)
                .with_files_dir(files_dir(&cli.database_url));
            let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Channels::new(pool)));
            tracing::info!(worker = runtime.worker(), "Waymark worker running");
            let workers = server::runtime::spawn_workers(runtime, dispatcher, std::time::Duration::from_millis(idle_ms));
            shutdown().await;
            workers.abort();
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { addr, no_demo, lease_secs, secure_cookies, public_url } => {
            let public_url = cli::public_url(public_url.as_deref(), addr)?;
            let store = Store::new(store::connect(&cli.database_url).await?);
            if !no_demo && seed::seed_demo(&store).await? {
                tracing::info!("seeded the demo flow");
            }
            let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), server::runtime::worker_name("serve"))
                .with_lease(jiff::SignedDuration::from_secs(lease_secs))
                .with_files_dir(files_dir(&cli.database_url))
                .with_public_url(public_url);
            let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Channels::new(store.pool().clone())));
            server::runtime::spawn_workers(runtime.clone(), dispatcher, std::time::Duration::from_millis(250));
            let mut state = AppState::new(leptos_options(addr), store, runtime);
            state.auth.secure_cookies = secure_cookies;
            if !server::auth::accounts::has_admin(state.store.pool()).await? {
                tracing::warn!("no admin yet: open http://{addr}/setup to create the first one (or run `waymark user add --admin`)");
            }
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!("Waymark listening on http://{addr}");
            let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
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

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
