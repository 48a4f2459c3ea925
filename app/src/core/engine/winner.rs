//! A split's automatic winner (FLOW_FORMAT split `winner`): for `window`
//! after the version is published, `test_share` percent of the arrivals
//! take part in the test (split by the branches' percentages); the rest
//! wait at the split. Then the runtime decides ([`decide`]): the leading
//! branch on `metric`, if it leads significantly, takes the waiting and
//! everyone arriving later; if none does, the split goes on by its
//! percentages. A person may choose a branch instead at any time.
//!
//! Pure: the runtime hands in when the test started and what was decided
//! ([`SplitState`]); without it (the simulator, a test run) a split with a
//! `winner` behaves as a plain split.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::core::flow::Duration;
use crate::core::kinds::SplitSettings;
use crate::core::stats::{leader, Proportion};

/// FLOW_FORMAT split `winner`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WinnerSettings {
    /// `conversion` (the flow's goal; default), `click` or `reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How long the test runs, from the version's publication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Percent of the arrivals during the window that take part (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_share: Option<f64>,
}

pub const METRICS: [&str; 3] = ["conversion", "click", "reply"];

impl WinnerSettings {
    pub fn metric(&self) -> &str {
        self.metric.as_deref().unwrap_or("conversion")
    }

    pub fn share(&self) -> f64 {
        self.test_share.unwrap_or(100.0).clamp(0.0, 100.0)
    }
}

/// What the runtime knows of a split's test.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    /// When the test started: the version's publication.
    pub started_at: Timestamp,
    /// The branch chosen (by the decision or a person); `Some("")`: decided
    /// with no significant winner (the split goes on by its percentages).
    pub decided: Option<String>,
    /// What it was decided on (the figures, or who chose), for the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How long after the window a participant waits for the decision before
/// going by the percentages (the runtime decides within seconds).
pub const DECISION_GRACE: SignedDuration = SignedDuration::from_hours(24);
/// How often a participant waiting after the window looks again.
pub const RECHECK: SignedDuration = SignedDuration::from_mins(15);

/// Where a participant arriving at the split goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// Down this branch, for this reason (the timeline's).
    Branch { port: String, reason: String },
    /// Wait at the split until then, for this reason.
    Wait { until: Timestamp, why: String },
    /// By the branches' percentages, as a split without a winner.
    Percentages { reason: Option<String> },
}

/// The branch `draw` (0 ≤ draw < 100) falls in by percentages.
pub fn by_percent(split: &SplitSettings, draw: f64) -> Option<&str> {
    let mut floor = 0.0;
    split
        .branches
        .iter()
        .find(|b| {
            floor += b.percent.unwrap_or(0.0);
            draw < floor
        })
        .or(split.branches.last())
        .map(|b| b.port.as_str())
}

/// Routes an arrival with the participant's `draw`.
pub fn route(split: &SplitSettings, winner: &WinnerSettings, state: Option<&SplitState>, draw: f64, now: Timestamp) -> Route {
    let Some(state) = state else { return Route::Percentages { reason: None } };
    match state.decided.as_deref() {
        Some("") => return Route::Percentages { reason: Some("no significant winner".into()) },
        Some(port) if split.branches.iter().any(|b| b.port == port) => {
            let reason = match &state.note {
                Some(note) => format!("branch {port}: the test's winner ({note})"),
                None => format!("branch {port}: the test's winner"),
            };
            return Route::Branch { port: port.to_owned(), reason };
        }
        _ => {}
    }
    let Some(window) = winner.window.as_ref().and_then(crate::core::engine::duration) else {
        return Route::Percentages { reason: None };
    };
    let ends = state.started_at + window;
    if now < ends {
        let share = winner.share();
        if draw < share {
            // Within the test, spread over the branches by their percentages.
            let within = if share > 0.0 { draw / share * 100.0 } else { 0.0 };
            return match by_percent(split, within) {
                Some(port) => Route::Branch { port: port.to_owned(), reason: format!("branch {port} (in the test, draw {draw:.1})") },
                None => Route::Percentages { reason: None },
            };
        }
        return Route::Wait { until: ends, why: format!("waiting for the test's winner, decided at {ends}") };
    }
    if now < ends + DECISION_GRACE {
        return Route::Wait { until: now + RECHECK, why: format!("the test ended at {ends}; waiting for its decision") };
    }
    Route::Percentages { reason: Some("no decision came after the test".into()) }
}

/// The decision at the end of the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The winner; `None` when no branch leads significantly.
    pub port: Option<String>,
    /// The figures it was made on, as a sentence for the timeline and the report.
    pub figures: String,
}

/// Decides from each branch's participants and successes on the metric.
pub fn decide(winner: &WinnerSettings, branches: &[(String, Proportion)]) -> Decision {
    let props: Vec<Proportion> = branches.iter().map(|(_, p)| *p).collect();
    let rates: Vec<String> = branches
        .iter()
        .map(|(port, p)| format!("{port} {} ({}/{})", crate::core::stats::percent(p.successes, p.trials), p.successes, p.trials))
        .collect();
    let Some(lead) = leader(&props) else {
        return Decision { port: None, figures: format!("{}: no branches", winner.metric()) };
    };
    let p = lead.against_runner_up.map(|t| format!("; p = {:.4}", t.p_value)).unwrap_or_default();
    let figures = format!("{} rate: {}{p}", winner.metric(), rates.join(", "));
    if lead.significant {
        Decision { port: Some(branches[lead.index].0.clone()), figures: format!("{figures}: “{}” leads significantly", branches[lead.index].0) }
    } else {
        Decision { port: None, figures: format!("{figures}: no branch leads significantly; the split goes on by its percentages") }
    }
}

/// Problems with a split's `winner` setting, as (setting, why).
pub fn problems(winner: &WinnerSettings) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(metric) = &winner.metric {
        if !METRICS.contains(&metric.as_str()) {
            out.push(("winner.metric".into(), format!("\"{metric}\" is not one of {}", METRICS.join(", "))));
        }
    }
    match &winner.window {
        None => out.push(("winner.window".into(), "say how long the test runs before a winner is chosen".into())),
        Some(window) => match window.as_seconds() {
            None => out.push(("winner.window".into(), "the test window is not a usable duration".into())),
            Some(0) => out.push(("winner.window".into(), "the test window must be longer than nothing".into())),
            Some(_) => {}
        },
    }
    if let Some(share) = winner.test_share {
        if !(share > 0.0 && share <= 100.0) {
            out.push(("winner.test_share".into(), format!("{share} is not a share of participants between 0 (excluded) and 100")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn split() -> SplitSettings {
        serde_json::from_value(json!({"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]})).unwrap()
    }

    fn winner(share: f64) -> WinnerSettings {
        serde_json::from_value(json!({"metric": "click", "window": {"amount": 7, "unit": "days"}, "test_share": share})).unwrap()
    }

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn state(decided: Option<&str>) -> SplitState {
        SplitState { started_at: t("2026-11-01T00:00:00Z"), decided: decided.map(str::to_owned), note: None }
    }

    #[test]
    fn during_the_window_the_test_share_is_split_and_the_rest_wait_for_the_end() {
        let now = t("2026-11-03T00:00:00Z");
        let r = route(&split(), &winner(20.0), Some(&state(None)), 5.0, now);
        assert!(matches!(r, Route::Branch { ref port, .. } if port == "a"), "{r:?}"); // 5/20 → 25 → a
        let r = route(&split(), &winner(20.0), Some(&state(None)), 15.0, now);
        assert!(matches!(r, Route::Branch { ref port, .. } if port == "b"), "{r:?}"); // 15/20 → 75 → b
        let r = route(&split(), &winner(20.0), Some(&state(None)), 20.0, now);
        assert_eq!(r, Route::Wait { until: t("2026-11-08T00:00:00Z"), why: "waiting for the test's winner, decided at 2026-11-08T00:00:00Z".into() });
    }

    #[test]
    fn after_the_window_the_winner_takes_everyone_and_no_winner_means_percentages() {
        let later = t("2026-11-09T00:00:00Z");
        for draw in [1.0, 50.0, 99.0] {
            let r = route(&split(), &winner(20.0), Some(&state(Some("b"))), draw, later);
            assert!(matches!(r, Route::Branch { ref port, .. } if port == "b"));
        }
        // A person's choice counts even during the window.
        let r = route(&split(), &winner(20.0), Some(&state(Some("a"))), 90.0, t("2026-11-02T00:00:00Z"));
        assert!(matches!(r, Route::Branch { ref port, .. } if port == "a"));
        let r = route(&split(), &winner(20.0), Some(&state(Some(""))), 90.0, later);
        assert!(matches!(r, Route::Percentages { reason: Some(_) }));
        // Decided for a branch the version does not have: ignored.
        let r = route(&split(), &winner(20.0), Some(&state(Some("z"))), 90.0, t("2026-11-02T00:00:00Z"));
        assert!(matches!(r, Route::Wait { .. }));
    }

    #[test]
    fn a_late_decision_is_waited_for_a_day_then_percentages_go_on() {
        let r = route(&split(), &winner(20.0), Some(&state(None)), 90.0, t("2026-11-08T01:00:00Z"));
        assert_eq!(r, Route::Wait { until: t("2026-11-08T01:15:00Z"), why: "the test ended at 2026-11-08T00:00:00Z; waiting for its decision".into() });
        let r = route(&split(), &winner(20.0), Some(&state(None)), 90.0, t("2026-11-09T00:00:00Z"));
        assert!(matches!(r, Route::Percentages { reason: Some(_) }));
    }

    #[test]
    fn without_the_runtime_state_a_winner_split_is_a_plain_split() {
        assert_eq!(route(&split(), &winner(20.0), None, 90.0, t("2026-11-02T00:00:00Z")), Route::Percentages { reason: None });
    }

    #[test]
    fn the_decision_crowns_only_a_significant_leader() {
        let p = |s, n| Proportion { successes: s, trials: n };
        let d = decide(&winner(20.0), &[("a".into(), p(200, 1000)), ("b".into(), p(250, 1000))]);
        assert_eq!(d.port.as_deref(), Some("b"));
        assert!(d.figures.starts_with("click rate: a 20.0% (200/1000), b 25.0% (250/1000); p = 0.0074"), "{}", d.figures);
        let d = decide(&winner(20.0), &[("a".into(), p(120, 1000)), ("b".into(), p(100, 1000))]);
        assert_eq!(d.port, None);
        assert!(d.figures.contains("no branch leads significantly"));
        let d = decide(&winner(20.0), &[("a".into(), p(1, 10)), ("b".into(), p(9, 10))]);
        assert_eq!(d.port, None, "too few participants to crown anyone");
    }

    #[test]
    fn the_setting_is_checked() {
        assert!(problems(&winner(20.0)).is_empty());
        let bad: WinnerSettings = serde_json::from_value(json!({"metric": "opens", "test_share": 0})).unwrap();
        let names: Vec<String> = problems(&bad).into_iter().map(|(s, _)| s).collect();
        assert_eq!(names, ["winner.metric", "winner.window", "winner.test_share"]);
        let bad: WinnerSettings = serde_json::from_value(json!({"window": {"amount": 0, "unit": "days"}, "test_share": 101})).unwrap();
        assert_eq!(problems(&bad).len(), 2);
    }
}
