//! The step semantics on a virtual clock: no database, no sleeping.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::*;
use crate::core::simulate::{parse_span, simulate, Options, Simulation};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A flow from steps and `from:port->to` wires.
fn flow(settings: Value, steps: Value, wires: &[&str]) -> FlowDocument {
    let edges: Vec<Value> = wires
        .iter()
        .map(|w| {
            let (from, to) = w.split_once("->").unwrap();
            let (from, port) = from.split_once(':').unwrap_or((from, "next"));
            json!({"from": from, "port": port, "to": to})
        })
        .collect();
    FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "T", "settings": settings, "steps": steps, "edges": edges}))
        .unwrap()
}

fn contact(value: Value) -> Contact {
    serde_json::from_value(value).unwrap()
}

fn run(flow: &FlowDocument, contact: &Contact, start: &str, window: &str, manual_after: Option<&str>) -> Simulation {
    simulate(
        flow,
        contact,
        &Options {
            start: at(start),
            window: parse_span(window).unwrap(),
            manual_after: manual_after.map(|m| parse_span(m).unwrap()),
            seed: 7,
        },
    )
}

fn trail(sim: &Simulation) -> Vec<String> {
    sim.actions
        .iter()
        .map(|a| match &a.reason {
            Some(reason) => format!("{}:{:?}:{reason}", a.step, a.outcome),
            None => format!("{}:{:?}", a.step, a.outcome),
        })
        .collect()
}

fn ada() -> Contact {
    contact(json!({"email": "ada@example.com", "mobile": "+15550100", "timezone": "America/New_York", "owner": "7",
                   "fields": {"first_name": "Ada", "score": 5}}))
}

#[test]
fn a_day_is_24_hours_after_the_previous_step_and_emails_are_captured() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "e", "kind": "send_email", "settings": {"subject": "Hi {{ first_name }}", "body": "<p>{{ first_name }}</p>"}}]),
        &["s->w", "w->e"],
    );
    let sim = run(&f, &ada(), "2026-11-23T10:30:00Z", "30d", None);
    assert_eq!(sim.status, "completed");
    assert_eq!(trail(&sim), ["s:Completed", "w:Completed", "e:Completed"]);
    assert_eq!(sim.actions[1].due_at, at("2026-11-24T10:30:00Z"));
    assert_eq!(sim.actions[1].why.as_deref(), Some("1 day after “s” finished at 2026-11-23T10:30:00Z"));
    assert_eq!(sim.effects.len(), 1);
    assert_eq!(sim.effects[0].at, at("2026-11-24T10:30:00Z"));
    assert_eq!(sim.effects[0].effect, Effect::Email {
            to: "ada@example.com".into(),
            subject: "Hi Ada".into(),
            html: "<p>Ada</p>".into(),
            cc: vec![],
            bcc: vec![],
            attachments: vec![]
        });

    let value = serde_json::to_value(&sim).unwrap();
    assert_eq!(value["effects"][0]["kind"], "email");
    assert_eq!(value["effects"][0]["subject"], "Hi Ada");
    assert_eq!(value["actions"][1]["due_at"], "2026-11-24T10:30:00Z");

    // the window ends before the wait does: still waiting
    let short = run(&f, &ada(), "2026-11-23T10:30:00Z", "12h", None);
    assert_eq!(short.status, "waiting");
    assert_eq!(short.actions[1].outcome, Outcome::Pending);
    assert!(short.effects.is_empty());
}

#[test]
fn after_a_manual_step_the_wait_counts_from_its_completion() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "task", "name": "Qualify"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "x", "kind": "exit"}]),
        &["s->t", "t->w", "w->x"],
    );
    let sim = run(&f, &ada(), "2026-11-23T09:00:00Z", "30d", Some("5h"));
    assert_eq!(sim.status, "completed");
    let task = &sim.actions[1];
    assert!(task.manual);
    assert_eq!(task.owner.as_deref(), Some("7"), "the record owner does it");
    assert_eq!(task.done_at, Some(at("2026-11-23T14:00:00Z")));
    assert_eq!(sim.actions[2].due_at, at("2026-11-24T14:00:00Z"), "24 h after the completion, not after the due time");
    assert_eq!(
        sim.actions[2].why.as_deref(),
        Some("1 day after “t” was completed by a person at 2026-11-23T14:00:00Z"),
        "the due time says which completion it counted from"
    );

    // nobody does it: the participant waits on the task
    let pending = run(&f, &ada(), "2026-11-23T09:00:00Z", "30d", None);
    assert_eq!(pending.status, "waiting");
    assert_eq!(pending.actions.last().unwrap().outcome, Outcome::Pending);
}

#[test]
fn a_task_without_subject_is_named_after_its_step_and_time() {
    let f = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "task", "name": "Qualify lead"}]), &["s->t"]);
    let p = Participant::new(1);
    let out = advance(&f, &p, &ada(), Event::Enroll, at("2026-11-23T09:05:00Z"));
    assert_eq!(out.actions[1].subject.as_deref(), Some("Qualify lead 2026-11-23 09:05"));
}

#[test]
fn business_hours_email_waits_for_the_contacts_morning_skipping_holidays() {
    let settings = json!({"timezone": "UTC", "business_hours": {
        "days": {"mon": ["09:00", "17:00"], "tue": ["09:00", "17:00"], "wed": ["09:00", "17:00"], "thu": ["09:00", "17:00"], "fri": ["09:00", "17:00"]},
        "holidays": ["2026-12-25"], "zone": "contact"}});
    let f = flow(
        settings.clone(),
        json!([{"id": "s", "kind": "start"},
               {"id": "e", "kind": "send_email", "settings": {"subject": "S", "body": "B", "timing": "business_hours_weekday"}}]),
        &["s->e"],
    );
    // Thursday 24 Dec, 20:00 in New York; Friday is a holiday, then the weekend
    let sim = run(&f, &ada(), "2026-12-25T01:00:00Z", "30d", None);
    let email = &sim.actions[1];
    assert_eq!(email.due_at, at("2026-12-28T14:00:00Z"), "Monday 09:00 New York");
    let why = email.why.as_deref().unwrap();
    assert!(why.contains("holiday 2026-12-25") && why.contains("the contact's zone"), "{why}");
    assert_eq!(sim.effects[0].at, at("2026-12-28T14:00:00Z"));

    // any day: Friday the holiday itself, at Monday's hours
    let mut any = f.clone();
    any.steps.iter_mut().find(|s| s.id == "e").unwrap().settings.insert("timing".into(), json!("business_hours_any_day"));
    let sim = run(&any, &ada(), "2026-12-25T01:00:00Z", "30d", None);
    assert_eq!(sim.effects[0].at, at("2026-12-25T14:00:00Z"));

    // "zone": "flow" reads the hours in the flow's zone (UTC here)
    let mut flow_zone = settings;
    flow_zone["business_hours"]["zone"] = json!("flow");
    let mut f2 = f.clone();
    f2.settings = serde_json::from_value(flow_zone).unwrap();
    let sim = run(&f2, &ada(), "2026-12-25T01:00:00Z", "30d", None);
    assert_eq!(sim.effects[0].at, at("2026-12-28T09:00:00Z"));
}

#[test]
fn time_of_day_waits_are_in_the_contacts_zone_across_dst() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "w", "kind": "wait", "settings": {"mode": "time_of_day", "time": "09:00"}}]),
        &["s->w"],
    );
    // Saturday 7 March 2026 12:00 NY (EST); the next 09:00 is Sunday, after clocks go forward (EDT)
    let sim = run(&f, &ada(), "2026-03-07T17:00:00Z", "7d", None);
    assert_eq!(sim.actions[1].done_at, Some(at("2026-03-08T13:00:00Z")));
}

#[test]
fn conditions_take_yes_or_no_with_custom_logic() {
    let steps = json!([{"id": "s", "kind": "start"},
        {"id": "c", "kind": "condition", "settings": {"criteria": [
            {"field": "score", "op": "greater_than", "value": 3},
            {"field": "country", "op": "equals", "value": "US"},
            {"field": "x", "op": "member_of", "value": "VIP"}], "logic": "1 AND (2 OR NOT 3)"}},
        {"id": "yes", "kind": "exit"}, {"id": "no", "kind": "block"}]);
    let f = flow(json!({}), steps, &["s->c", "c:yes->yes", "c:no->no"]);
    let sim = run(&f, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "c:Completed:criteria met", "yes:Completed"]);
    let mut vip = ada();
    vip.lists.insert("VIP".into());
    let sim = run(&f, &vip, "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "c:Completed:criteria not met", "no:Completed"]);
    assert!(sim.contact.blocked);
}

#[test]
fn guards_skip_or_hold_until_met_or_timeout() {
    let guarded = |when: &str| {
        flow(
            json!({}),
            json!([{"id": "s", "kind": "start"},
                   {"id": "sms", "kind": "send_sms", "settings": {"text": "Hi"},
                    "guard": {"criteria": [{"field": "stage", "op": "equals", "value": "lead"}], "logic": "all",
                              "when_unmet": when, "hold_timeout": {"amount": 2, "unit": "hours"}}},
                   {"id": "x", "kind": "exit"}]),
            &["s->sms", "sms->x"],
        )
    };
    let sim = run(&guarded("skip"), &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:criteria_unmet", "x:Completed"]);
    assert!(sim.effects.is_empty());

    // hold: re-checked every 15 minutes, skipped after 2 hours
    let sim = run(&guarded("hold"), &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:hold_timeout", "x:Completed"]);
    assert_eq!(sim.actions[1].done_at, Some(at("2026-11-23T11:00:00Z")));

    // held, then the contact changes and the next re-check runs the step
    let f = guarded("hold");
    let start = at("2026-11-23T09:00:00Z");
    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, start);
    assert_eq!(out.participant.status, Status::Held);
    assert_eq!(next_wake(&out.participant), Some(start + HOLD_RECHECK));
    let mut lead = out.contact.clone();
    lead.fields.insert("stage".into(), json!("lead"));
    let later = advance(&f, &out.participant, &lead, Event::Wake, start + HOLD_RECHECK);
    assert_eq!(later.participant.status, Status::Waiting);
    assert!(matches!(later.commands[0].effect, Effect::Sms { .. }));
}

#[test]
fn splits_draw_once_per_participant_and_follow_the_percentages() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "ab", "kind": "split", "settings": {"branches": [{"port": "a", "percent": 70}, {"port": "b", "percent": 30}]}},
               {"id": "a", "kind": "exit"}, {"id": "b", "kind": "exit"}]),
        &["s->ab", "ab:a->a", "ab:b->b"],
    );
    let now = at("2026-11-23T09:00:00Z");
    let mut took_a = 0;
    for seed in 0..10_000u64 {
        let out = advance(&f, &Participant::new(seed), &ada(), Event::Enroll, now);
        let again = advance(&f, &Participant::new(seed), &ada(), Event::Enroll, now);
        assert_eq!(out.participant.step, again.participant.step, "a replay takes the same branch");
        assert!(out.participant.draws.contains_key("ab"), "the draw is recorded");
        if out.participant.step.as_deref() == Some("a") {
            took_a += 1;
        }
    }
    assert!((6_800..7_200).contains(&took_a), "70% ± 2% took a: {took_a}");
}

#[test]
fn exits_moves_copies_and_bounded_restarts() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "g", "kind": "go_to_flow", "settings": {"flow": "Nurture", "mode": "copy"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "r", "kind": "restart", "settings": {"max_restarts": 2}}]),
        &["s->g", "g->w", "w->r"],
    );
    let sim = run(&f, &ada(), "2026-11-23T09:00:00Z", "30d", None);
    assert_eq!(sim.status, "completed");
    let restarts: Vec<_> = sim.actions.iter().filter(|a| a.step == "r").map(|a| a.reason.clone().unwrap()).collect();
    assert_eq!(restarts, ["restart 1", "restart 2", "restart limit reached"]);
    assert_eq!(sim.effects.iter().filter(|e| e.effect.kind() == "go_to_flow").count(), 3);

    let moved = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "g", "kind": "go_to_flow", "settings": {"flow": "Win back"}}]), &["s->g"]);
    let sim = run(&moved, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(sim.status, "exited");
}

#[test]
fn compliance_is_checked_when_sending() {
    let f = |if_no: &str| {
        flow(
            json!({}),
            json!([{"id": "s", "kind": "start"}, {"id": "sms", "kind": "send_sms", "settings": {"text": "Hi", "if_no_mobile": if_no}},
                   {"id": "e", "kind": "send_email", "settings": {"subject": "S", "body": "B"}}]),
            &["s->sms", "sms->e"],
        )
    };
    let mut no_mobile = ada();
    no_mobile.mobile = None;
    let sim = run(&f("skip"), &no_mobile, "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:no_mobile", "e:Completed"]);
    let sim = run(&f("exit"), &no_mobile, "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(sim.status, "exited");
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:no_mobile"]);

    let mut opted = ada();
    opted.opted_out.insert("sms".into());
    let sim = run(&f("skip"), &opted, "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:opted_out_sms", "e:Completed"]);

    let mut blocked = ada();
    blocked.blocked = true;
    let sim = run(&f("skip"), &blocked, "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "sms:Skipped:blocked", "e:Skipped:blocked"]);
    assert!(sim.effects.is_empty());

    // an opt-out step earlier in the same flow is seen by the send after it
    let opt_then_send = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "o", "kind": "opt_out", "settings": {"channel": "email"}},
               {"id": "e", "kind": "send_email", "settings": {"subject": "S", "body": "B"}}]),
        &["s->o", "o->e"],
    );
    let sim = run(&opt_then_send, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(trail(&sim), ["s:Completed", "o:Completed", "e:Skipped:opted_out_email"]);
}

#[test]
fn record_updates_apply_and_later_steps_see_them() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "u", "kind": "update_contact", "settings": {"changes": [
                   {"field": "score", "op": "increment", "value": 10},
                   {"field": "greeting", "op": "set", "value": "Hello {{ first_name }}"},
                   {"field": "tags", "op": "append", "value": "warm"}]}},
               {"id": "c", "kind": "condition", "settings": {"criteria": [{"field": "score", "op": "greater_than", "value": 12}]}},
               {"id": "sms", "kind": "send_sms", "settings": {"text": "{{ greeting }}!"}, "guard": null},
               {"id": "x", "kind": "exit"}]),
        &["s->u", "u->c", "c:yes->sms", "c:no->x"],
    );
    let sim = run(&f, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(sim.contact.fields["score"], json!(15));
    assert_eq!(sim.contact.fields["tags"], json!(["warm"]));
    assert_eq!(sim.effects[0].effect, Effect::Sms { to: "+15550100".into(), text: "Hello Ada!".into() });

    // `updates` on any action step apply when it is performed
    let mut with_updates = f.clone();
    let sms = with_updates.steps.iter_mut().find(|s| s.id == "sms").unwrap();
    sms.settings.insert("updates".into(), json!([{"field": "texted", "op": "set", "value": true}]));
    let sim = run(&with_updates, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(sim.contact.fields["texted"], json!(true));
}

#[test]
fn effect_outcomes_take_the_failed_port_or_fail_the_participant() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "h", "kind": "webhook", "settings": {"url": "https://x.test/{{ email }}"}},
               {"id": "ok", "kind": "exit"}, {"id": "bad", "kind": "notify_email", "settings": {"to": "user:1", "subject": "failed"}}]),
        &["s->h", "h->ok", "h:failed->bad"],
    );
    let now = at("2026-11-23T09:00:00Z");
    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
    let Effect::Webhook { url, .. } = &out.commands[0].effect else { panic!("a webhook") };
    assert_eq!(url, "https://x.test/ada%40example.com", "a merge value in a URL is percent-encoded");
    assert_eq!((out.commands[0].visit, out.commands[0].attempt), (2, 1));
    let failed = advance(&f, &out.participant, &out.contact, Event::Effect { result: EffectResult::Failed { reason: "HTTP 503".into() } }, now);
    assert_eq!(failed.participant.step.as_deref(), Some("bad"));
    assert_eq!(failed.actions[0].outcome, Outcome::Failed);
    assert_eq!(failed.actions[0].reason.as_deref(), Some("HTTP 503"));

    let email = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": "S", "body": "B"}}]), &["s->e"]);
    let out = advance(&email, &Participant::new(1), &ada(), Event::Enroll, now);
    let failed = advance(&email, &out.participant, &out.contact, Event::Effect { result: EffectResult::Failed { reason: "SMTP 550".into() } }, now);
    assert_eq!(failed.participant.status, Status::Failed);
    assert_eq!(failed.participant.reason.as_deref(), Some("SMTP 550"));
}

#[test]
fn manual_steps_can_be_deferred_and_spurious_events_change_nothing() {
    let f = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "call", "settings": {"owner": "field:account_manager"}},
                                   {"id": "x", "kind": "exit"}]), &["s->c", "c->x"]);
    let mut managed = ada();
    managed.fields.insert("account_manager".into(), json!("42"));
    let now = at("2026-11-23T09:00:00Z");
    let out = advance(&f, &Participant::new(1), &managed, Event::Enroll, now);
    assert_eq!(out.actions[1].owner.as_deref(), Some("42"), "delegated through a contact field");
    assert_eq!(next_wake(&out.participant), None, "a manual step waits for a person, not the clock");

    let wake = advance(&f, &out.participant, &out.contact, Event::Wake, now + SignedDuration::from_hours(1));
    assert_eq!(wake.participant, out.participant);
    assert!(wake.actions.is_empty());
    let effect = advance(&f, &out.participant, &out.contact, Event::Effect { result: EffectResult::Done { updates: Default::default() } }, now);
    assert_eq!(effect.participant, out.participant);

    let later = at("2026-11-24T15:00:00Z");
    let deferred = advance(&f, &out.participant, &out.contact, Event::Manual { outcome: ManualOutcome::Deferred { until: later }, disposition: None }, now);
    assert_eq!(deferred.participant.phase, Phase::Manual { due_at: later });
    assert_eq!(deferred.actions[0].outcome, Outcome::Deferred);
    let done = advance(&f, &deferred.participant, &deferred.contact, Event::Manual { outcome: ManualOutcome::Completed, disposition: Some("interested".into()) }, later);
    assert_eq!(done.participant.status, Status::Completed);
    assert_eq!(done.actions[0].reason.as_deref(), Some("disposition: interested"));
    assert_eq!(done.actions[0].due_at, later);

    // nothing moves a finished participant
    let after = advance(&f, &done.participant, &done.contact, Event::Wake, later);
    assert_eq!(after.participant, done.participant);
    assert!(after.actions.is_empty() && after.commands.is_empty());
    let again = advance(&f, &done.participant, &done.contact, Event::Enroll, later);
    assert_eq!(again.participant, done.participant);
}

#[test]
fn a_due_callback_brings_the_call_round_for_its_agent_or_ends_a_wait() {
    let f = flow(json!({}), json!([{"id": "s", "kind": "start"},
                                   {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
                                   {"id": "c", "kind": "call", "settings": {"owner": "user:agent-1"}},
                                   {"id": "x", "kind": "exit"}]), &["s->w", "w->c", "c->x"]);
    let now = at("2026-11-23T09:00:00Z");
    let callback = at("2026-11-24T10:00:00Z");
    let booked = |owner: Option<&str>| Event::Callback { at: callback, owner: owner.map(str::to_owned) };

    // waiting for time: the wait ends at the callback, and the call it reaches is the callback agent's
    let waiting = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
    assert_eq!(waiting.participant.phase, Phase::Waiting);
    let out = advance(&f, &waiting.participant, &waiting.contact, booked(Some("agent-2")), callback);
    assert_eq!(out.actions[0].step, "w");
    assert_eq!(out.actions[0].outcome, Outcome::Completed);
    assert_eq!(out.actions[0].reason.as_deref(), Some("ended by the callback booked for 2026-11-24T10:00:00Z"));
    assert_eq!(out.participant.step.as_deref(), Some("c"));
    assert_eq!(out.participant.phase, Phase::Manual { due_at: callback });
    let call = out.actions.last().unwrap();
    assert_eq!((call.step.as_str(), call.manual, call.owner.as_deref()), ("c", true, Some("agent-2")));

    // waiting for a person: the same task, due at the callback, for the callback's agent
    let at_call = advance(&f, &waiting.participant, &waiting.contact, Event::Wake, now + SignedDuration::from_hours(72));
    assert_eq!(at_call.participant.phase, Phase::Manual { due_at: now + SignedDuration::from_hours(72) });
    let later = at("2026-11-27T16:00:00Z");
    let out = advance(&f, &at_call.participant, &at_call.contact, Event::Callback { at: later, owner: Some("agent-2".into()) }, later);
    assert_eq!(out.participant.visit, at_call.participant.visit, "the same visit: the same task, not a new one");
    assert_eq!(out.participant.phase, Phase::Manual { due_at: later });
    assert_eq!(out.actions.len(), 1);
    let task = &out.actions[0];
    assert_eq!((task.outcome, task.due_at, task.owner.as_deref()), (Outcome::Pending, later, Some("agent-2")));
    assert_eq!(task.why.as_deref(), Some("callback booked for 2026-11-27T16:00:00Z"));
    // without an agent the task keeps its owner (the record leaves it unset, the store keeps the old one)
    let out = advance(&f, &at_call.participant, &at_call.contact, Event::Callback { at: later, owner: None }, later);
    assert_eq!(out.actions[0].owner, None);

    // stopped or finished participants are not called back
    let mut paused = waiting.participant.clone();
    paused.status = Status::Paused;
    let out = advance(&f, &paused, &waiting.contact, booked(Some("agent-2")), callback);
    assert_eq!(out.participant, paused);
    assert!(out.actions.is_empty());
}

#[test]
fn a_loop_without_a_wait_fails_the_participant_instead_of_spinning() {
    let f = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "a", "kind": "block"}, {"id": "b", "kind": "add_to_list", "settings": {"list": "L"}}]),
                 &["s->a", "a->b", "b->a"]);
    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, at("2026-11-23T09:00:00Z"));
    assert_eq!(out.participant.status, Status::Failed);
    assert!(out.participant.reason.unwrap().contains("loops without a wait"));
}

#[test]
fn spans_parse_like_the_cli_says() {
    assert_eq!(parse_span("30d").unwrap(), SignedDuration::from_hours(720));
    assert_eq!(parse_span("1d12h").unwrap(), SignedDuration::from_hours(36));
    assert_eq!(parse_span("90m").unwrap(), SignedDuration::from_mins(90));
    assert!(parse_span("").is_err());
    assert!(parse_span("3").is_err());
    assert!(parse_span("3 days").is_err());
    assert!(parse_span("99999999999999999999d").is_err());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn nurture() -> FlowDocument {
        flow(
            json!({}),
            json!([{"id": "s", "kind": "start"},
                   {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 7, "unit": "hours"}},
                   {"id": "ab", "kind": "split", "settings": {"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]}},
                   {"id": "e", "kind": "send_email", "settings": {"subject": "S", "body": "B", "timing": "business_hours_weekday"}},
                   {"id": "t", "kind": "task"},
                   {"id": "r", "kind": "restart", "settings": {"max_restarts": 3}}]),
            &["s->w", "w->ab", "ab:a->e", "ab:b->t", "e->r", "t->r"],
        )
    }

    proptest! {
        #[test]
        fn wake_times_never_go_backwards_and_nothing_moves_after_the_end(
            seed in any::<u64>(),
            start_offset in 0i64..(365 * 86_400),
            manual_after in proptest::option::of(0i64..200_000),
        ) {
            let start = at("2026-01-01T00:00:00Z") + SignedDuration::from_secs(start_offset);
            let sim = simulate(&nurture(), &ada(), &Options {
                start,
                window: SignedDuration::from_hours(24 * 60),
                manual_after: manual_after.map(SignedDuration::from_secs),
                seed,
            });
            let mut last = start;
            for action in &sim.actions {
                if let Some(done) = action.done_at {
                    prop_assert!(done >= last, "{} done at {} before {}", action.step, done, last);
                    last = done;
                }
            }
            for pair in sim.effects.windows(2) {
                prop_assert!(pair[1].at >= pair[0].at);
            }
        }

        #[test]
        fn a_finished_participant_stays_finished(seed in any::<u64>(), event in 0u8..4) {
            let f = nurture();
            let now = at("2026-11-23T09:00:00Z");
            let mut p = Participant::new(seed);
            p.status = [Status::Completed, Status::Exited, Status::Failed, Status::Cancelled][(seed % 4) as usize];
            p.step = Some("e".into());
            let event = match event {
                0 => Event::Wake,
                1 => Event::Manual { outcome: ManualOutcome::Completed, disposition: None },
                2 => Event::Effect { result: EffectResult::Done { updates: Default::default() } },
                _ => Event::Enroll,
            };
            let out = advance(&f, &p, &ada(), event, now);
            prop_assert_eq!(out.participant, p);
            prop_assert!(out.commands.is_empty() && out.actions.is_empty());
        }
    }
}

#[test]
fn action_groups_run_inline_from_a_step_and_from_a_disposition() {
    let group = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "tag", "kind": "add_to_list", "settings": {"list": "Qualified"}},
               {"id": "big", "kind": "condition", "settings": {"criteria": [{"field": "score", "op": "greater_than", "value": 3}]}},
               {"id": "tell", "kind": "notify_email", "settings": {"to": "user:9", "subject": "{{ first_name }} qualified"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}}]),
        &["s->tag", "tag->big", "big:yes->tell", "tell->w"],
    );
    let groups: std::collections::HashMap<String, FlowDocument> = [("qualify".to_owned(), group)].into();
    let main = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "g", "kind": "run_action_group", "settings": {"group": "Qualify"}},
               {"id": "c", "kind": "call", "settings": {"dispositions": {"interested": "Qualify"}}}, {"id": "x", "kind": "exit"}]),
        &["s->g", "g->c", "c->x"],
    );
    let now = at("2026-11-23T09:00:00Z");
    let out = advance_with(&main, &groups, &Participant::new(1), &ada(), Event::Enroll, now);
    assert!(out.contact.lists.contains("Qualified"));
    let g = out.actions.iter().find(|a| a.step == "g").unwrap();
    assert_eq!(g.outcome, Outcome::Completed);
    let reason = g.reason.as_deref().unwrap();
    assert!(reason.contains("ran “Qualify”: tag, big, tell") && reason.contains("w (Wait cannot run inside a group)"), "{reason}");
    assert_eq!(out.commands.len(), 1);
    assert_eq!(out.commands[0].effect, Effect::NotifyEmail { to: "user:9".into(), subject: "Ada qualified".into(), text: String::new() });
    assert_eq!(out.participant.step.as_deref(), Some("c"), "then on to the call");

    // the call's "interested" disposition runs the group again; its commands get their own sequence numbers
    let done = advance_with(&main, &groups, &out.participant, &out.contact,
        Event::Manual { outcome: ManualOutcome::Completed, disposition: Some("Interested".into()) }, now);
    assert!(done.actions[0].reason.as_deref().unwrap().starts_with("disposition: Interested; ran “Qualify”"));
    assert_eq!(done.commands.len(), 1);

    // a group that does not exist skips the step, saying so
    let out = advance(&main, &Participant::new(1), &ada(), Event::Enroll, now);
    let g = out.actions.iter().find(|a| a.step == "g").unwrap();
    assert_eq!((g.outcome, g.reason.as_deref()), (Outcome::Skipped, Some("action group “Qualify” does not exist")));

    // nesting too deep (a group that runs itself) is refused at run time
    let looping = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "again", "kind": "run_action_group", "settings": {"group": "loop"}}]), &["s->again"]);
    let groups: std::collections::HashMap<String, FlowDocument> = [("loop".to_owned(), looping)].into();
    let main = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "g", "kind": "run_action_group", "settings": {"group": "loop"}}]), &["s->g"]);
    let out = advance_with(&main, &groups, &Participant::new(1), &ada(), Event::Enroll, now);
    assert!(out.actions[1].reason.as_deref().unwrap().contains("nest more than 8 deep"));
}

#[test]
fn an_automatic_call_waits_for_its_final_status_which_becomes_the_disposition() {
    let group = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "tag", "kind": "add_to_list", "settings": {"list": "Busy"}}]), &["s->tag"]);
    let groups: std::collections::HashMap<String, FlowDocument> = [("retry later".to_owned(), group)].into();
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "c", "kind": "call", "settings": {"activation": "automatic", "script": "Hello {{ first_name }}", "dispositions": {"busy": "Retry later"}}},
               {"id": "x", "kind": "exit"}]),
        &["s->c", "c->x"],
    );
    let now = at("2026-11-23T09:00:00Z");
    let out = advance_with(&f, &groups, &Participant::new(1), &ada(), Event::Enroll, now);
    assert_eq!(out.commands.len(), 1);
    assert!(out.commands[0].awaited && out.commands[0].effect.outcome_comes_later());
    assert_eq!(out.commands[0].effect, Effect::Call { to: "+15550100".into(), script: "Hello Ada".into() });
    let call = out.actions.last().unwrap();
    assert_eq!((call.outcome, call.manual, call.owner.as_deref()), (Outcome::Pending, false, None), "no task for an agent");
    assert_eq!(next_wake(&out.participant), Some(now + CALL_OUTCOME_DEADLINE), "a deadline, not for ever");
    let visit = out.participant.visit;

    // not final, another visit's, or an agent's action: nothing changes
    for event in [
        Event::CallEnded { visit, status: "ringing".into(), duration_secs: None },
        Event::CallEnded { visit: visit - 1, status: "completed".into(), duration_secs: Some(3) },
        Event::Manual { outcome: ManualOutcome::Completed, disposition: None },
        Event::Wake,
    ] {
        let same = advance_with(&f, &groups, &out.participant, &out.contact, event, now + SignedDuration::from_mins(5));
        assert_eq!(same.participant, out.participant);
        assert!(same.actions.is_empty() && same.commands.is_empty());
    }

    let answered = advance_with(&f, &groups, &out.participant, &out.contact,
        Event::CallEnded { visit, status: "completed".into(), duration_secs: Some(42) }, now + SignedDuration::from_mins(2));
    assert_eq!(answered.participant.status, Status::Completed);
    assert_eq!(answered.actions[0].outcome, Outcome::Completed);
    assert_eq!(answered.actions[0].reason.as_deref(), Some("disposition: completed; the call lasted 42 s"));

    // busy is a disposition too: its action group runs, then on by next
    let busy = advance_with(&f, &groups, &out.participant, &out.contact, Event::CallEnded { visit, status: "busy".into(), duration_secs: Some(0) }, now);
    assert!(busy.contact.lists.contains("Busy"));
    assert!(busy.actions[0].reason.as_deref().unwrap().starts_with("disposition: busy; ran “Retry later”"), "{:?}", busy.actions[0].reason);
    assert_eq!(busy.participant.status, Status::Completed);

    let failed = advance_with(&f, &groups, &out.participant, &out.contact, Event::CallEnded { visit, status: "failed".into(), duration_secs: None }, now);
    assert_eq!((failed.participant.status, failed.actions[0].outcome), (Status::Failed, Outcome::Failed));
    assert_eq!(failed.participant.reason.as_deref(), Some("the telephony provider could not place the call (status failed)"));
    assert_eq!(next_wake(&failed.participant), None);

    // no final status by the deadline: the step fails, saying why
    let late = advance_with(&f, &groups, &out.participant, &out.contact, Event::Wake, now + CALL_OUTCOME_DEADLINE);
    assert_eq!((late.participant.status, late.actions[0].outcome), (Status::Failed, Outcome::Failed));
    assert_eq!(
        late.participant.reason.as_deref(),
        Some("no final status from the telephony provider within 1h 30m; the call's outcome is unknown")
    );
    let after = advance_with(&f, &groups, &late.participant, &late.contact, Event::CallEnded { visit, status: "completed".into(), duration_secs: None }, now);
    assert_eq!(after.participant, late.participant, "a callback after the deadline changes nothing");

    // manual (the default) is still a task for the owner
    let manual = flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "call"}]), &["s->c"]);
    let out = advance(&manual, &Participant::new(1), &ada(), Event::Enroll, now);
    assert!(out.commands.is_empty() && out.actions.last().unwrap().manual);

    // the test run takes an automatic call as answered
    let sim = run(&f, &ada(), "2026-11-23T09:00:00Z", "1d", None);
    assert_eq!(sim.status, "completed");
    assert!(trail(&sim).contains(&"c:Completed:disposition: completed".to_owned()), "{:?}", trail(&sim));
}

#[test]
fn notifications_name_a_user_or_an_address() {
    let steps = |to: Value| {
        flow(json!({}), json!([{"id": "s", "kind": "start"}, {"id": "n", "kind": "notify_email", "settings": {"to": to, "subject": "S"}}]), &["s->n"])
    };
    let to = |to: Value, contact: &Contact| {
        let out = advance(&steps(to), &Participant::new(1), contact, Event::Enroll, at("2026-11-23T09:00:00Z"));
        let Effect::NotifyEmail { to, .. } = &out.commands[0].effect else { panic!("a notification") };
        to.clone()
    };
    let mut managed = ada();
    managed.fields.insert("manager".into(), json!("boss@x.test"));
    assert_eq!(to(json!("user:12"), &ada()), "user:12");
    assert_eq!(to(json!("record_owner"), &ada()), "user:7", "the record owner is a user");
    assert_eq!(to(Value::Null, &ada()), "user:7", "the record owner by default");
    assert_eq!(to(json!("ops@x.test"), &ada()), "ops@x.test", "an address as written");
    assert_eq!(to(json!("field:manager"), &managed), "boss@x.test");
    assert_eq!(to(json!("field:missing"), &managed), "user:7");
    let mut orphan = ada();
    orphan.owner = None;
    assert_eq!(to(json!("record_owner"), &orphan), "record_owner", "left for the shell to refuse with the reason");
}

#[test]
fn a_merge_value_with_commas_cannot_add_email_recipients() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e", "kind": "send_email", "settings": {"subject": "Hi", "body": "x", "cc": "{{ manager }}, team@x.test", "bcc": "{{ audit }}"}}]),
        &["s->e"],
    );
    let mut contact = ada();
    contact.fields.insert("manager".into(), json!("boss@x.test, attacker@evil.test; spy@evil.test"));
    let out = advance(&f, &Participant::new(1), &contact, Event::Enroll, at("2026-11-23T09:00:00Z"));
    let Effect::Email { cc, bcc, .. } = &out.commands[0].effect else { panic!("an email") };
    assert_eq!(cc, &["boss@x.test, attacker@evil.test; spy@evil.test", "team@x.test"], "one entry per address the marketer wrote");
    assert!(bcc.is_empty(), "an empty merge value is no recipient");
}

// ---------------------------------------------------------------------------
// Engagement (FLOW_FORMAT "Engagement (v1 additions)"): one test per row.

use crate::core::engagement::{criteria_met_at, enrolls, ContactEvent, History, Received};
use crate::core::engine::Installation;
use crate::core::simulate::simulate_events;

/// Contact events as a simulation's `--events` file holds them.
fn events(value: Value) -> Vec<Received> {
    serde_json::from_value(value).unwrap()
}

fn received(value: Value) -> Received {
    serde_json::from_value(value).unwrap()
}

fn sim_events(flow: &FlowDocument, contact: &Contact, list: Value) -> Simulation {
    let options = Options { start: at("2026-11-23T09:00:00Z"), window: parse_span("30d").unwrap(), manual_after: None, seed: 7 };
    simulate_events(flow, &NoGroups, contact, &options, &events(list))
}

fn effects_of(sim: &Simulation) -> Vec<String> {
    sim.events.iter().map(|e| format!("{}:{}", e.event, serde_json::to_value(e.effect).unwrap().as_str().unwrap())).collect()
}

/// start → e1 (email) → w (wait_until `until`, 2 days) → met: m / timed_out: t.
fn waiting_on(until: Value) -> FlowDocument {
    flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "w", "kind": "wait_until", "settings": {"until": until, "timeout": {"amount": 2, "unit": "days"}}},
               {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "met"}]}},
               {"id": "t", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "timed_out"}]}}]),
        &["s->e1", "e1->w", "w:met->m", "w:timed_out->t"],
    )
}

fn path(sim: &Simulation) -> String {
    sim.contact.field_text("path")
}

#[test]
fn contact_events_read_as_flow_format_writes_them() {
    let list = events(json!([
        {"at": "2026-11-23T10:00:00Z", "event": "email_opened", "step": "e1", "machine": true},
        {"at": "2026-11-23T10:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test/p", "machine": false},
        {"at": "2026-11-23T10:00:00Z", "event": "replied", "step": "e1", "auto": true},
        {"at": "2026-11-23T10:00:00Z", "event": "bounced", "step": "e1", "type": "hard"},
        {"at": "2026-11-23T10:00:00Z", "event": "complained", "step": "e1"},
        {"at": "2026-11-23T10:00:00Z", "event": "unsubscribed", "channel": "sms"},
        {"id": "ord-1", "at": "2026-11-23T10:00:00Z", "event": "custom", "name": "purchase", "properties": {"amount": 40}}
    ]));
    let kinds: Vec<&str> = list.iter().map(|r| r.event.kind()).collect();
    assert_eq!(kinds, ["email_opened", "link_clicked", "replied", "bounced", "complained", "unsubscribed", "custom"]);
    assert!(!list[0].event.counts(false) && list[0].event.counts(true), "a machine open counts only when included");
    assert!(!list[2].event.counts(true), "an auto-reply never counts");
    assert_eq!(list[6].id.as_deref(), Some("ord-1"));
    for r in &list {
        let back: Received = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
        assert_eq!(&back, r, "round trip");
    }
    let event = Event::Engagement { received: list[6].clone() };
    let text = serde_json::to_value(&event).unwrap();
    assert_eq!(text["event"], "engagement");
    assert_eq!(text["received"]["event"], "custom");
    assert_eq!(serde_json::from_value::<Event>(text).unwrap(), event);
}

#[test]
fn wait_until_leaves_by_met_on_an_event_or_by_timed_out_at_its_timeout() {
    let f = waiting_on(json!([{"event": "email_opened", "step": "e1"}]));
    let met = sim_events(&f, &ada(), json!([{"at": "2026-11-23T12:00:00Z", "event": "email_opened", "step": "e1"}]));
    assert_eq!(path(&met), "met");
    assert_eq!(met.status, "completed");
    let wait = met.actions.iter().find(|a| a.step == "w").unwrap();
    assert_eq!(wait.done_at, Some(at("2026-11-23T12:00:00Z")));
    assert!(wait.reason.as_deref().unwrap().starts_with("met: email_opened (e1)"), "{wait:?}");
    assert_eq!(effects_of(&met), ["email_opened:met"]);

    let timed_out = sim_events(&f, &ada(), json!([]));
    assert_eq!(path(&timed_out), "timed_out");
    let wait = timed_out.actions.iter().find(|a| a.step == "w").unwrap();
    assert_eq!(wait.done_at, Some(at("2026-11-25T09:00:00Z")), "two days after it arrived");
    assert_eq!(wait.reason.as_deref(), Some("timed out"));
    assert!(timed_out.events.is_empty());

    let w = f.step("w").unwrap();
    assert_eq!(crate::core::kinds::ports(w), ["met", "timed_out"]);
}

#[test]
fn machine_opens_and_clicks_count_only_when_the_matcher_includes_them() {
    let open = json!([{"at": "2026-11-23T12:00:00Z", "event": "email_opened", "step": "e1", "machine": true}]);
    let plain = sim_events(&waiting_on(json!([{"event": "email_opened", "step": "e1"}])), &ada(), open.clone());
    assert_eq!((path(&plain).as_str(), effects_of(&plain)), ("timed_out", vec!["email_opened:recorded".to_owned()]));
    let included = sim_events(&waiting_on(json!([{"event": "email_opened", "step": "e1", "include_machine": true}])), &ada(), open);
    assert_eq!(path(&included), "met");

    let scan = json!([{"at": "2026-11-23T12:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test", "machine": true}]);
    assert_eq!(path(&sim_events(&waiting_on(json!([{"event": "link_clicked"}])), &ada(), scan)), "timed_out");
}

#[test]
fn an_auto_reply_never_counts_as_a_reply() {
    let f = waiting_on(json!([{"event": "replied", "step": "e1", "include_machine": true}]));
    let auto = sim_events(&f, &ada(), json!([{"at": "2026-11-23T12:00:00Z", "event": "replied", "step": "e1", "auto": true}]));
    assert_eq!(path(&auto), "timed_out");
    let human = sim_events(&f, &ada(), json!([{"at": "2026-11-23T12:00:00Z", "event": "replied", "step": "e1"}]));
    assert_eq!(path(&human), "met");
}

#[test]
fn a_matcher_naming_a_step_counts_events_since_its_send_others_only_from_arrival() {
    // e1 is sent at 09:00, the wait begins at 10:00: an open at 09:30 counts
    // for a matcher naming e1, not for one that names no step.
    let build = |until: Value| {
        flow(
            json!({}),
            json!([{"id": "s", "kind": "start"},
                   {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
                   {"id": "w0", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "hours"}},
                   {"id": "w", "kind": "wait_until", "settings": {"until": until, "timeout": {"amount": 1, "unit": "days"}}},
                   {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "met"}]}}]),
            &["s->e1", "e1->w0", "w0->w", "w:met->m"],
        )
    };
    let early = json!([{"at": "2026-11-23T09:30:00Z", "event": "email_opened", "step": "e1"}]);
    let named = sim_events(&build(json!([{"event": "email_opened", "step": "e1"}])), &ada(), early.clone());
    assert_eq!(path(&named), "met");
    let wait = named.actions.iter().find(|a| a.step == "w").unwrap();
    assert_eq!(wait.done_at, Some(at("2026-11-23T10:00:00Z")), "met as it arrived");
    let unnamed = sim_events(&build(json!([{"event": "email_opened"}])), &ada(), early);
    assert_eq!(path(&unnamed), "", "an open before the wait does not count without a step");
    assert_eq!(unnamed.status, "completed", "timed out with nothing connected");

    // An event about a step the contact was never sent is ignored.
    let stray = sim_events(&build(json!([{"event": "email_opened", "step": "e1"}])), &ada(),
        json!([{"at": "2026-11-23T08:00:00Z", "event": "email_opened", "step": "e1"},
               {"at": "2026-11-23T09:10:00Z", "event": "email_opened", "step": "e9"}]));
    assert_eq!(effects_of(&stray), ["email_opened:ignored", "email_opened:ignored"]);
    assert_eq!(path(&stray), "");
}

#[test]
fn custom_events_count_only_from_arrival_and_must_match_name_and_properties() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "w0", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "hours"}},
               {"id": "w", "kind": "wait_until", "settings": {
                   "until": [{"event": "custom", "name": "purchase", "where": [{"field": "amount", "op": "greater_than", "value": 10}]}],
                   "timeout": {"amount": 1, "unit": "days"}}},
               {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "met"}]}}]),
        &["s->w0", "w0->w", "w:met->m"],
    );
    let sim = sim_events(&f, &ada(), json!([
        {"at": "2026-11-23T09:30:00Z", "event": "custom", "name": "purchase", "properties": {"amount": 50}},
        {"at": "2026-11-23T11:00:00Z", "event": "custom", "name": "purchase", "properties": {"amount": 5}},
        {"at": "2026-11-23T11:30:00Z", "event": "custom", "name": "refund", "properties": {"amount": 50}},
        {"at": "2026-11-23T12:00:00Z", "event": "custom", "name": "purchase", "properties": {"amount": 50}}
    ]));
    assert_eq!(effects_of(&sim), ["custom:recorded", "custom:recorded", "custom:recorded", "custom:met"]);
    assert_eq!(sim.actions.iter().find(|a| a.step == "w").unwrap().done_at, Some(at("2026-11-23T12:00:00Z")));
}

#[test]
fn a_link_matcher_can_ask_for_part_of_the_url() {
    let f = waiting_on(json!([{"event": "link_clicked", "step": "e1", "url_contains": "pricing"}]));
    let sim = sim_events(&f, &ada(), json!([
        {"at": "2026-11-23T10:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test/blog"},
        {"at": "2026-11-23T11:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test/Pricing?a=1"}
    ]));
    assert_eq!(effects_of(&sim), ["link_clicked:recorded", "link_clicked:met"]);
}

#[test]
fn a_criteria_matcher_is_met_at_arrival_or_when_a_wake_finds_the_contact_changed() {
    let f = waiting_on(json!([{"criteria": [{"field": "stage", "op": "equals", "value": "customer"}]}]));
    let mut customer = ada();
    customer.set_field("stage", json!("customer"));
    assert_eq!(path(&sim_events(&f, &customer, json!([]))), "met");

    let now = at("2026-11-23T09:00:00Z");
    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
    let out = advance(&f, &out.participant, &out.contact, Event::Effect { result: EffectResult::Done { updates: Map::new() } }, now);
    assert!(matches!(out.participant.phase, Phase::Until { .. }));
    let later = now + SignedDuration::from_hours(3);
    let unchanged = advance(&f, &out.participant, &out.contact, Event::Wake, later);
    assert_eq!(unchanged.participant, out.participant, "a wake before the timeout with nothing met changes nothing");
    let moved = advance(&f, &out.participant, &customer, Event::Wake, later);
    assert_eq!(moved.contact.field_text("path"), "met");
}

#[test]
fn unsubscribes_and_complaints_turn_consent_off_for_later_sends() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "e2", "kind": "send_email", "settings": {"subject": "Again", "body": "x"}},
               {"id": "t", "kind": "send_sms", "settings": {"text": "hi"}}]),
        &["s->e1", "e1->w", "w->e2", "e2->t"],
    );
    let unsub = sim_events(&f, &ada(), json!([{"at": "2026-11-23T10:00:00Z", "event": "unsubscribed", "channel": "email"}]));
    assert!(trail(&unsub).contains(&"e2:Skipped:opted_out_email".to_owned()), "{:?}", trail(&unsub));
    assert_eq!(unsub.effects.iter().map(|e| e.effect.kind()).collect::<Vec<_>>(), ["email", "sms"], "SMS consent untouched");
    assert_eq!(effects_of(&unsub), ["unsubscribed:recorded"]);

    let complaint = sim_events(&f, &ada(), json!([{"at": "2026-11-23T10:00:00Z", "event": "complained", "step": "e1"}]));
    assert!(trail(&complaint).contains(&"e2:Skipped:opted_out_email".to_owned()));
    assert!(complaint.contact.opted_out.contains("email"));

    let all = sim_events(&f, &ada(), json!([{"at": "2026-11-23T10:00:00Z", "event": "unsubscribed", "channel": "all"}]));
    assert!(trail(&all).contains(&"t:Skipped:opted_out_sms".to_owned()));
}

#[test]
fn a_hard_bounce_makes_later_sends_to_the_address_skip_as_undeliverable() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "e2", "kind": "send_email", "settings": {"subject": "Again", "body": "x"}}]),
        &["s->e1", "e1->w", "w->e2"],
    );
    let hard = sim_events(&f, &ada(), json!([{"at": "2026-11-23T09:05:00Z", "event": "bounced", "step": "e1", "type": "hard"}]));
    assert!(trail(&hard).contains(&"e2:Skipped:undeliverable".to_owned()), "{:?}", trail(&hard));
    assert!(hard.contact.is_undeliverable("ADA@example.com"));
    let soft = sim_events(&f, &ada(), json!([{"at": "2026-11-23T09:05:00Z", "event": "bounced", "step": "e1", "type": "soft"}]));
    assert_eq!(soft.effects.len(), 2, "a soft bounce changes nothing");
    let mut moved = hard.contact.clone();
    moved.email = Some("ada@new.test".into());
    let fresh = sim_events(&f, &moved, json!([]));
    assert_eq!(fresh.effects.len(), 2, "a corrected address is tried again");
}

#[test]
fn engagement_operators_answer_from_the_participants_record() {
    let t0 = at("2026-11-23T09:00:00Z");
    let mut history = History::default();
    history.record_send("e1", t0);
    history.record_send("e2", t0);
    let mut record = |value: Value| history.record(&received(value));
    record(json!({"at": "2026-11-23T09:10:00Z", "event": "email_opened", "step": "e1"}));
    record(json!({"at": "2026-11-23T09:11:00Z", "event": "email_opened", "step": "e2", "machine": true}));
    record(json!({"at": "2026-11-23T09:12:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test/pricing"}));
    record(json!({"at": "2026-11-23T09:13:00Z", "event": "replied", "step": "e2", "auto": true}));
    record(json!({"at": "2026-11-23T09:14:00Z", "event": "bounced", "step": "e2", "type": "soft"}));
    record(json!({"at": "2026-11-23T09:15:00Z", "event": "custom", "name": "purchase"}));
    let mut contact = ada();
    contact.opted_out.insert("sms".into());
    let now = at("2026-11-24T09:00:00Z");
    let check = |c: Value| {
        let criterion: crate::core::flow::Criterion = serde_json::from_value(c).unwrap();
        criteria_met_at(&contact, &history, now, &[criterion], None)
    };
    assert!(check(json!({"op": "opened", "value": "e1"})));
    assert!(check(json!({"op": "not_opened", "value": "e2"})), "a machine open is no open");
    assert!(check(json!({"op": "opened", "value": "e2", "include_machine": true})));
    assert!(check(json!({"op": "opened", "value": "any"})));
    assert!(check(json!({"op": "clicked", "value": "e1", "url_contains": "PRICING"})));
    assert!(check(json!({"op": "not_clicked", "value": "e1", "url_contains": "blog"})));
    assert!(check(json!({"op": "not_clicked", "value": "e2"})));
    assert!(check(json!({"op": "not_replied", "value": "any"})), "an auto-reply is no reply");
    assert!(!check(json!({"op": "replied", "value": "e2"})));
    assert!(check(json!({"op": "bounced", "value": "e2"})));
    assert!(!check(json!({"op": "bounced", "value": "e1"})));
    assert!(check(json!({"op": "unsubscribed", "value": "sms"})));
    assert!(!check(json!({"op": "unsubscribed", "value": "email"})));
    assert!(check(json!({"op": "did_event", "value": "purchase"})));
    assert!(check(json!({"op": "did_not_event", "value": "purchase", "within": {"amount": 1, "unit": "hours"}})), "a day ago is not within the hour");
    assert!(check(json!({"op": "did_event", "value": "purchase", "within": {"amount": 2, "unit": "days"}})));
    assert!(check(json!({"op": "did_not_event", "value": "signup"})));
    assert!(!crate::core::contact::criteria_met(&contact, &[serde_json::from_value(json!({"op": "opened", "value": "e1"})).unwrap()], None),
        "without the participant's record an engagement operator is unmet");
}

#[test]
fn conditions_and_held_guards_use_engagement_operators() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "c", "kind": "condition", "settings": {"criteria": [{"op": "opened", "value": "e1"}]}},
               {"id": "y", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "yes"}]}},
               {"id": "n", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "no"}]}}]),
        &["s->e1", "e1->w", "w->c", "c:yes->y", "c:no->n"],
    );
    let opened = json!([{"at": "2026-11-23T15:00:00Z", "event": "email_opened", "step": "e1"}]);
    assert_eq!(path(&sim_events(&f, &ada(), opened)), "yes");
    assert_eq!(path(&sim_events(&f, &ada(), json!([]))), "no");

    let guarded = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "k", "kind": "task", "settings": {"subject": "Follow up"},
                "guard": {"criteria": [{"op": "clicked", "value": "any"}], "when_unmet": "hold"}}]),
        &["s->e1", "e1->k"],
    );
    let sim = sim_events(&guarded, &ada(), json!([{"at": "2026-11-23T09:20:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test"}]));
    assert_eq!(effects_of(&sim), ["link_clicked:met"]);
    let task = sim.actions.iter().find(|a| a.step == "k").unwrap();
    assert_eq!((task.outcome, task.due_at), (Outcome::Pending, at("2026-11-23T09:20:00Z")), "released by the click, not the next re-check");
}

#[test]
fn a_goal_converts_at_the_step_where_it_is_met_and_skips_that_step() {
    let f = flow(
        json!({"goal": {"criteria": [{"field": "stage", "op": "equals", "value": "customer"}]}}),
        json!([{"id": "s", "kind": "start"},
               {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "stage", "op": "set", "value": "customer"}]}},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}}]),
        &["s->u", "u->e1"],
    );
    let sim = sim_events(&f, &ada(), json!([]));
    assert_eq!(sim.status, "converted");
    assert_eq!(trail(&sim).last().unwrap(), "e1:Skipped:goal");
    assert!(sim.effects.is_empty());

    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, at("2026-11-23T09:00:00Z"));
    assert_eq!(out.participant.status, Status::Converted);
    assert_eq!(out.participant.status.as_str(), "converted");
    assert!(out.participant.status.is_finished() && !out.participant.status.is_active());
    assert_eq!(next_wake(&out.participant), None);
}

#[test]
fn a_goal_event_converts_a_waiting_participant_at_once() {
    let f = flow(
        json!({"goal": {"event": {"event": "custom", "name": "purchase"}}}),
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}}]),
        &["s->w", "w->e1"],
    );
    let sim = sim_events(&f, &ada(), json!([
        {"at": "2026-11-24T09:00:00Z", "event": "custom", "name": "browse"},
        {"at": "2026-11-24T10:00:00Z", "event": "custom", "name": "purchase"},
        {"at": "2026-11-24T11:00:00Z", "event": "custom", "name": "purchase"}
    ]));
    assert_eq!(sim.status, "converted");
    assert_eq!(effects_of(&sim), ["custom:recorded", "custom:goal", "custom:ignored"]);
    let wait = sim.actions.iter().find(|a| a.step == "w").unwrap();
    assert_eq!((wait.outcome, wait.reason.as_deref(), wait.done_at), (Outcome::Skipped, Some("goal"), Some(at("2026-11-24T10:00:00Z"))));
    assert!(sim.effects.is_empty());
    assert_eq!(serde_json::to_value(&sim).unwrap()["events"][1], json!({"at": "2026-11-24T10:00:00Z", "event": "custom", "effect": "goal"}));
}

#[test]
fn exit_on_reply_ends_the_participant_on_a_human_reply() {
    let f = flow(
        json!({"exit_on_reply": true}),
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
               {"id": "e2", "kind": "send_email", "settings": {"subject": "Bump", "body": "x"}}]),
        &["s->e1", "e1->w", "w->e2"],
    );
    let sim = sim_events(&f, &ada(), json!([
        {"at": "2026-11-23T10:00:00Z", "event": "replied", "step": "e1", "auto": true},
        {"at": "2026-11-24T10:00:00Z", "event": "replied", "step": "e1"}
    ]));
    assert_eq!(sim.status, "exited");
    assert_eq!(effects_of(&sim), ["replied:recorded", "replied:recorded"]);
    assert_eq!(sim.effects.len(), 1, "the bump is never sent");
    assert_eq!(trail(&sim).last().unwrap(), "w:Skipped:replied");

    let mut settings_off = f.clone();
    settings_off.settings.exit_on_reply = None;
    let sim = sim_events(&settings_off, &ada(), json!([{"at": "2026-11-24T10:00:00Z", "event": "replied", "step": "e1"}]));
    assert_eq!((sim.status.as_str(), sim.effects.len()), ("completed", 2), "without the setting a reply changes nothing");
}

#[test]
fn events_not_waited_on_are_recorded_and_a_second_delivery_changes_nothing() {
    let f = waiting_on(json!([{"event": "email_opened", "step": "e1"}]));
    let now = at("2026-11-23T09:00:00Z");
    let out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
    assert!(matches!(out.participant.phase, Phase::Effect { .. }), "waiting on the email's outcome, not on an event");
    let purchase = Event::Engagement { received: received(json!({"id": "p1", "at": "2026-11-23T09:01:00Z", "event": "custom", "name": "purchase"})) };
    let first = advance(&f, &out.participant, &out.contact, purchase.clone(), now);
    assert_eq!(first.event_effect, Some(EventEffect::Recorded));
    assert_eq!(first.participant.history.events.len(), 1);
    assert_eq!(Participant { history: out.participant.history.clone(), ..first.participant.clone() }, out.participant, "only the record changed");
    assert!(first.actions.is_empty() && first.commands.is_empty());
    let again = advance(&f, &first.participant, &first.contact, purchase, now);
    assert_eq!(again.event_effect, Some(EventEffect::Ignored));
    assert_eq!((again.participant, again.contact), (first.participant.clone(), first.contact.clone()));

    // The same open twice (no id): met once, then ignored.
    let sent = advance(&f, &first.participant, &first.contact, Event::Effect { result: EffectResult::Done { updates: Map::new() } }, now);
    let open = Event::Engagement { received: received(json!({"at": "2026-11-23T10:00:00Z", "event": "email_opened", "step": "e1"})) };
    let met = advance(&f, &sent.participant, &sent.contact, open.clone(), at("2026-11-23T10:00:00Z"));
    assert_eq!(met.event_effect, Some(EventEffect::Met));
    assert_eq!(met.participant.status, Status::Completed);
    let twice = advance(&f, &met.participant, &met.contact, open, at("2026-11-23T10:05:00Z"));
    assert_eq!(twice.event_effect, Some(EventEffect::Ignored));
    assert_eq!(twice.participant, met.participant, "a finished participant takes no events");
}

#[test]
fn a_custom_event_enrolls_into_flows_that_start_on_it() {
    let f = flow(json!({}), json!([{"id": "s", "kind": "start", "settings": {"entry": "event", "event": "signup"}}]), &[]);
    let event = |value: Value| received(value).event;
    assert!(enrolls(&f, &event(json!({"at": "2026-11-23T09:00:00Z", "event": "custom", "name": "signup"}))));
    assert!(!enrolls(&f, &event(json!({"at": "2026-11-23T09:00:00Z", "event": "custom", "name": "purchase"}))));
    assert!(!enrolls(&f, &ContactEvent::Unsubscribed { channel: "all".into() }));
    let manual = flow(json!({}), json!([{"id": "s", "kind": "start", "settings": {"entry": "manual", "event": "signup"}}]), &[]);
    assert!(!enrolls(&manual, &event(json!({"at": "2026-11-23T09:00:00Z", "event": "custom", "name": "signup"}))));
}

#[test]
fn the_simulator_delivers_events_in_time_order_on_the_virtual_clock() {
    let f = waiting_on(json!([{"event": "link_clicked", "step": "e1"}]));
    // Given out of order: the open comes first on the clock.
    let sim = sim_events(&f, &ada(), json!([
        {"at": "2026-11-23T13:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test"},
        {"at": "2026-11-23T11:00:00Z", "event": "email_opened", "step": "e1"},
        {"at": "2026-12-30T00:00:00Z", "event": "email_opened", "step": "e1"}
    ]));
    assert_eq!(effects_of(&sim), ["email_opened:recorded", "link_clicked:met"], "an event after the window is not delivered");
    assert_eq!(sim.events[0].at, at("2026-11-23T11:00:00Z"));
    assert_eq!(sim.events[1].step.as_deref(), Some("e1"));
    let m = sim.actions.iter().find(|a| a.step == "m").unwrap();
    assert_eq!(m.done_at, Some(at("2026-11-23T13:00:00Z")));
    // Without events the result has no `events` key (documents from before read the same).
    let plain = serde_json::to_value(sim_events(&f, &ada(), json!([]))).unwrap();
    assert!(plain.get("events").is_none());
}

#[test]
fn a_wake_after_the_contact_changed_converts_a_waiting_participant_whose_goal_now_holds() {
    let f = flow(
        json!({"goal": {"criteria": [{"field": "stage", "op": "equals", "value": "customer"}]}}),
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}}]),
        &["s->w", "w->e1"],
    );
    let now = at("2026-11-23T09:00:00Z");
    let waiting = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
    assert_eq!(waiting.participant.status, Status::Waiting);
    let later = now + SignedDuration::from_hours(1);
    let unchanged = advance(&f, &waiting.participant, &ada(), Event::Wake, later);
    assert_eq!(unchanged.participant, waiting.participant, "an early wake with the goal unmet changes nothing");
    let mut customer = ada();
    customer.set_field("stage", json!("customer"));
    let converted = advance(&f, &waiting.participant, &customer, Event::Wake, later);
    assert_eq!(converted.participant.status, Status::Converted);
    assert!(converted.commands.is_empty(), "the email after the wait is never sent");
    let record = converted.actions.last().unwrap();
    assert_eq!((record.step.as_str(), record.outcome, record.reason.as_deref()), ("w", Outcome::Skipped, Some("goal")));
    let again = advance(&f, &converted.participant, &customer, Event::Wake, later);
    assert_eq!(again.participant, converted.participant, "a finished participant stays finished");
}

#[test]
fn consent_changes_apply_to_the_contact_without_a_participant() {
    use crate::core::engagement::{apply_consent, BounceType};
    let mut c = ada();
    assert!(apply_consent(&mut c, &ContactEvent::Unsubscribed { channel: "sms".into() }));
    assert!(!apply_consent(&mut c, &ContactEvent::Unsubscribed { channel: "sms".into() }), "twice changes nothing");
    assert!(apply_consent(&mut c, &ContactEvent::Complained { step: None }));
    assert!(c.opted_out.contains("email") && c.opted_out.contains("sms"));
    assert!(!apply_consent(&mut c, &ContactEvent::Bounced { step: None, bounce: BounceType::Soft }));
    assert!(apply_consent(&mut c, &ContactEvent::Bounced { step: None, bounce: BounceType::Hard }));
    assert!(c.is_undeliverable("ada@example.com"));
    assert!(!apply_consent(&mut c, &ContactEvent::Custom { name: "purchase".into(), properties: Default::default() }));
}

fn with_policy(policy: Value) -> Installation {
    Installation { pressure: serde_json::from_value(policy).unwrap(), ..Installation::default() }
}

fn pressured(flow: &FlowDocument, contact: &Contact, policy: Value) -> Simulation {
    let options = Options { start: at("2026-11-23T09:00:00Z"), window: parse_span("30d").unwrap(), manual_after: None, seed: 7 };
    crate::core::simulate::simulate_with(flow, &with_policy(policy), contact, &options)
}

/// start -> e1 -> wait 1d -> e2 -> wait 1d -> e3 (emails a day apart)
fn three_emails(settings: Value, e3: Value) -> FlowDocument {
    let mut e3_step = json!({"id": "e3", "kind": "send_email", "settings": {"subject": "Third", "body": "x"}});
    e3_step["settings"].as_object_mut().unwrap().extend(e3.as_object().unwrap().clone());
    flow(
        settings,
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "First", "body": "x"}},
               {"id": "w1", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "e2", "kind": "send_email", "settings": {"subject": "Second", "body": "x"}},
               {"id": "w2", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               e3_step,
               {"id": "d", "kind": "update_contact", "settings": {"changes": [{"field": "done", "op": "set", "value": "yes"}]}}]),
        &["s->e1", "e1->w1", "w1->e2", "e2->w2", "w2->e3", "e3->d"],
    )
}

const TWO_A_WEEK: &str = r#"{"caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}}]}"#;

#[test]
fn a_capped_send_waits_until_the_oldest_counted_send_leaves_the_window_and_says_why() {
    let f = three_emails(json!({}), json!({}));
    let sim = pressured(&f, &ada(), serde_json::from_str(TWO_A_WEEK).unwrap());
    let sends: Vec<Timestamp> = sim.effects.iter().map(|e| e.at).collect();
    assert_eq!(sends, [at("2026-11-23T09:00:00Z"), at("2026-11-24T09:00:00Z"), at("2026-11-30T09:00:00Z")], "the third waits a week after the first");
    let held = sim.actions.iter().find(|a| a.step == "e3").unwrap();
    assert_eq!(held.due_at, at("2026-11-30T09:00:00Z"));
    assert!(held.why.as_deref().unwrap().contains("cap of 2 email per 7 days"), "{held:?}");
    assert_eq!(sim.contact.field_text("done"), "yes");
    // Without a policy all three go a day apart.
    let free = pressured(&f, &ada(), json!({}));
    assert_eq!(free.effects[2].at, at("2026-11-25T09:00:00Z"));
}

#[test]
fn when_capped_skip_skips_with_reason_capped_and_moves_on() {
    let f = three_emails(json!({}), json!({"when_capped": "skip"}));
    let sim = pressured(&f, &ada(), serde_json::from_str(TWO_A_WEEK).unwrap());
    assert_eq!(sim.effects.len(), 2);
    assert!(trail(&sim).contains(&"e3:Skipped:capped".to_owned()), "{:?}", trail(&sim));
    assert_eq!(sim.contact.field_text("done"), "yes", "on to the next step at once");
}

#[test]
fn transactional_flows_are_exempt_and_not_counted_and_recent_sends_elsewhere_count() {
    let f = three_emails(json!({"transactional": true}), json!({}));
    let sim = pressured(&f, &ada(), serde_json::from_str(TWO_A_WEEK).unwrap());
    assert_eq!(sim.effects.len(), 3);
    assert_eq!(sim.effects[2].at, at("2026-11-25T09:00:00Z"));
    assert!(sim.contact.recent.is_empty(), "transactional sends are not counted");

    // Two emails from other flows this week: the first send here waits.
    let mut busy = ada();
    busy.recent = serde_json::from_value(json!([{"channel": "email", "at": "2026-11-20T08:00:00Z"}, {"channel": "email", "at": "2026-11-22T10:00:00Z"}])).unwrap();
    let sim = pressured(&three_emails(json!({}), json!({})), &busy, serde_json::from_str(TWO_A_WEEK).unwrap());
    assert_eq!(sim.effects[0].at, at("2026-11-27T08:00:00Z"), "a week after the older send elsewhere");
}

#[test]
fn quiet_hours_hold_an_sms_until_morning_in_the_contacts_zone() {
    let f = flow(
        json!({}),
        json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "send_sms", "settings": {"text": "Hi"}}]),
        &["s->t"],
    );
    let mut night_owl = ada();
    night_owl.timezone = Some("America/New_York".into());
    let options = Options { start: at("2026-11-24T03:00:00Z"), window: parse_span("2d").unwrap(), manual_after: None, seed: 7 };
    let policy = with_policy(json!({"quiet_hours": {"channels": ["sms", "call"], "from": "21:00", "to": "08:00"}}));
    let sim = crate::core::simulate::simulate_with(&f, &policy, &night_owl, &options);
    assert_eq!(sim.effects[0].at, at("2026-11-24T13:00:00Z"), "22:00 in New York waits for 08:00");
    let record = sim.actions.iter().find(|a| a.step == "t").unwrap();
    assert!(record.why.as_deref().unwrap().contains("quiet hours 21:00–08:00 for sms in America/New_York"), "{record:?}");
}

mod event_sequences {
    use proptest::prelude::*;

    use super::*;

    /// One of the events FLOW_FORMAT lists, about e1, e2 or no step.
    fn contact_event(kind: u8, step: u8, flag: bool) -> ContactEvent {
        let step = match step % 3 {
            0 => Some("e1".to_owned()),
            1 => Some("e2".to_owned()),
            _ => None,
        };
        match kind % 7 {
            0 => ContactEvent::EmailOpened { step, machine: flag },
            1 => ContactEvent::LinkClicked { step, url: "https://x.test/p".into(), machine: flag },
            2 => ContactEvent::Replied { step, auto: flag },
            3 => ContactEvent::Bounced { step, bounce: if flag { crate::core::engagement::BounceType::Hard } else { crate::core::engagement::BounceType::Soft } },
            4 => ContactEvent::Complained { step },
            5 => ContactEvent::Unsubscribed { channel: if flag { "all".into() } else { "email".into() } },
            _ => ContactEvent::Custom { name: if flag { "purchase".into() } else { "visit".into() }, properties: Default::default() },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever events come, in whatever order, twice or late: a
        /// participant that finished (completed, converted, exited,
        /// failed) never moves again, and an event delivered twice
        /// changes nothing the second time.
        #[test]
        fn no_event_sequence_moves_a_finished_participant(
            goal in any::<bool>(),
            exit_on_reply in any::<bool>(),
            sequence in proptest::collection::vec((0u8..8, 0u8..3, any::<bool>(), 0u32..200), 1..30),
        ) {
            let mut settings = json!({});
            if goal { settings["goal"] = json!({"event": {"event": "custom", "name": "purchase"}}); }
            if exit_on_reply { settings["exit_on_reply"] = json!(true); }
            let f = flow(
                settings,
                json!([{"id": "s", "kind": "start"},
                       {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
                       {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "email_opened", "step": "e1"}], "timeout": {"amount": 2, "unit": "days"}}},
                       {"id": "e2", "kind": "send_email", "settings": {"subject": "Again", "body": "x"}},
                       {"id": "x", "kind": "exit"}]),
                &["s->e1", "e1->w", "w:met->e2", "w:timed_out->x", "e2->x"],
            );
            let mut now = at("2026-11-23T09:00:00Z");
            let mut out = advance(&f, &Participant::new(1), &ada(), Event::Enroll, now);
            let mut finished: Option<Participant> = None;
            for (i, (kind, step, flag, minutes)) in sequence.into_iter().enumerate() {
                now += SignedDuration::from_mins(minutes as i64 * 30);
                let event = if kind == 7 {
                    if matches!(out.participant.phase, Phase::Effect { .. }) {
                        Event::Effect { result: EffectResult::Done { updates: Default::default() } }
                    } else {
                        Event::Wake
                    }
                } else {
                    Event::Engagement { received: Received { id: Some(format!("ev{i}")), at: now, event: contact_event(kind, step, flag) } }
                };
                let next = advance(&f, &out.participant, &out.contact, event.clone(), now);
                if let Some(done) = &finished {
                    prop_assert_eq!(&next.participant.status, &done.status, "a finished participant's status never changes");
                    prop_assert_eq!(&next.participant.step, &done.step);
                    prop_assert!(next.commands.is_empty(), "nothing is sent after the end");
                }
                if let Event::Engagement { .. } = event {
                    let again = advance(&f, &next.participant, &next.contact, event, now);
                    prop_assert_eq!(&again.participant, &next.participant, "the same event twice changes nothing the second time");
                    prop_assert!(again.commands.is_empty());
                }
                if next.participant.status.is_finished() && finished.is_none() {
                    finished = Some(next.participant.clone());
                }
                out = next;
            }
        }
    }
}
