//! The flow store on SQLite: flows with one editable draft and immutable
//! published versions.
//!
//! Every write is one transaction: a refused write (stale revision, taken
//! name, too many steps) changes nothing. Drafts are stored in canonical JSON
//! so exports diff cleanly.


use serde::Serialize;
use sqlx::Row;

use app::api::{FlowDetail, FlowSummary, ReviewRow};
use app::core::kinds::StepKind;
use app::core::validate::{LinkedFlow, LinkedGroup};
use app::core::{validate, Context, FlowDocument, Findings, Level};

use crate::error::{Error, Result, MAX_STEPS};
use crate::db::{DbRow, Pool};

/// Opens (creating a SQLite file if missing) the database at `url` and
/// applies migrations: see [`crate::db`].
pub use crate::db::{connect, migrate};

/// A published version.
#[derive(Clone, Debug, Serialize)]
pub struct Version {
    pub flow_id: i64,
    pub number: i64,
    pub published_at: String,
    pub published_by: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionDocument {
    #[serde(flatten)]
    pub version: Version,
    pub document: FlowDocument,
}

/// The draft of a flow, with the revision a save must name.
#[derive(Clone, Debug, Serialize)]
pub struct Draft {
    pub revision: i64,
    pub document: FlowDocument,
    pub findings: Findings,
}

/// When the custom field names were read, and the names (`None`: no contact
/// has a field yet, or there are more names than the check reads).
type KnownFields = (std::time::Instant, Option<Vec<String>>);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The custom field names contacts have, read at most once a minute
    /// (a scan of every contact), for the merge tags' `unknown_field` check.
    fields: std::sync::Arc<std::sync::Mutex<Option<KnownFields>>>,
}

/// How long the field names read for the validator are reused.
const FIELD_NAMES_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Past this many distinct field names the check is left out.
const MAX_FIELD_NAMES: usize = 2_000;

const SUMMARY_COLUMNS: &str = "f.id, f.name, f.revision, f.error_count, f.warning_count, f.updated_at,
    (SELECT max(number) FROM flow_versions v WHERE v.flow_id = f.id) AS published_version,
    CASE WHEN (SELECT document FROM flow_versions v WHERE v.flow_id = f.id ORDER BY number DESC LIMIT 1) <> f.draft
        THEN 1 ELSE 0 END AS draft_changed";

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn summary(row: &DbRow) -> FlowSummary {
    FlowSummary {
        id: row.get("id"),
        name: row.get("name"),
        revision: row.get("revision"),
        published_version: row.get("published_version"),
        draft_changed: row.get::<i64, _>("draft_changed") != 0,
        errors: row.get::<i64, _>("error_count") as u32,
        warnings: row.get::<i64, _>("warning_count") as u32,
        updated_at: row.get("updated_at"),
    }
}

fn read_document(text: &str) -> Result<FlowDocument> {
    FlowDocument::from_json(text).map_err(|err| Error::Internal(anyhow::anyhow!("stored document unreadable: {err}")))
}

/// The groups a document runs, from steps and call dispositions.
fn runs(doc: &FlowDocument) -> Vec<String> {
    let mut names = Vec::new();
    for step in &doc.steps {
        if step.kind == StepKind::RunActionGroup {
            names.extend(step.setting_str("group").map(str::to_owned));
        }
        if let Some(dispositions) = step.settings.get("dispositions").and_then(serde_json::Value::as_object) {
            names.extend(dispositions.values().filter_map(|g| g.as_str().map(str::to_owned)));
        }
    }
    names
}

/// The go_to_flow targets of a document, for [`LinkedFlow::goes_to`].
fn goes_to(doc: &FlowDocument) -> Vec<String> {
    doc.steps
        .iter()
        .filter(|step| step.kind == StepKind::GoToFlow)
        .filter_map(|step| step.setting_str("flow").map(str::to_owned))
        .collect()
}

fn clean_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::EmptyName);
    }
    app::core::limits::check("name", name, app::core::limits::NAME)?;
    Ok(name.to_owned())
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Store { pool, fields: Default::default() }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Action groups by lower-case name, as the engine runs them.
    pub async fn groups(&self) -> Result<std::collections::HashMap<String, FlowDocument>> {
        let rows = sqlx::query("SELECT name, document FROM action_groups").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.get::<String, _>("name").to_lowercase(), read_document(row.get("document"))?)))
            .collect()
    }

    /// Creates or replaces an action group. Its steps are validated like a
    /// flow's; the findings come back, and errors do not block saving.
    pub async fn save_group(&self, name: &str, mut doc: FlowDocument) -> Result<Findings> {
        let name = clean_name(name)?;
        if doc.steps.len() > MAX_STEPS {
            return Err(Error::TooManySteps(doc.steps.len()));
        }
        doc.name = name.clone();
        doc.canonicalize();
        let mut context = self.context(None).await?;
        if let Some(groups) = context.groups.as_mut() {
            groups.retain(|g| !g.name.eq_ignore_ascii_case(&name));
            groups.push(LinkedGroup { name: name.clone(), runs: runs(&doc) });
        }
        let findings = validate(&doc, &context);
        let at = now();
        sqlx::query(
            "INSERT INTO action_groups (name, document, created_at, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
        )
        .bind(&name)
        .bind(doc.to_canonical_json())
        .bind(&at)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(findings)
    }

    pub async fn group_names(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM action_groups ORDER BY name COLLATE NOCASE").fetch_all(&self.pool).await?)
    }

    /// What the validator needs to know about the other flows and the groups.
    async fn context(&self, flow_id: Option<i64>) -> Result<Context> {
        let rows = sqlx::query("SELECT id, name, goes_to FROM flows").fetch_all(&self.pool).await?;
        let flows = rows
            .iter()
            .filter(|row| Some(row.get::<i64, _>("id")) != flow_id)
            .map(|row| LinkedFlow {
                id: row.get::<i64, _>("id").to_string(),
                name: row.get("name"),
                goes_to: serde_json::from_str(row.get::<&str, _>("goes_to")).unwrap_or_default(),
            })
            .collect();
        let groups = self.groups().await?;
        let groups = groups.values().map(|doc| LinkedGroup { name: doc.name.clone(), runs: runs(doc) }).collect();
        let fields = self.field_names().await?;
        Ok(Context { flow_id: flow_id.map(|id| id.to_string()), flows: Some(flows), groups: Some(groups), fields })
    }

    /// The custom field names some contact has; `None` when there are too
    /// many to check against.
    async fn field_names(&self) -> Result<Option<Vec<String>>> {
        if let Some((at, names)) = self.fields.lock().expect("not poisoned").as_ref() {
            if at.elapsed() < FIELD_NAMES_FOR {
                return Ok(names.clone());
            }
        }
        let sql = match crate::db::Backend::of(&self.pool) {
            crate::db::Backend::Sqlite => {
                "SELECT DISTINCT j.key FROM contacts c, json_each(c.fields) j WHERE c.deleted_at IS NULL LIMIT $1"
            }
            crate::db::Backend::Postgres => {
                "SELECT DISTINCT j.key FROM contacts c, json_each(c.fields::json) j WHERE c.deleted_at IS NULL LIMIT $1"
            }
        };
        let names: Vec<String> = sqlx::query_scalar(sql).bind(MAX_FIELD_NAMES as i64 + 1).fetch_all(&self.pool).await?;
        // With no field on any contact (a new installation) there is
        // nothing to tell a typo from a field yet to be imported.
        let names = (!names.is_empty() && names.len() <= MAX_FIELD_NAMES).then_some(names);
        *self.fields.lock().expect("not poisoned") = Some((std::time::Instant::now(), names.clone()));
        Ok(names)
    }

    pub async fn validate(&self, flow_id: Option<i64>, doc: &FlowDocument) -> Result<Findings> {
        Ok(validate(doc, &self.context(flow_id).await?))
    }

    pub async fn list(&self) -> Result<Vec<FlowSummary>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM flows f ORDER BY f.name COLLATE NOCASE, f.id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(summary).collect())
    }

    pub async fn summary(&self, id: i64) -> Result<FlowSummary> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM flows f WHERE f.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(summary).ok_or(Error::FlowNotFound(id))
    }

    /// Creates a flow from a document (a new one-step draft when `None`).
    /// The flow's name wins over the document's.
    pub async fn create(&self, name: &str, document: Option<FlowDocument>) -> Result<FlowSummary> {
        let name = clean_name(name)?;
        let mut doc = document.unwrap_or_else(|| FlowDocument::new_draft(&name));
        if doc.steps.len() > MAX_STEPS {
            return Err(Error::TooManySteps(doc.steps.len()));
        }
        doc.name = name.clone();
        let findings = self.validate(None, &doc).await?;
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO flows (name, draft, error_count, warning_count, goes_to, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&name)
        .bind(doc.to_canonical_json())
        .bind(findings.errors.len() as i64)
        .bind(findings.warnings.len() as i64)
        .bind(serde_json::to_string(&goes_to(&doc)).expect("strings serialize"))
        .bind(&at)
        .bind(&at)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| Error::from_insert(err, &name))?;
        self.summary(id).await
    }

    pub async fn rename(&self, id: i64, name: &str) -> Result<FlowSummary> {
        let name = clean_name(name)?;
        let mut tx = crate::db::begin_write(&self.pool).await?;
        let draft: Option<String> =
            sqlx::query_scalar("SELECT draft FROM flows WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let mut doc = read_document(&draft.ok_or(Error::FlowNotFound(id))?)?;
        doc.name = name.clone();
        sqlx::query("UPDATE flows SET name = $1, draft = $2, revision = revision + 1, updated_at = $3 WHERE id = $4")
            .bind(&name)
            .bind(doc.to_canonical_json())
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|err| Error::from_insert(err, &name))?;
        tx.commit().await?;
        self.summary(id).await
    }

    /// Deletes a flow and its versions; refused while it has participants.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let participants: i64 =
            sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1").bind(id).fetch_one(&self.pool).await?;
        if participants > 0 {
            return Err(Error::FlowHasParticipants(id));
        }
        let done = sqlx::query("DELETE FROM flows WHERE id = $1").bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(Error::FlowNotFound(id));
        }
        Ok(())
    }

    pub async fn draft(&self, id: i64) -> Result<Draft> {
        let row = sqlx::query("SELECT draft, revision FROM flows WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        let row = row.ok_or(Error::FlowNotFound(id))?;
        let document = read_document(row.get("draft"))?;
        let findings = self.validate(Some(id), &document).await?;
        Ok(Draft { revision: row.get("revision"), document, findings })
    }

    pub async fn detail(&self, id: i64) -> Result<FlowDetail> {
        let draft = self.draft(id).await?;
        let acks = crate::admin::acks(&self.pool, id).await?;
        Ok(FlowDetail { summary: self.summary(id).await?, document: draft.document, findings: draft.findings, acks })
    }

    /// Saves a draft made from `revision`. A stale revision is refused and
    /// nothing is written. Errors in the document never block a save.
    pub async fn save_draft(&self, id: i64, revision: i64, mut doc: FlowDocument) -> Result<Draft> {
        if doc.steps.len() > MAX_STEPS {
            return Err(Error::TooManySteps(doc.steps.len()));
        }
        let current = self.summary(id).await?;
        // The flow's name is the document's: saving another name renames it.
        let name = if doc.name.trim().is_empty() { current.name.clone() } else { doc.name.trim().to_owned() };
        doc.name = name.clone();
        doc.canonicalize();
        let findings = self.validate(Some(id), &doc).await?;
        let done = sqlx::query(
            "UPDATE flows SET name = $1, draft = $2, revision = revision + 1, error_count = $3, warning_count = $4,
                 goes_to = $5, updated_at = $6
             WHERE id = $7 AND revision = $8",
        )
        .bind(&name)
        .bind(doc.to_canonical_json())
        .bind(findings.errors.len() as i64)
        .bind(findings.warnings.len() as i64)
        .bind(serde_json::to_string(&goes_to(&doc)).expect("strings serialize"))
        .bind(now())
        .bind(id)
        .bind(revision)
        .execute(&self.pool)
        .await
        .map_err(|err| Error::from_insert(err, &name))?;
        if done.rows_affected() == 0 {
            let now_at = self.summary(id).await?.revision;
            return Err(Error::StaleRevision { current: now_at, given: revision });
        }
        Ok(Draft { revision: revision + 1, document: doc, findings })
    }

    /// Freezes the draft as the next version. Refused while the draft has
    /// errors, or when `revision` is given and is not the draft's.
    pub async fn publish(&self, id: i64, revision: Option<i64>, by: &str) -> Result<VersionDocument> {
        let draft = self.draft(id).await?;
        if let Some(given) = revision.filter(|given| *given != draft.revision) {
            return Err(Error::StaleRevision { current: draft.revision, given });
        }
        if draft.findings.blocks_publish() {
            return Err(Error::PublishBlocked(draft.findings.errors));
        }
        if crate::admin::review_required(&self.pool).await? {
            let acks = crate::admin::acks(&self.pool, id).await?;
            let pending = draft
                .findings
                .warnings
                .iter()
                .filter(|w| !acks.iter().any(|ack| Some(&ack.step) == w.step.as_ref() && ack.code == w.code.as_str()))
                .count();
            if pending > 0 {
                return Err(Error::ReviewPending(pending));
            }
        }
        let mut tx = crate::db::begin_write(&self.pool).await?;
        // Re-check the revision inside the transaction: a save between the
        // read above and here must not be published unseen.
        let still: Option<i64> = sqlx::query_scalar("SELECT revision FROM flows WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if still != Some(draft.revision) {
            return Err(Error::StaleRevision { current: still.unwrap_or_default(), given: draft.revision });
        }
        let number: i64 = sqlx::query_scalar("SELECT coalesce(max(number), 0) + 1 FROM flow_versions WHERE flow_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let at = now();
        sqlx::query("INSERT INTO flow_versions (flow_id, number, document, published_at, published_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(number)
            .bind(draft.document.to_canonical_json())
            .bind(&at)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        // Entry on list membership follows the newest published version.
        let entry_list = draft
            .document
            .steps
            .iter()
            .find(|step| step.kind == StepKind::Start && step.setting_str("entry") == Some("list"))
            .and_then(|step| step.setting_str("list"))
            .map(str::to_owned);
        // Entry on a custom event likewise (FLOW_FORMAT "Entry on an event").
        let entry_event = draft
            .document
            .steps
            .iter()
            .find(|step| step.kind == StepKind::Start && step.setting_str("entry") == Some("event"))
            .and_then(|step| step.setting_str("event"))
            .map(str::to_owned);
        sqlx::query("UPDATE flows SET updated_at = $1, entry_list = $2, entry_event = $3 WHERE id = $4")
            .bind(&at)
            .bind(entry_list)
            .bind(entry_event)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(VersionDocument {
            version: Version { flow_id: id, number, published_at: at, published_by: by.to_owned() },
            document: draft.document,
        })
    }

    pub async fn versions(&self, id: i64) -> Result<Vec<Version>> {
        self.summary(id).await?;
        let rows = sqlx::query(
            "SELECT flow_id, number, published_at, published_by FROM flow_versions WHERE flow_id = $1 ORDER BY number DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Version {
                flow_id: row.get("flow_id"),
                number: row.get("number"),
                published_at: row.get("published_at"),
                published_by: row.get("published_by"),
            })
            .collect())
    }

    pub async fn version(&self, id: i64, number: i64) -> Result<VersionDocument> {
        let row = sqlx::query(
            "SELECT flow_id, number, document, published_at, published_by FROM flow_versions WHERE flow_id = $1 AND number = $2",
        )
        .bind(id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or(Error::VersionNotFound { flow: id, number })?;
        Ok(VersionDocument {
            version: Version {
                flow_id: row.get("flow_id"),
                number: row.get("number"),
                published_at: row.get("published_at"),
                published_by: row.get("published_by"),
            },
            document: read_document(row.get("document"))?,
        })
    }

    /// Every flow's findings, validated now against every other flow.
    pub async fn review(&self) -> Result<Vec<ReviewRow>> {
        let rows = sqlx::query("SELECT id, name, draft FROM flows ORDER BY name COLLATE NOCASE").fetch_all(&self.pool).await?;
        let all = self.context(None).await?;
        let mut review = Vec::new();
        for row in rows {
            let id: i64 = row.get("id");
            let name: String = row.get("name");
            let doc = read_document(row.get("draft"))?;
            let context = Context {
                flow_id: Some(id.to_string()),
                flows: all.flows.as_ref().map(|flows| flows.iter().filter(|f| f.id != id.to_string()).cloned().collect()),
                groups: all.groups.clone(),
                fields: all.fields.clone(),
            };
            let findings = validate(&doc, &context);
            let acks = crate::admin::acks(&self.pool, id).await?;
            for (level, list) in [(Level::Error, findings.errors), (Level::Warning, findings.warnings)] {
                review.extend(list.into_iter().map(|finding| {
                    let ack = acks.iter().find(|ack| Some(&ack.step) == finding.step.as_ref() && ack.code == finding.code.as_str()).cloned();
                    ReviewRow { flow_id: id, flow_name: name.clone(), level, finding, ack: ack.filter(|_| level == Level::Warning) }
                }));
            }
        }
        Ok(review)
    }

    /// Records `key` once; true the first time only. (The demo flow is
    /// seeded once per installation, not again after it is deleted.)
    pub async fn first_time(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
