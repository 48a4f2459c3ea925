//! A contact as the flow rules see it, and criteria evaluated against it.
//!
//! A criterion's `field` names `email`, `mobile`, `timezone`, `owner` or a
//! custom field. A missing field is empty. Ordering operators compare
//! numbers as numbers (numeric text included); an empty field is never
//! greater or less than anything.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::flow::{Criterion, Logic, Operator};
use crate::core::logic::LogicExpr;

/// The JSON a contact file holds (FLOW_FORMAT.md), plus ownership and consent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// IANA zone such as `Europe/Paris`; the flow's zone applies when absent or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The record owner (a user id), for manual steps owned by `record_owner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub fields: Map<String, Value>,
    #[serde(default)]
    pub lists: BTreeSet<String>,
    /// Channels the contact opted out of: `email`, `sms`, `call`, `all`;
    /// also `undeliverable:ADDRESS` for a hard-bounced email address.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub opted_out: BTreeSet<String>,
    /// Blocked contacts are never contacted on any channel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Messages sent to the contact lately, by any flow: what contact
    /// pressure caps count (FLOW_FORMAT "Contact pressure"). The runtime
    /// fills it from the sends kept per contact; a contact file may list
    /// sends made elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<crate::core::pressure::RecentSend>,
    /// The store's version of this contact when this copy was read. Every
    /// write of the contact moves it on (its data, its lists, consent, and
    /// new entries in `recent`), and a runtime writes its copy only over the
    /// version it read: two workers cannot both take a cap's last slot, and
    /// a batch cannot write back data read before an edit made beside it.
    /// (Named for its first use, the sends.) Not part of documents.
    #[serde(skip)]
    pub sends_version: i64,
}

/// An `opted_out` entry marking an email address that hard-bounced:
/// `undeliverable:ADDRESS` (lower case). Kept with consent so every store
/// of a contact keeps it; keyed by address, so a corrected email is tried.
pub const UNDELIVERABLE_PREFIX: &str = "undeliverable:";

/// Outreach channels, for consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    Call,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Call => "call",
        }
    }
}

impl Contact {
    /// A field's value; absent fields are `None`.
    pub fn field(&self, name: &str) -> Option<Value> {
        let text = |v: &Option<String>| v.as_ref().map(|s| Value::String(s.clone()));
        match name {
            "email" => text(&self.email),
            "mobile" => text(&self.mobile),
            "timezone" => text(&self.timezone),
            "owner" => text(&self.owner),
            _ => self.fields.get(name).cloned(),
        }
    }

    /// A field as text for merge tags: empty when absent, arrays joined.
    pub fn field_text(&self, name: &str) -> String {
        match self.field(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text,
            Some(Value::Array(items)) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
            Some(other) => value_text(&other),
        }
    }

    pub fn set_field(&mut self, name: &str, value: Value) {
        let text = || match &value {
            Value::Null => None,
            other => Some(value_text(other)),
        };
        match name {
            "email" => self.email = text().filter(|t| !t.is_empty()),
            "mobile" => self.mobile = text().filter(|t| !t.is_empty()),
            "timezone" => self.timezone = text().filter(|t| !t.is_empty()),
            "owner" => self.owner = text().filter(|t| !t.is_empty()),
            _ if value.is_null() => {
                self.fields.remove(name);
            }
            _ => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }

    /// Why this contact may not be reached on `channel` now, if it may not.
    pub fn refusal(&self, channel: Channel) -> Option<&'static str> {
        if self.blocked {
            return Some("blocked");
        }
        if self.opted_out.contains("all") || self.opted_out.contains(channel.as_str()) {
            return Some(match channel {
                Channel::Email => "opted_out_email",
                Channel::Sms => "opted_out_sms",
                Channel::Call => "opted_out_call",
            });
        }
        None
    }

    /// Did this email address hard-bounce? Sends to it are skipped.
    pub fn is_undeliverable(&self, address: &str) -> bool {
        self.opted_out.contains(&format!("{UNDELIVERABLE_PREFIX}{}", address.trim().to_lowercase()))
    }

    /// Marks an email address undeliverable (a hard bounce).
    pub fn mark_undeliverable(&mut self, address: &str) {
        self.opted_out.insert(format!("{UNDELIVERABLE_PREFIX}{}", address.trim().to_lowercase()));
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_empty(value: &Option<Value>) -> bool {
    value.as_ref().is_none_or(crate::core::kinds::value_is_empty)
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Equality the way a marketer means it: numbers as numbers, text without
/// regard to case or surrounding spaces.
fn same(a: &Value, b: &Value) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => value_text(a).trim().eq_ignore_ascii_case(value_text(b).trim()),
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    as_number(a)?.partial_cmp(&as_number(b)?)
}

/// The values a criterion compares with: a list's items, or the one value.
fn candidates(value: &Option<Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(text)) if text.contains(',') => {
            text.split(',').map(|part| Value::String(part.trim().to_owned())).collect()
        }
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

/// Does `contact` meet `criterion`?
pub fn meets(contact: &Contact, criterion: &Criterion) -> bool {
    let actual = contact.field(&criterion.field);
    let expected = &criterion.value;
    let text = |v: &Option<Value>| v.as_ref().map(value_text).unwrap_or_default().to_lowercase();
    match &criterion.op {
        Operator::IsEmpty => is_empty(&actual),
        Operator::IsNotEmpty => !is_empty(&actual),
        Operator::Equals => match (&actual, expected) {
            (Some(a), Some(b)) if !is_empty(&actual) => same(a, b),
            _ => false,
        },
        Operator::NotEquals => !meets(contact, &Criterion { op: Operator::Equals, ..criterion.clone() }),
        Operator::Contains => !is_empty(&actual) && text(&actual).contains(&text(expected)),
        Operator::NotContains => is_empty(&actual) || !text(&actual).contains(&text(expected)),
        Operator::StartsWith => !is_empty(&actual) && text(&actual).starts_with(&text(expected)),
        Operator::GreaterThan | Operator::LessThan => {
            let (Some(a), Some(b)) = (&actual, expected) else { return false };
            let want = if criterion.op == Operator::GreaterThan { Ordering::Greater } else { Ordering::Less };
            !is_empty(&actual) && order(a, b) == Some(want)
        }
        Operator::In => actual.as_ref().is_some_and(|a| !is_empty(&actual) && candidates(expected).iter().any(|c| same(a, c))),
        Operator::NotIn => !meets(contact, &Criterion { op: Operator::In, ..criterion.clone() }),
        Operator::MemberOf => {
            candidates(expected).iter().any(|list| contact.lists.iter().any(|l| l.eq_ignore_ascii_case(&value_text(list))))
        }
        Operator::NotMemberOf => !meets(contact, &Criterion { op: Operator::MemberOf, ..criterion.clone() }),
        // Engagement operators need the participant's record
        // (`engagement::criteria_met_at`); on the contact alone, unmet.
        // Unknown operators never match.
        _ => false,
    }
}

/// Do the criteria hold, combined by `logic` (all by default)? A custom
/// logic that does not parse is unmet: validation blocks publishing it.
pub fn criteria_met(contact: &Contact, criteria: &[Criterion], logic: Option<&Logic>) -> bool {
    let results: Vec<bool> = criteria.iter().map(|c| meets(contact, c)).collect();
    combine(&results, logic)
}

/// Criteria results combined by `logic` (all by default); custom logic that
/// does not parse is unmet.
pub fn combine(results: &[bool], logic: Option<&Logic>) -> bool {
    match logic {
        None | Some(Logic::All) => results.iter().all(|r| *r),
        Some(Logic::Any) => results.iter().any(|r| *r),
        Some(Logic::Custom(text)) => LogicExpr::parse(text, results.len()).is_ok_and(|expr| expr.eval(results)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contact() -> Contact {
        serde_json::from_value(json!({
            "email": "ada@example.com", "timezone": "Europe/London",
            "fields": {"country": "GB", "score": 42, "plan": "", "tags": ["vip", "beta"], "age": "37"},
            "lists": ["Newsletter"]
        }))
        .unwrap()
    }

    fn crit_defaults() -> Criterion {
        Criterion { field: String::new(), op: Operator::Equals, value: None, url_contains: None, within: None, include_machine: false }
    }

    fn check(field: &str, op: &str, value: Value) -> bool {
        let value = if value.is_null() { None } else { Some(value) };
        meets(&contact(), &Criterion { field: field.into(), op: Operator::from(op.to_owned()), value, ..crit_defaults() })
    }

    #[test]
    fn equality_is_case_blind_and_numeric_where_it_can_be() {
        assert!(check("country", "equals", json!("gb")));
        assert!(check("score", "equals", json!("42")));
        assert!(check("score", "equals", json!(42.0)));
        assert!(!check("country", "equals", json!("US")));
        assert!(check("country", "not_equals", json!("US")));
        assert!(!check("missing", "equals", json!("")), "an empty field equals nothing");
    }

    #[test]
    fn ordering_compares_numbers_and_never_empties() {
        assert!(check("score", "greater_than", json!(10)));
        assert!(check("age", "greater_than", json!("9")), "numeric text compares as a number, not as text");
        assert!(!check("score", "less_than", json!(10)));
        assert!(!check("missing", "greater_than", json!(-1000)));
        assert!(!check("missing", "less_than", json!(1000)));
        assert!(!check("country", "greater_than", json!(1)), "text is not ordered against numbers");
    }

    #[test]
    fn text_lists_and_emptiness() {
        assert!(check("email", "contains", json!("EXAMPLE")));
        assert!(check("email", "starts_with", json!("ada")));
        assert!(check("missing", "not_contains", json!("x")));
        assert!(check("plan", "is_empty", Value::Null));
        assert!(check("missing", "is_empty", Value::Null));
        assert!(check("tags", "is_not_empty", Value::Null));
        assert!(check("country", "in", json!(["US", "GB"])));
        assert!(check("country", "in", json!("US, GB")));
        assert!(check("country", "not_in", json!(["US", "FR"])));
        assert!(check("x", "member_of", json!("newsletter")));
        assert!(check("x", "not_member_of", json!("Customers")));
        assert!(!check("country", "resembles", json!("GB")), "unknown operators never match");
    }

    #[test]
    fn logic_combines_results() {
        let c = contact();
        let crit = |field: &str, value: Value| Criterion { field: field.into(), op: Operator::Equals, value: Some(value), ..crit_defaults() };
        let list = [crit("country", json!("GB")), crit("score", json!(1)), crit("score", json!(42))];
        assert!(!criteria_met(&c, &list, None));
        assert!(criteria_met(&c, &list, Some(&Logic::Any)));
        assert!(criteria_met(&c, &list, Some(&Logic::Custom("1 AND (2 OR 3)".into()))));
        assert!(!criteria_met(&c, &list, Some(&Logic::Custom("1 AND 2".into()))));
        assert!(!criteria_met(&c, &list, Some(&Logic::Custom("1 AND (".into()))));
    }

    #[test]
    fn consent_is_per_channel_and_blocking_wins() {
        let mut c = contact();
        assert_eq!(c.refusal(Channel::Email), None);
        c.opted_out.insert("sms".into());
        assert_eq!(c.refusal(Channel::Sms), Some("opted_out_sms"));
        assert_eq!(c.refusal(Channel::Email), None);
        c.blocked = true;
        assert_eq!(c.refusal(Channel::Email), Some("blocked"));
    }

    #[test]
    fn setting_fields_reaches_the_built_in_ones() {
        let mut c = contact();
        c.set_field("mobile", json!("+15550100"));
        assert_eq!(c.mobile.as_deref(), Some("+15550100"));
        c.set_field("email", Value::Null);
        assert_eq!(c.email, None);
        c.set_field("stage", json!("engaged"));
        assert_eq!(c.field_text("stage"), "engaged");
        assert_eq!(c.field_text("tags"), "vip, beta");
        assert_eq!(c.field_text("score"), "42");
    }
}
