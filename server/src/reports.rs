//! A flow's report, read from its rollups (`runtime::rollups`), never from
//! the raw timeline: a few queries over at most a year of daily counters,
//! plus the participants waiting at each step now. The page's server
//! function and the REST endpoints (`GET /api/v1/flows/{id}/report`, and
//! each chart as `.csv`, `.svg` or `.png`) share [`report`], and draw their charts
//! with `app::report_api::charts`, so all of them say the same numbers.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use jiff::civil::Date;
use jiff::ToSpan;
use serde::Deserialize;
use sqlx::Row;

use app::auth::{Access, Viewer};
use app::core::kinds::{read_settings, SplitSettings};
use app::core::{FlowDocument, StepKind};
use app::report_api::{
    charts, message_table, BranchFigures, DayFigures, FlowReport, MessageFigures, Metric, ReportBackend, SplitDecision, SplitFigures, StepFigures,
    VersionFigures, MAX_PERIOD_DAYS,
};
use leptos::prelude::ServerFnError;

use crate::auth::Endpoint;
use crate::db::Conn;
use crate::error::{Error, Json, Query, Result};
use crate::runtime::rollups::{branch_step, day_of};
use crate::runtime::Runtime;
use crate::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/flows/{id}/report", Access::Marketer, get_report),
        Endpoint::new(Method::GET, "/flows/{id}/report/{file}", Access::Marketer, get_report_file),
    ]
}

/// The days a report covers: `from`..=`to`, the last 30 days by default.
pub fn period(today: Date, from: Option<&str>, to: Option<&str>) -> Result<(Date, Date)> {
    let parse = |text: &str, which: &str| {
        text.parse::<Date>().map_err(|_| Error::Invalid { code: "invalid_period", message: format!("The {which} date must be written YYYY-MM-DD; “{text}” is not.") })
    };
    let to = match to {
        Some(text) => parse(text, "end")?,
        None => today,
    };
    let from = match from {
        Some(text) => parse(text, "start")?,
        None => to.checked_sub(29.days()).unwrap_or(to),
    };
    if from > to {
        return Err(Error::Invalid { code: "invalid_period", message: format!("The period starts ({from}) after it ends ({to}).") });
    }
    if days_between(from, to) >= MAX_PERIOD_DAYS {
        return Err(Error::Invalid { code: "invalid_period", message: format!("A report covers at most {MAX_PERIOD_DAYS} days.") });
    }
    Ok((from, to))
}

fn day_number(date: Date) -> i64 {
    day_of(date.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).unwrap_or_default())
}

fn days_between(from: Date, to: Date) -> i64 {
    day_number(to) - day_number(from)
}

/// One counter row read back.
struct Count {
    day: i64,
    version: i64,
    step: String,
    metric: String,
    machine: bool,
    /// Negative where a bulk action took a finished participant back.
    count: i64,
}

/// The newest published version's document (else the draft) and the flow's name.
async fn document(conn: &mut Conn, flow_id: i64) -> Result<(String, FlowDocument)> {
    let row = sqlx::query("SELECT name, draft FROM flows WHERE id = $1").bind(flow_id).fetch_optional(&mut *conn).await?;
    let row = row.ok_or(Error::FlowNotFound(flow_id))?;
    let name: String = row.get("name");
    let published: Option<String> = sqlx::query_scalar("SELECT document FROM flow_versions WHERE flow_id = $1 ORDER BY number DESC LIMIT 1")
        .bind(flow_id)
        .fetch_optional(&mut *conn)
        .await?;
    let text = published.unwrap_or_else(|| row.get("draft"));
    let doc = FlowDocument::from_json(&text).map_err(|err| Error::Internal(anyhow::anyhow!("stored flow {flow_id} unreadable: {err}")))?;
    Ok((name, doc))
}

/// The report of `flow_id` over `from..=to`.
pub async fn report(conn: &mut Conn, flow_id: i64, from: Date, to: Date) -> Result<FlowReport> {
    let (name, doc) = document(conn, flow_id).await?;
    let (first, last) = (day_number(from), day_number(to));
    let counts: Vec<Count> = sqlx::query(
        "SELECT day, version, step, metric, machine, count FROM flow_rollups WHERE flow_id = $1 AND day >= $2 AND day <= $3",
    )
    .bind(flow_id)
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Count {
        day: r.get("day"),
        version: r.get("version"),
        step: r.get("step"),
        metric: r.get("metric"),
        machine: r.get::<i64, _>("machine") != 0,
        count: r.get::<i64, _>("count"),
    })
    .collect();
    // Active at the start: entered before the period less finished before it.
    let before: i64 = sqlx::query_scalar(
        "SELECT CAST(coalesce(sum(CASE WHEN metric = 'entered' THEN count ELSE -count END), 0) AS BIGINT) FROM flow_rollups
         WHERE flow_id = $1 AND day < $2 AND metric IN ('entered', 'completed', 'converted', 'exited', 'failed', 'cancelled')",
    )
    .bind(flow_id)
    .bind(first)
    .fetch_one(&mut *conn)
    .await?;
    let waiting: HashMap<String, u64> = sqlx::query(
        "SELECT step, count(*) FROM participants WHERE flow_id = $1 AND status IN ('ready', 'waiting', 'held') AND step IS NOT NULL GROUP BY step",
    )
    .bind(flow_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u64))
    .collect();
    let decisions: HashMap<String, SplitDecision> = sqlx::query(
        "SELECT step, port, decided_at, figures, overridden_by FROM split_decisions
         WHERE flow_id = $1 AND version = (SELECT max(number) FROM flow_versions WHERE flow_id = $1)",
    )
    .bind(flow_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        (
            r.get::<String, _>("step"),
            SplitDecision { port: r.get("port"), decided_at: r.get("decided_at"), figures: r.get("figures"), overridden_by: r.get("overridden_by") },
        )
    })
    .collect();
    Ok(assemble(flow_id, name, &doc, from, to, &counts, before, &waiting, decisions))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    flow_id: i64,
    name: String,
    doc: &FlowDocument,
    from: Date,
    to: Date,
    counts: &[Count],
    active_before: i64,
    waiting: &HashMap<String, u64>,
    mut decisions: HashMap<String, SplitDecision>,
) -> FlowReport {
    let first = day_number(from);
    let mut days: Vec<DayFigures> = (0..=days_between(from, to))
        .map(|i| DayFigures { date: from.checked_add(i.days()).map(|d| d.to_string()).unwrap_or_default(), ..Default::default() })
        .collect();
    // (step, metric, machine) over the period, all versions.
    let mut by_step: HashMap<(&str, &str, bool), i64> = HashMap::new();
    // Per day and per version: entered, completed, converted, exited, failed, cancelled.
    const FLOW_METRICS: [&str; 6] = ["entered", "completed", "converted", "exited", "failed", "cancelled"];
    let mut per_day = vec![[0i64; 6]; days.len()];
    let mut per_version: BTreeMap<i64, [i64; 6]> = BTreeMap::new();
    for c in counts {
        *by_step.entry((c.step.as_str(), c.metric.as_str(), c.machine)).or_default() += c.count;
        let Some(day) = usize::try_from(c.day - first).ok().and_then(|i| per_day.get_mut(i)) else { continue };
        let Some(m) = FLOW_METRICS.iter().position(|m| *m == c.metric) else { continue };
        day[m] += c.count;
        per_version.entry(c.version).or_default()[m] += c.count;
    }
    // A day's figure is never shown below 0 (a bulk reset taking back more
    // than finished that day); who is active is counted from the signed figures.
    let shown = |n: i64| n.max(0) as u64;
    let mut active = active_before;
    for (day, [entered, completed, converted, exited, failed, cancelled]) in days.iter_mut().zip(per_day) {
        active += entered - (completed + converted + exited + failed + cancelled);
        day.active = active.max(0) as u64;
        (day.entered, day.completed, day.converted, day.exited, day.failed, day.cancelled) =
            (shown(entered), shown(completed), shown(converted), shown(exited), shown(failed), shown(cancelled));
    }
    let versions: BTreeMap<i64, VersionFigures> = per_version
        .into_iter()
        .map(|(version, [entered, completed, converted, exited, failed, cancelled])| {
            let figures = VersionFigures {
                version,
                entered: shown(entered),
                completed: shown(completed),
                converted: shown(converted),
                exited: shown(exited),
                failed: shown(failed),
                cancelled: shown(cancelled),
            };
            (version, figures)
        })
        .collect();
    let get = |step: &str, metric: &str, machine: bool| shown(by_step.get(&(step, metric, machine)).copied().unwrap_or(0));
    // The newest version's steps in its order, then steps only older versions had.
    let mut order: Vec<(String, String, String)> =
        flow_order(doc).into_iter().map(|s| (s.id.clone(), s.display_name().to_string(), s.kind.as_str().to_owned())).collect();
    let mut extra: Vec<&str> = by_step
        .keys()
        .filter(|(step, metric, _)| !step.is_empty() && matches!(*metric, "reached" | "passed" | "step_failed" | "sent"))
        .map(|(step, _, _)| *step)
        .filter(|step| doc.step(step).is_none())
        .collect();
    extra.sort_unstable();
    extra.dedup();
    order.extend(extra.into_iter().map(|s| (s.to_owned(), s.to_owned(), String::new())));
    let steps = order
        .iter()
        .map(|(id, name, kind)| StepFigures {
            step: id.clone(),
            name: name.clone(),
            kind: kind.clone(),
            reached: get(id, "reached", false),
            passed: get(id, "passed", false),
            failed: get(id, "step_failed", false),
            waiting: waiting.get(id).copied().unwrap_or(0),
        })
        .collect();
    let messages = order
        .iter()
        .filter(|(id, _, kind)| matches!(kind.as_str(), "send_email" | "send_sms") || get(id, "sent", false) > 0)
        .map(|(id, name, kind)| MessageFigures {
            step: id.clone(),
            name: name.clone(),
            kind: kind.clone(),
            sent: get(id, "sent", false),
            delivered: get(id, "delivered", false),
            opened: get(id, "opened", false),
            clicked: get(id, "clicked", false),
            replied: get(id, "replied", false),
            bounced: get(id, "bounced", false),
            complained: get(id, "complained", false),
            unsubscribed: get(id, "unsubscribed", false),
            machine_opened: get(id, "opened", true),
            machine_clicked: get(id, "clicked", true),
        })
        .collect();
    let splits = doc
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Split)
        .map(|s| {
            let settings: SplitSettings = read_settings(s).unwrap_or_default();
            let branches = settings
                .branches
                .iter()
                .map(|b| {
                    let key = branch_step(&s.id, &b.port);
                    BranchFigures {
                        port: b.port.clone(),
                        entered: get(&key, "branch_entered", false),
                        converted: get(&key, "branch_converted", false),
                        clicked: get(&key, "branch_clicked", false),
                        replied: get(&key, "branch_replied", false),
                    }
                })
                .collect();
            SplitFigures { step: s.id.clone(), name: s.display_name().to_string(), branches, decision: decisions.remove(&s.id) }
        })
        .collect();
    FlowReport {
        flow_id,
        name,
        from: from.to_string(),
        to: to.to_string(),
        days,
        steps,
        messages,
        splits,
        versions: versions.into_values().collect(),
    }
}

/// The steps in the order participants meet them: breadth first from the
/// start along the wires (ports in drawing order), then any not reached.
fn flow_order(doc: &FlowDocument) -> Vec<&app::core::Step> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut order = Vec::new();
    let mut queue: std::collections::VecDeque<&str> = doc.steps.iter().filter(|s| s.kind == StepKind::Start).map(|s| s.id.as_str()).collect();
    while let Some(id) = queue.pop_front() {
        let Some(step) = doc.step(id) else { continue };
        if !seen.insert(step.id.as_str()) {
            continue;
        }
        order.push(step);
        for port in app::core::kinds::ports(step) {
            for edge in doc.edges.iter().filter(|e| e.from == step.id && e.port == port) {
                queue.push_back(edge.to.as_str());
            }
        }
    }
    order.extend(doc.steps.iter().filter(|s| !seen.contains(s.id.as_str())));
    order
}

impl Runtime {
    /// Today's date, UTC, by the runtime's clock.
    pub fn today(&self) -> Date {
        self.now().to_zoned(jiff::tz::TimeZone::UTC).date()
    }

    pub async fn flow_report(&self, flow_id: i64, from: Option<&str>, to: Option<&str>) -> Result<FlowReport> {
        let (from, to) = period(self.today(), from, to)?;
        let mut conn = self.pool().acquire().await?;
        report(&mut conn, flow_id, from, to).await
    }
}

#[async_trait::async_trait]
impl ReportBackend for Runtime {
    async fn report(&self, flow_id: i64, from: Option<String>, to: Option<String>) -> std::result::Result<FlowReport, ServerFnError> {
        self.flow_report(flow_id, from.as_deref(), to.as_deref()).await.map_err(|e| e.into_server_fn_error())
    }

    async fn choose_branch(&self, actor: &str, flow_id: i64, step: String, port: Option<String>) -> std::result::Result<(), ServerFnError> {
        crate::runtime::winner::choose(self, actor, flow_id, &step, port.as_deref()).await.map_err(|e| e.into_server_fn_error())
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    metric: Option<String>,
    machine: Option<String>,
}

fn flow_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| Error::FlowNotFound(0))
}

async fn get_report(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>, Query(q): Query<ReportQuery>) -> Result<impl IntoResponse> {
    if !viewer.may(Access::Marketer) {
        return Err(Error::Forbidden(viewer.role.as_str()));
    }
    Ok(Json(state.runtime.flow_report(flow_id(&raw)?, q.from.as_deref(), q.to.as_deref()).await?))
}

/// A chart's numbers as CSV, or the chart as SVG or PNG: `{chart}.csv`, `{chart}.svg`, `{chart}.png`.
async fn get_report_file(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((raw, file)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Result<Response> {
    if !viewer.may(Access::Marketer) {
        return Err(Error::Forbidden(viewer.role.as_str()));
    }
    let id = flow_id(&raw)?;
    let not_found = || Error::BadBody {
        status: axum::http::StatusCode::NOT_FOUND,
        code: "chart_not_found",
        message: format!("This report has no chart “{file}”; ask for days, funnel, messages, split-STEP or versions, as .csv, .svg or .png."),
    };
    let (chart, format) = file.rsplit_once('.').ok_or_else(not_found)?;
    let metric = match q.metric.as_deref() {
        None => Metric::default(),
        Some(text) => Metric::parse(text).ok_or_else(|| Error::Invalid { code: "invalid_metric", message: format!("Splits are compared on conversion, click or reply, not “{text}”.") })?,
    };
    let machine = q.machine.as_deref().is_some_and(|m| m == "on" || m == "1" || m == "true");
    let report = state.runtime.flow_report(id, q.from.as_deref(), q.to.as_deref()).await?;
    let all = charts(&report, metric, machine);
    let (_, found) = all.iter().find(|(name, _)| name == chart).ok_or_else(not_found)?;
    // A split's chart is named after its step id: only safe characters go into the header.
    let safe: String = chart.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let filename = format!("flow-{id}-{safe}-{}-{}.{format}", report.from, report.to);
    let (content_type, body) = match format {
        "csv" if chart == "messages" => ("text/csv; charset=utf-8", message_table(&report, machine).to_csv()),
        "csv" => ("text/csv; charset=utf-8", found.table.to_csv()),
        "svg" => ("image/svg+xml", found.to_svg()),
        "png" => {
            let svg = found.to_svg();
            let png = tokio::task::spawn_blocking(move || chart_png(&svg)).await.map_err(|err| Error::Internal(err.into()))??;
            let disposition = format!("attachment; filename=\"{filename}\"");
            return Ok(([(header::CONTENT_TYPE, "image/png".to_owned()), (header::CONTENT_DISPOSITION, disposition)], png).into_response());
        }
        _ => return Err(not_found()),
    };
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""))], body).into_response())
}

/// How many pixels a chart's PNG has per unit of its view box: twice, so
/// that it stays sharp on a high-density screen or in a slide.
pub const PNG_SCALE: f32 = 2.0;

/// A chart's standalone SVG ([`app::core::charts::Chart::to_svg`]) as a
/// PNG, [`PNG_SCALE`] times its size, text in the system's sans-serif font.
/// CPU work: call it from `spawn_blocking`.
pub fn chart_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    static FONTS: std::sync::OnceLock<std::sync::Arc<usvg::fontdb::Database>> = std::sync::OnceLock::new();
    let fonts = FONTS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        // `sans-serif` is Arial by default, seldom installed on a server.
        let families: Vec<String> = db.faces().flat_map(|f| f.families.iter().map(|(name, _)| name.clone())).collect();
        if let Some(family) = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"].iter().find(|f| families.iter().any(|n| n == *f)) {
            db.set_sans_serif_family(*family);
        }
        std::sync::Arc::new(db)
    });
    let failed = |what: &str, err: String| Error::Internal(anyhow::anyhow!("chart PNG: {what}: {err}"));
    let options = usvg::Options { fontdb: fonts.clone(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| failed("SVG", e.to_string()))?;
    let size = tree.size().to_int_size().scale_by(PNG_SCALE).ok_or_else(|| failed("size", "empty".into()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| failed("size", format!("{size:?}")))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| failed("encode", e.to_string()))
}

/// The home dashboard's figures (`app::dashboard_api`).
pub async fn dashboard(runtime: &Runtime, store: &crate::store::Store) -> Result<app::dashboard_api::Dashboard> {
    let now = runtime.now();
    let today = runtime.today();
    let mut conn = runtime.pool().acquire().await?;
    let sends: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metric, CAST(sum(count) AS BIGINT) FROM flow_rollups WHERE day = $1 AND metric IN ('sent_email', 'sent_sms') GROUP BY metric ORDER BY metric",
    )
    .bind(day_of(now))
    .fetch_all(&mut *conn)
    .await?;
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE status IN ('ready', 'waiting', 'held')").fetch_one(&mut *conn).await?;
    let tasks_due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM participant_actions a JOIN participants p ON p.id = a.participant_id
         WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND a.due_at <= $1 AND p.status IN ('ready', 'waiting', 'held')",
    )
    .bind(now.to_string())
    .fetch_one(&mut *conn)
    .await?;
    let failed_participants: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE status = 'failed'").fetch_one(&mut *conn).await?;
    let failed_effects: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'failed'").fetch_one(&mut *conn).await?;
    let mut news = Vec::new();
    // Split tests decided in the last week.
    let week_ago = (now - jiff::SignedDuration::from_hours(24 * 7)).to_string();
    for row in sqlx::query(
        "SELECT d.flow_id, f.name, d.step, d.port, d.overridden_by FROM split_decisions d JOIN flows f ON f.id = d.flow_id
         WHERE d.decided_at >= $1 ORDER BY d.decided_at DESC LIMIT 20",
    )
    .bind(week_ago)
    .fetch_all(&mut *conn)
    .await?
    {
        let (flow_id, step, port): (i64, String, String) = (row.get(0), row.get(2), row.get(3));
        let what = match (port.is_empty(), row.get::<Option<String>, _>(4)) {
            (_, Some(who)) => format!("{who} chose branch “{port}” of “{step}”"),
            (true, None) => format!("the test at “{step}” ended with no significant winner"),
            (false, None) => format!("branch “{port}” won the test at “{step}”"),
        };
        news.push(app::dashboard_api::FlowNews { flow_id, flow_name: row.get(1), what, href: format!("/flows/{flow_id}/report") });
    }
    drop(conn);
    // Findings nobody acknowledged.
    let mut open: BTreeMap<(i64, String), (usize, usize)> = BTreeMap::new();
    for row in store.review().await? {
        if row.ack.is_some() {
            continue;
        }
        let entry = open.entry((row.flow_id, row.flow_name.clone())).or_default();
        match row.level {
            app::core::Level::Error => entry.0 += 1,
            _ => entry.1 += 1,
        }
    }
    for ((flow_id, flow_name), (errors, warnings)) in open {
        let what = match (errors, warnings) {
            (0, w) => format!("{w} warning(s) to look at"),
            (e, 0) => format!("{e} error(s) to fix"),
            (e, w) => format!("{e} error(s) and {w} warning(s)"),
        };
        news.push(app::dashboard_api::FlowNews { flow_id, flow_name, what, href: format!("/flows/{flow_id}") });
    }
    Ok(app::dashboard_api::Dashboard {
        today: today.to_string(),
        sends_today: sends.into_iter().map(|(m, n)| (m.trim_start_matches("sent_").to_owned(), n.max(0) as u64)).collect(),
        active: active.max(0) as u64,
        tasks_due: tasks_due.max(0) as u64,
        failed_participants: failed_participants.max(0) as u64,
        failed_effects: failed_effects.max(0) as u64,
        news,
    })
}

/// The dashboard's store: the runtime and the flows.
pub struct DashboardBackend {
    pub runtime: Runtime,
    pub store: crate::store::Store,
}

#[async_trait::async_trait]
impl app::dashboard_api::DashboardBackend for DashboardBackend {
    async fn dashboard(&self) -> std::result::Result<app::dashboard_api::Dashboard, ServerFnError> {
        dashboard(&self.runtime, &self.store).await.map_err(|e| e.into_server_fn_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_thirty_days_by_default_and_at_most_a_year() {
        let today: Date = "2026-11-30".parse().unwrap();
        let (from, to) = period(today, None, None).unwrap();
        assert_eq!((from.to_string(), to.to_string()), ("2026-11-01".into(), "2026-11-30".into()));
        assert!(period(today, Some("2026-12-01"), None).is_err());
        assert!(period(today, Some("2025-01-01"), Some("2026-11-30")).is_err());
        assert!(period(today, Some("23/11/2026"), None).is_err());
        assert_eq!(day_number("1970-01-02".parse().unwrap()), 1);
    }
}
