//! The `waymark` command line: serve, migrate, and validate / import /
//! export flow documents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use app::core::contact::Contact;
use app::core::simulate::{self, parse_span, Simulation};
use app::core::{validate_value, Context, FlowDocument, Findings};

use crate::store::{self, Store};

#[derive(Parser, Debug)]
#[command(name = "waymark", version, about = "Waymark: visual flows for marketing and sales engagement")]
pub struct Cli {
    /// Database to use. SQLite files are created, with their folder, if missing.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/waymark.db", global = true)]
    pub database_url: String,

    /// How log lines are written to standard error: `text`, or `json` (one
    /// object per line, with the request's or the job's id) for log shippers.
    #[arg(long, env = "WAYMARK_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: crate::ops::logs::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the web app and the REST API (migrates first, seeds the demo flow once).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Do not seed the demo flow into a new database.
        #[arg(long)]
        no_demo: bool,
        /// Seed the demo flow, but not the live demo (its sample contacts
        /// and 30 days run by the engine); the browser tests use this.
        #[arg(long)]
        no_demo_data: bool,
        /// How long a worker's claim on due participants lasts; a crashed
        /// worker's participants are picked up again after it. On SIGTERM
        /// (or Ctrl-C) the process stops within it: no new work, requests
        /// and claimed work finished, or handed back at once.
        #[arg(long, env = "WAYMARK_LEASE_SECS", default_value_t = 30)]
        lease_secs: i64,
        /// Scheduler loops in this process, each claiming batches of its
        /// own: default 2 on PostgreSQL (one waits on the database while
        /// the other works), 1 on SQLite (one writer at a time anyway).
        #[arg(long, env = "WAYMARK_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Mark session cookies Secure (when served behind HTTPS).
        #[arg(long, env = "WAYMARK_SECURE_COOKIES")]
        secure_cookies: bool,
        /// The address people reach Waymark at (`https://waymark.example.com`),
        /// for links sent by email; default `http://ADDR`.
        #[arg(long, env = "WAYMARK_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// The live demo: a published flow and sample contacts (example.com,
    /// field `sample` = `demo`) whose last days were run by the engine on a
    /// virtual clock, nothing sent. Stop the server while it runs.
    Demo {
        /// Remove the demo flow and the sample contacts first, then run it again.
        #[arg(long)]
        reset: bool,
        /// How many sample contacts.
        #[arg(long, default_value_t = 2_500)]
        contacts: usize,
        /// How many days back it starts.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Run the scheduler and the outbox without serving HTTP. Any number of
    /// workers (and servers) may share one PostgreSQL database: each claims
    /// due participants with a lease, and a dead worker's are taken over.
    Worker {
        /// How long a claim lasts (see `serve`).
        #[arg(long, env = "WAYMARK_LEASE_SECS", default_value_t = 30)]
        lease_secs: i64,
        /// Participants claimed per pass.
        #[arg(long, env = "WAYMARK_BATCH", default_value_t = 200)]
        batch: usize,
        /// Scheduler loops in this process, each claiming batches of its
        /// own: default 2 on PostgreSQL (one waits on the database while
        /// the other works), 1 on SQLite (one writer at a time anyway).
        #[arg(long, env = "WAYMARK_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Pause between passes when nothing is due, in milliseconds.
        #[arg(long, default_value_t = 250)]
        idle_ms: u64,
        /// The address people reach Waymark's server at (as for `serve`):
        /// the tracked links, open pixels and unsubscribe links this worker
        /// puts into emails start with it. Without it (and without a
        /// tracking `base_url` setting) its emails go out untracked, with a
        /// mailto List-Unsubscribe only.
        #[arg(long, env = "WAYMARK_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Manage users (sign-in accounts).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens for the REST API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the key integration secrets (SMTP password, SMS token…) are
    /// encrypted with: WAYMARK_SECRET_KEY, else the key file
    /// (WAYMARK_KEY_FILE, default waymark.key beside a SQLite database).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Apply database migrations and exit.
    Migrate,
    /// Validate a flow document. Exits 0 without errors, 1 with errors, 2 when
    /// the file is not a JSON object.
    Validate {
        file: PathBuf,
        /// Print the result as JSON: {"errors": [...], "warnings": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Import a flow document as a new flow.
    Import {
        file: PathBuf,
        /// Name for the new flow (default: the document's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Import contacts from a CSV file (streamed; any size). Prints the
    /// counts and the refused rows; exits 0 when every row was imported, 1
    /// when some were refused, 2 when the file or options cannot work.
    ImportContacts {
        file: PathBuf,
        /// A column going to a field: `--map "E-mail=email"`; `--map "Notes="` leaves a column out.
        #[arg(long = "map", value_name = "COLUMN=FIELD")]
        map: Vec<String>,
        /// Existing contacts (same email, or mobile): `update` them or `skip` them.
        #[arg(long, default_value = "update")]
        dedupe: String,
        /// Match rows by `email` first or by `mobile` first.
        #[arg(long, default_value = "email")]
        match_on: String,
        /// A list every imported contact joins.
        #[arg(long)]
        list: Option<String>,
    },
    /// Run one contact through a flow file on a virtual clock, effects
    /// captured instead of sent.
    Simulate {
        file: PathBuf,
        #[command(flatten)]
        contact: SimulateContact,
        /// When the contact enters (RFC 3339).
        #[arg(long)]
        start: String,
        /// How long to simulate, like 30d, 12h or 1d12h.
        #[arg(long = "for", value_name = "SPAN")]
        window: String,
        /// A simulated person completes manual steps this long after they are due
        /// (default: never).
        #[arg(long)]
        manual_after: Option<String>,
        /// Print the result as JSON: {"status", "actions", "effects", "events"?}.
        #[arg(long)]
        json: bool,
    },
    /// Print a flow's draft as a waymark.flow/v1 document.
    Export {
        flow_id: i64,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Where Prometheus scrapes this process (`serve` and `worker`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve `/metrics` (Prometheus text format), with `/healthz` and
    /// `/readyz`, on this separate address, e.g. `127.0.0.1:9464`; keep it
    /// off the public network. Without it no metrics are served.
    #[arg(long, env = "WAYMARK_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Also require `Authorization: Bearer TOKEN` on `/metrics` (for a
    /// metrics address others can reach).
    #[arg(long, env = "WAYMARK_METRICS_TOKEN", requires = "metrics_addr", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl MetricsArgs {
    pub fn listener(&self) -> Option<crate::ops::MetricsListener> {
        self.metrics_addr.map(|addr| crate::ops::MetricsListener { addr, token: self.metrics_token.clone() })
    }
}

/// Reads a file as a JSON object, or says why not (exit code 2).
fn read_object(file: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|err| format!("{} is not JSON: {err}", file.display()))?;
    if !value.is_object() {
        return Err(format!("{} is JSON but not an object; a flow document is a JSON object", file.display()));
    }
    Ok(value)
}

/// The public base URL emailed links start with: `--public-url` as given
/// (http or https, no query), else `http://ADDR`. Trailing slashes go.
pub fn public_url(given: Option<&str>, addr: SocketAddr) -> anyhow::Result<String> {
    let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(format!("http://{addr}"));
    };
    let url = url::Url::parse(given).map_err(|err| anyhow::anyhow!("--public-url “{given}” is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("--public-url “{given}” must be an http or https address without a query, like https://waymark.example.com");
    }
    Ok(given.trim_end_matches('/').to_owned())
}

pub fn validate_command(file: &PathBuf, json: bool) -> ExitCode {
    let value = match read_object(file) {
        Ok(value) => value,
        Err(message) => {
            eprintln!("waymark: {message}");
            return ExitCode::from(2);
        }
    };
    let findings = validate_value(&value, &Context::default());
    if json {
        println!("{}", serde_json::to_string_pretty(&findings).expect("findings serialize"));
    } else {
        print_findings(&findings);
    }
    if findings.blocks_publish() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn print_findings(findings: &Findings) {
    for (level, list) in [("error", &findings.errors), ("warning", &findings.warnings)] {
        for finding in list {
            let step = finding.step.as_deref().unwrap_or("-");
            println!("{level:<7} {:<20} {step:<16} {}", finding.code.as_str(), finding.message);
        }
    }
    println!("{} error(s), {} warning(s)", findings.errors.len(), findings.warnings.len());
}

/// The simulated contact, and what it does on the way.
#[derive(clap::Args, Debug)]
pub struct SimulateContact {
    /// The contact: {"email", "mobile", "timezone", "fields", "lists", ...}.
    #[arg(long)]
    pub contact: PathBuf,
    /// Contact events delivered on the virtual clock in time order: a JSON
    /// array of {"at": RFC 3339, "event": KIND, ...} (FLOW_FORMAT "Engagement").
    #[arg(long, value_name = "EVENTS.json")]
    pub events: Option<PathBuf>,
    /// The installation's contact-pressure policy: {"caps": [...],
    /// "quiet_hours": {...}} (FLOW_FORMAT "Contact pressure"); the contact
    /// file's "recent" lists sends made by other flows.
    #[arg(long, value_name = "POLICY.json")]
    pub policy: Option<PathBuf>,
}

pub struct SimulateArgs {
    pub file: PathBuf,
    pub contact: SimulateContact,
    pub start: String,
    pub window: String,
    pub manual_after: Option<String>,
    pub json: bool,
}

/// Exit 0 when simulated, 2 when an input cannot be read.
pub fn simulate_command(args: SimulateArgs) -> ExitCode {
    match simulate(&args) {
        Ok(sim) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&sim).expect("simulations serialize"));
            } else {
                for action in &sim.actions {
                    let done = action.done_at.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
                    let outcome = serde_json::to_value(action.outcome).expect("outcomes serialize");
                    let why = action.reason.as_deref().or(action.why.as_deref()).unwrap_or("");
                    println!("{:<20} {:<18} due {} done {done:<20} {:<9} {why}", action.step, action.kind, action.due_at, outcome.as_str().unwrap_or(""));
                }
                for effect in &sim.effects {
                    println!("effect {:<13} {:<20} at {}", effect.effect.kind(), effect.step, effect.at);
                }
                for event in &sim.events {
                    let effect = serde_json::to_value(event.effect).expect("effects serialize");
                    let step = event.step.as_deref().unwrap_or("-");
                    println!("event  {:<13} {step:<20} at {}: {}", event.event, event.at, effect.as_str().unwrap_or(""));
                }
                println!("status: {}", sim.status);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("waymark: {message}");
            ExitCode::from(2)
        }
    }
}

fn simulate(args: &SimulateArgs) -> Result<Simulation, String> {
    let flow = FlowDocument::from_value(&read_object(&args.file)?)
        .map_err(|err| format!("{} is not a flow document: {err}", args.file.display()))?;
    let contact_file = &args.contact.contact;
    let contact: Contact = serde_json::from_value(read_object(contact_file)?)
        .map_err(|err| format!("{} is not a contact: {err}", contact_file.display()))?;
    let events: Vec<app::core::engagement::Received> = match &args.contact.events {
        None => Vec::new(),
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
            serde_json::from_str(&text).map_err(|err| {
                format!("{} is not a list of events like [{{\"at\": \"2026-11-23T10:00:00Z\", \"event\": \"email_opened\", \"step\": \"e1\"}}]: {err}", file.display())
            })?
        }
    };
    let start: jiff::Timestamp =
        args.start.parse().map_err(|err| format!("--start “{}” is not an RFC 3339 time: {err}", args.start))?;
    let window = parse_span(&args.window).map_err(|err| format!("--for: {err}"))?;
    let manual_after = args.manual_after.as_deref().map(parse_span).transpose().map_err(|err| format!("--manual-after: {err}"))?;
    let options = simulate::Options { start, window, manual_after, seed: seed_for(&contact) };
    let mut installation = app::core::engine::Installation::default();
    if let Some(file) = &args.contact.policy {
        let policy: app::core::pressure::Policy = serde_json::from_value(read_object(file)?)
            .map_err(|err| format!("{} is not a contact-pressure policy like {{\"caps\": [{{\"channel\": \"email\", \"max\": 2, \"per\": {{\"amount\": 7, \"unit\": \"days\"}}}}]}}: {err}", file.display()))?;
        let problems = policy.problems();
        if !problems.is_empty() {
            return Err(format!("{}: {}", file.display(), problems.join("; ")));
        }
        installation.pressure = policy;
    }
    Ok(simulate::simulate_events(&flow, &installation, &contact, &options, &events))
}

/// The split draws' seed, from the contact itself: the same contact takes
/// the same branches every run.
fn seed_for(contact: &Contact) -> u64 {
    let text = serde_json::to_string(contact).expect("contacts serialize");
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user. The password comes from WAYMARK_PASSWORD (so it stays out
    /// of the process list), or is asked for on the terminal's standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// admin, marketer or agent.
        #[arg(long, default_value = "marketer", value_parser = ["admin", "marketer", "agent"])]
        role: String,
        /// Shorthand for --role admin.
        #[arg(long)]
        admin: bool,
    },
    /// List users and their roles.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token and print its secret (shown this once).
    Add {
        #[arg(long)]
        name: String,
        /// read or write.
        #[arg(long, default_value = "read", value_parser = ["read", "write"])]
        scope: String,
    },
    /// Revoke an API token by id.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Encrypt every stored secret with a new key, then drop the old one(s).
    /// With a key file, the new key is written ahead of the old one first,
    /// so a failure leaves every secret readable. With WAYMARK_SECRET_KEY,
    /// the new key is printed first: set it for every server and worker and
    /// restart them.
    Rotate,
}

pub async fn secrets_command(database_url: &str, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    use crate::secrets::{self, KeySource};
    let pool = store::connect(database_url).await?;
    match command {
        SecretsCommand::Rotate => {
            let rotation = secrets::rotate(&pool, |key| {
                println!("new key: {key}");
                println!("set {} to it for every server and worker, and restart them, once this command succeeds", secrets::KEY_ENV);
            })
            .await?;
            let old = rotation.old.join(", ");
            crate::audit::record(&pool, "cli", "secrets.rotated", "integrations", &format!("key {old} -> {}", rotation.new)).await?;
            let place = match &rotation.source {
                KeySource::File(path) => format!("; {} now holds only the new key", path.display()),
                _ => String::new(),
            };
            println!("re-encrypted {} secret(s) with key {} (dropped key {old}){place}", rotation.secrets, rotation.new);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn user_command(database_url: &str, command: UserCommand) -> anyhow::Result<ExitCode> {
    use crate::auth::accounts;
    let pool = store::connect(database_url).await?;
    match command {
        UserCommand::Add { email, name, role, admin } => {
            let role = if admin { app::auth::Role::Admin } else { app::auth::Role::parse(&role).unwrap_or(app::auth::Role::Marketer) };
            let password = match std::env::var("WAYMARK_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    eprint!("Password for {email}: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            match accounts::add_user(&pool, &email, &name, role, &password).await {
                Ok(user) => {
                    crate::audit::record(&pool, "cli", "user.created", &user.email, &format!("role {}", user.role.as_str())).await?;
                    println!("added {} ({}) as {}", user.email, user.name, user.role.as_str());
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("waymark: {}", err.public_message());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        UserCommand::List => {
            for user in accounts::users(&pool).await? {
                println!("{}\t{}\t{}{}", user.email, user.role.as_str(), user.name, if user.disabled { "\t(disabled)" } else { "" });
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn token_command(database_url: &str, command: TokenCommand) -> anyhow::Result<ExitCode> {
    use crate::auth::accounts;
    let pool = store::connect(database_url).await?;
    match command {
        TokenCommand::Add { name, scope } => match accounts::create_token(&pool, &name, &scope, "cli").await {
            Ok((token, secret)) => {
                crate::audit::record(&pool, "cli", "token.created", &token.name, &format!("scope {}", token.scope)).await?;
                println!("{secret}");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("waymark: {}", err.public_message());
                Ok(ExitCode::FAILURE)
            }
        },
        TokenCommand::Revoke { id } => match accounts::revoke_token(&pool, id).await {
            Ok(token) => {
                crate::audit::record(&pool, "cli", "token.revoked", &token.name, "").await?;
                println!("revoked {}", token.name);
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("waymark: {}", err.public_message());
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

pub async fn import_command(database_url: &str, file: &PathBuf, name: Option<String>) -> anyhow::Result<ExitCode> {
    let value = match read_object(file) {
        Ok(value) => value,
        Err(message) => {
            eprintln!("waymark: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let doc = match FlowDocument::from_value(&value) {
        Ok(doc) => doc,
        Err(err) => {
            eprintln!("waymark: {} is not a flow document: {err}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let store = Store::new(store::connect(database_url).await?);
    let name = name.unwrap_or_else(|| doc.name.clone());
    match store.create(&name, Some(doc)).await {
        Ok(flow) => {
            println!(
                "imported “{}” as flow {} ({} error(s), {} warning(s))",
                flow.name, flow.id, flow.errors, flow.warnings
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("waymark: {}", err.public_message());
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn export_command(database_url: &str, flow_id: i64, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = Store::new(store::connect(database_url).await?);
    let draft = match store.draft(flow_id).await {
        Ok(draft) => draft,
        Err(err) => {
            eprintln!("waymark: {}", err.public_message());
            return Ok(ExitCode::from(1));
        }
    };
    let text = draft.document.to_canonical_json();
    match output {
        Some(path) => std::fs::write(&path, text)?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `waymark import-contacts`: the same import the REST API runs, on a local file.
pub async fn import_contacts_command(
    database_url: &str,
    file: &std::path::Path,
    map: &[String],
    dedupe: &str,
    match_on: &str,
    list: Option<String>,
) -> anyhow::Result<ExitCode> {
    use crate::runtime::import::{self, ImportOptions};
    let mut mapping = std::collections::BTreeMap::new();
    for pair in map {
        let Some((column, field)) = pair.split_once('=') else {
            eprintln!("waymark: --map takes COLUMN=FIELD, not “{pair}”");
            return Ok(ExitCode::from(2));
        };
        mapping.insert(column.to_owned(), field.to_owned());
    }
    let options: ImportOptions = match serde_json::from_value(serde_json::json!({"mapping": mapping, "dedupe": dedupe, "match_on": match_on, "list": list})) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("waymark: {err} (dedupe: update or skip; match-on: email or mobile)");
            return Ok(ExitCode::from(2));
        }
    };
    let pool = store::connect(database_url).await?;
    let runtime = crate::runtime::Runtime::new(pool.clone(), std::sync::Arc::new(crate::runtime::SystemClock), "cli");
    if let Err(err) = import::check(file, &options).await {
        eprintln!("waymark: {}", err.public_message());
        return Ok(ExitCode::from(2));
    }
    let started = std::time::Instant::now();
    let job = import::create_job(&runtime, file, file.file_name().and_then(|n| n.to_str()), &options, "cli").await?;
    let outcome = import::run(&runtime, job, file.to_owned(), options).await;
    let mut conn = pool.acquire().await?;
    let report = import::job(&mut conn, job, 50).await?;
    println!(
        "import {job}: {} row(s) in {:.1} s: {} created, {} updated, {} skipped, {} refused",
        report.rows_done,
        started.elapsed().as_secs_f64(),
        report.created,
        report.updated,
        report.skipped,
        report.failed
    );
    for (line, reason) in &report.errors {
        println!("  line {line}: {reason}");
    }
    if report.failed > report.errors.len() as i64 {
        println!("  … and {} more (GET /api/v1/contacts/imports/{job}/errors.csv)", report.failed - report.errors.len() as i64);
    }
    if let Err(err) = outcome {
        eprintln!("waymark: the import stopped: {}", err.public_message());
        return Ok(ExitCode::FAILURE);
    }
    Ok(if report.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod public_url_tests {
    use super::public_url;

    #[test]
    fn the_public_url_defaults_to_the_listening_address_and_refuses_what_a_link_cannot_start_with() {
        let addr = "127.0.0.1:3000".parse().unwrap();
        assert_eq!(public_url(None, addr).unwrap(), "http://127.0.0.1:3000");
        assert_eq!(public_url(Some(" "), addr).unwrap(), "http://127.0.0.1:3000");
        assert_eq!(public_url(Some("https://waymark.example.com/"), addr).unwrap(), "https://waymark.example.com");
        assert_eq!(public_url(Some("https://example.com/waymark"), addr).unwrap(), "https://example.com/waymark");
        for bad in ["waymark.example.com", "ftp://example.com", "https://example.com/?a=1", "https://example.com/#x"] {
            assert!(public_url(Some(bad), addr).is_err(), "{bad}");
        }
    }
}
