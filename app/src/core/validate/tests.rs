//! One failing and one passing case per code, plus the graph subtleties.

use serde_json::{json, Value};

use super::*;

fn doc(steps: Value, edges: Value) -> Value {
    json!({"format": "waymark.flow/v1", "name": "Test", "steps": steps, "edges": edges})
}

fn check(value: &Value) -> Findings {
    validate_value(value, &Context::default())
}

fn codes_for(findings: &Findings, code: Code) -> Vec<Option<String>> {
    findings.iter().filter(|f| f.code == code).map(|f| f.step.clone()).collect()
}

fn has(findings: &Findings, code: Code, step: &str) -> bool {
    codes_for(findings, code).contains(&Some(step.to_owned()))
}

/// start -> wait 1 day -> email -> exit: clean.
fn clean() -> Value {
    doc(
        json!([
            {"id": "start", "kind": "start", "settings": {"entry": "manual"}},
            {"id": "w1", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
            {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "Hello {{ first_name }}"}},
            {"id": "x", "kind": "exit"}
        ]),
        json!([
            {"from": "start", "port": "next", "to": "w1"},
            {"from": "w1", "port": "next", "to": "e1"},
            {"from": "e1", "port": "next", "to": "x"}
        ]),
    )
}

#[test]
fn a_clean_flow_has_no_findings() {
    let findings = check(&clean());
    assert_eq!(findings, Findings::default(), "{findings:#?}");
    assert!(!findings.blocks_publish());
}

#[test]
fn format_must_be_v1() {
    let mut value = clean();
    value["format"] = json!("waymark.flow/v2");
    assert_eq!(check(&value).codes(), [Code::UnsupportedFormat]);
    value.as_object_mut().unwrap().remove("format");
    assert_eq!(check(&value).codes(), [Code::UnsupportedFormat]);
}

#[test]
fn shape_problems_are_findings_not_failures() {
    let findings = check(&json!({"steps": 5}));
    assert_eq!(findings.codes(), [Code::UnsupportedFormat, Code::InvalidDocument]);
    assert!(findings.errors[1].message.contains("steps"));
    assert_eq!(check(&json!({"format": "waymark.flow/v1"})).codes(), [Code::NoStart]);
}

#[test]
fn unknown_kind() {
    let value = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "t", "kind": "teleport"}]),
        json!([{"from": "start", "port": "next", "to": "t"}]),
    );
    let findings = check(&value);
    assert!(has(&findings, Code::UnknownKind, "t"));
    assert!(codes_for(&check(&clean()), Code::UnknownKind).is_empty());
    // an unknown kind is not also blamed for its ports
    assert!(codes_for(&findings, Code::UnconnectedOutput).is_empty());
}

#[test]
fn duplicate_step_id_is_reported_once() {
    let value = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "a", "kind": "exit"}, {"id": "a", "kind": "exit"},
               {"id": "a", "kind": "block"}]),
        json!([{"from": "start", "port": "next", "to": "a"}]),
    );
    assert_eq!(codes_for(&check(&value), Code::DuplicateStepId), [Some("a".into())]);
    assert!(codes_for(&check(&clean()), Code::DuplicateStepId).is_empty());
}

#[test]
fn exactly_one_start() {
    let none = doc(json!([{"id": "x", "kind": "exit"}]), json!([]));
    assert_eq!(check(&none).codes(), [Code::NoStart]);
    let two = doc(
        json!([{"id": "s1", "kind": "start"}, {"id": "s2", "kind": "start"}, {"id": "x", "kind": "exit"}]),
        json!([{"from": "s1", "port": "next", "to": "x"}, {"from": "s2", "port": "next", "to": "x"}]),
    );
    let findings = check(&two);
    assert_eq!(codes_for(&findings, Code::MultipleStarts), [Some("s2".into())]);
    assert!(codes_for(&findings, Code::NoStart).is_empty());
    assert!(codes_for(&check(&clean()), Code::MultipleStarts).is_empty());
}

#[test]
fn dangling_edges_in_both_directions() {
    let value = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "x", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "ghost"}, {"from": "phantom", "port": "next", "to": "x"}]),
    );
    let findings = check(&value);
    assert_eq!(codes_for(&findings, Code::DanglingEdge), [Some("start".into()), Some("x".into())]);
    assert!(codes_for(&check(&clean()), Code::DanglingEdge).is_empty());
}

#[test]
fn unknown_port() {
    let value = doc(
        json!([{"id": "start", "kind": "start"},
               {"id": "c", "kind": "condition", "settings": {"criteria": [{"field": "a", "op": "is_empty"}]}},
               {"id": "x", "kind": "exit"}, {"id": "y", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "c"}, {"from": "c", "port": "yes", "to": "x"},
               {"from": "c", "port": "maybe", "to": "y"}]),
    );
    let findings = check(&value);
    let unknown: Vec<_> = findings.iter().filter(|f| f.code == Code::UnknownPort).collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].port.as_deref(), Some("maybe"));
    assert!(unknown[0].message.contains("yes, no"), "{}", unknown[0].message);
    // the unused "no" is also reported, as unconnected
    assert!(findings.iter().any(|f| f.code == Code::UnconnectedOutput && f.port.as_deref() == Some("no")));
    assert!(codes_for(&check(&clean()), Code::UnknownPort).is_empty());
}

#[test]
fn port_reused() {
    let value = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "x", "kind": "exit"}, {"id": "y", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "x"}, {"from": "start", "port": "next", "to": "y"}]),
    );
    assert_eq!(codes_for(&check(&value), Code::PortReused), [Some("start".into())]);
    assert!(codes_for(&check(&clean()), Code::PortReused).is_empty());
}

#[test]
fn missing_and_invalid_settings_block_publish_but_the_document_loads() {
    let value = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "s", "kind": "send_sms", "settings": {"if_no_mobile": "shrug"}},
               {"id": "x", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "s"}, {"from": "s", "port": "next", "to": "x"}]),
    );
    let findings = check(&value);
    let missing: Vec<_> = findings.iter().filter(|f| f.code == Code::MissingSetting).collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].setting.as_deref(), Some("text"));
    assert!(has(&findings, Code::InvalidSetting, "s"));
    assert!(findings.blocks_publish());
    assert!(codes_for(&check(&clean()), Code::MissingSetting).is_empty());
}

#[test]
fn bad_logic_in_conditions_and_guards() {
    let criteria = json!([{"field": "a", "op": "is_empty"}, {"field": "b", "op": "equals", "value": 1}]);
    let value = doc(
        json!([{"id": "start", "kind": "start"},
               {"id": "c", "kind": "condition", "settings": {"criteria": criteria, "logic": "1 AND (2 OR"}},
               {"id": "e", "kind": "block", "guard": {"criteria": criteria, "logic": "1 OR 3", "when_unmet": "skip"}},
               {"id": "x", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "c"}, {"from": "c", "port": "yes", "to": "e"},
               {"from": "c", "port": "no", "to": "x"}, {"from": "e", "port": "next", "to": "x"}]),
    );
    let findings = check(&value);
    assert_eq!(codes_for(&findings, Code::BadLogic), [Some("c".into()), Some("e".into())]);
    let guard = findings.iter().find(|f| f.step.as_deref() == Some("e")).unwrap();
    assert!(guard.message.contains("criterion 3 does not exist"), "{}", guard.message);

    let mut fixed = value.clone();
    fixed["steps"][1]["settings"]["logic"] = json!("1 AND (2 OR NOT 1)");
    fixed["steps"][2]["guard"]["logic"] = json!("1 or 2");
    assert_eq!(check(&fixed), Findings::default());
}

#[test]
fn a_loop_without_a_wait_is_an_instant_loop_and_with_one_it_is_not() {
    let criteria = json!([{"field": "score", "op": "greater_than", "value": 10}]);
    let looping = doc(
        json!([{"id": "start", "kind": "start"},
               {"id": "c", "kind": "condition", "settings": {"criteria": criteria}},
               {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "score", "op": "increment", "value": 1}]}},
               {"id": "x", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "c"}, {"from": "c", "port": "no", "to": "u"},
               {"from": "u", "port": "next", "to": "c"}, {"from": "c", "port": "yes", "to": "x"}]),
    );
    let findings = check(&looping);
    assert_eq!(codes_for(&findings, Code::InstantLoop), [Some("c".into())]);
    assert!(codes_for(&findings, Code::NoWayOut).is_empty(), "the loop can leave by yes");

    let mut waiting = looping.clone();
    waiting["steps"].as_array_mut().unwrap().push(
        json!({"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "hours"}}),
    );
    waiting["edges"][2] = json!({"from": "u", "port": "next", "to": "w"});
    waiting["edges"].as_array_mut().unwrap().push(json!({"from": "w", "port": "next", "to": "c"}));
    assert_eq!(check(&waiting), Findings::default());

    // a business-hours wait passes at once while open: still an instant loop
    let mut open_hours = waiting.clone();
    open_hours["steps"][4]["settings"] = json!({"mode": "business_hours"});
    assert_eq!(codes_for(&check(&open_hours), Code::InstantLoop).len(), 1);
}

#[test]
fn restart_loops_back_to_start() {
    let steps = json!([{"id": "start", "kind": "start"}, {"id": "u", "kind": "block"}, {"id": "r", "kind": "restart"}]);
    let edges = json!([{"from": "start", "port": "next", "to": "u"}, {"from": "u", "port": "next", "to": "r"}]);
    let findings = check(&doc(steps.clone(), edges.clone()));
    assert_eq!(codes_for(&findings, Code::InstantLoop).len(), 1);
    assert_eq!(codes_for(&findings, Code::NoWayOut).len(), 1);

    let mut bounded = steps.clone();
    bounded[2]["settings"] = json!({"max_restarts": 3});
    assert_eq!(check(&doc(bounded, edges)), Findings::default());
}

#[test]
fn a_region_with_no_way_out() {
    // start -> w -> c, and both of c's answers lead back to w: round for ever
    let criteria = json!([{"field": "replied", "op": "equals", "value": "yes"}]);
    let stuck = doc(
        json!([{"id": "start", "kind": "start"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "c", "kind": "condition", "settings": {"criteria": criteria}}]),
        json!([{"from": "start", "port": "next", "to": "w"}, {"from": "w", "port": "next", "to": "c"},
               {"from": "c", "port": "yes", "to": "w"}, {"from": "c", "port": "no", "to": "w"}]),
    );
    let findings = check(&stuck);
    assert_eq!(codes_for(&findings, Code::NoWayOut), [Some("c".into())]);
    assert!(codes_for(&findings, Code::InstantLoop).is_empty());
    assert!(!findings.blocks_publish(), "no_way_out is a warning");

    let mut leaving = stuck.clone();
    leaving["steps"].as_array_mut().unwrap().push(json!({"id": "x", "kind": "exit"}));
    leaving["edges"][2]["to"] = json!("x");
    assert_eq!(check(&leaving), Findings::default());
}

#[test]
fn unreachable_steps_are_warned_about() {
    let mut value = clean();
    value["steps"].as_array_mut().unwrap().push(json!({"id": "lost", "kind": "exit"}));
    let findings = check(&value);
    assert_eq!(codes_for(&findings, Code::UnreachableStep), [Some("lost".into())]);
    assert!(!findings.blocks_publish());
}

#[test]
fn unconnected_outputs_are_warned_about() {
    let mut value = clean();
    value["edges"].as_array_mut().unwrap().pop();
    let findings = check(&value);
    assert_eq!(codes_for(&findings, Code::UnconnectedOutput), [Some("e1".into())]);
    // and the exit is now unreachable
    assert!(has(&findings, Code::UnreachableStep, "x"));
}

#[test]
fn split_percentages_should_add_to_100() {
    let split = |a: u32, b: u32| {
        doc(
            json!([{"id": "start", "kind": "start"},
                   {"id": "s", "kind": "split", "settings": {"branches": [{"port": "a", "percent": a}, {"port": "b", "percent": b}]}},
                   {"id": "x", "kind": "exit"}, {"id": "y", "kind": "exit"}]),
            json!([{"from": "start", "port": "next", "to": "s"}, {"from": "s", "port": "a", "to": "x"},
                   {"from": "s", "port": "b", "to": "y"}]),
        )
    };
    let findings = check(&split(50, 40));
    assert_eq!(codes_for(&findings, Code::SplitNot100), [Some("s".into())]);
    assert!(findings.warnings[0].message.contains("90%"));
    assert_eq!(check(&split(50, 50)), Findings::default());
}

#[test]
fn long_sms_is_warned_about() {
    let sms = |text: &str| {
        doc(
            json!([{"id": "start", "kind": "start"}, {"id": "s", "kind": "send_sms", "settings": {"text": text}},
                   {"id": "x", "kind": "exit"}]),
            json!([{"from": "start", "port": "next", "to": "s"}, {"from": "s", "port": "next", "to": "x"}]),
        )
    };
    assert_eq!(check(&sms(&"a".repeat(160))), Findings::default());
    let findings = check(&sms(&"a".repeat(161)));
    assert_eq!(codes_for(&findings, Code::SmsMultiSegment), [Some("s".into())]);
    let findings = check(&sms(&format!("Zażółć {}", "a".repeat(70))));
    assert!(findings.warnings[0].message.contains("UCS-2"));
}

#[test]
fn go_to_flow_recursion_and_unknown_targets() {
    let goto = |target: &str| {
        doc(
            json!([{"id": "start", "kind": "start"}, {"id": "g", "kind": "go_to_flow", "settings": {"flow": target, "mode": "move"}}]),
            json!([{"from": "start", "port": "next", "to": "g"}]),
        )
    };
    // into itself by name, even with no context
    assert_eq!(codes_for(&check(&goto("test")), Code::Recursion), [Some("g".into())]);
    assert_eq!(check(&goto("Other")), Findings::default());

    let context = Context {
        flow_id: Some("1".into()),
        flows: Some(vec![
            LinkedFlow { id: "2".into(), name: "Nurture".into(), goes_to: vec!["3".into()] },
            LinkedFlow { id: "3".into(), name: "Win back".into(), goes_to: vec!["Test".into()] },
            LinkedFlow { id: "4".into(), name: "Archive".into(), goes_to: vec![] },
        ]),
        groups: None,
        fields: None,
    };
    let via = validate_value(&goto("Nurture"), &context);
    let recursion: Vec<_> = via.iter().filter(|f| f.code == Code::Recursion).collect();
    assert_eq!(recursion.len(), 1);
    assert!(recursion[0].message.contains("Nurture → Win back"), "{}", recursion[0].message);
    assert_eq!(validate_value(&goto("4"), &context), Findings::default());
    assert_eq!(codes_for(&validate_value(&goto("Nowhere"), &context), Code::UnknownTarget), [Some("g".into())]);
}

#[test]
fn action_group_recursion() {
    let run = doc(
        json!([{"id": "start", "kind": "start"}, {"id": "g", "kind": "run_action_group", "settings": {"group": "Qualify"}},
               {"id": "x", "kind": "exit"}]),
        json!([{"from": "start", "port": "next", "to": "g"}, {"from": "g", "port": "next", "to": "x"}]),
    );
    let groups = |qualify_runs: Vec<&str>| Context {
        groups: Some(vec![
            LinkedGroup { name: "Qualify".into(), runs: qualify_runs.into_iter().map(Into::into).collect() },
            LinkedGroup { name: "Score".into(), runs: vec!["Notify".into()] },
            LinkedGroup { name: "Notify".into(), runs: vec!["Score".into()] },
            LinkedGroup { name: "Tag".into(), runs: vec![] },
        ]),
        ..Context::default()
    };
    assert_eq!(validate_value(&run, &groups(vec!["Tag"])), Findings::default());
    assert_eq!(codes_for(&validate_value(&run, &groups(vec!["Qualify"])), Code::Recursion).len(), 1);
    assert_eq!(codes_for(&validate_value(&run, &groups(vec!["Tag", "Score"])), Code::Recursion).len(), 1);
    assert_eq!(codes_for(&validate_value(&run, &groups(vec![])), Code::Recursion).len(), 0);
    let mut missing = run.clone();
    missing["steps"][1]["settings"]["group"] = json!("Nope");
    assert_eq!(codes_for(&validate_value(&missing, &groups(vec![])), Code::UnknownTarget).len(), 1);
}

#[test]
fn every_code_is_listed_with_its_level() {
    let warnings: Vec<&str> = Code::ALL.iter().filter(|c| c.level() == Level::Warning).map(|c| c.as_str()).collect();
    assert_eq!(warnings, ["unreachable_step", "unconnected_output", "no_way_out", "split_not_100", "sms_multi_segment", "unknown_field"]);
    for code in Code::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn can_connect_refuses_what_the_validator_would_report() {
    let mut document = FlowDocument::from_value(&clean()).unwrap();
    document.edges.pop();
    assert_eq!(can_connect(&document, "e1", "next", "x"), Ok(()));
    assert_eq!(can_connect(&document, "w1", "next", "x"), Err(ConnectRefusal::PortInUse));
    assert_eq!(can_connect(&document, "e1", "next", "e1"), Err(ConnectRefusal::ToItself));
    assert_eq!(can_connect(&document, "e1", "next", "start"), Err(ConnectRefusal::IntoStart));
    assert_eq!(can_connect(&document, "e1", "yes", "x"), Err(ConnectRefusal::NoSuchPort));
    assert_eq!(can_connect(&document, "e1", "next", "nope"), Err(ConnectRefusal::NoSuchStep));
}

#[test]
fn findings_serialize_as_the_format_says() {
    let findings = check(&doc(json!([{"id": "x", "kind": "exit"}]), json!([])));
    let value = serde_json::to_value(&findings).unwrap();
    assert_eq!(value["errors"][0]["code"], "no_start");
    assert!(value["errors"][0].get("step").is_none());
    assert_eq!(value["warnings"], json!([]));
}

#[test]
fn flow_settings_are_checked_too() {
    let mut value = clean();
    value["settings"] = json!({"timezone": "Mars/Olympus", "business_hours": {
        "days": {"mon": ["09:00", "17:00"], "tue": ["17:00", "09:00"], "wed": ["9am", "5pm"]},
        "holidays": ["2026-12-25", "Christmas"]}, "slow_drip": {"limit": 0, "per": "day"}});
    let findings = check(&value);
    let settings: Vec<&str> = findings.iter().filter(|f| f.code == Code::InvalidSetting).filter_map(|f| f.setting.as_deref()).collect();
    assert_eq!(settings, [
        "settings.timezone",
        "settings.business_hours.days.tue",
        "settings.business_hours.days.wed",
        "settings.business_hours.holidays",
        "settings.slow_drip.limit",
    ]);
    assert!(findings.iter().all(|f| f.step.is_none()));
    let mut fine = clean();
    fine["settings"] = json!({"timezone": "Europe/Paris", "business_hours": {"days": {"mon": ["08:30", "18:00"]}, "holidays": ["2026-12-25"]}});
    assert_eq!(check(&fine), Findings::default());
}

// Engagement (FLOW_FORMAT "Engagement (v1 additions)").

/// start → e1 (email) → w (wait_until with `settings`) → met: x.
fn waiting(settings: Value) -> Value {
    doc(
        json!([
            {"id": "start", "kind": "start"},
            {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "Hello"}},
            {"id": "w", "kind": "wait_until", "settings": settings},
            {"id": "x", "kind": "exit"},
            {"id": "t", "kind": "exit"}
        ]),
        json!([
            {"from": "start", "port": "next", "to": "e1"},
            {"from": "e1", "port": "next", "to": "w"},
            {"from": "w", "port": "met", "to": "x"},
            {"from": "w", "port": "timed_out", "to": "t"}
        ]),
    )
}

fn settings_of(findings: &Findings, code: Code) -> Vec<String> {
    findings.iter().filter(|f| f.code == code).filter_map(|f| f.setting.clone()).collect()
}

#[test]
fn wait_until_needs_something_to_wait_for_and_a_timeout() {
    let ok = check(&waiting(json!({"until": [{"event": "email_opened", "step": "e1"}], "timeout": {"amount": 2, "unit": "days"}})));
    assert_eq!(ok, Findings::default(), "{ok:#?}");
    let empty = check(&waiting(json!({"until": []})));
    assert_eq!(settings_of(&empty, Code::MissingSetting), ["until", "timeout"]);
    assert!(has(&empty, Code::MissingSetting, "w"));
    let bad = check(&waiting(json!({"until": [{"event": "opened"}, {}], "timeout": {"amount": 1, "unit": "fortnights"}})));
    assert_eq!(settings_of(&bad, Code::InvalidSetting), ["timeout", "until[1].event"]);
    assert_eq!(settings_of(&bad, Code::MissingSetting), ["until[2]"]);
    let criteria = check(&waiting(json!({"until": [{"criteria": [{"field": "stage", "op": "equals"}]}], "timeout": {"amount": 1, "unit": "days"}})));
    assert_eq!(settings_of(&criteria, Code::MissingSetting), ["until[1].criteria[1].value"]);
}

#[test]
fn wait_until_has_met_and_timed_out_ports() {
    let mut value = waiting(json!({"until": [{"event": "replied"}], "timeout": {"amount": 2, "unit": "days"}}));
    value["edges"].as_array_mut().unwrap().push(json!({"from": "w", "port": "next", "to": "x"}));
    let findings = check(&value);
    assert_eq!(findings.codes(), [Code::UnknownPort]);
}

#[test]
fn a_matcher_must_name_a_message_step_of_this_flow() {
    for target in ["w", "nope", "start"] {
        let findings = check(&waiting(json!({"until": [{"event": "email_opened", "step": target}], "timeout": {"amount": 2, "unit": "days"}})));
        assert_eq!(findings.codes(), [Code::UnknownTarget], "{target}");
        assert_eq!(settings_of(&findings, Code::UnknownTarget), ["until[1].step"]);
        assert!(findings.errors[0].message.contains(target));
    }
}

#[test]
fn engagement_operators_name_no_field_and_their_values_are_checked() {
    let condition = |criteria: Value| {
        let mut value = waiting(json!({"until": [{"event": "replied"}], "timeout": {"amount": 2, "unit": "days"}}));
        value["steps"][3] = json!({"id": "x", "kind": "condition", "settings": {"criteria": criteria}});
        check(&value)
    };
    let good = condition(json!([
        {"op": "opened", "value": "e1"}, {"op": "not_clicked", "value": "any", "url_contains": "pricing"},
        {"op": "unsubscribed", "value": "email"}, {"op": "did_event", "value": "purchase", "within": {"amount": 7, "unit": "days"}}
    ]));
    assert!(good.errors.is_empty(), "{good:#?}");
    let bad = condition(json!([
        {"op": "replied", "value": "x9"}, {"op": "unsubscribed", "value": "fax"}, {"op": "bounced"},
        {"op": "did_not_event", "value": "purchase", "within": {"amount": 1, "unit": "eons"}}, {"op": "opened", "value": 3}
    ]));
    assert_eq!(settings_of(&bad, Code::UnknownTarget), ["criteria[1].value"]);
    assert_eq!(settings_of(&bad, Code::InvalidSetting), ["criteria[2].value", "criteria[4].within", "criteria[5].value"]);
    assert_eq!(settings_of(&bad, Code::MissingSetting), ["criteria[3].value"]);

    let mut guarded = clean();
    guarded["steps"][2]["guard"] = json!({"criteria": [{"op": "opened", "value": "w1"}]});
    assert_eq!(settings_of(&check(&guarded), Code::UnknownTarget), ["guard.criteria[1].value"], "w1 sends no message");
}

#[test]
fn the_goal_and_event_entry_are_checked() {
    let with_settings = |settings: Value| {
        let mut value = clean();
        value["settings"] = settings;
        check(&value)
    };
    assert_eq!(with_settings(json!({"goal": {"criteria": [{"op": "clicked", "value": "e1"}]}, "exit_on_reply": true})), Findings::default());
    assert_eq!(with_settings(json!({"goal": {"event": {"event": "custom", "name": "purchase"}}})), Findings::default());
    assert_eq!(settings_of(&with_settings(json!({"goal": {}})), Code::MissingSetting), ["settings.goal"]);
    let bad = with_settings(json!({"goal": {"criteria": [{"op": "opened", "value": "x"}], "logic": "1 AND 2"}}));
    assert_eq!(bad.codes(), [Code::BadLogic, Code::UnknownTarget]);
    let bad_event = with_settings(json!({"goal": {"event": {"event": "email_opened", "step": "w1"}}}));
    assert_eq!(settings_of(&bad_event, Code::UnknownTarget), ["settings.goal.event.step"]);
    assert!(bad_event.errors.iter().all(|f| f.step.is_none()));

    let mut entry = clean();
    entry["steps"][0]["settings"] = json!({"entry": "event"});
    assert_eq!(settings_of(&check(&entry), Code::MissingSetting), ["event"]);
    entry["steps"][0]["settings"] = json!({"entry": "event", "event": "signup"});
    assert_eq!(check(&entry), Findings::default());
}
