//! The `waymark.flow/v1` document: the JSON a flow is saved, exported and
//! imported as (see FLOW_FORMAT.md).
//!
//! The document keeps what the author wrote and nothing more: omitted fields
//! stay omitted (defaults are applied by readers such as the validator and the
//! engine, never written back), so saving a loaded document gives the same
//! JSON. Saving is canonical: steps sorted by id, edges by (from, port, to),
//! keys in a fixed order, so two exports of the same flow diff cleanly.
//!
//! A step's `settings` stay an open JSON object here; the typed, per-kind view
//! lives in [`crate::core::kinds`]. That split lets a half-finished or
//! newer-version document load, round-trip and be reported on, instead of
//! being rejected at parse time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::kinds::StepKind;

/// The only format this version reads and writes.
pub const FORMAT_V1: &str = "waymark.flow/v1";

/// A whole flow document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowDocument {
    /// `waymark.flow/v1`; anything else is reported by the validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "FlowSettings::is_empty")]
    pub settings: FlowSettings,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub edges: Vec<Edge>,
}

/// Flow-wide settings; every field may be omitted (see [`FlowSettings::timezone_or_default`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_drip: Option<SlowDrip>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reentry: Option<Reentry>,
    /// Met at any step or event: the participant leaves as `converted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// A human reply to any of the flow's messages ends the participant
    /// (`exited`, reason `replied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_on_reply: Option<bool>,
    /// Receipts, password resets, order confirmations: exempt from contact
    /// pressure (caps and quiet hours), and not counted by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<bool>,
    /// `false`: this flow's emails carry no open pixel and no tracked
    /// links (a privacy switch; the installation has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<bool>,
}

/// `{"criteria": [...], "logic": ...}` or `{"event": MATCHER}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<Criterion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic: Option<Logic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::core::engagement::Matcher>,
}

impl FlowSettings {
    pub fn is_empty(&self) -> bool {
        self == &FlowSettings::default()
    }

    /// The flow's zone: UTC unless the document names one.
    pub fn timezone_or_default(&self) -> &str {
        self.timezone.as_deref().unwrap_or("UTC")
    }
}

/// Opening hours per weekday, holidays and whose zone they are read in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BusinessHours {
    #[serde(default)]
    pub days: WeekHours,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<CalendarZone>,
}

/// `["09:00", "17:00"]` per open day; a missing day is closed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WeekHours {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mon: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tue: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wed: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thu: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fri: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<[String; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sun: Option<[String; 2]>,
}

impl WeekHours {
    /// Monday first, as `(day name, hours)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<&[String; 2]>)> {
        [
            ("mon", self.mon.as_ref()),
            ("tue", self.tue.as_ref()),
            ("wed", self.wed.as_ref()),
            ("thu", self.thu.as_ref()),
            ("fri", self.fri.as_ref()),
            ("sat", self.sat.as_ref()),
            ("sun", self.sun.as_ref()),
        ]
        .into_iter()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarZone {
    /// The contact's own zone, falling back to the flow's.
    Contact,
    /// Always the flow's zone.
    Flow,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowDrip {
    pub limit: u32,
    pub per: DripPeriod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DripPeriod {
    Hour,
    Day,
}

/// May a contact enter the flow again after it has been in it?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once per contact, ever.
    Never,
    /// Again once the previous participation has ended.
    AfterExit,
    /// Any time, even while still in the flow.
    Always,
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub settings: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
}

impl Step {
    pub fn new(id: impl Into<String>, kind: StepKind) -> Self {
        Step { id: id.into(), kind, name: None, position: None, settings: Map::new(), guard: None }
    }

    /// What the marketer sees: the step's name, else its kind's label.
    pub fn display_name(&self) -> &str {
        match self.name.as_deref() {
            Some(name) if !name.trim().is_empty() => name,
            _ => self.kind.label(),
        }
    }

    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str)
    }
}

/// Canvas coordinates. Whole numbers are written without a fraction so a
/// document written by hand (`"x": 40`) saves back unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    #[serde(with = "whole_numbers")]
    pub x: f64,
    #[serde(with = "whole_numbers")]
    pub y: f64,
}

/// `from` step's output `port` leads to the `to` step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub port: String,
    pub to: String,
}

/// Criteria an action step checks before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic: Option<Logic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_unmet: Option<WhenUnmet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnmet {
    /// Advance at once, recording why the step did not run.
    Skip,
    /// Re-check until met (then run) or until `hold_timeout` (then skip).
    Hold,
}

/// How a list of criteria combine: all, any, or a custom expression such as
/// `1 AND (2 OR NOT 3)` over their 1-based positions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Logic {
    All,
    Any,
    Custom(String),
}

impl From<String> for Logic {
    fn from(text: String) -> Self {
        match text.as_str() {
            "all" => Logic::All,
            "any" => Logic::Any,
            _ => Logic::Custom(text),
        }
    }
}

impl From<Logic> for String {
    fn from(logic: Logic) -> Self {
        match logic {
            Logic::All => "all".into(),
            Logic::Any => "any".into(),
            Logic::Custom(text) => text,
        }
    }
}

/// `{"field": "country", "op": "equals", "value": "US"}`; engagement
/// operators name no field (`{"op": "opened", "value": "e1"}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub op: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// `clicked` / `not_clicked`: only links whose URL contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_contains: Option<String>,
    /// `did_event` / `did_not_event`: only events this long before now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
    /// Opens and clicks by machines count too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_machine: bool,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A name this version does not know, kept as written.
            Unknown(String),
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(text) => text,
                }
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                match text.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Unknown(text),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                match value {
                    $name::Unknown(text) => text,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// A criterion's comparison.
    Operator {
        Equals = "equals",
        NotEquals = "not_equals",
        Contains = "contains",
        NotContains = "not_contains",
        StartsWith = "starts_with",
        GreaterThan = "greater_than",
        LessThan = "less_than",
        IsEmpty = "is_empty",
        IsNotEmpty = "is_not_empty",
        In = "in",
        NotIn = "not_in",
        MemberOf = "member_of",
        NotMemberOf = "not_member_of",
        Opened = "opened",
        NotOpened = "not_opened",
        Clicked = "clicked",
        NotClicked = "not_clicked",
        Replied = "replied",
        NotReplied = "not_replied",
        Bounced = "bounced",
        Unsubscribed = "unsubscribed",
        DidEvent = "did_event",
        DidNotEvent = "did_not_event",
    }
}

impl Operator {
    /// `is_empty` and `is_not_empty` compare with nothing.
    pub fn takes_value(&self) -> bool {
        !matches!(self, Operator::IsEmpty | Operator::IsNotEmpty)
    }

    /// Answered from what the participant was sent and received, not from
    /// a contact field (FLOW_FORMAT "Engagement": written without `field`).
    pub fn is_engagement(&self) -> bool {
        matches!(
            self,
            Operator::Opened
                | Operator::NotOpened
                | Operator::Clicked
                | Operator::NotClicked
                | Operator::Replied
                | Operator::NotReplied
                | Operator::Bounced
                | Operator::Unsubscribed
                | Operator::DidEvent
                | Operator::DidNotEvent
        )
    }

    /// Engagement operators whose value is a message step of the flow (or `any`).
    pub fn names_message_step(&self) -> bool {
        self.is_engagement() && !matches!(self, Operator::Unsubscribed | Operator::DidEvent | Operator::DidNotEvent)
    }
}

string_enum! {
    /// The unit of a [`Duration`].
    TimeUnit {
        Seconds = "seconds",
        Minutes = "minutes",
        Hours = "hours",
        Days = "days",
        Weeks = "weeks",
    }
}

/// `{"amount": N, "unit": "days"}`. A day is 24 hours of elapsed time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Duration {
    pub amount: u64,
    pub unit: TimeUnit,
}

impl Duration {
    /// Elapsed seconds, or `None` for an unknown unit or an overflowing amount.
    pub fn as_seconds(&self) -> Option<u64> {
        let per = match self.unit {
            TimeUnit::Seconds => 1,
            TimeUnit::Minutes => 60,
            TimeUnit::Hours => 3_600,
            TimeUnit::Days => 86_400,
            TimeUnit::Weeks => 604_800,
            TimeUnit::Unknown(_) => return None,
        };
        self.amount.checked_mul(per)
    }
}

/// Why a JSON value could not be read as a flow document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DocumentError {
    /// Where in the document, like `steps[3].position.x` (`.` for the top).
    pub path: String,
    pub message: String,
}

impl FlowDocument {
    /// An empty v1 draft with one start step, what "New flow" creates.
    pub fn new_draft(name: impl Into<String>) -> Self {
        let mut start = Step::new("start", StepKind::Start);
        start.name = Some("Start".into());
        start.position = Some(Position { x: 80.0, y: 80.0 });
        start.settings.insert("entry".into(), Value::String("manual".into()));
        FlowDocument {
            format: Some(FORMAT_V1.into()),
            name: name.into(),
            settings: FlowSettings::default(),
            steps: vec![start],
            edges: Vec::new(),
        }
    }

    /// Reads a document from JSON text. Text that is not JSON, or JSON that
    /// does not have the document's shape, is an error naming where.
    pub fn from_json(text: &str) -> Result<Self, DocumentError> {
        let value: Value = serde_json::from_str(text).map_err(|err| DocumentError {
            path: ".".into(),
            message: format!("not valid JSON (line {}, column {}): {err}", err.line(), err.column()),
        })?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, DocumentError> {
        if !value.is_object() {
            return Err(DocumentError {
                path: ".".into(),
                message: "a flow document must be a JSON object".into(),
            });
        }
        crate::core::limits::check_document(value).map_err(|err| DocumentError {
            message: format!("the text is longer than {} characters ({})", err.limit, err.length),
            path: err.field,
        })?;
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            DocumentError { path, message: err.into_inner().to_string() }
        })
    }

    /// Steps sorted by id and edges by (from, port, to): the saved order.
    pub fn canonicalize(&mut self) {
        self.steps.sort_by(|a, b| a.id.cmp(&b.id));
        self.edges.sort();
    }

    /// The canonical JSON text: sorted, two-space indented, newline at the end.
    pub fn to_canonical_json(&self) -> String {
        let mut doc = self.clone();
        doc.canonicalize();
        let mut text = serde_json::to_string_pretty(&doc).expect("a flow document always serializes");
        text.push('\n');
        text
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }

    pub fn format_is_v1(&self) -> bool {
        self.format.as_deref() == Some(FORMAT_V1)
    }
}

/// Writes an `f64` that holds a whole number as a JSON integer.
mod whole_numbers {
    use serde::{Deserialize, Deserializer, Serializer};

    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.fract() == 0.0 && value.abs() < EXACT {
            serializer.serialize_i64(*value as i64)
        } else {
            serializer.serialize_f64(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(serde::de::Error::custom("a coordinate must be a finite number"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "format": "waymark.flow/v1",
      "name": "Welcome series",
      "settings": {
        "timezone": "America/New_York",
        "business_hours": {
          "days": {"mon": ["09:00", "17:00"], "fri": ["09:00", "17:00"]},
          "holidays": ["2026-12-25"],
          "zone": "contact"
        },
        "slow_drip": {"limit": 50, "per": "day"},
        "reentry": "never"
      },
      "steps": [
        {"id": "w1", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
        {"id": "start", "kind": "start", "name": "Start", "position": {"x": 0, "y": 12.5},
         "settings": {"entry": "manual"}},
        {"id": "c1", "kind": "condition", "guard": {"criteria": [{"field": "country", "op": "equals", "value": "US"}],
          "logic": "1", "when_unmet": "hold", "hold_timeout": {"amount": 2, "unit": "hours"}},
         "settings": {"criteria": [], "logic": "all"}}
      ],
      "edges": [{"from": "w1", "port": "next", "to": "c1"}, {"from": "start", "port": "next", "to": "w1"}]
    }"#;

    #[test]
    fn saving_a_loaded_document_is_a_fixed_point() {
        let doc = FlowDocument::from_json(SAMPLE).unwrap();
        let saved = doc.to_canonical_json();
        let reloaded = FlowDocument::from_json(&saved).unwrap();
        assert_eq!(reloaded.to_canonical_json(), saved);
        // steps in id order, edges in (from, port, to) order
        let ids: Vec<_> = reloaded.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c1", "start", "w1"]);
        assert_eq!(reloaded.edges[0].from, "start");
    }

    #[test]
    fn omitted_fields_stay_omitted_and_whole_numbers_stay_whole() {
        let doc = FlowDocument::from_json(SAMPLE).unwrap();
        let saved = doc.to_canonical_json();
        assert!(saved.contains(r#""x": 0,"#), "{saved}");
        assert!(saved.contains(r#""y": 12.5"#));
        let w1: Value = serde_json::from_str::<Value>(&saved).unwrap()["steps"][2].clone();
        assert_eq!(w1.as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "kind", "settings"]);
    }

    #[test]
    fn unknown_names_are_kept_as_written() {
        let text = r#"{"format":"waymark.flow/v9","steps":[{"id":"a","kind":"teleport",
            "guard":{"criteria":[{"field":"f","op":"resembles"}],"logic":"any"}}],"edges":[]}"#;
        let doc = FlowDocument::from_json(text).unwrap();
        assert_eq!(doc.steps[0].kind, StepKind::Unknown("teleport".into()));
        let saved = doc.to_canonical_json();
        assert!(saved.contains(r#""kind": "teleport""#));
        assert!(saved.contains(r#""op": "resembles""#));
        assert!(saved.contains(r#""format": "waymark.flow/v9""#));
    }

    #[test]
    fn shape_errors_name_the_path() {
        let err = FlowDocument::from_json(r#"{"steps":[{"id":"a","kind":"start","position":{"x":"left","y":0}}]}"#)
            .unwrap_err();
        assert_eq!(err.path, "steps[0].position.x");
        let err = FlowDocument::from_json("[1, 2]").unwrap_err();
        assert!(err.message.contains("JSON object"));
        let err = FlowDocument::from_json("{nope").unwrap_err();
        assert!(err.message.contains("not valid JSON"));
    }

    #[test]
    fn durations_convert_to_elapsed_seconds() {
        let day = Duration { amount: 1, unit: TimeUnit::Days };
        assert_eq!(day.as_seconds(), Some(86_400));
        let odd = Duration { amount: 1, unit: TimeUnit::Unknown("fortnights".into()) };
        assert_eq!(odd.as_seconds(), None);
        let huge = Duration { amount: u64::MAX, unit: TimeUnit::Weeks };
        assert_eq!(huge.as_seconds(), None);
    }
}
