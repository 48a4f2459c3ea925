//! Invariants of the flow core, over generated input: the validator never
//! panics on anything, and saving then loading a document changes nothing.

use app::core::flow::{Edge, FlowDocument, Guard, Logic, Position, Step, FORMAT_V1};
use app::core::kinds::StepKind;
use app::core::{validate_value, Context};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON at all, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(StepKind::ALL.to_vec()).prop_map(|k| k.as_str().to_owned()),
        1 => "[a-z]{1,6}",
    ]
}

/// Settings that are sometimes right, sometimes wrong, sometimes nonsense.
fn settings() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"mode": "duration", "amount": 1, "unit": "days"})),
        Just(json!({"mode": "duration", "amount": 0, "unit": "hours"})),
        Just(json!({"mode": "until", "at": "not a date"})),
        Just(json!({"criteria": [{"field": "a", "op": "equals", "value": 1}], "logic": "1 OR (2"})),
        Just(json!({"criteria": [{"field": "a", "op": "is_empty"}, {"field": "b", "op": "nope"}], "logic": "1 AND NOT 2"})),
        Just(json!({"branches": [{"port": "a", "percent": 70}, {"port": "b", "percent": 70}]})),
        Just(json!({"branches": "many"})),
        Just(json!({"text": "x".repeat(200), "subject": "s", "body": "b"})),
        Just(json!({"flow": "Fuzz", "mode": "copy"})),
        Just(json!({"max_restarts": 2})),
        Just(json!({"changes": [{"field": "", "op": "explode"}]})),
        any_json().prop_filter_map("object", |v| v.as_object().map(|m| Value::Object(m.clone()))),
    ]
}

/// A flow-shaped JSON document with arbitrary wiring.
fn flowish() -> impl Strategy<Value = Value> {
    let ids = prop::collection::vec("[a-d][0-9]?", 0..12);
    (ids, any::<bool>()).prop_flat_map(|(ids, with_format)| {
        let n = ids.len();
        let steps = prop::collection::vec((kind_name(), settings(), any::<bool>()), n..=n);
        let targets: Vec<String> = ids.iter().cloned().chain(["ghost".to_owned()]).collect();
        let edges = prop::collection::vec(
            (
                prop::sample::select(targets.clone()),
                prop::sample::select(vec!["next", "yes", "no", "a", "b", "failed", "odd"]),
                prop::sample::select(targets),
            ),
            0..(n * 2 + 1),
        );
        (Just(ids), steps, edges, Just(with_format)).prop_map(|(ids, steps, edges, with_format)| {
            let steps: Vec<Value> = ids
                .iter()
                .zip(steps)
                .map(|(id, (kind, settings, guarded))| {
                    let mut step = json!({"id": id, "kind": kind, "settings": settings});
                    if guarded {
                        step["guard"] = json!({"criteria": [{"field": "x", "op": "in", "value": [1]}], "logic": "NOT 1 OR 2"});
                    }
                    step
                })
                .collect();
            let edges: Vec<Value> =
                edges.into_iter().map(|(from, port, to)| json!({"from": from, "port": port, "to": to})).collect();
            let mut doc = json!({"name": "Fuzz", "steps": steps, "edges": edges});
            if with_format {
                doc["format"] = json!(FORMAT_V1);
            }
            doc
        })
    })
}

/// A well-formed document, for the round trip.
fn document() -> impl Strategy<Value = FlowDocument> {
    let step = (
        "[a-z][a-z0-9_]{0,6}",
        prop::sample::select(StepKind::ALL.to_vec()),
        prop::option::of(".{0,10}"),
        prop::option::of((-5000i32..5000, -5000.0f64..5000.0)),
        any_json(),
        any::<bool>(),
    )
        .prop_map(|(id, kind, name, position, settings, guarded)| {
            let mut step = Step::new(id, kind);
            step.name = name;
            step.position = position.map(|(x, y)| Position { x: f64::from(x), y });
            step.settings = match settings {
                Value::Object(map) => map,
                other => Map::from_iter([("value".to_owned(), other)]),
            };
            if guarded {
                step.guard = Some(Guard {
                    criteria: Vec::new(),
                    logic: Some(Logic::Custom("1 OR 2".into())),
                    when_unmet: None,
                    hold_timeout: None,
                });
            }
            step
        });
    (".{0,20}", prop::collection::vec(step, 0..10), prop::collection::vec(("[a-z]{1,3}", "[a-z]{1,5}", "[a-z]{1,3}"), 0..10))
        .prop_map(|(name, steps, edges)| {
            let mut doc = FlowDocument::new_draft(name);
            doc.steps.extend(steps);
            doc.edges = edges.into_iter().map(|(from, port, to)| Edge { from, port, to }).collect();
            doc.canonicalize();
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validator_never_panics_on_any_json(value in any_json()) {
        let _ = validate_value(&value, &Context::default());
    }

    #[test]
    fn validator_never_panics_on_flow_shaped_json(value in flowish()) {
        let findings = validate_value(&value, &Context::default());
        // and every finding says something
        for finding in findings.iter() {
            prop_assert!(!finding.message.is_empty());
        }
    }

    #[test]
    fn saving_then_loading_gives_the_same_document(doc in document()) {
        let saved = doc.to_canonical_json();
        let loaded = FlowDocument::from_json(&saved).unwrap();
        prop_assert_eq!(&loaded, &doc);
        prop_assert_eq!(loaded.to_canonical_json(), saved);
    }
}

// Engagement: whatever contact events (and other events) arrive, in any
// order and twice, a participant that has finished stays finished.

mod engagement {
    use app::core::contact::Contact;
    use app::core::engagement::Received;
    use app::core::engine::{advance, EffectResult, Event, ManualOutcome, Participant};
    use app::core::flow::FlowDocument;
    use jiff::{SignedDuration, Timestamp};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn flow(goal: Option<Value>, exit_on_reply: bool) -> FlowDocument {
        let mut settings = json!({"exit_on_reply": exit_on_reply});
        if let Some(goal) = goal {
            settings["goal"] = goal;
        }
        FlowDocument::from_value(&json!({
            "format": "waymark.flow/v1",
            "settings": settings,
            "steps": [
                {"id": "s", "kind": "start"},
                {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "x"}},
                {"id": "w", "kind": "wait_until", "settings": {
                    "until": [{"event": "email_opened", "step": "e1"}, {"event": "custom", "name": "purchase"}],
                    "timeout": {"amount": 1, "unit": "days"}}},
                {"id": "e2", "kind": "send_email", "settings": {"subject": "Again", "body": "x"},
                 "guard": {"criteria": [{"op": "not_replied", "value": "any"}], "when_unmet": "hold"}},
                {"id": "c", "kind": "condition", "settings": {"criteria": [{"op": "clicked", "value": "any"}]}},
                {"id": "k", "kind": "task", "settings": {"subject": "Call"}},
                {"id": "r", "kind": "restart", "settings": {"max_restarts": 2}}
            ],
            "edges": [
                {"from": "s", "port": "next", "to": "e1"}, {"from": "e1", "port": "next", "to": "w"},
                {"from": "w", "port": "met", "to": "e2"}, {"from": "w", "port": "timed_out", "to": "c"},
                {"from": "c", "port": "yes", "to": "k"}, {"from": "c", "port": "no", "to": "r"},
                {"from": "e2", "port": "next", "to": "k"}
            ]
        }))
        .unwrap()
    }

    fn goal() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!({"event": {"event": "custom", "name": "purchase"}}))),
            Just(Some(json!({"criteria": [{"op": "clicked", "value": "e1"}]}))),
            Just(Some(json!({"criteria": [{"op": "did_event", "value": "demo"}]}))),
        ]
    }

    fn contact_event() -> impl Strategy<Value = Value> {
        let step = prop::sample::select(vec!["e1", "e2", "zz"]);
        prop_oneof![
            (step.clone(), any::<bool>()).prop_map(|(s, m)| json!({"event": "email_opened", "step": s, "machine": m})),
            (step.clone(), any::<bool>()).prop_map(|(s, m)| json!({"event": "link_clicked", "step": s, "url": "https://x.test/p", "machine": m})),
            (step.clone(), any::<bool>()).prop_map(|(s, a)| json!({"event": "replied", "step": s, "auto": a})),
            (step.clone(), prop::sample::select(vec!["hard", "soft"])).prop_map(|(s, t)| json!({"event": "bounced", "step": s, "type": t})),
            step.prop_map(|s| json!({"event": "complained", "step": s})),
            prop::sample::select(vec!["email", "sms", "all"]).prop_map(|c| json!({"event": "unsubscribed", "channel": c})),
            prop::sample::select(vec!["purchase", "demo", "other"]).prop_map(|n| json!({"event": "custom", "name": n})),
        ]
    }

    /// An event and how far the clock moves before it (minutes).
    fn event() -> impl Strategy<Value = (u32, Value)> {
        let any_event = prop_oneof![
            Just(json!("wake")),
            Just(json!("done")),
            Just(json!("failed")),
            Just(json!("manual")),
            Just(json!("enroll")),
            Just(json!("callback")),
            (contact_event(), prop::option::of(0u8..4)).prop_map(|(mut e, id)| {
                if let Some(id) = id {
                    e["id"] = json!(format!("id-{id}"));
                }
                e
            }),
        ];
        (0u32..2_000, any_event)
    }

    fn to_event(value: &Value, now: Timestamp) -> Event {
        match value.as_str() {
            Some("wake") => Event::Wake,
            Some("done") => Event::Effect { result: EffectResult::Done { updates: Default::default() } },
            Some("failed") => Event::Effect { result: EffectResult::Failed { reason: "x".into() } },
            Some("manual") => Event::Manual { outcome: ManualOutcome::Completed, disposition: None },
            Some("enroll") => Event::Enroll,
            Some("callback") => Event::Callback { at: now, owner: None },
            _ => {
                let mut value = value.clone();
                value["at"] = json!(now.to_string());
                Event::Engagement { received: serde_json::from_value::<Received>(value).unwrap() }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn no_event_sequence_makes_a_participant_leave_a_finished_status(
            goal in goal(),
            exit_on_reply in any::<bool>(),
            events in prop::collection::vec(event(), 1..40),
        ) {
            let flow = flow(goal, exit_on_reply);
            let contact: Contact = serde_json::from_value(json!({"email": "ada@example.com", "mobile": "+15550100"})).unwrap();
            let mut now: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
            let first = advance(&flow, &Participant::new(3), &contact, Event::Enroll, now);
            let (mut participant, mut contact) = (first.participant, first.contact);
            let mut finished: Option<Participant> = None;
            for (minutes, value) in &events {
                now += SignedDuration::from_mins(i64::from(*minutes));
                let out = advance(&flow, &participant, &contact, to_event(value, now), now);
                if let Some(done) = &finished {
                    prop_assert_eq!(&out.participant, done, "a finished participant changed on {}", value);
                    prop_assert!(out.commands.is_empty() && out.actions.is_empty());
                }
                if out.participant.status.is_finished() && finished.is_none() {
                    finished = Some(out.participant.clone());
                }
                prop_assert!(out.participant.history.events.len() <= app::core::engagement::MAX_EVENTS);
                participant = out.participant;
                contact = out.contact;
            }
        }
    }
}
