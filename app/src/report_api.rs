//! A flow's report (DESIGN §12): the figures the server reads from its
//! rollups over a period, and the charts and tables drawn from them. The
//! figures are plain data ([`FlowReport`]); [`charts`] turns them into
//! [`crate::core::charts::Chart`]s the same way for the page, the SVG
//! download and the CSV export, so that all three say the same numbers.
//! The storage lives in the server, behind [`ReportBackend`].

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::core::charts::{bar_chart, line_chart, Chart, Group, Series, Unit};
use crate::core::stats::{leader, percent, rate, two_proportion, Leader, Proportion, ZTest, ALPHA};

/// The longest period a report covers, in days.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// Counts of one UTC day, all versions together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DayFigures {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub entered: u64,
    /// In the flow at the end of the day (entered so far less finished so far).
    pub active: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
    /// Stopped by a person (a bulk cancel or a contact's deletion).
    #[serde(default)]
    pub cancelled: u64,
}

/// A step of the funnel over the period; `waiting` is now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StepFigures {
    pub step: String,
    pub name: String,
    pub kind: String,
    pub reached: u64,
    pub passed: u64,
    pub failed: u64,
    pub waiting: u64,
}

/// A message step's sends and what came of them (participants: the
/// first of each kind per participant counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MessageFigures {
    pub step: String,
    pub name: String,
    pub kind: String,
    pub sent: u64,
    pub delivered: u64,
    pub opened: u64,
    pub clicked: u64,
    pub replied: u64,
    pub bounced: u64,
    pub complained: u64,
    pub unsubscribed: u64,
    /// Opens by mail-privacy proxies and clicks by link scanners (not people).
    pub machine_opened: u64,
    pub machine_clicked: u64,
}

/// A split's branch: who took it, and of them who converted, clicked or replied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BranchFigures {
    pub port: String,
    pub entered: u64,
    pub converted: u64,
    pub clicked: u64,
    pub replied: u64,
}

/// An automatic winner's decision, or a person's choice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SplitDecision {
    pub port: String,
    pub decided_at: String,
    /// What it was decided on (metric, figures, p-value), as a sentence.
    pub figures: String,
    pub overridden_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SplitFigures {
    pub step: String,
    pub name: String,
    pub branches: Vec<BranchFigures>,
    pub decision: Option<SplitDecision>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionFigures {
    pub version: i64,
    pub entered: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
    #[serde(default)]
    pub cancelled: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FlowReport {
    pub flow_id: i64,
    pub name: String,
    /// The period, inclusive, `YYYY-MM-DD` (UTC days).
    pub from: String,
    pub to: String,
    pub days: Vec<DayFigures>,
    pub steps: Vec<StepFigures>,
    pub messages: Vec<MessageFigures>,
    pub splits: Vec<SplitFigures>,
    pub versions: Vec<VersionFigures>,
}

/// What a split's branches are compared on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    #[default]
    Conversion,
    Click,
    Reply,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Conversion, Metric::Click, Metric::Reply];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Conversion => "conversion",
            Metric::Click => "click",
            Metric::Reply => "reply",
        }
    }

    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// A branch's successes on this metric.
    pub fn of(self, branch: &BranchFigures) -> u64 {
        match self {
            Metric::Conversion => branch.converted,
            Metric::Click => branch.clicked,
            Metric::Reply => branch.replied,
        }
    }
}

/// A split's branches compared on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub metric: Metric,
    pub rates: Vec<Option<f64>>,
    pub leader: Option<Leader>,
    /// The first branch against the second (two branches: the test).
    pub test: Option<ZTest>,
    /// "B leads A by 4.1 points (p = 0.007): significant." or "not yet significant".
    pub verdict: String,
}

/// Compares `split`'s branches on `metric` (a two-proportion z-test;
/// with more than two, the leader against each other branch).
pub fn compare(split: &SplitFigures, metric: Metric) -> Comparison {
    let props: Vec<Proportion> = split.branches.iter().map(|b| Proportion { successes: metric.of(b), trials: b.entered }).collect();
    let rates = props.iter().map(|p| rate(p.successes, p.trials)).collect();
    let lead = leader(&props);
    let test = match props.as_slice() {
        [a, b] => two_proportion(*a, *b),
        _ => None,
    };
    let verdict = match &lead {
        None => "No branches.".to_owned(),
        Some(_) if props.len() < 2 => "Only one branch: nothing to compare.".to_owned(),
        Some(l) => {
            let best = &split.branches[l.index];
            let runner = l.against_runner_up;
            match runner {
                None => "Not enough participants yet to compare.".to_owned(),
                Some(t) if l.significant => format!(
                    "“{}” leads by {:.1} points ({}): significant at {:.0}%.",
                    best.port,
                    t.difference * 100.0,
                    p_text(t.p_value),
                    (1.0 - ALPHA) * 100.0
                ),
                Some(t) if !t.enough_data => format!(
                    "“{}” leads by {:.1} points, but there are too few participants or outcomes yet: not yet significant.",
                    best.port,
                    t.difference * 100.0
                ),
                Some(t) => format!("“{}” leads by {:.1} points ({}): not yet significant.", best.port, t.difference * 100.0, p_text(t.p_value)),
            }
        }
    };
    Comparison { metric, rates, leader: lead, test, verdict }
}

/// A p-value as people read it: `p = 0.007`, or `p < 0.001`.
fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// The charts of a report, by name (`days`, `funnel`, `messages`,
/// `split-<step>`, `versions`): `metric` for the splits, `machine` to count
/// machine opens and clicks in with people's.
pub fn charts(report: &FlowReport, metric: Metric, machine: bool) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let dates: Vec<String> = report.days.iter().map(|d| d.date.clone()).collect();
    let series = |name: &str, f: fn(&DayFigures) -> u64| Series { name: name.into(), values: report.days.iter().map(|d| f(d) as f64).collect() };
    out.push((
        "days".to_owned(),
        line_chart(
            "Participants per day",
            &format!("Participants entering, active and leaving “{}” each day from {} to {} (UTC).", report.name, report.from, report.to),
            &dates,
            &[
                series("entered", |d| d.entered),
                series("active", |d| d.active),
                series("completed", |d| d.completed),
                series("converted", |d| d.converted),
                series("exited", |d| d.exited),
                series("failed", |d| d.failed),
                series("cancelled", |d| d.cancelled),
            ],
        ),
    ));
    let funnel: Vec<Group> = report
        .steps
        .iter()
        .map(|s| Group { label: s.name.clone(), values: vec![s.reached as f64, s.passed as f64, s.waiting as f64] })
        .collect();
    out.push((
        "funnel".to_owned(),
        bar_chart(
            "Steps",
            "How many times each step was reached and passed in the period (visits: a participant who comes back to a step counts each time), and how many wait at it now.",
            &["reached".into(), "passed".into(), "waiting now".into()],
            &funnel,
            Unit::Count,
        ),
    ));
    if !report.messages.is_empty() {
        let groups: Vec<Group> = report
            .messages
            .iter()
            .map(|m| {
                let (opened, clicked) = if machine { (m.opened + m.machine_opened, m.clicked + m.machine_clicked) } else { (m.opened, m.clicked) };
                let r = |n: u64, of: u64| rate(n, of).unwrap_or(0.0);
                Group {
                    label: m.name.clone(),
                    values: vec![r(m.delivered, m.sent), r(opened, m.delivered), r(clicked, m.delivered), r(m.replied, m.delivered), r(m.unsubscribed, m.delivered)],
                }
            })
            .collect();
        let who = if machine { "people and machines" } else { "people only" };
        out.push((
            "messages".to_owned(),
            bar_chart(
                "Messages",
                &format!("Per message step: delivered of sent, then opened, clicked, replied and unsubscribed of delivered ({who})."),
                &["delivered".into(), "opened".into(), "clicked".into(), "replied".into(), "unsubscribed".into()],
                &groups,
                Unit::Percent,
            ),
        ));
    }
    for split in &report.splits {
        let comparison = compare(split, metric);
        let groups: Vec<Group> = split
            .branches
            .iter()
            .zip(&comparison.rates)
            .map(|(b, r)| Group { label: format!("{} ({} of {})", b.port, metric.of(b), b.entered), values: vec![r.unwrap_or(0.0)] })
            .collect();
        out.push((
            format!("split-{}", split.step),
            bar_chart(
                &format!("{}: {} rate per branch", split.name, metric.as_str()),
                &format!("The branches of “{}” compared on {}. {}", split.name, metric.as_str(), comparison.verdict),
                &[format!("{} rate", metric.as_str())],
                &groups,
                Unit::Percent,
            ),
        ));
    }
    let versions: Vec<Group> = report
        .versions
        .iter()
        .map(|v| Group {
            label: format!("version {}", v.version),
            values: vec![v.entered as f64, v.completed as f64, v.converted as f64, v.exited as f64, v.failed as f64, v.cancelled as f64],
        })
        .collect();
    out.push((
        "versions".to_owned(),
        bar_chart(
            "Versions",
            "Participants entering and leaving per published version in the period.",
            &["entered".into(), "completed".into(), "converted".into(), "exited".into(), "failed".into(), "cancelled".into()],
            &versions,
            Unit::Count,
        ),
    ));
    out
}

/// Why the funnel can show a step reached more often than participants
/// entered: `reached` and `passed` count visits (the engine records each
/// stay at a step), so a loop, a retry or a participant who entered before
/// the period counts again. `None` when no step shows more than entered.
pub fn funnel_note(report: &FlowReport) -> Option<String> {
    let entered: u64 = report.days.iter().map(|d| d.entered).sum();
    let step = report.steps.iter().filter(|s| s.reached > entered).max_by_key(|s| s.reached)?;
    Some(format!(
        "“{}” was reached {} times while {} participants entered in the period: reached and passed count visits, not people. \
         A participant who comes back to a step (a loop, a retry, a wait that looks again) counts at each visit, \
         and so does one who entered before the period.",
        step.name, step.reached, entered
    ))
}

/// The messages table as people read it (counts with rates), also its CSV.
pub fn message_table(report: &FlowReport, machine: bool) -> crate::core::charts::Table {
    let mut head: Vec<String> = ["step", "sent", "delivered", "opened", "open rate", "clicked", "click rate", "replied", "bounced", "complained", "unsubscribed"]
        .map(String::from)
        .to_vec();
    if machine {
        head.extend(["machine opens".to_owned(), "machine clicks".to_owned()]);
    }
    let rows = report
        .messages
        .iter()
        .map(|m| {
            let (opened, clicked) = if machine { (m.opened + m.machine_opened, m.clicked + m.machine_clicked) } else { (m.opened, m.clicked) };
            let mut row = vec![
                m.name.clone(),
                m.sent.to_string(),
                m.delivered.to_string(),
                opened.to_string(),
                percent(opened, m.delivered),
                clicked.to_string(),
                percent(clicked, m.delivered),
                m.replied.to_string(),
                m.bounced.to_string(),
                m.complained.to_string(),
                m.unsubscribed.to_string(),
            ];
            if machine {
                row.extend([m.machine_opened.to_string(), m.machine_clicked.to_string()]);
            }
            row
        })
        .collect();
    crate::core::charts::Table { head, rows }
}

#[cfg(feature = "ssr")]
pub use backend::{ReportBackend, ReportHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    /// Implemented by the server's runtime.
    #[async_trait::async_trait]
    pub trait ReportBackend: Send + Sync + 'static {
        /// `from`/`to`: `YYYY-MM-DD`, inclusive; `None`: the last 30 days.
        async fn report(&self, flow_id: i64, from: Option<String>, to: Option<String>) -> Result<FlowReport, ServerFnError>;
        /// Chooses a split's branch by hand (`None`: back to the split's own rule).
        async fn choose_branch(&self, actor: &str, flow_id: i64, step: String, port: Option<String>) -> Result<(), ServerFnError>;
    }

    pub type ReportHandle = Arc<dyn ReportBackend>;

    pub(crate) fn reports() -> Result<ReportHandle, ServerFnError> {
        use_context::<ReportHandle>().ok_or_else(|| ServerFnError::new("reports are not available"))
    }
}

/// A flow's report over a period (marketers and admins).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_flow_report(flow_id: i64, from: Option<String>, to: Option<String>) -> Result<FlowReport, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::reports()?.report(flow_id, from, to).await
}

/// Sends everyone arriving at a split from now on down `port` (`None`
/// gives the split back its own rule), whatever its automatic winner says.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn choose_branch(flow_id: i64, step: String, port: Option<String>) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    backend::reports()?.choose_branch(&viewer.actor(), flow_id, step, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(a: (u64, u64), b: (u64, u64)) -> SplitFigures {
        SplitFigures {
            step: "s".into(),
            name: "Subject test".into(),
            branches: vec![
                BranchFigures { port: "a".into(), entered: a.1, converted: a.0, ..Default::default() },
                BranchFigures { port: "b".into(), entered: b.1, converted: b.0, ..Default::default() },
            ],
            decision: None,
        }
    }

    #[test]
    fn a_clear_difference_is_called_and_a_small_one_is_not_yet() {
        let c = compare(&split((200, 1000), (250, 1000)), Metric::Conversion);
        assert!(c.verdict.contains("“b” leads by 5.0 points (p = 0.007)") && c.verdict.contains("significant at 95%"), "{}", c.verdict);
        let c = compare(&split((100, 1000), (300, 1000)), Metric::Conversion);
        assert!(c.verdict.contains("(p < 0.001)"), "{}", c.verdict);
        let c = compare(&split((120, 1000), (100, 1000)), Metric::Conversion);
        assert!(c.verdict.ends_with("not yet significant."), "{}", c.verdict);
        let c = compare(&split((1, 10), (9, 10)), Metric::Conversion);
        assert!(c.verdict.contains("too few"), "{}", c.verdict);
    }

    #[test]
    fn the_funnel_explains_a_step_reached_more_often_than_entered() {
        let day = DayFigures { date: "2026-11-02".into(), entered: 10, ..Default::default() };
        let step = |name: &str, reached| StepFigures { step: name.into(), name: name.into(), reached, ..Default::default() };
        let mut report = FlowReport { days: vec![day], steps: vec![step("Start", 10), step("Wait", 10)], ..Default::default() };
        assert_eq!(funnel_note(&report), None);
        report.steps[1].reached = 14;
        let note = funnel_note(&report).expect("a note once a step shows more visits than entries");
        assert!(note.starts_with("“Wait” was reached 14 times while 10 participants entered"), "{note}");
        assert!(note.contains("count visits, not people"), "{note}");
    }

    #[test]
    fn the_split_chart_and_its_table_show_the_rates_compared() {
        let report = FlowReport { name: "F".into(), splits: vec![split((200, 1000), (250, 1000))], ..Default::default() };
        let charts = charts(&report, Metric::Conversion, false);
        let (_, chart) = charts.iter().find(|(name, _)| name == "split-s").unwrap();
        assert_eq!(chart.table.rows, [["a (200 of 1000)", "0.2000"], ["b (250 of 1000)", "0.2500"]]);
        assert!(chart.summary.contains("significant"));
    }
}
