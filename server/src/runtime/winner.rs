//! A split's branch chosen for everyone arriving later: by a person (an
//! override, from the report page), or by the split's automatic winner
//! (FLOW_FORMAT split `winner`). Decisions are kept per flow, version and
//! split step in `split_decisions`.

use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// Sends everyone arriving at `step` of the flow's newest version down
/// `port` from now on, or (`None`) gives the split back its own rule.
pub async fn choose(runtime: &Runtime, actor: &str, flow_id: i64, step: &str, port: Option<&str>) -> Result<()> {
    let mut tx = crate::db::begin_write(runtime.pool()).await?;
    let version: Option<i64> = sqlx::query_scalar("SELECT max(number) FROM flow_versions WHERE flow_id = $1")
        .bind(flow_id)
        .fetch_one(&mut *tx)
        .await?;
    let version = version.ok_or(Error::NotPublished(flow_id))?;
    let text: String = sqlx::query_scalar("SELECT document FROM flow_versions WHERE flow_id = $1 AND number = $2")
        .bind(flow_id)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
    let doc = app::core::FlowDocument::from_json(&text).map_err(|err| Error::Internal(anyhow::anyhow!("stored version unreadable: {err}")))?;
    let unknown = || Error::Invalid { code: "unknown_branch", message: format!("Version {version} has no split “{step}” with that branch.") };
    let split = doc.step(step).filter(|s| s.kind == app::core::StepKind::Split).ok_or_else(unknown)?;
    let settings: app::core::kinds::SplitSettings = app::core::kinds::read_settings(split).unwrap_or_default();
    match port {
        Some(port) => {
            if !settings.branches.iter().any(|b| b.port == port) {
                return Err(unknown());
            }
            let figures = format!("Chosen by {actor}.");
            sqlx::query(
                "INSERT INTO split_decisions (flow_id, version, step, port, decided_at, figures, overridden_by) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (flow_id, version, step) DO UPDATE SET port = excluded.port, decided_at = excluded.decided_at,
                     figures = excluded.figures, overridden_by = excluded.overridden_by",
            )
            .bind(flow_id)
            .bind(version)
            .bind(step)
            .bind(port)
            .bind(runtime.now().to_string())
            .bind(figures)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM split_decisions WHERE flow_id = $1 AND version = $2 AND step = $3")
                .bind(flow_id)
                .bind(version)
                .bind(step)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    crate::audit::record(runtime.pool(), actor, "flow.split_branch", &format!("flow {flow_id} split {step}"), port.unwrap_or("(its own rule)")).await?;
    Ok(())
}

use std::collections::HashMap;

use app::core::engine::winner::{self as rule, SplitState, WinnerSettings};
use app::core::engine::Groups;
use app::core::stats::Proportion;
use app::core::FlowDocument;
use sqlx::Row;

use crate::db::Conn;

/// The automatic-winner tests of every published version that has one,
/// with what was decided: read per scheduler batch (a person's choice or
/// a decision applies from the next batch, in every process).
#[derive(Clone, Debug, Default)]
pub struct Splits {
    tests: Tests,
}

/// Per (flow, version): each split step with a `winner`, its settings and state.
type Tests = HashMap<(i64, i64), HashMap<String, (WinnerSettings, SplitState)>>;

/// The tests and decisions, read afresh: every published document is
/// scanned and parsed (the anchor of the reports bench; the scheduler
/// uses [`ready`], which keeps the parsed tests).
pub async fn load(conn: &mut Conn) -> Result<Splits> {
    let tests = load_tests(conn).await?;
    with_decisions(conn, tests).await
}

/// The split tests the published documents set, with no decision yet.
async fn load_tests(conn: &mut Conn) -> Result<Tests> {
    let mut all = Tests::new();
    let rows = sqlx::query("SELECT flow_id, number, published_at, document FROM flow_versions WHERE document LIKE '%\"winner\"%'")
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let Ok(doc) = FlowDocument::from_json(row.get("document")) else { continue };
        let Ok(started_at) = row.get::<&str, _>("published_at").parse() else { continue };
        let mut tests = HashMap::new();
        for step in doc.steps.iter().filter(|s| s.kind == app::core::StepKind::Split) {
            let settings: app::core::kinds::SplitSettings = app::core::kinds::read_settings(step).unwrap_or_default();
            if let Some(winner) = settings.winner {
                tests.insert(step.id.clone(), (winner, SplitState { started_at, decided: None, note: None }));
            }
        }
        if !tests.is_empty() {
            all.insert((row.get("flow_id"), row.get("number")), tests);
        }
    }
    Ok(all)
}

/// `tests` with the decisions taken so far (a small table: one row per decided split).
async fn with_decisions(conn: &mut Conn, mut tests: Tests) -> Result<Splits> {
    // Choices by a person count for any split, with or without a test.
    for row in sqlx::query("SELECT flow_id, version, step, port, figures, overridden_by FROM split_decisions").fetch_all(&mut *conn).await? {
        let key = (row.get::<i64, _>("flow_id"), row.get::<i64, _>("version"));
        let step: String = row.get("step");
        let version_tests = tests.entry(key).or_default();
        let entry = version_tests.entry(step).or_insert_with(|| (WinnerSettings::default(), SplitState::default()));
        entry.1.decided = Some(row.get("port"));
        entry.1.note = Some(match row.get::<Option<String>, _>("overridden_by") {
            Some(who) => format!("chosen by {who}"),
            None => row.get("figures"),
        });
    }
    Ok(Splits { tests })
}

/// The parsed tests of one runtime (and so one database), and what the
/// versions table looked like when they were read.
struct Kept {
    /// The runtime's version cache: its identity says which runtime this is
    /// (held weakly, so a dropped runtime's entry is never mistaken for a
    /// new one's).
    owner: std::sync::Weak<std::sync::Mutex<super::VersionCache>>,
    /// How many versions there were, and the newest publication.
    seen: (i64, Option<String>),
    tests: Tests,
}

/// Published versions never change, so their tests are parsed once per
/// runtime and kept until a version is published or a flow deleted.
static KEPT: std::sync::Mutex<Vec<Kept>> = std::sync::Mutex::new(Vec::new());

/// The tests of the published versions, parsed only when the versions
/// changed since the last look (one small query otherwise).
async fn kept_tests(runtime: &Runtime, conn: &mut Conn) -> Result<Tests> {
    let seen: (i64, Option<String>) = sqlx::query_as("SELECT count(*), max(published_at) FROM flow_versions").fetch_one(&mut *conn).await?;
    let owner = std::sync::Arc::downgrade(&runtime.versions);
    {
        let kept = KEPT.lock().expect("split tests lock");
        if let Some(k) = kept.iter().find(|k| k.owner.ptr_eq(&owner) && k.seen == seen) {
            return Ok(k.tests.clone());
        }
    }
    let tests = load_tests(conn).await?;
    let mut kept = KEPT.lock().expect("split tests lock");
    kept.retain(|k| k.owner.strong_count() > 0 && !k.owner.ptr_eq(&owner));
    kept.push(Kept { owner, seen, tests: tests.clone() });
    Ok(tests)
}

/// The tests and decisions as the scheduler needs them: the parsed tests
/// kept ([`kept_tests`]), the decisions read each time.
async fn current(runtime: &Runtime) -> Result<Splits> {
    let mut conn = runtime.pool().acquire().await?;
    let tests = kept_tests(runtime, &mut conn).await?;
    with_decisions(&mut conn, tests).await
}

impl Splits {
    /// `inner` with the split tests of one flow version.
    pub fn groups<'a>(&'a self, inner: &'a dyn Groups, flow: i64, version: i64) -> WithSplits<'a> {
        WithSplits { inner, tests: self.tests.get(&(flow, version)) }
    }
}

/// The installation's groups and policy, and one version's split tests.
pub struct WithSplits<'a> {
    inner: &'a dyn Groups,
    tests: Option<&'a HashMap<String, (WinnerSettings, SplitState)>>,
}

impl Groups for WithSplits<'_> {
    fn group(&self, name: &str) -> Option<&FlowDocument> {
        self.inner.group(name)
    }

    fn pressure(&self) -> Option<&app::core::pressure::Policy> {
        self.inner.pressure()
    }

    fn split_state(&self, step: &str) -> Option<&SplitState> {
        self.tests.and_then(|t| t.get(step)).map(|(_, state)| state)
    }
}

/// Decides every test whose window has ended and that has no decision yet,
/// from the rollups (participants per branch, and of them who converted,
/// clicked or replied); the participants waiting at the split go on at
/// their next look. Returns how many were decided.
pub async fn decide_due(runtime: &Runtime) -> Result<usize> {
    let splits = current(runtime).await?;
    decide(runtime, &splits).await
}

/// The split tests for a scheduler batch, any that came due decided first
/// (so that participants waking at a window's end find its decision).
pub async fn ready(runtime: &Runtime) -> Result<Splits> {
    let splits = current(runtime).await?;
    if decide(runtime, &splits).await? == 0 {
        return Ok(splits);
    }
    current(runtime).await
}

async fn decide(runtime: &Runtime, splits: &Splits) -> Result<usize> {
    let now = runtime.now();
    let mut decided = 0;
    for ((flow, version), tests) in &splits.tests {
        for (step, (winner, state)) in tests {
            let Some(window) = winner.window.as_ref().and_then(app::core::engine::duration) else { continue };
            if state.decided.is_some() || now < state.started_at + window {
                continue;
            }
            let metric = match winner.metric() {
                "click" => "branch_clicked",
                "reply" => "branch_replied",
                _ => "branch_converted",
            };
            let mut tx = crate::db::begin_write(runtime.pool()).await?;
            let text: String = sqlx::query_scalar("SELECT document FROM flow_versions WHERE flow_id = $1 AND number = $2")
                .bind(flow)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            let doc = FlowDocument::from_json(&text).map_err(|err| Error::Internal(anyhow::anyhow!("stored version unreadable: {err}")))?;
            let Some(split) = doc.step(step) else { continue };
            let settings: app::core::kinds::SplitSettings = app::core::kinds::read_settings(split).unwrap_or_default();
            let counts: HashMap<(String, String), i64> = sqlx::query(
                "SELECT step, metric, CAST(sum(count) AS BIGINT) FROM flow_rollups WHERE flow_id = $1 AND version = $2 AND step LIKE $3
                   AND metric IN ('branch_entered', $4) GROUP BY step, metric",
            )
            .bind(flow)
            .bind(version)
            .bind(format!("{step}/%"))
            .bind(metric)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| ((r.get::<String, _>(0), r.get::<String, _>(1)), r.get::<i64, _>(2)))
            .collect();
            let branches: Vec<(String, Proportion)> = settings
                .branches
                .iter()
                .map(|b| {
                    let key = super::rollups::branch_step(step, &b.port);
                    let get = |m: &str| counts.get(&(key.clone(), m.to_owned())).copied().unwrap_or(0).max(0) as u64;
                    (b.port.clone(), Proportion { successes: get(metric), trials: get("branch_entered") })
                })
                .collect();
            let decision = rule::decide(winner, &branches);
            let written = sqlx::query(
                "INSERT INTO split_decisions (flow_id, version, step, port, decided_at, figures) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (flow_id, version, step) DO NOTHING",
            )
            .bind(flow)
            .bind(version)
            .bind(step)
            .bind(decision.port.clone().unwrap_or_default())
            .bind(now.to_string())
            .bind(&decision.figures)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if written == 1 {
                decided += 1;
                tracing::info!(flow, version, step, winner = ?decision.port, figures = %decision.figures, "split test decided");
            }
        }
    }
    Ok(decided)
}
