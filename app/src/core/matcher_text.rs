//! The engagement pieces as the editor's forms hold them: which controls a
//! `wait_until` matcher or an engagement criterion shows, what changing its
//! kind keeps, and the test run's timed events (`+2h`, `email_opened`, `e1`).
//!
//! Everything here writes documents as FLOW_FORMAT.md says (empty keys
//! omitted, engagement criteria without `field`); it never invents a key a
//! marketer did not set. Pure: the inspector, the test-run panel and the
//! server's test run share it, so "+2h" reads the same on both sides.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::engagement::{BounceType, ContactEvent, Matcher, Received};
use crate::core::flow::{Criterion, Logic, Operator};

/// The matcher kind select's value for `{"criteria": [...]}` matchers.
pub const CRITERIA: &str = "criteria";

/// The channels an `unsubscribed` criterion or event names.
pub const CHANNELS: &[&str] = &["email", "sms", "all"];

/// What a matcher waits for, as its kind select shows it: an event kind,
/// or [`CRITERIA`].
pub fn matcher_kind(matcher: &Matcher) -> &str {
    matcher.event.as_deref().unwrap_or(CRITERIA)
}

/// Events about one message, which a matcher's `step` may name.
pub fn names_step(kind: &str) -> bool {
    matches!(kind, "email_opened" | "link_clicked" | "replied" | "bounced" | "complained")
}

/// Opens and clicks, which mail-privacy proxies and link scanners make too.
pub fn counts_machines(kind: &str) -> bool {
    matches!(kind, "email_opened" | "link_clicked")
}

/// Text typed into an optional setting: empty (or blank) means absent.
pub fn optional_text(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// `matcher` as `kind` (an event kind or [`CRITERIA`]): what still applies
/// to the new kind is kept, the rest dropped so it is not written.
pub fn with_kind(matcher: &Matcher, kind: &str) -> Matcher {
    if kind == CRITERIA {
        return Matcher { criteria: matcher.criteria.clone(), logic: matcher.logic.clone(), ..Matcher::default() };
    }
    let custom = kind == "custom";
    Matcher {
        event: Some(kind.to_owned()),
        step: matcher.step.clone().filter(|_| names_step(kind)),
        url_contains: matcher.url_contains.clone().filter(|_| kind == "link_clicked"),
        name: matcher.name.clone().filter(|_| custom),
        where_: if custom { matcher.where_.clone() } else { Vec::new() },
        include_machine: matcher.include_machine && counts_machines(kind),
        criteria: Vec::new(),
        logic: None,
    }
}

/// A new matcher, as the "add" button makes it.
pub fn new_matcher() -> Matcher {
    Matcher { event: Some("email_opened".into()), ..Matcher::default() }
}

/// What a criterion row shows for its operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriterionShape {
    /// A contact field, the operator and (most operators) a value.
    Field,
    /// A message step of the flow or `any`; `url` for clicks, `machine`
    /// for opens and clicks.
    Step { url: bool, machine: bool },
    /// `unsubscribed`: a channel.
    Channel,
    /// `did_event` / `did_not_event`: an event name and an optional `within`.
    Event,
}

pub fn criterion_shape(op: &Operator) -> CriterionShape {
    match op {
        Operator::Opened | Operator::NotOpened => CriterionShape::Step { url: false, machine: true },
        Operator::Clicked | Operator::NotClicked => CriterionShape::Step { url: true, machine: true },
        Operator::Replied | Operator::NotReplied | Operator::Bounced => CriterionShape::Step { url: false, machine: false },
        Operator::Unsubscribed => CriterionShape::Channel,
        Operator::DidEvent | Operator::DidNotEvent => CriterionShape::Event,
        _ => CriterionShape::Field,
    }
}

/// `criterion` with operator `op`. Between two field operators only the
/// operator changes; to an engagement operator the field goes (they are
/// written without one) and the value becomes what the new operator takes
/// (`any` message, the email channel, or none yet for an event name);
/// options the new operator has no use for are dropped.
pub fn with_operator(criterion: &Criterion, op: Operator) -> Criterion {
    let before = criterion_shape(&criterion.op);
    let after = criterion_shape(&op);
    let text = criterion.value.as_ref().and_then(Value::as_str).map(str::trim).unwrap_or_default();
    let mut next = criterion.clone();
    next.op = op;
    match after {
        CriterionShape::Field => {
            if before != CriterionShape::Field {
                next.value = None;
            }
        }
        CriterionShape::Step { .. } => {
            next.field.clear();
            if !matches!(before, CriterionShape::Step { .. }) || text.is_empty() {
                next.value = Some(Value::String("any".into()));
            }
        }
        CriterionShape::Channel => {
            next.field.clear();
            if !(CHANNELS.contains(&text) || text == "any") {
                next.value = Some(Value::String(CHANNELS[0].into()));
            }
        }
        CriterionShape::Event => {
            next.field.clear();
            if before != CriterionShape::Event {
                next.value = None;
            }
        }
    }
    if !matches!(after, CriterionShape::Step { url: true, .. }) {
        next.url_contains = None;
    }
    if !matches!(after, CriterionShape::Step { machine: true, .. }) {
        next.include_machine = false;
    }
    if after != CriterionShape::Event {
        next.within = None;
    }
    next
}

/// A new, empty criterion row.
pub fn new_criterion() -> Criterion {
    Criterion { field: String::new(), op: Operator::Equals, value: None, url_contains: None, within: None, include_machine: false }
}

/// The goal's form: no goal, criteria over the contact, or an event.
pub fn goal_kind(goal: Option<&crate::core::flow::Goal>) -> &'static str {
    match goal {
        None => "none",
        Some(goal) if goal.event.is_some() => "event",
        Some(_) => CRITERIA,
    }
}

/// The goal as its kind select chose: criteria keep the criteria there
/// were, an event keeps the matcher there was (else a link click).
pub fn goal_as(goal: Option<&crate::core::flow::Goal>, kind: &str) -> Option<crate::core::flow::Goal> {
    use crate::core::flow::Goal;
    match kind {
        CRITERIA => Some(Goal {
            criteria: goal.map(|g| g.criteria.clone()).unwrap_or_default(),
            logic: goal.and_then(|g| g.logic.clone()).or(Some(Logic::All)),
            event: None,
        }),
        "event" => Some(Goal {
            criteria: Vec::new(),
            logic: None,
            event: Some(
                goal.and_then(|g| g.event.clone())
                    .unwrap_or_else(|| Matcher { event: Some("link_clicked".into()), ..Matcher::default() }),
            ),
        }),
        _ => None,
    }
}

/// A test run's contact event: `{"after": "+2h", "event": KIND, ...}`,
/// delivered that long after the run's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedEvent {
    pub after: String,
    #[serde(flatten)]
    pub event: ContactEvent,
}

/// `+2h`, `3d`, `+1d 12h`, `+90m`: a time after the start.
pub fn parse_offset(text: &str) -> Result<SignedDuration, String> {
    let bad = || format!("“{}” is not a time after the start like +2h, +3d, +90m or +1d12h", text.trim());
    let compact: String = text.trim().trim_start_matches('+').chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    if compact.is_empty() || compact.starts_with('-') {
        return Err(bad());
    }
    crate::core::simulate::parse_span(&compact).map_err(|_| bad())
}

/// The events as delivered: each at `start` plus its offset. The first bad
/// offset is the error, naming the event by its place in the list.
pub fn received_from(start: Timestamp, events: &[TimedEvent]) -> Result<Vec<Received>, String> {
    events
        .iter()
        .enumerate()
        .map(|(i, timed)| {
            let after = parse_offset(&timed.after).map_err(|why| format!("Event {}: {why}.", i + 1))?;
            let at = start.checked_add(after).map_err(|_| format!("Event {}: “{}” is too far after the start.", i + 1, timed.after.trim()))?;
            Ok(Received { id: None, at, event: timed.event.clone() })
        })
        .collect()
}

/// One row of the test run's event list, as typed: `detail` is the URL of
/// a click, the name of a custom event, the channel of an unsubscribe or
/// the type of a bounce; `flag` marks a machine open or click, or an
/// auto-reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub after: String,
    pub kind: String,
    pub step: String,
    pub detail: String,
    pub flag: bool,
}

impl Default for EventRow {
    fn default() -> Self {
        EventRow { after: "+1h".into(), kind: "email_opened".into(), step: String::new(), detail: String::new(), flag: false }
    }
}

impl EventRow {
    /// The event the row describes (an unknown kind is a custom event of that name).
    pub fn to_event(&self) -> TimedEvent {
        let step = optional_text(&self.step).map(|s| s.trim().to_owned());
        let detail = self.detail.trim().to_owned();
        let event = match self.kind.as_str() {
            "email_opened" => ContactEvent::EmailOpened { step, machine: self.flag },
            "link_clicked" => ContactEvent::LinkClicked { step, url: detail, machine: self.flag },
            "replied" => ContactEvent::Replied { step, auto: self.flag },
            "bounced" => ContactEvent::Bounced { step, bounce: if detail == "hard" { BounceType::Hard } else { BounceType::Soft } },
            "complained" => ContactEvent::Complained { step },
            "unsubscribed" => ContactEvent::Unsubscribed { channel: if detail.is_empty() { "all".into() } else { detail } },
            "custom" => ContactEvent::Custom { name: detail, properties: Default::default() },
            other => ContactEvent::Custom { name: other.to_owned(), properties: Default::default() },
        };
        TimedEvent { after: self.after.trim().to_owned(), event }
    }

    /// What `detail` means for the row's kind (its label), if anything.
    pub fn detail_label(kind: &str) -> Option<&'static str> {
        match kind {
            "link_clicked" => Some("URL"),
            "custom" => Some("event name"),
            "unsubscribed" => Some("channel"),
            "bounced" => Some("bounce type"),
            _ => None,
        }
    }

    /// What `flag` means for the row's kind, if anything.
    pub fn flag_label(kind: &str) -> Option<&'static str> {
        match kind {
            "email_opened" | "link_clicked" => Some("by a machine"),
            "replied" => Some("auto-reply"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matcher(value: Value) -> Matcher {
        serde_json::from_value(value).unwrap()
    }

    fn criterion(value: Value) -> Criterion {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_matcher_reads_and_writes_back_unchanged() {
        for written in [
            json!({"event": "email_opened", "step": "e1"}),
            json!({"event": "link_clicked", "step": "e1", "url_contains": "pricing", "include_machine": true}),
            json!({"event": "custom", "name": "purchased", "where": [{"field": "plan", "op": "equals", "value": "pro"}]}),
            json!({"criteria": [{"op": "opened", "value": "any"}], "logic": "all"}),
            json!({"event": "unsubscribed"}),
        ] {
            let read = matcher(written.clone());
            assert_eq!(with_kind(&read, matcher_kind(&read)), read, "{written}");
            assert_eq!(serde_json::to_value(with_kind(&read, matcher_kind(&read))).unwrap(), written);
        }
    }

    #[test]
    fn changing_a_matchers_kind_drops_what_no_longer_applies() {
        let click = matcher(json!({"event": "link_clicked", "step": "e1", "url_contains": "pricing", "include_machine": true}));
        assert_eq!(serde_json::to_value(with_kind(&click, "email_opened")).unwrap(), json!({"event": "email_opened", "step": "e1", "include_machine": true}));
        assert_eq!(serde_json::to_value(with_kind(&click, "replied")).unwrap(), json!({"event": "replied", "step": "e1"}));
        assert_eq!(serde_json::to_value(with_kind(&click, "custom")).unwrap(), json!({"event": "custom"}));
        assert_eq!(serde_json::to_value(with_kind(&click, "unsubscribed")).unwrap(), json!({"event": "unsubscribed"}));
        assert_eq!(serde_json::to_value(with_kind(&click, CRITERIA)).unwrap(), json!({}));
        assert_eq!(matcher_kind(&with_kind(&click, CRITERIA)), CRITERIA);
        let criteria = matcher(json!({"criteria": [{"op": "replied", "value": "e1"}], "logic": "any"}));
        assert_eq!(serde_json::to_value(with_kind(&criteria, "bounced")).unwrap(), json!({"event": "bounced"}));
    }

    #[test]
    fn engagement_operators_are_written_without_a_field() {
        let field = criterion(json!({"field": "country", "op": "equals", "value": "US"}));
        let opened = with_operator(&field, Operator::Opened);
        assert_eq!(serde_json::to_value(&opened).unwrap(), json!({"op": "opened", "value": "any"}));
        // a step chosen stays when another step operator is chosen; a click keeps its URL part
        let mut on_e1 = opened.clone();
        on_e1.value = Some(json!("e1"));
        on_e1.include_machine = true;
        let clicked = with_operator(&on_e1, Operator::Clicked);
        assert_eq!(serde_json::to_value(&clicked).unwrap(), json!({"op": "clicked", "value": "e1", "include_machine": true}));
        let mut clicked = clicked;
        clicked.url_contains = Some("pricing".into());
        assert_eq!(serde_json::to_value(with_operator(&clicked, Operator::NotReplied)).unwrap(), json!({"op": "not_replied", "value": "e1"}));
        assert_eq!(serde_json::to_value(with_operator(&clicked, Operator::Unsubscribed)).unwrap(), json!({"op": "unsubscribed", "value": "email"}));
        assert_eq!(serde_json::to_value(with_operator(&clicked, Operator::DidEvent)).unwrap(), json!({"op": "did_event"}));
        // back to a field operator: the engagement value goes
        assert_eq!(serde_json::to_value(with_operator(&clicked, Operator::Equals)).unwrap(), json!({"op": "equals"}));
    }

    #[test]
    fn field_operators_keep_field_and_value_and_events_keep_within() {
        let field = criterion(json!({"field": "score", "op": "greater_than", "value": "10"}));
        assert_eq!(serde_json::to_value(with_operator(&field, Operator::LessThan)).unwrap(), json!({"field": "score", "op": "less_than", "value": "10"}));
        let did = criterion(json!({"op": "did_event", "value": "purchased", "within": {"amount": 7, "unit": "days"}}));
        assert_eq!(
            serde_json::to_value(with_operator(&did, Operator::DidNotEvent)).unwrap(),
            json!({"op": "did_not_event", "value": "purchased", "within": {"amount": 7, "unit": "days"}})
        );
        let any = criterion(json!({"op": "unsubscribed", "value": "any"}));
        assert_eq!(with_operator(&any, Operator::Unsubscribed), any);
    }

    #[test]
    fn the_goal_switches_between_criteria_and_an_event() {
        assert_eq!(goal_kind(None), "none");
        let criteria = goal_as(None, CRITERIA).unwrap();
        assert_eq!(goal_kind(Some(&criteria)), CRITERIA);
        assert_eq!(serde_json::to_value(&criteria).unwrap(), json!({"logic": "all"}));
        let event = goal_as(Some(&criteria), "event").unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), json!({"event": {"event": "link_clicked"}}));
        assert_eq!(goal_as(Some(&event), "none"), None);
    }

    #[test]
    fn offsets_read_with_or_without_plus_and_spaces() {
        assert_eq!(parse_offset("+2h"), Ok(SignedDuration::from_hours(2)));
        assert_eq!(parse_offset("3d"), Ok(SignedDuration::from_hours(72)));
        assert_eq!(parse_offset(" +1d 12h "), Ok(SignedDuration::from_hours(36)));
        assert_eq!(parse_offset("+90M"), Ok(SignedDuration::from_mins(90)));
        assert_eq!(parse_offset("+0m"), Ok(SignedDuration::ZERO));
        for bad in ["", "+", "2", "+2x", "-2h", "soon", "2h-"] {
            let err = parse_offset(bad).unwrap_err();
            assert!(err.contains("is not a time after the start"), "{bad}: {err}");
        }
    }

    #[test]
    fn timed_events_become_received_events_or_name_the_bad_one() {
        let start: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let opened = EventRow { after: "+2h".into(), kind: "email_opened".into(), step: "e1".into(), ..EventRow::default() };
        let received = received_from(start, &[opened.to_event()]).unwrap();
        assert_eq!(received[0].at, "2026-12-01T11:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(serde_json::to_value(&received[0]).unwrap(), json!({"at": "2026-12-01T11:00:00Z", "event": "email_opened", "step": "e1"}));
        let bad = EventRow { after: "in two hours".into(), ..EventRow::default() };
        let err = received_from(start, &[opened.to_event(), bad.to_event()]).unwrap_err();
        assert_eq!(err, "Event 2: “in two hours” is not a time after the start like +2h, +3d, +90m or +1d12h.");
    }

    #[test]
    fn event_rows_describe_each_kind() {
        let row = |kind: &str, detail: &str, flag: bool| {
            serde_json::to_value(EventRow { kind: kind.into(), step: "e1".into(), detail: detail.into(), flag, ..EventRow::default() }.to_event()).unwrap()
        };
        assert_eq!(row("link_clicked", " https://x.test/pricing ", true), json!({"after": "+1h", "event": "link_clicked", "step": "e1", "url": "https://x.test/pricing", "machine": true}));
        assert_eq!(row("replied", "", true), json!({"after": "+1h", "event": "replied", "step": "e1", "auto": true}));
        assert_eq!(row("bounced", "hard", false), json!({"after": "+1h", "event": "bounced", "step": "e1", "type": "hard"}));
        assert_eq!(row("unsubscribed", "", false), json!({"after": "+1h", "event": "unsubscribed", "channel": "all"}));
        assert_eq!(row("custom", "purchased", false), json!({"after": "+1h", "event": "custom", "name": "purchased"}));
        let sent: TimedEvent = serde_json::from_value(row("email_opened", "", false)).unwrap();
        assert_eq!(sent.event, ContactEvent::EmailOpened { step: Some("e1".into()), machine: false });
    }
}
