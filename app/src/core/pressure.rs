//! Contact pressure (FLOW_FORMAT "Contact pressure (v1 additions)"; DESIGN
//! §13): one policy for the whole installation, across every flow. A cap
//! counts every message of a channel sent to the contact by any flow in a
//! rolling window; quiet hours, in the contact's zone (else the flow's),
//! delay SMS and automatic calls to their end. A send that would break the
//! policy waits for the next allowed moment, or is skipped when its step
//! says `when_capped: skip`. Transactional flows are exempt and not
//! counted. Pure: the sends to count are the contact's `recent` list.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::core::flow::Duration;

/// `{"caps": [...], "quiet_hours": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<Cap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// At most `max` messages of `channel` per rolling `per`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub channel: String,
    pub max: u32,
    pub per: Duration,
}

/// `from` to `to` (local `HH:MM`, may span midnight) for `channels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub channels: Vec<String>,
    pub from: String,
    pub to: String,
}

/// A message sent to the contact (by any flow): what the caps count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentSend {
    pub channel: String,
    pub at: Timestamp,
}

/// What the policy says about sending now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not before `until`; `why` names the rule and the time.
    Defer { until: Timestamp, why: String },
}

/// The channels a policy may name.
pub const CHANNELS: &[&str] = &["email", "sms", "call"];

/// The longest window a policy keeps sends for.
pub const MAX_WINDOW_DAYS: i64 = 90;

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.quiet_hours.is_none()
    }

    /// Problems a marketer can fix, in words; empty when the policy is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, cap) in self.caps.iter().enumerate() {
            if !CHANNELS.contains(&cap.channel.as_str()) {
                problems.push(format!("caps[{i}].channel: “{}” is not email, sms or call", cap.channel));
            }
            if cap.max == 0 {
                problems.push(format!("caps[{i}].max: a cap of 0 would never send; remove the channel's consent instead"));
            }
            match window(&cap.per) {
                Some(w) if w > SignedDuration::ZERO && w <= SignedDuration::from_hours(24 * MAX_WINDOW_DAYS) => {}
                _ => problems.push(format!("caps[{i}].per: a window from a minute to {MAX_WINDOW_DAYS} days")),
            }
        }
        if let Some(quiet) = &self.quiet_hours {
            for channel in &quiet.channels {
                if !CHANNELS.contains(&channel.as_str()) {
                    problems.push(format!("quiet_hours.channels: “{channel}” is not email, sms or call"));
                }
            }
            for (name, text) in [("from", &quiet.from), ("to", &quiet.to)] {
                if clock_time(text).is_none() {
                    problems.push(format!("quiet_hours.{name}: “{text}” is not a time like 21:00"));
                }
            }
            if quiet.from == quiet.to {
                problems.push("quiet_hours: from and to are the same time".into());
            }
        }
        problems
    }

    /// The longest cap window (sends older than this never count).
    pub fn longest_window(&self) -> SignedDuration {
        self.caps.iter().filter_map(|c| window(&c.per)).max().unwrap_or(SignedDuration::ZERO)
    }

    /// May a message of `channel` go to a contact in `zone` at `now`, given
    /// its `recent` sends? Quiet hours first, then every cap; a deferral
    /// is re-checked at its time (the sends may have changed by then).
    pub fn check(&self, channel: &str, recent: &[RecentSend], zone: &TimeZone, zone_name: &str, now: Timestamp) -> Verdict {
        if let Some(quiet) = self.quiet_hours.as_ref().filter(|q| q.channels.iter().any(|c| c == channel)) {
            if let Some(until) = quiet_until(quiet, zone, now) {
                let local = until.to_zoned(zone.clone());
                return Verdict::Defer {
                    until,
                    why: format!(
                        "quiet hours {}–{} for {channel} in {zone_name}: held until {} ({until})",
                        quiet.from,
                        quiet.to,
                        local.strftime("%a %H:%M %Z")
                    ),
                };
            }
        }
        let mut latest: Option<(Timestamp, String)> = None;
        for cap in self.caps.iter().filter(|c| c.channel == channel) {
            let Some(length) = window(&cap.per) else { continue };
            let from = now - length;
            let mut counted: Vec<Timestamp> = recent.iter().filter(|r| r.channel == channel && r.at > from && r.at <= now).map(|r| r.at).collect();
            if counted.len() < cap.max as usize {
                continue;
            }
            counted.sort_unstable();
            // The send that must leave the window for one more to fit.
            let leaving = counted[counted.len() - cap.max as usize];
            let until = leaving + length;
            let why = format!(
                "cap of {} {channel} per {}: {} sent since {from}; the next fits at {until}",
                cap.max,
                crate::core::engine::describe(&cap.per),
                counted.len()
            );
            if latest.as_ref().is_none_or(|(at, _)| until > *at) {
                latest = Some((until, why));
            }
        }
        match latest {
            Some((until, why)) => Verdict::Defer { until, why },
            None => Verdict::Send,
        }
    }
}

/// Drops sends no cap can count any more (older than the longest window).
pub fn prune(recent: &mut Vec<RecentSend>, policy: &Policy, now: Timestamp) {
    let from = now - policy.longest_window();
    recent.retain(|r| r.at > from);
}

fn window(length: &Duration) -> Option<SignedDuration> {
    crate::core::engine::duration(length)
}

fn clock_time(text: &str) -> Option<Time> {
    Time::strptime("%H:%M", text.trim()).ok()
}

/// When the quiet hours around `now` end, if `now` is in them. The hours
/// are local wall-clock times: across a DST change a night is an hour
/// shorter or longer, and a `to` that falls in a skipped hour is the
/// first instant after it.
fn quiet_until(quiet: &QuietHours, zone: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let (from, to) = (clock_time(&quiet.from)?, clock_time(&quiet.to)?);
    let local = now.to_zoned(zone.clone());
    let time = local.time();
    let inside = if from < to { time >= from && time < to } else { time >= from || time < to };
    if !inside {
        return None;
    }
    // The end: today's `to` when it is still ahead, else tomorrow's.
    let day = if time < to { local.date() } else { local.date().checked_add(1.day()).ok()? };
    let end = day.to_datetime(to).to_zoned(zone.clone()).ok()?;
    Some(end.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: serde_json::Value) -> Policy {
        serde_json::from_value(value).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn sent(channel: &str, times: &[&str]) -> Vec<RecentSend> {
        times.iter().map(|t| RecentSend { channel: channel.into(), at: at(t) }).collect()
    }

    fn zone(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    #[test]
    fn a_cap_defers_until_the_oldest_counted_send_leaves_the_rolling_window() {
        let p = policy(json!({"caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}}]}));
        let utc = TimeZone::UTC;
        let now = at("2026-12-07T09:00:00Z");
        assert_eq!(p.check("email", &sent("email", &["2026-12-05T09:00:00Z"]), &utc, "UTC", now), Verdict::Send);
        let two = sent("email", &["2026-12-01T10:00:00Z", "2026-12-05T09:00:00Z"]);
        match p.check("email", &two, &utc, "UTC", now) {
            Verdict::Defer { until, why } => {
                assert_eq!(until, at("2026-12-08T10:00:00Z"), "seven days after the older send");
                assert!(why.contains("cap of 2 email per 7 days"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Sends older than the window and of other channels do not count.
        let old = sent("email", &["2026-11-29T09:00:00Z", "2026-11-30T08:59:59Z"]);
        assert_eq!(p.check("email", &old, &utc, "UTC", now), Verdict::Send);
        assert_eq!(p.check("sms", &two, &utc, "UTC", now), Verdict::Send, "no cap on SMS");
        // At the boundary the oldest send has left the window.
        assert_eq!(p.check("email", &two, &utc, "UTC", at("2026-12-08T10:00:00Z")), Verdict::Send);
    }

    #[test]
    fn the_strictest_of_several_caps_decides() {
        let p = policy(json!({"caps": [
            {"channel": "sms", "max": 1, "per": {"amount": 1, "unit": "days"}},
            {"channel": "sms", "max": 3, "per": {"amount": 7, "unit": "days"}}]}));
        let recent = sent("sms", &["2026-12-01T12:00:00Z", "2026-12-03T12:00:00Z", "2026-12-06T20:00:00Z"]);
        let Verdict::Defer { until, .. } = p.check("sms", &recent, &TimeZone::UTC, "UTC", at("2026-12-07T09:00:00Z")) else { panic!() };
        assert_eq!(until, at("2026-12-08T12:00:00Z"), "the weekly cap frees later than the daily one");
    }

    #[test]
    fn quiet_hours_hold_sms_and_calls_until_morning_in_the_contacts_zone_across_midnight() {
        let p = policy(json!({"quiet_hours": {"channels": ["sms", "call"], "from": "21:00", "to": "08:00"}}));
        let ny = zone("America/New_York");
        // 23:30 in New York (04:30Z) → 08:00 the next morning.
        let Verdict::Defer { until, why } = p.check("sms", &[], &ny, "America/New_York", at("2026-12-08T04:30:00Z")) else { panic!() };
        assert_eq!(until, at("2026-12-08T13:00:00Z"));
        assert!(why.contains("quiet hours 21:00–08:00 for sms in America/New_York"), "{why}");
        // 06:00 local, after midnight → 08:00 the same day.
        let Verdict::Defer { until, .. } = p.check("call", &[], &ny, "America/New_York", at("2026-12-08T11:00:00Z")) else { panic!() };
        assert_eq!(until, at("2026-12-08T13:00:00Z"));
        assert_eq!(p.check("sms", &[], &ny, "America/New_York", at("2026-12-08T13:00:00Z")), Verdict::Send, "08:00 is allowed");
        assert_eq!(p.check("email", &[], &ny, "America/New_York", at("2026-12-08T04:30:00Z")), Verdict::Send, "email is not in the quiet channels");
        // A daytime window (12:00–14:00) does not wrap.
        let lunch = policy(json!({"quiet_hours": {"channels": ["call"], "from": "12:00", "to": "14:00"}}));
        assert_eq!(lunch.check("call", &[], &TimeZone::UTC, "UTC", at("2026-12-08T11:59:00Z")), Verdict::Send);
        let Verdict::Defer { until, .. } = lunch.check("call", &[], &TimeZone::UTC, "UTC", at("2026-12-08T12:00:00Z")) else { panic!() };
        assert_eq!(until, at("2026-12-08T14:00:00Z"));
    }

    #[test]
    fn quiet_hours_follow_the_wall_clock_across_dst_changes() {
        let p = policy(json!({"quiet_hours": {"channels": ["sms"], "from": "21:00", "to": "08:00"}}));
        let paris = zone("Europe/Paris");
        // The night of 28–29 March 2026 loses an hour: 22:00 CET is 21:00Z; 08:00 CEST is 06:00Z.
        let Verdict::Defer { until, .. } = p.check("sms", &[], &paris, "Europe/Paris", at("2026-03-28T21:00:00Z")) else { panic!() };
        assert_eq!(until, at("2026-03-29T06:00:00Z"));
        // The night of 24–25 October 2026 gains one: 08:00 CET is 07:00Z.
        let Verdict::Defer { until, .. } = p.check("sms", &[], &paris, "Europe/Paris", at("2026-10-24T20:00:00Z")) else { panic!() };
        assert_eq!(until, at("2026-10-25T07:00:00Z"));
        // A quiet end inside the skipped hour (02:30 on 29 March) is the first instant after it.
        let odd = policy(json!({"quiet_hours": {"channels": ["sms"], "from": "01:00", "to": "02:30"}}));
        let Verdict::Defer { until, .. } = odd.check("sms", &[], &paris, "Europe/Paris", at("2026-03-29T00:30:00Z")) else { panic!() };
        assert_eq!(until, at("2026-03-29T01:30:00Z"), "03:30 CEST, as the wall clock jumps from 02:00 to 03:00");
    }

    #[test]
    fn policies_that_cannot_work_are_described() {
        let bad = policy(json!({"caps": [{"channel": "fax", "max": 0, "per": {"amount": 0, "unit": "days"}}],
                                "quiet_hours": {"channels": ["pigeon"], "from": "25:00", "to": "08:00"}}));
        let problems = bad.problems().join("\n");
        for part in ["caps[0].channel", "caps[0].max", "caps[0].per", "quiet_hours.channels", "quiet_hours.from"] {
            assert!(problems.contains(part), "{part} in {problems}");
        }
        assert!(policy(json!({"caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}}]})).problems().is_empty());
        assert!(serde_json::from_value::<Policy>(json!({"caps": [], "quite_hours": {}})).is_err(), "a misspelled key is refused");
    }

    #[test]
    fn pruning_keeps_only_what_a_cap_can_count() {
        let p = policy(json!({"caps": [{"channel": "email", "max": 2, "per": {"amount": 2, "unit": "days"}}]}));
        let mut recent = sent("email", &["2026-12-01T09:00:00Z", "2026-12-06T09:00:00Z"]);
        prune(&mut recent, &p, at("2026-12-07T09:00:00Z"));
        assert_eq!(recent, sent("email", &["2026-12-06T09:00:00Z"]));
    }
}
