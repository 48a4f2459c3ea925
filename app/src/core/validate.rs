//! The flow validator. The browser runs it live while a marketer edits, the
//! server runs it again on save and publish, and the CLI runs it on files:
//! one function, so all three always agree.
//!
//! Errors block publish, never save; warnings never block. Every finding has
//! a stable code (FLOW_FORMAT.md), the step it concerns, and a sentence a
//! marketer understands. The validator never panics, whatever it is given.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::engagement::{self, Matcher};
use crate::core::flow::{Criterion, FlowDocument, Guard, Logic, Operator, Step, FORMAT_V1};
use crate::core::kinds::{self, criteria_problems, ports, SettingProblem, StepKind, StepSettings};
use crate::core::logic::LogicExpr;
use crate::core::sms;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    UnsupportedFormat,
    InvalidDocument,
    UnknownKind,
    DuplicateStepId,
    NoStart,
    MultipleStarts,
    DanglingEdge,
    UnknownPort,
    PortReused,
    MissingSetting,
    InvalidSetting,
    BadLogic,
    InstantLoop,
    Recursion,
    UnknownTarget,
    UnreachableStep,
    UnconnectedOutput,
    NoWayOut,
    #[serde(rename = "split_not_100")]
    SplitNot100,
    SmsMultiSegment,
    UnknownField,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
}

impl Code {
    pub const ALL: [Code; 21] = [
        Code::UnsupportedFormat,
        Code::InvalidDocument,
        Code::UnknownKind,
        Code::DuplicateStepId,
        Code::NoStart,
        Code::MultipleStarts,
        Code::DanglingEdge,
        Code::UnknownPort,
        Code::PortReused,
        Code::MissingSetting,
        Code::InvalidSetting,
        Code::BadLogic,
        Code::InstantLoop,
        Code::Recursion,
        Code::UnknownTarget,
        Code::UnreachableStep,
        Code::UnconnectedOutput,
        Code::NoWayOut,
        Code::SplitNot100,
        Code::SmsMultiSegment,
        Code::UnknownField,
    ];

    pub fn level(self) -> Level {
        match self {
            Code::UnreachableStep
            | Code::UnconnectedOutput
            | Code::NoWayOut
            | Code::SplitNot100
            | Code::SmsMultiSegment
            | Code::UnknownField => Level::Warning,
            _ => Level::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnsupportedFormat => "unsupported_format",
            Code::InvalidDocument => "invalid_document",
            Code::UnknownKind => "unknown_kind",
            Code::DuplicateStepId => "duplicate_step_id",
            Code::NoStart => "no_start",
            Code::MultipleStarts => "multiple_starts",
            Code::DanglingEdge => "dangling_edge",
            Code::UnknownPort => "unknown_port",
            Code::PortReused => "port_reused",
            Code::MissingSetting => "missing_setting",
            Code::InvalidSetting => "invalid_setting",
            Code::BadLogic => "bad_logic",
            Code::InstantLoop => "instant_loop",
            Code::Recursion => "recursion",
            Code::UnknownTarget => "unknown_target",
            Code::UnreachableStep => "unreachable_step",
            Code::UnconnectedOutput => "unconnected_output",
            Code::NoWayOut => "no_way_out",
            Code::SplitNot100 => "split_not_100",
            Code::SmsMultiSegment => "sms_multi_segment",
            Code::UnknownField => "unknown_field",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, pointing at the step (and port or setting) it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    pub message: String,
}

/// `{"errors": [...], "warnings": [...]}` as FLOW_FORMAT.md shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Findings {
    fn push(&mut self, finding: Finding) {
        match finding.code.level() {
            Level::Error => self.errors.push(finding),
            Level::Warning => self.warnings.push(finding),
        }
    }

    /// Errors block publish.
    pub fn blocks_publish(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.errors.iter().chain(&self.warnings)
    }

    pub fn for_step<'a>(&'a self, step: &'a str) -> impl Iterator<Item = &'a Finding> {
        self.iter().filter(move |finding| finding.step.as_deref() == Some(step))
    }

    pub fn codes(&self) -> Vec<Code> {
        self.iter().map(|finding| finding.code).collect()
    }
}

/// What a flow links to, for the recursion check across flows and groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedFlow {
    pub id: String,
    pub name: String,
    /// Flows its go_to_flow steps name (by id or name).
    pub goes_to: Vec<String>,
}

/// An action group and the groups its steps run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedGroup {
    pub name: String,
    pub runs: Vec<String>,
}

/// What the validator may know beyond the document. With no context (the
/// CLI on a lone file) links to other flows and groups are not checked.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// This flow's id, when it is stored.
    pub flow_id: Option<String>,
    /// Every other stored flow; `None` when unknown.
    pub flows: Option<Vec<LinkedFlow>>,
    /// Every action group; `None` when unknown.
    pub groups: Option<Vec<LinkedGroup>>,
    /// The custom field names some contact has, for the merge tags'
    /// `unknown_field` check; `None` when unknown (no check).
    pub fields: Option<Vec<String>>,
}

/// Validates any JSON value: problems with its shape are findings too.
/// (Only the CLI refuses a value that is not an object, before calling this.)
pub fn validate_value(value: &Value, context: &Context) -> Findings {
    match FlowDocument::from_value(value) {
        Ok(doc) => validate(&doc, context),
        Err(err) => {
            let mut findings = Findings::default();
            let format = value.get("format").and_then(Value::as_str);
            check_format(format, &mut findings);
            findings.push(Finding {
                code: Code::InvalidDocument,
                step: None,
                port: None,
                setting: Some(err.path.clone()),
                message: format!("The document cannot be read at {}: {}.", err.path, err.message),
            });
            findings
        }
    }
}

fn check_format(format: Option<&str>, findings: &mut Findings) {
    let message = match format {
        Some(FORMAT_V1) => return,
        None => "The document does not say its format; expected \"waymark.flow/v1\".".to_owned(),
        Some(other) => format!("\"{other}\" is not a format this version reads; expected \"waymark.flow/v1\"."),
    };
    findings.push(Finding { code: Code::UnsupportedFormat, step: None, port: None, setting: None, message });
}

/// The flow's own settings: zone, opening hours, holidays, drip.
fn check_flow_settings(settings: &crate::core::flow::FlowSettings, findings: &mut Findings) {
    let mut problem = |setting: String, message: String| {
        findings.push(Finding { code: Code::InvalidSetting, step: None, port: None, setting: Some(setting), message });
    };
    if let Some(zone) = &settings.timezone {
        if !crate::core::calendar::known_zone(zone) {
            problem("settings.timezone".into(), format!("The flow's time zone “{zone}” is not a known zone like America/New_York."));
        }
    }
    if let Some(hours) = &settings.business_hours {
        for (day, open_close) in hours.days.iter() {
            let Some([open, close]) = open_close else { continue };
            let parse = |t: &str| jiff::civil::Time::strptime("%H:%M", t).ok();
            match (parse(open), parse(close)) {
                (Some(o), Some(c)) if o < c => {}
                (Some(_), Some(_)) => problem(
                    format!("settings.business_hours.days.{day}"),
                    format!("Business hours on {day} close ({close}) before they open ({open})."),
                ),
                _ => problem(
                    format!("settings.business_hours.days.{day}"),
                    format!("Business hours on {day} must be two times like [\"09:00\", \"17:00\"], not [\"{open}\", \"{close}\"]."),
                ),
            }
        }
        for holiday in &hours.holidays {
            if holiday.parse::<jiff::civil::Date>().is_err() {
                problem("settings.business_hours.holidays".into(), format!("The holiday “{holiday}” is not a date like 2026-12-25."));
            }
        }
    }
    if settings.slow_drip.as_ref().is_some_and(|drip| drip.limit == 0) {
        problem("settings.slow_drip.limit".into(), "A slow drip of 0 per period would never let anybody start.".into());
    }
}

/// Can `from`'s `port` be wired to `to`? The editor asks before drawing a
/// wire; the same rules are reported by [`validate`] on save.
pub fn can_connect(doc: &FlowDocument, from: &str, port: &str, to: &str) -> Result<(), ConnectRefusal> {
    let from_step = doc.step(from).ok_or(ConnectRefusal::NoSuchStep)?;
    let to_step = doc.step(to).ok_or(ConnectRefusal::NoSuchStep)?;
    if from == to {
        return Err(ConnectRefusal::ToItself);
    }
    if to_step.kind == StepKind::Start {
        return Err(ConnectRefusal::IntoStart);
    }
    if !ports(from_step).contains(&port) {
        return Err(ConnectRefusal::NoSuchPort);
    }
    if doc.edges.iter().any(|edge| edge.from == from && edge.port == port) {
        return Err(ConnectRefusal::PortInUse);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    NoSuchStep,
    ToItself,
    IntoStart,
    NoSuchPort,
    PortInUse,
}

impl ConnectRefusal {
    pub fn message(self) -> &'static str {
        match self {
            ConnectRefusal::NoSuchStep => "That step no longer exists.",
            ConnectRefusal::ToItself => "A step cannot lead to itself.",
            ConnectRefusal::IntoStart => "Nothing can lead into the start step.",
            ConnectRefusal::NoSuchPort => "That step has no such output.",
            ConnectRefusal::PortInUse => "That output is already connected; remove its wire first.",
        }
    }
}

/// `“Welcome email” (e1)`: how messages name a step.
fn named(step: &Step) -> String {
    match step.name.as_deref().map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) if name != step.id => format!("“{name}” ({})", step.id),
        _ => format!("“{}”", step.id),
    }
}

fn list_names(steps: &[&Step]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = steps.iter().take(SHOWN).map(|step| named(step)).collect();
    if steps.len() > SHOWN {
        names.push(format!("{} more", steps.len() - SHOWN));
    }
    match names.len() {
        0 => String::new(),
        1 => names.remove(0),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// The graph view of a document: one node per distinct step id, one edge per
/// wire whose ends exist, plus restart's implicit jump back to start (the
/// edge weight is true when that jump is bounded by `max_restarts`).
type FlowGraph<'d> = DiGraph<&'d Step, bool>;

/// Validates a document already read.
pub fn validate(doc: &FlowDocument, context: &Context) -> Findings {
    let mut findings = Findings::default();
    let add = |code: Code, step: Option<&str>, message: String| Finding {
        code,
        step: step.map(str::to_owned),
        port: None,
        setting: None,
        message,
    };
    check_format(doc.format.as_deref(), &mut findings);
    check_flow_settings(&doc.settings, &mut findings);
    check_goal(doc, &mut findings);

    // Steps: kinds, ids, starts.
    let mut index: HashMap<&str, NodeIndex> = HashMap::with_capacity(doc.steps.len());
    let mut graph: DiGraph<&Step, bool> = DiGraph::with_capacity(doc.steps.len(), doc.edges.len());
    let mut reported_duplicates = HashSet::new();
    for step in &doc.steps {
        if let StepKind::Unknown(kind) = &step.kind {
            findings.push(add(
                Code::UnknownKind,
                Some(&step.id),
                format!("{} is a “{kind}” step, which this version of Waymark does not know.", named(step)),
            ));
        }
        if index.contains_key(step.id.as_str()) {
            if reported_duplicates.insert(step.id.as_str()) {
                findings.push(add(
                    Code::DuplicateStepId,
                    Some(&step.id),
                    format!("Two or more steps have the id “{}”; each step needs its own.", step.id),
                ));
            }
        } else {
            index.insert(step.id.as_str(), graph.add_node(step));
        }
    }
    let starts: Vec<&Step> = doc.steps.iter().filter(|s| s.kind == StepKind::Start).collect();
    match starts.as_slice() {
        [] => findings.push(add(Code::NoStart, None, "The flow has no start step, so nobody can enter it.".into())),
        [_] => {}
        [first, rest @ ..] => {
            for extra in rest {
                findings.push(add(
                    Code::MultipleStarts,
                    Some(&extra.id),
                    format!("{} is a second start step; a flow has exactly one ({} is the first).", named(extra), named(first)),
                ));
            }
        }
    }
    let start = starts.first().and_then(|s| index.get(s.id.as_str())).copied();

    // Edges. `wired[node][i]` is where output `i` of that step leads.
    let step_ports: Vec<Vec<&str>> = graph.node_weights().map(|step| ports(step)).collect();
    let mut wired: Vec<Vec<Option<&str>>> = step_ports.iter().map(|ports| vec![None; ports.len()]).collect();
    for edge in &doc.edges {
        let (from, to) = (index.get(edge.from.as_str()), index.get(edge.to.as_str()));
        let Some(&from) = from else {
            findings.push(add(
                Code::DanglingEdge,
                to.map(|_| edge.to.as_str()),
                format!("A connection comes from “{}”, a step that does not exist.", edge.from),
            ));
            continue;
        };
        let from_step = graph[from];
        let outputs = &step_ports[from.index()];
        let port = outputs.iter().position(|port| *port == edge.port);
        match port {
            None if from_step.kind.is_known() => {
                let has = if outputs.is_empty() { "has no outputs".to_owned() } else { format!("has {}", outputs.join(", ")) };
                findings.push(Finding {
                    port: Some(edge.port.clone()),
                    ..add(
                        Code::UnknownPort,
                        Some(&edge.from),
                        format!("{} has no output “{}”; a {} step {has}.", named(from_step), edge.port, from_step.kind.label()),
                    )
                });
                continue;
            }
            None => {}
            Some(port) => match wired[from.index()][port] {
                Some(first_to) => findings.push(Finding {
                    port: Some(edge.port.clone()),
                    ..add(
                        Code::PortReused,
                        Some(&edge.from),
                        format!(
                            "{}'s “{}” output is connected to both “{first_to}” and “{}”; one output leads to one step.",
                            named(from_step),
                            edge.port,
                            edge.to
                        ),
                    )
                }),
                None => wired[from.index()][port] = Some(edge.to.as_str()),
            },
        }
        match to {
            Some(&to) => {
                graph.add_edge(from, to, false);
            }
            None => findings.push(add(
                Code::DanglingEdge,
                Some(&edge.from),
                format!("{} leads to “{}”, a step that does not exist.", named(from_step), edge.to),
            )),
        }
    }
    // restart jumps back to start; the flag marks that jump as bounded.
    if let Some(start) = start {
        for node in graph.node_indices().collect::<Vec<_>>() {
            if graph[node].kind == StepKind::Restart {
                graph.add_edge(node, start, max_restarts(graph[node]).is_some());
            }
        }
    }

    // Settings, guards, logic, splits, SMS length, links.
    for step in &doc.steps {
        check_step(step, &mut findings);
        check_templates(step, context, &mut findings);
        check_links(doc, step, context, &mut findings);
        check_engagement(doc, step, &mut findings);
    }

    check_instant_loops(&graph, &mut findings);
    check_reachability(&graph, start, &step_ports, &wired, &mut findings);
    findings
}

/// Engagement operators name a message step of this flow (or `any`), a
/// channel, an event name; `within` is a usable duration. Returns
/// `(code, setting, why)` for each problem.
fn engagement_problems(doc: &FlowDocument, prefix: &str, criteria: &[Criterion]) -> Vec<(Code, String, String)> {
    let mut problems = Vec::new();
    for (i, criterion) in criteria.iter().enumerate() {
        if !criterion.op.is_engagement() {
            continue;
        }
        let setting = format!("{prefix}[{}]", i + 1);
        let value = criterion.value.as_ref().and_then(Value::as_str).map(str::trim).unwrap_or_default();
        if criterion.value.as_ref().is_some_and(|v| !v.is_string()) {
            problems.push((Code::InvalidSetting, format!("{setting}.value"), format!("criterion {} needs its value as text", i + 1)));
            continue;
        }
        if value.is_empty() {
            continue; // reported as missing_setting with the other criteria
        }
        if criterion.op.names_message_step() {
            if value != "any" && !engagement::is_message_step(doc, value) {
                problems.push((
                    Code::UnknownTarget,
                    format!("{setting}.value"),
                    format!("criterion {} names “{value}”, which is not a send email or send SMS step of this flow", i + 1),
                ));
            }
        } else if criterion.op == Operator::Unsubscribed && !["email", "sms", "all", "any"].contains(&value) {
            problems.push((
                Code::InvalidSetting,
                format!("{setting}.value"),
                format!("criterion {}: “{value}” is not a channel (email, sms, all or any)", i + 1),
            ));
        }
        if let Some(within) = &criterion.within {
            if within.as_seconds().is_none() {
                problems.push((Code::InvalidSetting, format!("{setting}.within"), format!("criterion {}: “within” is not a usable duration", i + 1)));
            }
        }
    }
    problems
}

/// A matcher's `step` must be a message step of this flow; its criteria as above.
fn matcher_problems(doc: &FlowDocument, prefix: &str, matcher: &Matcher) -> Vec<(Code, String, String)> {
    let mut problems = Vec::new();
    if let Some(target) = matcher.step.as_deref().filter(|s| !s.trim().is_empty()) {
        if !engagement::is_message_step(doc, target) {
            problems.push((
                Code::UnknownTarget,
                format!("{prefix}.step"),
                format!("the matcher names “{target}”, which is not a send email or send SMS step of this flow"),
            ));
        }
    }
    problems.extend(engagement_problems(doc, &format!("{prefix}.criteria"), &matcher.criteria));
    problems
}

/// The engagement criteria of conditions and guards, and `wait_until`'s matchers.
fn check_engagement(doc: &FlowDocument, step: &Step, findings: &mut Findings) {
    let mut problems = Vec::new();
    if let Some(guard) = &step.guard {
        problems.extend(engagement_problems(doc, "guard.criteria", &guard.criteria));
    }
    match StepSettings::read(step) {
        Ok(StepSettings::Condition(s)) => problems.extend(engagement_problems(doc, "criteria", &s.criteria)),
        Ok(StepSettings::WaitUntil(s)) => {
            for (i, matcher) in s.until.iter().enumerate() {
                problems.extend(matcher_problems(doc, &format!("until[{}]", i + 1), matcher));
            }
        }
        _ => {}
    }
    for (code, setting, why) in problems {
        findings.push(Finding {
            code,
            step: Some(step.id.clone()),
            port: None,
            message: format!("{}: {why} ({setting}).", named(step)),
            setting: Some(setting),
        });
    }
}

/// The flow's goal: criteria or an event matcher, each usable.
fn check_goal(doc: &FlowDocument, findings: &mut Findings) {
    let Some(goal) = &doc.settings.goal else { return };
    let mut problems = Vec::new();
    let mut settings_problems = Vec::new();
    match &goal.event {
        None if goal.criteria.is_empty() => {
            problems.push((Code::MissingSetting, "settings.goal".to_owned(), "the goal has no criteria and no event".to_owned()))
        }
        None => {}
        Some(matcher) => {
            match matcher.event.as_deref() {
                Some(kind) if engagement::EVENT_KINDS.contains(&kind) => {}
                Some(kind) => problems.push((
                    Code::InvalidSetting,
                    "settings.goal.event.event".to_owned(),
                    format!("“{kind}” is not an event ({})", engagement::EVENT_KINDS.join(", ")),
                )),
                None => problems.push((Code::MissingSetting, "settings.goal.event.event".to_owned(), "the goal's event names no kind".to_owned())),
            }
            problems.extend(matcher_problems(doc, "settings.goal.event", matcher));
            criteria_problems("settings.goal.event.where", &matcher.where_, &mut settings_problems);
        }
    }
    criteria_problems("settings.goal.criteria", &goal.criteria, &mut settings_problems);
    if let Some(Logic::Custom(text)) = &goal.logic {
        if let Err(err) = LogicExpr::parse(text, goal.criteria.len()) {
            problems.push((Code::BadLogic, "settings.goal.logic".to_owned(), format!("the goal's logic “{text}” cannot be used: {err}")));
        }
    }
    problems.extend(engagement_problems(doc, "settings.goal.criteria", &goal.criteria));
    for problem in settings_problems {
        problems.push(match problem {
            SettingProblem::Missing { setting, why } => (Code::MissingSetting, setting, why),
            SettingProblem::Invalid { setting, why } => (Code::InvalidSetting, setting, why),
        });
    }
    for (code, setting, why) in problems {
        findings.push(Finding { code, step: None, port: None, message: format!("The flow's goal: {why} ({setting})."), setting: Some(setting) });
    }
}

fn max_restarts(step: &Step) -> Option<u64> {
    step.settings.get("max_restarts").and_then(Value::as_u64)
}

fn setting_finding(step: &Step, problem: SettingProblem) -> Finding {
    let (code, setting, why) = match problem {
        SettingProblem::Missing { setting, why } => (Code::MissingSetting, setting, why),
        SettingProblem::Invalid { setting, why } => (Code::InvalidSetting, setting, why),
    };
    Finding {
        code,
        step: Some(step.id.clone()),
        port: None,
        setting: Some(setting.clone()),
        message: format!("{}: {why} ({setting}).", named(step)),
    }
}

fn check_step(step: &Step, findings: &mut Findings) {
    let settings = match StepSettings::read(step) {
        Ok(settings) => settings,
        Err(problem) => {
            findings.push(setting_finding(step, problem));
            StepSettings::Unknown
        }
    };
    for problem in settings.problems() {
        findings.push(setting_finding(step, problem));
    }
    if let Some(guard) = &step.guard {
        check_guard(step, guard, findings);
    }
    let finding = |code, message| Finding { code, step: Some(step.id.clone()), port: None, setting: None, message };
    match &settings {
        StepSettings::Condition(settings) => {
            if let Some(Logic::Custom(text)) = &settings.logic {
                if let Err(err) = LogicExpr::parse(text, settings.criteria.len()) {
                    findings.push(Finding {
                        setting: Some("logic".into()),
                        ..finding(Code::BadLogic, format!("{}: the logic “{text}” cannot be used: {err}.", named(step)))
                    });
                }
            }
        }
        StepSettings::Split(settings) => {
            let total: f64 = settings.branches.iter().filter_map(|b| b.percent).sum();
            if !settings.branches.is_empty() && (total - 100.0).abs() > 1e-9 {
                findings.push(finding(
                    Code::SplitNot100,
                    format!("{}: the branches add up to {}%, not 100%.", named(step), trim_float(total)),
                ));
            }
        }
        StepSettings::SendSms(kinds::SendSmsSettings { text: Some(text), .. })
        | StepSettings::NotifySms(kinds::NotifySettings { text: Some(text), .. }) => {
            let length = sms::measure(text);
            if length.segments > 1 {
                let encoding = match length.encoding {
                    sms::SmsEncoding::Gsm7 => "GSM-7",
                    sms::SmsEncoding::Ucs2 => "UCS-2, because of its special characters",
                };
                findings.push(finding(
                    Code::SmsMultiSegment,
                    format!(
                        "{}: the text is {} characters in {encoding} and will be sent as {} messages (one holds {}).",
                        named(step),
                        length.units,
                        length.segments,
                        length.single_limit
                    ),
                ));
            }
        }
        _ => {}
    }
}

/// Merge-tag templates: one that cannot be read, or uses a filter the
/// engine lacks, is an error (it would fail the step when sent); a tag
/// naming a field no contact has is a warning (it renders empty).
fn check_templates(step: &Step, context: &Context, findings: &mut Findings) {
    use crate::core::merge::{self, TemplateErrorKind};
    let nobody = crate::core::contact::Contact::default();
    for template in merge::step_templates(step) {
        let setting = template.setting;
        let finding = |code, message| Finding { code, step: Some(step.id.clone()), port: None, setting: Some(setting.clone()), message };
        let problem = match merge::check(&template.text) {
            Err(err) => Some(err),
            // Filled for a contact with no fields: what fails whatever the
            // contact (an unknown filter, a loop past the fuel budget).
            Ok(()) => merge::try_render(&template.text, &nobody, template.escape)
                .err()
                .filter(|err| matches!(err.kind, TemplateErrorKind::Unknown | TemplateErrorKind::Limit)),
        };
        if let Some(err) = problem {
            findings.push(finding(Code::InvalidSetting, format!("{}: the {setting} cannot be used as a template: {err}.", named(step))));
            continue;
        }
        let Some(known) = &context.fields else { continue };
        for name in merge::tags(&template.text) {
            if !merge::BUILT_IN_NAMES.contains(&name.as_str()) && !known.contains(&name) {
                findings.push(finding(
                    Code::UnknownField,
                    format!("{}: the {setting} uses {{{{ {name} }}}}, a field no contact has; it will be empty.", named(step)),
                ));
            }
        }
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn check_guard(step: &Step, guard: &Guard, findings: &mut Findings) {
    let mut problems = Vec::new();
    if guard.criteria.is_empty() {
        problems.push(SettingProblem::Missing {
            setting: "guard.criteria".into(),
            why: "the guard has no criteria".into(),
        });
    }
    criteria_problems("guard.criteria", &guard.criteria, &mut problems);
    if let Some(timeout) = &guard.hold_timeout {
        if timeout.as_seconds().is_none() {
            problems.push(SettingProblem::Invalid {
                setting: "guard.hold_timeout".into(),
                why: "the hold timeout is not a usable duration".into(),
            });
        }
    }
    for problem in problems {
        findings.push(setting_finding(step, problem));
    }
    if let Some(Logic::Custom(text)) = &guard.logic {
        if let Err(err) = LogicExpr::parse(text, guard.criteria.len()) {
            findings.push(Finding {
                code: Code::BadLogic,
                step: Some(step.id.clone()),
                port: None,
                setting: Some("guard.logic".into()),
                message: format!("{}: the guard's logic “{text}” cannot be used: {err}.", named(step)),
            });
        }
    }
}

/// go_to_flow and run_action_group must not lead back to where they start.
fn check_links(doc: &FlowDocument, step: &Step, context: &Context, findings: &mut Findings) {
    let finding = |code, message| Finding { code, step: Some(step.id.clone()), port: None, setting: None, message };
    match &step.kind {
        StepKind::GoToFlow => {
            let Some(target) = step.setting_str("flow").filter(|t| !t.trim().is_empty()) else { return };
            let is_this = |reference: &str| {
                context.flow_id.as_deref() == Some(reference) || (!doc.name.is_empty() && reference.eq_ignore_ascii_case(&doc.name))
            };
            if is_this(target) {
                findings.push(finding(
                    Code::Recursion,
                    format!("{} sends participants into this same flow; use a restart step to begin again.", named(step)),
                ));
                return;
            }
            let Some(flows) = &context.flows else { return };
            let find = |reference: &str| {
                flows.iter().find(|f| f.id == reference || f.name.eq_ignore_ascii_case(reference))
            };
            let Some(first) = find(target) else {
                findings.push(finding(Code::UnknownTarget, format!("{} goes to “{target}”, a flow that does not exist.", named(step))));
                return;
            };
            // Follow go-to links from the target; reaching this flow is recursion.
            let mut seen = HashSet::from([first.id.as_str()]);
            let mut queue = VecDeque::from([(first, vec![first.name.as_str()])]);
            while let Some((flow, path)) = queue.pop_front() {
                for next in &flow.goes_to {
                    if is_this(next) {
                        findings.push(finding(
                            Code::Recursion,
                            format!("{} leads back into this flow through {}.", named(step), path.join(" → ")),
                        ));
                        return;
                    }
                    if let Some(next) = find(next) {
                        if seen.insert(next.id.as_str()) {
                            let mut path = path.clone();
                            path.push(next.name.as_str());
                            queue.push_back((next, path));
                        }
                    }
                }
            }
        }
        StepKind::RunActionGroup => {
            let Some(target) = step.setting_str("group").filter(|t| !t.trim().is_empty()) else { return };
            let Some(groups) = &context.groups else { return };
            let find = |name: &str| groups.iter().find(|g| g.name.eq_ignore_ascii_case(name));
            let Some(first) = find(target) else {
                findings.push(finding(Code::UnknownTarget, format!("{} runs “{target}”, an action group that does not exist.", named(step))));
                return;
            };
            // A group that can reach itself again would never finish.
            let reach = |group: &LinkedGroup| {
                let mut seen: HashSet<String> = HashSet::new();
                let mut stack = vec![group];
                while let Some(group) = stack.pop() {
                    for next in group.runs.iter().filter_map(|name| find(name)) {
                        if seen.insert(next.name.to_lowercase()) {
                            stack.push(next);
                        }
                    }
                }
                seen
            };
            let reached = reach(first);
            let looping = std::iter::once(first)
                .chain(groups.iter().filter(|g| reached.contains(&g.name.to_lowercase())))
                .find(|group| reach(group).contains(&group.name.to_lowercase()));
            if let Some(group) = looping {
                findings.push(finding(
                    Code::Recursion,
                    format!("{} runs “{target}”, which ends up running “{}” inside itself again.", named(step), group.name),
                ));
            }
        }
        _ => {}
    }
}

/// A cycle with no pausing step in it spins at once, forever (or until a
/// restart limit: such bounded jumps are left out).
fn check_instant_loops(flow: &FlowGraph, findings: &mut Findings) {
    let graph = flow.filter_map(
        |_, step| Some(*step),
        |edge, bounded| {
            let (from, _) = flow.edge_endpoints(edge)?;
            (!bounded && !kinds::pauses(flow[from])).then_some(())
        },
    );
    for component in tarjan_scc(&graph) {
        let cyclic = component.len() > 1 || graph.contains_edge(component[0], component[0]);
        if !cyclic {
            continue;
        }
        let mut steps: Vec<&Step> = component.iter().map(|&n| graph[n]).collect();
        steps.sort_by(|a, b| a.id.cmp(&b.id));
        findings.push(Finding {
            code: Code::InstantLoop,
            step: Some(steps[0].id.clone()),
            port: None,
            setting: None,
            message: format!(
                "{} loop back with no wait between them: a participant would go round at once, forever. Add a wait to the loop.",
                list_names(&steps)
            ),
        });
    }
}

/// unreachable_step, unconnected_output and no_way_out.
fn check_reachability(
    flow: &FlowGraph,
    start: Option<NodeIndex>,
    step_ports: &[Vec<&str>],
    wired: &[Vec<Option<&str>>],
    findings: &mut Findings,
) {
    let graph = flow;
    let count = graph.node_count();
    let reachable = match start {
        Some(start) => walk(graph, [start], Direction::Outgoing),
        None => vec![true; count],
    };
    if start.is_some() {
        for node in graph.node_indices().filter(|n| !reachable[n.index()]) {
            let step = graph[node];
            findings.push(Finding {
                code: Code::UnreachableStep,
                step: Some(step.id.clone()),
                port: None,
                setting: None,
                message: format!("{} cannot be reached from the start; nobody will ever get there.", named(step)),
            });
        }
    }

    // Where participants end: exits, moves, bounded restarts, unknown kinds,
    // and any output that leads nowhere.
    let mut ends = Vec::new();
    for node in graph.node_indices() {
        let step = graph[node];
        let outputs = &step_ports[node.index()];
        let open: Vec<&str> =
            outputs.iter().zip(&wired[node.index()]).filter(|(_, to)| to.is_none()).map(|(port, _)| *port).collect();
        for port in &open {
            findings.push(Finding {
                code: Code::UnconnectedOutput,
                step: Some(step.id.clone()),
                port: Some((*port).to_owned()),
                setting: None,
                message: if outputs.len() == 1 {
                    format!("{} leads nowhere: participants finish the flow there.", named(step))
                } else {
                    format!("{}'s “{port}” output leads nowhere: participants who take it finish the flow there.", named(step))
                },
            });
        }
        let terminal = match &step.kind {
            StepKind::Restart => max_restarts(step).is_some(),
            StepKind::Exit | StepKind::Unknown(_) => true,
            _ => outputs.is_empty() || !open.is_empty(),
        };
        if terminal {
            ends.push(node);
        }
    }
    let can_finish = walk(graph, ends, Direction::Incoming);

    // A stuck region is a cycle participants can enter and never leave.
    for component in tarjan_scc(graph) {
        let node = component[0];
        let cyclic = component.len() > 1 || graph.contains_edge(node, node);
        if !cyclic || can_finish[node.index()] || !component.iter().any(|n| reachable[n.index()]) {
            continue;
        }
        let mut steps: Vec<&Step> = component.iter().map(|&n| graph[n]).collect();
        steps.sort_by(|a, b| a.id.cmp(&b.id));
        findings.push(Finding {
            code: Code::NoWayOut,
            step: Some(steps[0].id.clone()),
            port: None,
            setting: None,
            message: format!(
                "Participants who reach {} go round there for ever: nothing in that loop leads to an exit or the end of the flow.",
                list_names(&steps)
            ),
        });
    }
}

/// Marks every node reachable from `roots` following edges in `direction`.
fn walk<E>(graph: &DiGraph<&Step, E>, roots: impl IntoIterator<Item = NodeIndex>, direction: Direction) -> Vec<bool> {
    let mut seen = vec![false; graph.node_count()];
    let mut stack: Vec<NodeIndex> = roots.into_iter().collect();
    for node in &stack {
        seen[node.index()] = true;
    }
    while let Some(node) = stack.pop() {
        for next in graph.neighbors_directed(node, direction) {
            if !seen[next.index()] {
                seen[next.index()] = true;
                stack.push(next);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests;
