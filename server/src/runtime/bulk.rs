//! Bulk participant actions by search criteria (DESIGN.md §7), as single
//! set-based statements so a million participants take seconds:
//!
//! - reset: pass count 0, status ready, next run now (the current step runs again)
//! - cancel: status cancelled; the prior status is not kept
//! - pause: as cancel, named paused
//! - ready: status ready; pass count and next run unchanged
//! - manual pass: pass count + 1, with a disposition (kept on the audit record)
//! - suppress: stops without changing its status (kept as the prior status)
//! - unsuppress: back to exactly the status it had
//!
//! Every write bumps the revision, so a worker that claimed a participant
//! before the action cannot commit over it. Every run is audited.

use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::error::{Error, Result};

use super::{millis, status_names};

/// Which participants an action applies to. Unknown keys are refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default)]
    pub flow_ids: Vec<i64>,
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub steps: Vec<String>,
    pub pass_count_min: Option<i64>,
    pub pass_count_max: Option<i64>,
    pub timezone: Option<String>,
    /// Members of any of these lists.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Contact fields: `email`, `mobile`, `owner` or a custom field equal to a value.
    #[serde(default)]
    pub contact: Vec<FieldEquals>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEquals {
    pub field: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Reset,
    Cancel,
    Pause,
    Ready,
    ManualPass,
    Suppress,
    Unsuppress,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Reset => "reset",
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Ready => "ready",
            Action::ManualPass => "manual_pass",
            Action::Suppress => "suppress",
            Action::Unsuppress => "unsuppress",
        }
    }

    /// What it does, in words, shown before it runs.
    pub fn effect(&self) -> &'static str {
        match self {
            Action::Reset => "Sets the pass count to 0 and the status to ready; each runs its current step again now.",
            Action::Cancel => "Stops each for good: status cancelled. The status it had is not kept.",
            Action::Pause => "Stops each: status paused. The status it had is not kept.",
            Action::Ready => "Sets the status to ready; pass count and next run stay as they are.",
            Action::ManualPass => "Adds one to each pass count, recording the disposition.",
            Action::Suppress => "Stops each without changing its status; unsuppress restores exactly that status.",
            Action::Unsuppress => "Suppressed participants go back to exactly the status they had.",
        }
    }
}

fn unprocessable(code: &'static str, message: String) -> Error {
    Error::BadBody { status: axum::http::StatusCode::UNPROCESSABLE_ENTITY, code, message }
}

impl Criteria {
    fn check(&self) -> Result<()> {
        let known = status_names();
        if let Some(bad) = self.statuses.iter().find(|s| !known.contains(&s.as_str())) {
            return Err(unprocessable("invalid_criteria", format!("“{bad}” is not a status ({}).", known.join(", "))));
        }
        if let Some(bad) = self.contact.iter().find(|f| f.field.trim().is_empty() || f.field.contains(['"', '\'', '$', '.', '[', ']'])) {
            return Err(unprocessable("invalid_criteria", format!("“{}” is not a contact field name.", bad.field)));
        }
        Ok(())
    }

    /// Appends `p.id IN (SELECT … matching)` to `query`.
    fn push_matching(&self, query: &mut QueryBuilder<'_, Sqlite>) {
        query.push("id IN (SELECT p.id FROM participants p JOIN contacts c ON c.id = p.contact_id WHERE 1 = 1");
        let list = |query: &mut QueryBuilder<'_, Sqlite>, column: &str, values: Vec<String>| {
            if values.is_empty() {
                return;
            }
            query.push(format!(" AND {column} IN ("));
            let mut separated = query.separated(", ");
            for value in values {
                separated.push_bind(value);
            }
            query.push(")");
        };
        if !self.flow_ids.is_empty() {
            query.push(" AND p.flow_id IN (");
            let mut separated = query.separated(", ");
            for id in &self.flow_ids {
                separated.push_bind(*id);
            }
            query.push(")");
        }
        list(query, "p.status", self.statuses.clone());
        list(query, "p.step", self.steps.clone());
        if let Some(min) = self.pass_count_min {
            query.push(" AND p.pass_count >= ").push_bind(min);
        }
        if let Some(max) = self.pass_count_max {
            query.push(" AND p.pass_count <= ").push_bind(max);
        }
        if let Some(zone) = &self.timezone {
            query.push(" AND c.timezone = ").push_bind(zone.clone());
        }
        if !self.lists.is_empty() {
            query.push(" AND EXISTS (SELECT 1 FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id = c.id AND l.name IN (");
            let mut separated = query.separated(", ");
            for name in &self.lists {
                separated.push_bind(name.clone());
            }
            query.push("))");
        }
        for field in &self.contact {
            match field.field.as_str() {
                "email" | "mobile" | "owner" | "timezone" => {
                    query.push(format!(" AND lower(c.{}) = lower(", field.field)).push_bind(field.value.clone()).push(")");
                }
                name => {
                    query
                        .push(format!(" AND lower(CAST(json_extract(c.fields, '$.\"{name}\"') AS TEXT)) = lower("))
                        .push_bind(field.value.clone())
                        .push(")");
                }
            }
        }
        query.push(")");
    }
}

/// How many participants match, and a few of their ids, before running.
pub async fn preview(pool: &SqlitePool, criteria: &Criteria) -> Result<(i64, Vec<i64>)> {
    criteria.check()?;
    let mut count: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT count(*) FROM participants WHERE ");
    criteria.push_matching(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut sample: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT id FROM participants WHERE ");
    criteria.push_matching(&mut sample);
    sample.push(" ORDER BY id LIMIT 10");
    let ids: Vec<i64> = sample.build_query_scalar().fetch_all(pool).await?;
    Ok((total, ids))
}

/// Runs `action` on every matching participant, in one transaction.
/// Refused when nothing matches. Returns how many changed.
pub async fn apply(
    pool: &SqlitePool,
    criteria: &Criteria,
    action: &Action,
    disposition: Option<&str>,
    by: &str,
    now: jiff::Timestamp,
) -> Result<u64> {
    criteria.check()?;
    if *action == Action::ManualPass && disposition.is_none_or(|d| d.trim().is_empty()) {
        return Err(unprocessable("disposition_required", "A manual pass needs a disposition.".into()));
    }
    let set = match action {
        Action::Reset => format!(
            "status = 'ready', pass_count = 0, next_run_at = {ms},
             state = json_set(state, '$.status', 'ready', '$.pass_count', 0, '$.phase', json('{{\"phase\":\"due\"}}'),
                              '$.next_run_at', '{at}')",
            ms = millis(now),
            at = now
        ),
        Action::Cancel => "status = 'cancelled', prior_status = NULL, state = json_set(state, '$.status', 'cancelled')".into(),
        Action::Pause => "status = 'paused', prior_status = NULL, state = json_set(state, '$.status', 'paused')".into(),
        Action::Ready => "status = 'ready', state = json_set(state, '$.status', 'ready')".into(),
        Action::ManualPass => "pass_count = pass_count + 1, state = json_set(state, '$.pass_count', pass_count + 1)".into(),
        Action::Suppress => "prior_status = status, status = 'suppressed', state = json_set(state, '$.status', 'suppressed')".into(),
        Action::Unsuppress => "status = prior_status, prior_status = NULL, state = json_set(state, '$.status', prior_status)".into(),
    };
    let guard = match action {
        // already suppressed participants keep the status they had before
        Action::Suppress => " AND status <> 'suppressed'",
        Action::Unsuppress => " AND status = 'suppressed' AND prior_status IS NOT NULL",
        _ => "",
    };
    let mut tx = pool.begin().await?;
    let mut update: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("UPDATE participants SET {set}, revision = revision + 1, updated_at = '{now}' WHERE "));
    criteria.push_matching(&mut update);
    update.push(guard);
    let changed = update.build().execute(&mut *tx).await?.rows_affected();
    if changed == 0 {
        return Err(unprocessable("nothing_matched", format!("No participant matches these criteria for “{}”; nothing changed.", action.as_str())));
    }
    sqlx::query("INSERT INTO bulk_runs (action, criteria, disposition, count, run_by, run_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(action.as_str())
        .bind(serde_json::to_string(criteria).expect("criteria serialize"))
        .bind(disposition)
        .bind(changed as i64)
        .bind(by)
        .bind(now.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(changed)
}
