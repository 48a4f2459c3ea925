//! Where log lines go and in what form: readable text (the default), or
//! one JSON object per line for log shippers (`--log-format json`), each
//! with its spans: `request` (`request_id`, `method`, `route`) for lines
//! logged while a request is answered, `job` (`job_kind`, `job_id`) for
//! lines of an import or a bulk run. Both go to standard error, filtered
//! by `RUST_LOG` (default `info,sqlx=warn`).

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, the fields, and
    /// `spans` (the request's and the job's ids).
    Json,
}

/// Sets this process's log output (once, before anything logs).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).init(),
    }
}
