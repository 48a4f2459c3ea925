//! What each step kind is: its palette group and label, its output ports, and
//! its settings read as types (FLOW_FORMAT.md's table).
//!
//! Settings are read leniently: a required setting that is absent is `None`
//! and reported by [`setting_problems`] as `missing_setting`, so a draft can be
//! saved half-finished and the marketer told exactly what is left.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::flow::{string_enum, Criterion, Duration, Logic, Step};

string_enum! {
    /// A step's kind, as written in the document.
    StepKind {
        Start = "start",
        Wait = "wait",
        WaitUntil = "wait_until",
        Condition = "condition",
        Split = "split",
        Exit = "exit",
        GoToFlow = "go_to_flow",
        Restart = "restart",
        RunActionGroup = "run_action_group",
        SendEmail = "send_email",
        SendSms = "send_sms",
        Call = "call",
        ScheduleCallback = "schedule_callback",
        Task = "task",
        NotifyEmail = "notify_email",
        NotifySms = "notify_sms",
        UpdateContact = "update_contact",
        AddToList = "add_to_list",
        RemoveFromList = "remove_from_list",
        OptOut = "opt_out",
        Block = "block",
        CreateActivity = "create_activity",
        DataAppend = "data_append",
        Webhook = "webhook",
        S3Upload = "s3_upload",
        FtpUpload = "ftp_upload",
        CrmPush = "crm_push",
        RunScript = "run_script",
    }
}

/// The palette's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindGroup {
    FlowControl,
    Outreach,
    RecordUpdates,
    Integrations,
}

impl KindGroup {
    pub const ALL: [KindGroup; 4] =
        [KindGroup::FlowControl, KindGroup::Outreach, KindGroup::RecordUpdates, KindGroup::Integrations];

    pub fn label(self) -> &'static str {
        match self {
            KindGroup::FlowControl => "Flow control",
            KindGroup::Outreach => "Outreach",
            KindGroup::RecordUpdates => "Record updates",
            KindGroup::Integrations => "Integrations",
        }
    }
}

impl StepKind {
    pub fn is_known(&self) -> bool {
        !matches!(self, StepKind::Unknown(_))
    }

    /// The name a marketer reads.
    pub fn label(&self) -> &'static str {
        match self {
            StepKind::Start => "Start",
            StepKind::Wait => "Wait",
            StepKind::WaitUntil => "Wait until",
            StepKind::Condition => "Condition",
            StepKind::Split => "Random split",
            StepKind::Exit => "Exit",
            StepKind::GoToFlow => "Go to flow",
            StepKind::Restart => "Restart flow",
            StepKind::RunActionGroup => "Run action group",
            StepKind::SendEmail => "Send email",
            StepKind::SendSms => "Send SMS",
            StepKind::Call => "Call",
            StepKind::ScheduleCallback => "Schedule callback",
            StepKind::Task => "Task",
            StepKind::NotifyEmail => "Notify by email",
            StepKind::NotifySms => "Notify by SMS",
            StepKind::UpdateContact => "Update contact",
            StepKind::AddToList => "Add to list",
            StepKind::RemoveFromList => "Remove from list",
            StepKind::OptOut => "Opt out",
            StepKind::Block => "Block",
            StepKind::CreateActivity => "Create activity",
            StepKind::DataAppend => "Data append",
            StepKind::Webhook => "Webhook",
            StepKind::S3Upload => "S3 upload",
            StepKind::FtpUpload => "FTP upload",
            StepKind::CrmPush => "CRM push",
            StepKind::RunScript => "Run script",
            StepKind::Unknown(_) => "Unknown step",
        }
    }

    /// A one-glyph icon for the canvas and palette: plain symbols that
    /// common fonts have (no emoji), so they render everywhere.
    pub fn icon(&self) -> &'static str {
        match self {
            StepKind::Start => "▶",
            StepKind::Wait => "◷",
            StepKind::WaitUntil => "◔",
            StepKind::Condition => "◇",
            StepKind::Split => "⋔",
            StepKind::Exit => "■",
            StepKind::GoToFlow => "↪",
            StepKind::Restart => "↺",
            StepKind::RunActionGroup => "⚙",
            StepKind::SendEmail | StepKind::NotifyEmail => "✉",
            StepKind::SendSms | StepKind::NotifySms => "✆",
            StepKind::Call => "☎",
            StepKind::ScheduleCallback => "⚑",
            StepKind::Task => "✔",
            StepKind::UpdateContact => "✎",
            StepKind::AddToList => "+",
            StepKind::RemoveFromList => "−",
            StepKind::OptOut => "⊘",
            StepKind::Block => "✖",
            StepKind::CreateActivity => "★",
            StepKind::DataAppend => "⇩",
            StepKind::Webhook => "⚡",
            StepKind::S3Upload | StepKind::FtpUpload => "⇪",
            StepKind::CrmPush => "⇄",
            StepKind::RunScript => "{}",
            StepKind::Unknown(_) => "?",
        }
    }

    pub fn group(&self) -> KindGroup {
        match self {
            StepKind::Start
            | StepKind::Wait
            | StepKind::WaitUntil
            | StepKind::Condition
            | StepKind::Split
            | StepKind::Exit
            | StepKind::GoToFlow
            | StepKind::Restart
            | StepKind::RunActionGroup
            | StepKind::Unknown(_) => KindGroup::FlowControl,
            StepKind::SendEmail
            | StepKind::SendSms
            | StepKind::Call
            | StepKind::ScheduleCallback
            | StepKind::Task
            | StepKind::NotifyEmail
            | StepKind::NotifySms => KindGroup::Outreach,
            StepKind::UpdateContact
            | StepKind::AddToList
            | StepKind::RemoveFromList
            | StepKind::OptOut
            | StepKind::Block
            | StepKind::CreateActivity
            | StepKind::DataAppend => KindGroup::RecordUpdates,
            StepKind::Webhook | StepKind::S3Upload | StepKind::FtpUpload | StepKind::CrmPush | StepKind::RunScript => {
                KindGroup::Integrations
            }
        }
    }
}

/// The output ports of `step`, in drawing order. Split's come from its
/// branches; go to flow has `next` only when it copies. An unknown kind has
/// none that we can know.
pub fn ports(step: &Step) -> Vec<&str> {
    match &step.kind {
        StepKind::Exit | StepKind::Restart | StepKind::Unknown(_) => Vec::new(),
        StepKind::Condition => vec!["yes", "no"],
        StepKind::WaitUntil => vec!["met", "timed_out"],
        StepKind::Webhook => vec!["next", "failed"],
        StepKind::GoToFlow => match step.setting_str("mode") {
            Some("copy") => vec!["next"],
            _ => Vec::new(),
        },
        StepKind::Split => match step.settings.get("branches").and_then(Value::as_array) {
            Some(branches) => branches
                .iter()
                .filter_map(|branch| branch.get("port").and_then(Value::as_str))
                .filter(|port| !port.is_empty())
                .collect(),
            None => Vec::new(),
        },
        _ => vec!["next"],
    }
}

/// Does reaching this step guarantee that time passes before it continues?
/// A cycle through such a step cannot spin. Duration waits of zero, `until`
/// waits (spin once the date has passed) and business-hours waits (pass at
/// once while open) do not; manual steps wait for a person.
pub fn pauses(step: &Step) -> bool {
    match &step.kind {
        StepKind::Wait => match step.setting_str("mode") {
            Some("duration") => step.settings.get("amount").and_then(Value::as_u64).is_some_and(|n| n > 0),
            Some("time_of_day") => true,
            _ => false,
        },
        StepKind::Call | StepKind::Task | StepKind::ScheduleCallback => true,
        // Time passes unless an event ends the wait; a cycle through `met`
        // needs an event each round.
        StepKind::WaitUntil => read_settings::<WaitUntilSettings>(step)
            .ok()
            .and_then(|s| s.timeout)
            .and_then(|t| t.as_seconds())
            .is_some_and(|secs| secs > 0),
        StepKind::SendEmail => step.setting_str("activation") == Some("manual"),
        _ => false,
    }
}

/// A setting that is absent or empty, or present but not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingProblem {
    Missing { setting: String, why: String },
    Invalid { setting: String, why: String },
}

fn missing(setting: &str, why: impl Into<String>) -> SettingProblem {
    SettingProblem::Missing { setting: setting.into(), why: why.into() }
}

fn invalid(setting: &str, why: impl Into<String>) -> SettingProblem {
    SettingProblem::Invalid { setting: setting.into(), why: why.into() }
}

fn blank(text: &Option<String>) -> bool {
    text.as_deref().is_none_or(|t| t.trim().is_empty())
}

// ---------------------------------------------------------------------------
// Typed settings, one struct per kind. Required settings are `Option` so a
// draft without them still reads.

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StartSettings {
    /// manual (default), list, api, event.
    pub entry: Option<String>,
    pub list: Option<String>,
    /// For `entry: event`: the custom event's name that enrolls.
    pub event: Option<String>,
}

/// `{"until": [MATCHER, ...], "timeout": {duration}}`: ports `met`, `timed_out`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitUntilSettings {
    #[serde(default)]
    pub until: Vec<crate::core::engagement::Matcher>,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitSettings {
    /// duration, until, time_of_day, business_hours.
    pub mode: Option<String>,
    pub amount: Option<u64>,
    pub unit: Option<crate::core::flow::TimeUnit>,
    /// RFC 3339, for `until`.
    pub at: Option<String>,
    /// "HH:MM", for `time_of_day`.
    pub time: Option<String>,
    /// mon..sun, for `time_of_day`; all days when absent.
    pub days: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionSettings {
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    pub logic: Option<Logic>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    #[serde(default)]
    pub branches: Vec<SplitBranch>,
    /// The automatic winner (FLOW_FORMAT split `winner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<crate::core::engine::winner::WinnerSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitBranch {
    #[serde(default)]
    pub port: String,
    pub percent: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitSettings {
    /// allow or deny: changes the contact's permission to be contacted.
    pub contact_permission: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GoToFlowSettings {
    /// Another flow's id or name.
    pub flow: Option<String>,
    /// move (default) or copy.
    pub mode: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartSettings {
    pub max_restarts: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunActionGroupSettings {
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendEmailSettings {
    pub subject: Option<String>,
    pub body: Option<String>,
    /// automatic (default) or manual.
    pub activation: Option<String>,
    /// immediate (default), business_hours_weekday, business_hours_any_day.
    pub timing: Option<String>,
    /// skip (default) or exit.
    pub if_no_email: Option<String>,
    /// Comma-separated addresses (merge tags allowed).
    pub cc: Option<String>,
    pub bcc: Option<String>,
    /// Files fetched when the email is sent; 25 MB in all at most.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// Contact pressure: wait (default) for the next allowed moment, or skip.
    pub when_capped: Option<String>,
}

/// A file an email carries, fetched from `url` when it is sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub name: String,
    pub url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendSmsSettings {
    pub text: Option<String>,
    /// skip (default) or exit.
    pub if_no_mobile: Option<String>,
    /// Contact pressure: wait (default) for the next allowed moment, or skip.
    pub when_capped: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallSettings {
    /// record_owner (default), user:ID, field:NAME.
    pub owner: Option<String>,
    /// What the caller says (merge tags allowed): the agent's script, or
    /// what an automatic call speaks.
    pub script: Option<String>,
    /// manual (default): a task for the owner, the outcome their
    /// disposition. automatic: placed through the telephony provider; its
    /// final status (completed, busy, no-answer) is the disposition, and a
    /// failed or canceled call, or no final status in time, fails the step.
    pub activation: Option<String>,
    /// Contact pressure: wait (default) for the next allowed moment, or skip.
    pub when_capped: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleCallbackSettings {
    pub after: Option<Duration>,
    pub at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSettings {
    /// Defaults to the step's name plus a timestamp.
    pub subject: Option<String>,
    pub priority: Option<String>,
    pub owner: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifySettings {
    pub to: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateContactSettings {
    #[serde(default)]
    pub changes: Vec<FieldChange>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    #[serde(default)]
    pub field: String,
    /// set, clear, increment, decrement, append, remove.
    #[serde(default)]
    pub op: String,
    pub value: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListSettings {
    pub list: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptOutSettings {
    /// all (default), email, sms, call.
    pub channel: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateActivitySettings {
    /// follow_up, request, sale.
    #[serde(rename = "type")]
    pub activity_type: Option<String>,
    pub title: Option<String>,
    pub owner: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataAppendSettings {
    pub url: Option<String>,
    /// response field -> contact field.
    #[serde(default)]
    pub mapping: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// POST (default), GET, PUT, PATCH, DELETE.
    pub method: Option<String>,
    pub url: Option<String>,
    /// json (default) or form.
    pub format: Option<String>,
    #[serde(default)]
    pub headers: Map<String, Value>,
    pub body: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct S3UploadSettings {
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// json (default) or csv.
    pub format: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FtpUploadSettings {
    pub path: Option<String>,
    pub format: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrmPushSettings {
    /// zoho or keap.
    pub provider: Option<String>,
    pub operation: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunScriptSettings {
    pub script: Option<String>,
}

/// Reads a step's settings as `T`; a setting of the wrong type is reported
/// with its name.
pub fn read_settings<T: DeserializeOwned>(step: &Step) -> Result<T, SettingProblem> {
    serde_path_to_error::deserialize(&step.settings).map_err(|err| {
        let setting = err.path().to_string();
        invalid(&setting, err.into_inner().to_string())
    })
}

fn one_of(setting: &str, value: &Option<String>, allowed: &[&str]) -> Option<SettingProblem> {
    let value = value.as_deref()?;
    (!allowed.contains(&value)).then(|| invalid(setting, format!("\"{value}\" is not one of {}", allowed.join(", "))))
}

fn check_duration(setting: &str, duration: &Duration, problems: &mut Vec<SettingProblem>) {
    if let crate::core::flow::TimeUnit::Unknown(unit) = &duration.unit {
        problems.push(invalid(setting, format!("\"{unit}\" is not a unit (seconds, minutes, hours, days, weeks)")));
    } else if duration.as_seconds().is_none() {
        problems.push(invalid(setting, "the duration is too long"));
    }
}

fn check_time_of_day(setting: &str, time: &str, problems: &mut Vec<SettingProblem>) {
    if jiff::civil::Time::strptime("%H:%M", time).is_err() {
        problems.push(invalid(setting, format!("\"{time}\" is not a time like 09:30")));
    }
}

fn check_timestamp(setting: &str, at: &str, problems: &mut Vec<SettingProblem>) {
    if at.parse::<jiff::Timestamp>().is_err() {
        problems.push(invalid(setting, format!("\"{at}\" is not a date and time like 2026-12-01T09:00:00Z")));
    }
}

/// Criteria rows must name a field and an operator, and carry a value unless
/// the operator needs none. Shared by conditions and guards.
pub fn criteria_problems(prefix: &str, criteria: &[Criterion], problems: &mut Vec<SettingProblem>) {
    for (i, criterion) in criteria.iter().enumerate() {
        let at = format!("{prefix}[{}]", i + 1);
        if criterion.field.trim().is_empty() && !criterion.op.is_engagement() {
            problems.push(missing(&format!("{at}.field"), format!("criterion {} names no field", i + 1)));
        }
        if let crate::core::flow::Operator::Unknown(op) = &criterion.op {
            problems.push(invalid(&format!("{at}.op"), format!("\"{op}\" is not an operator")));
        } else if criterion.op.takes_value() && criterion.value.as_ref().is_none_or(value_is_empty) {
            problems.push(missing(&format!("{at}.value"), format!("criterion {} has no value to compare with", i + 1)));
        }
    }
}

/// Empty means null, "" or an empty list.
pub fn value_is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A step's settings, read once as the type its kind defines.
#[derive(Clone, Debug, PartialEq)]
pub enum StepSettings {
    Start(StartSettings),
    Wait(WaitSettings),
    WaitUntil(WaitUntilSettings),
    Condition(ConditionSettings),
    Split(SplitSettings),
    Exit(ExitSettings),
    GoToFlow(GoToFlowSettings),
    Restart(RestartSettings),
    RunActionGroup(RunActionGroupSettings),
    SendEmail(SendEmailSettings),
    SendSms(SendSmsSettings),
    Call(CallSettings),
    ScheduleCallback(ScheduleCallbackSettings),
    Task(TaskSettings),
    NotifyEmail(NotifySettings),
    NotifySms(NotifySettings),
    UpdateContact(UpdateContactSettings),
    AddToList(ListSettings),
    RemoveFromList(ListSettings),
    OptOut(OptOutSettings),
    Block,
    CreateActivity(CreateActivitySettings),
    DataAppend(DataAppendSettings),
    Webhook(WebhookSettings),
    S3Upload(S3UploadSettings),
    FtpUpload(FtpUploadSettings),
    CrmPush(CrmPushSettings),
    RunScript(RunScriptSettings),
    /// An unknown kind: nothing can be said about its settings.
    Unknown,
}

impl StepSettings {
    /// Reads `step`'s settings; a setting of the wrong type is the error.
    pub fn read(step: &Step) -> Result<StepSettings, SettingProblem> {
        Ok(match &step.kind {
            StepKind::Start => StepSettings::Start(read_settings(step)?),
            StepKind::Wait => StepSettings::Wait(read_settings(step)?),
            StepKind::WaitUntil => StepSettings::WaitUntil(read_settings(step)?),
            StepKind::Condition => StepSettings::Condition(read_settings(step)?),
            StepKind::Split => StepSettings::Split(read_settings(step)?),
            StepKind::Exit => StepSettings::Exit(read_settings(step)?),
            StepKind::GoToFlow => StepSettings::GoToFlow(read_settings(step)?),
            StepKind::Restart => StepSettings::Restart(read_settings(step)?),
            StepKind::RunActionGroup => StepSettings::RunActionGroup(read_settings(step)?),
            StepKind::SendEmail => StepSettings::SendEmail(read_settings(step)?),
            StepKind::SendSms => StepSettings::SendSms(read_settings(step)?),
            StepKind::Call => StepSettings::Call(read_settings(step)?),
            StepKind::ScheduleCallback => StepSettings::ScheduleCallback(read_settings(step)?),
            StepKind::Task => StepSettings::Task(read_settings(step)?),
            StepKind::NotifyEmail => StepSettings::NotifyEmail(read_settings(step)?),
            StepKind::NotifySms => StepSettings::NotifySms(read_settings(step)?),
            StepKind::UpdateContact => StepSettings::UpdateContact(read_settings(step)?),
            StepKind::AddToList => StepSettings::AddToList(read_settings(step)?),
            StepKind::RemoveFromList => StepSettings::RemoveFromList(read_settings(step)?),
            StepKind::OptOut => StepSettings::OptOut(read_settings(step)?),
            StepKind::Block => StepSettings::Block,
            StepKind::CreateActivity => StepSettings::CreateActivity(read_settings(step)?),
            StepKind::DataAppend => StepSettings::DataAppend(read_settings(step)?),
            StepKind::Webhook => StepSettings::Webhook(read_settings(step)?),
            StepKind::S3Upload => StepSettings::S3Upload(read_settings(step)?),
            StepKind::FtpUpload => StepSettings::FtpUpload(read_settings(step)?),
            StepKind::CrmPush => StepSettings::CrmPush(read_settings(step)?),
            StepKind::RunScript => StepSettings::RunScript(read_settings(step)?),
            StepKind::Unknown(_) => StepSettings::Unknown,
        })
    }

    /// What is missing or unusable in settings that did read.
    pub fn problems(&self) -> Vec<SettingProblem> {
        let mut problems = Vec::new();
        check(self, &mut problems);
        problems
    }
}

/// Every problem with a step's settings. Unknown kinds have none we can know.
pub fn setting_problems(step: &Step) -> Vec<SettingProblem> {
    match StepSettings::read(step) {
        Ok(settings) => settings.problems(),
        Err(problem) => vec![problem],
    }
}

fn require(p: &mut Vec<SettingProblem>, setting: &str, value: &Option<String>, what: &str) {
    if blank(value) {
        p.push(missing(setting, what));
    }
}

fn check(settings: &StepSettings, p: &mut Vec<SettingProblem>) {
    match settings {
        StepSettings::Unknown | StepSettings::Block => {}
        StepSettings::Start(s) => {
            p.extend(one_of("entry", &s.entry, &["manual", "list", "api", "event"]));
            if s.entry.as_deref() == Some("list") {
                require(p, "list", &s.list, "list entry needs the list whose new members enter");
            }
            if s.entry.as_deref() == Some("event") {
                require(p, "event", &s.event, "event entry needs the name of the custom event that enrolls");
            }
        }
        StepSettings::Wait(s) => match s.mode.as_deref() {
            None | Some("") => p.push(missing("mode", "choose how long to wait")),
            Some("duration") => match (&s.amount, &s.unit) {
                (Some(amount), Some(unit)) => check_duration("unit", &Duration { amount: *amount, unit: unit.clone() }, p),
                (None, _) => p.push(missing("amount", "say how long to wait")),
                (_, None) => p.push(missing("unit", "choose minutes, hours, days or weeks")),
            },
            Some("until") => match &s.at {
                Some(at) if !at.trim().is_empty() => check_timestamp("at", at, p),
                _ => p.push(missing("at", "choose the date and time to wait until")),
            },
            Some("time_of_day") => {
                match &s.time {
                    Some(time) if !time.trim().is_empty() => check_time_of_day("time", time, p),
                    _ => p.push(missing("time", "choose the time of day to wait for")),
                }
                for day in s.days.iter().flatten() {
                    if !["mon", "tue", "wed", "thu", "fri", "sat", "sun"].contains(&day.as_str()) {
                        p.push(invalid("days", format!("\"{day}\" is not a day (mon … sun)")));
                    }
                }
            }
            Some("business_hours") => {}
            Some(other) => p.push(invalid(
                "mode",
                format!("\"{other}\" is not a wait mode (duration, until, time_of_day, business_hours)"),
            )),
        },
        StepSettings::WaitUntil(s) => {
            if s.until.is_empty() {
                p.push(missing("until", "add what to wait for (an event, or criteria)"));
            }
            match &s.timeout {
                Some(timeout) => check_duration("timeout", timeout, p),
                None => p.push(missing("timeout", "say how long to wait before leaving by timed out")),
            }
            for (i, matcher) in s.until.iter().enumerate() {
                let at = format!("until[{}]", i + 1);
                match matcher.event.as_deref() {
                    Some(kind) if !crate::core::engagement::EVENT_KINDS.contains(&kind) => p.push(invalid(
                        &format!("{at}.event"),
                        format!("\"{kind}\" is not an event ({})", crate::core::engagement::EVENT_KINDS.join(", ")),
                    )),
                    Some(_) => criteria_problems(&format!("{at}.where"), &matcher.where_, p),
                    None if matcher.criteria.is_empty() => {
                        p.push(missing(&at, format!("matcher {} names no event and no criteria", i + 1)))
                    }
                    None => criteria_problems(&format!("{at}.criteria"), &matcher.criteria, p),
                }
            }
        }
        StepSettings::Condition(s) => {
            if s.criteria.is_empty() {
                p.push(missing("criteria", "add at least one criterion to decide yes or no"));
            }
            criteria_problems("criteria", &s.criteria, p);
        }
        StepSettings::Split(s) => {
            if s.branches.is_empty() {
                p.push(missing("branches", "add the branches to split between"));
            }
            for (setting, why) in s.winner.as_ref().map(crate::core::engine::winner::problems).unwrap_or_default() {
                p.push(invalid(&setting, why));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, branch) in s.branches.iter().enumerate() {
                let at = format!("branches[{}]", i + 1);
                if branch.port.trim().is_empty() {
                    p.push(missing(&format!("{at}.port"), format!("branch {} has no name", i + 1)));
                } else if !seen.insert(branch.port.as_str()) {
                    p.push(invalid(&format!("{at}.port"), format!("two branches are named \"{}\"", branch.port)));
                }
                match branch.percent {
                    None => p.push(missing(&format!("{at}.percent"), format!("branch {} has no percentage", i + 1))),
                    Some(percent) if !(0.0..=100.0).contains(&percent) => p.push(invalid(
                        &format!("{at}.percent"),
                        format!("{percent} is not a percentage between 0 and 100"),
                    )),
                    Some(_) => {}
                }
            }
        }
        StepSettings::Exit(s) => p.extend(one_of("contact_permission", &s.contact_permission, &["allow", "deny"])),
        StepSettings::GoToFlow(s) => {
            require(p, "flow", &s.flow, "choose the flow to go to");
            p.extend(one_of("mode", &s.mode, &["move", "copy"]));
        }
        StepSettings::Restart(_) => {}
        StepSettings::RunActionGroup(s) => require(p, "group", &s.group, "choose the action group to run"),
        StepSettings::SendEmail(s) => {
            require(p, "subject", &s.subject, "the email has no subject");
            require(p, "body", &s.body, "the email has no body");
            p.extend(one_of("activation", &s.activation, &["automatic", "manual"]));
            p.extend(one_of("timing", &s.timing, &["immediate", "business_hours_weekday", "business_hours_any_day"]));
            p.extend(one_of("if_no_email", &s.if_no_email, &["skip", "exit"]));
            p.extend(one_of("when_capped", &s.when_capped, &["wait", "skip"]));
        }
        StepSettings::SendSms(s) => {
            require(p, "text", &s.text, "the SMS has no text");
            p.extend(one_of("if_no_mobile", &s.if_no_mobile, &["skip", "exit"]));
            p.extend(one_of("when_capped", &s.when_capped, &["wait", "skip"]));
        }
        StepSettings::Call(s) => {
            check_owner(&s.owner, p);
            p.extend(one_of("activation", &s.activation, &["manual", "automatic"]));
            p.extend(one_of("when_capped", &s.when_capped, &["wait", "skip"]));
        }
        StepSettings::ScheduleCallback(s) => match (&s.after, &s.at) {
            (Some(after), _) => check_duration("after", after, p),
            (None, Some(at)) if !at.trim().is_empty() => check_timestamp("at", at, p),
            _ => p.push(missing("after", "say when the callback is due (after a delay, or at a time)")),
        },
        StepSettings::Task(s) => {
            p.extend(one_of("priority", &s.priority, &["low", "normal", "high"]));
            check_owner(&s.owner, p);
        }
        StepSettings::NotifyEmail(s) => {
            require(p, "to", &s.to, "choose who is notified");
            require(p, "subject", &s.subject, "the notification has no subject");
        }
        StepSettings::NotifySms(s) => {
            require(p, "to", &s.to, "choose who is notified");
            require(p, "text", &s.text, "the notification has no text");
        }
        StepSettings::UpdateContact(s) => {
            if s.changes.is_empty() {
                p.push(missing("changes", "add the fields to change"));
            }
            for (i, change) in s.changes.iter().enumerate() {
                let at = format!("changes[{}]", i + 1);
                if change.field.trim().is_empty() {
                    p.push(missing(&format!("{at}.field"), format!("change {} names no field", i + 1)));
                }
                match change.op.as_str() {
                    "clear" => {}
                    "set" | "increment" | "decrement" | "append" | "remove" => {
                        if change.value.as_ref().is_none_or(Value::is_null) {
                            p.push(missing(&format!("{at}.value"), format!("change {} has no value", i + 1)));
                        }
                    }
                    "" => p.push(missing(&format!("{at}.op"), format!("change {} has no operation", i + 1))),
                    other => p.push(invalid(
                        &format!("{at}.op"),
                        format!("\"{other}\" is not set, clear, increment, decrement, append or remove"),
                    )),
                }
            }
        }
        StepSettings::AddToList(s) | StepSettings::RemoveFromList(s) => require(p, "list", &s.list, "choose the list"),
        StepSettings::OptOut(s) => p.extend(one_of("channel", &s.channel, &["all", "email", "sms", "call"])),
        StepSettings::CreateActivity(s) => {
            require(p, "type", &s.activity_type, "choose follow up, request or sale");
            p.extend(one_of("type", &s.activity_type, &["follow_up", "request", "sale"]));
            check_owner(&s.owner, p);
        }
        StepSettings::DataAppend(s) => {
            require(p, "url", &s.url, "the enrichment service's address is missing");
            check_url("url", &s.url, p);
            if s.mapping.is_empty() {
                p.push(missing("mapping", "map at least one response field to a contact field"));
            }
        }
        StepSettings::Webhook(s) => {
            require(p, "url", &s.url, "the webhook's address is missing");
            check_url("url", &s.url, p);
            p.extend(one_of("method", &s.method, &["GET", "POST", "PUT", "PATCH", "DELETE"]));
            p.extend(one_of("format", &s.format, &["json", "form"]));
        }
        StepSettings::S3Upload(s) => {
            require(p, "bucket", &s.bucket, "choose the bucket");
            require(p, "key", &s.key, "choose the object key");
            p.extend(one_of("format", &s.format, &["json", "csv"]));
        }
        StepSettings::FtpUpload(s) => {
            require(p, "path", &s.path, "choose the remote path");
            p.extend(one_of("format", &s.format, &["json", "csv"]));
        }
        StepSettings::CrmPush(s) => {
            require(p, "provider", &s.provider, "choose Zoho CRM or Keap");
            p.extend(one_of("provider", &s.provider, &["zoho", "keap"]));
            require(p, "operation", &s.operation, "choose what to push");
        }
        StepSettings::RunScript(s) => require(p, "script", &s.script, "the script is empty"),
    }
}

fn check_owner(owner: &Option<String>, p: &mut Vec<SettingProblem>) {
    let Some(owner) = owner.as_deref() else { return };
    let ok = owner == "record_owner"
        || owner.strip_prefix("user:").is_some_and(|id| !id.is_empty())
        || owner.strip_prefix("field:").is_some_and(|name| !name.is_empty());
    if !ok {
        p.push(invalid("owner", format!("\"{owner}\" is not record_owner, user:ID or field:NAME")));
    }
}

fn check_url(setting: &str, url: &Option<String>, p: &mut Vec<SettingProblem>) {
    let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) else { return };
    // Merge tags may build the address; only the scheme is fixed text.
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        p.push(invalid(setting, format!("\"{url}\" is not an http:// or https:// address")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(kind: &str, settings: Value) -> Step {
        let mut step = Step::new("s", StepKind::from(kind.to_owned()));
        step.settings = settings.as_object().unwrap().clone();
        step
    }

    #[test]
    fn every_kind_round_trips_its_name_and_has_a_group() {
        for kind in StepKind::ALL {
            assert_eq!(&StepKind::from(kind.as_str().to_owned()), kind);
            assert!(kind.is_known());
            assert_ne!(kind.label(), "Unknown step");
        }
        assert_eq!(StepKind::ALL.len(), 28);
    }

    #[test]
    fn ports_follow_the_kind_and_its_settings() {
        assert_eq!(ports(&step("condition", json!({}))), ["yes", "no"]);
        assert_eq!(ports(&step("webhook", json!({}))), ["next", "failed"]);
        assert!(ports(&step("exit", json!({}))).is_empty());
        assert!(ports(&step("go_to_flow", json!({"mode": "move"}))).is_empty());
        assert_eq!(ports(&step("go_to_flow", json!({"mode": "copy"}))), ["next"]);
        let split = step("split", json!({"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]}));
        assert_eq!(ports(&split), ["a", "b"]);
        assert_eq!(ports(&step("send_sms", json!({}))), ["next"]);
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        let problems = setting_problems(&step("send_email", json!({"subject": " ", "timing": "whenever"})));
        assert!(problems.contains(&missing("subject", "the email has no subject")));
        assert!(problems.iter().any(|p| matches!(p, SettingProblem::Missing { setting, .. } if setting == "body")));
        assert!(problems.iter().any(|p| matches!(p, SettingProblem::Invalid { setting, .. } if setting == "timing")));

        let problems = setting_problems(&step("wait", json!({"mode": "duration", "amount": "two"})));
        assert!(matches!(&problems[..], [SettingProblem::Invalid { setting, .. }] if setting == "amount"));

        let ok = step("wait", json!({"mode": "duration", "amount": 2, "unit": "days"}));
        assert!(setting_problems(&ok).is_empty());
        let bad_time = step("wait", json!({"mode": "time_of_day", "time": "25:99"}));
        assert_eq!(setting_problems(&bad_time).len(), 1);
        let bad_at = step("wait", json!({"mode": "until", "at": "next tuesday"}));
        assert_eq!(setting_problems(&bad_at).len(), 1);
    }

    #[test]
    fn criteria_need_a_value_unless_the_operator_takes_none() {
        let cond = step(
            "condition",
            json!({"criteria": [{"field": "email", "op": "is_empty"}, {"field": "country", "op": "equals"}]}),
        );
        let problems = setting_problems(&cond);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(matches!(&problems[0], SettingProblem::Missing { setting, .. } if setting == "criteria[2].value"));
    }

    #[test]
    fn pauses_only_when_time_must_pass() {
        assert!(pauses(&step("wait", json!({"mode": "duration", "amount": 1, "unit": "hours"}))));
        assert!(!pauses(&step("wait", json!({"mode": "duration", "amount": 0, "unit": "hours"}))));
        assert!(!pauses(&step("wait", json!({"mode": "business_hours"}))));
        assert!(!pauses(&step("wait", json!({"mode": "until", "at": "2026-01-01T00:00:00Z"}))));
        assert!(pauses(&step("call", json!({}))));
        assert!(pauses(&step("send_email", json!({"activation": "manual"}))));
        assert!(!pauses(&step("send_email", json!({}))));
    }
}
