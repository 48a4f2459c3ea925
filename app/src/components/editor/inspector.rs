//! The inspector: the selected step's name, a form for its kind's settings,
//! its guard, where its outputs lead, and its settings as JSON (so every
//! kind, and every setting, can be edited).
//!
//! Each field edits a copy of the step and hands it back as one
//! [`Change::update`]; keystrokes in one field merge into one undo step.

use leptos::prelude::*;
use serde_json::{Map, Value};

use super::state::EditorState;
use crate::core::editor::Change;
use crate::core::flow::{
    BusinessHours, CalendarZone, Criterion, DripPeriod, Duration, Edge, FlowSettings, Guard, Logic, Operator, Reentry, SlowDrip, Step,
    TimeUnit, WeekHours, WhenUnmet,
};
use crate::core::engagement::Matcher;
use crate::core::kinds::{ports, read_settings, ConditionSettings, FieldChange, KindGroup, StepKind, UpdateContactSettings, WaitUntilSettings};
use crate::core::matcher_text::{
    counts_machines, criterion_shape, goal_as, goal_kind, matcher_kind, names_step, new_criterion, new_matcher, optional_text, with_kind,
    with_operator, CriterionShape, CRITERIA,
};
use crate::core::logic::LogicExpr;
use crate::core::contact::Contact;
use crate::core::merge::{render, Escape};
use crate::core::sms::{measure, SmsEncoding};

/// The selected step, and how its fields write back.
#[derive(Clone, Copy)]
struct Fields {
    state: EditorState,
    id: StoredValue<String>,
    step: Memo<Option<Step>>,
}

impl Fields {
    fn text(&self, key: &str) -> String {
        self.step.with(|s| s.as_ref().and_then(|s| s.setting_str(key)).unwrap_or_default().to_owned())
    }

    /// Edits a copy of the step; `merge` names the field for undo merging.
    fn edit(&self, merge: Option<&str>, edit: impl FnOnce(&mut Step)) {
        let Some(mut step) = self.step.get_untracked() else { return };
        edit(&mut step);
        let change = Change::update(&step);
        match merge {
            Some(field) => self.state.change_merging(change, format!("{}/{field}", self.id.get_value())),
            None => {
                self.state.seal();
                self.state.change(change)
            }
        };
    }

    /// Sets a setting; an empty text removes it (so it reads as missing).
    fn set(&self, key: &str, value: Option<Value>, merge: bool) {
        let value = value.filter(|v| v.as_str().is_none_or(|s| !s.is_empty()));
        self.edit(merge.then_some(key), |step| match value {
            Some(value) => {
                step.settings.insert(key.to_owned(), value);
            }
            None => {
                step.settings.remove(key);
            }
        });
    }
}

#[component]
pub fn Inspector(state: EditorState) -> impl IntoView {
    let selected = Memo::new(move |_| state.single_selected());
    move || match selected.get() {
        Some(id) => view! {
            <Suspense fallback=|| view! { <section class="step-details inspector loading"><p>"Loading the step's form…"</p></section> }>
                {Suspend::new(step_inspector(state, id))}
            </Suspense>
        }
        .into_any(),
        None => {
            let count = state.selected.with(Vec::len);
            let text = if count > 1 {
                format!("{count} steps selected. Drag one to move them all; Delete removes them.")
            } else {
                "Select a step to edit it, or drag one from the palette.".to_owned()
            };
            view! {
                <section class="step-details inspector empty"><p>{text}</p></section>
                {(count == 0).then(|| view! { <FlowSettingsForm state/> })}
            }
            .into_any()
        }
    }
    .into_any()
}

/// The selected step's form, with every kind's editors behind it, is a wasm
/// chunk of its own: the editor's first load leaves it out, and the first
/// selection fetches it (later ones find it loaded).
#[lazy]
fn step_inspector(state: EditorState, id: String) -> AnyView {
    view! { <StepInspector state id/> }.into_any()
}

/// Changes the flow's settings through the undoable change log.
fn edit_settings(state: EditorState, edit: impl FnOnce(&mut FlowSettings)) {
    edit_settings_merging(state, None, edit);
}

/// [`edit_settings`]; keystrokes with the same `merge` key are one undo step.
fn edit_settings_merging(state: EditorState, merge: Option<String>, edit: impl FnOnce(&mut FlowSettings)) {
    let mut settings = state.doc.with_untracked(|doc| doc.settings.clone());
    edit(&mut settings);
    let change = Change::SetFlowSettings(Box::new(settings));
    match merge {
        Some(key) => state.change_merging(change, format!("settings/{key}")),
        None => {
            state.seal();
            state.change(change)
        }
    };
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_hours<'a>(hours: &'a mut WeekHours, day: &str) -> &'a mut Option<[String; 2]> {
    match day {
        "mon" => &mut hours.mon,
        "tue" => &mut hours.tue,
        "wed" => &mut hours.wed,
        "thu" => &mut hours.thu,
        "fri" => &mut hours.fri,
        "sat" => &mut hours.sat,
        _ => &mut hours.sun,
    }
}

/// The flow's own settings, shown when no step is selected: its zone,
/// business hours and holidays, slow drip and re-entry rule. Defaults
/// (UTC, Mon–Fri 09:00–17:00 in the contact's zone, no drip, re-entry
/// never) apply to what is left empty.
#[component]
fn FlowSettingsForm(state: EditorState) -> impl IntoView {
    let settings = Memo::new(move |_| state.doc.with(|doc| doc.settings.clone()));
    let hours = move |day: &'static str| {
        settings.with(|s| s.business_hours.as_ref().and_then(|b| b.days.iter().find(|(d, _)| *d == day).and_then(|(_, h)| h.cloned())))
    };
    let set_hours = move |day: &'static str, which: usize, value: String| {
        edit_settings(state, |s| {
            let calendar = s.business_hours.get_or_insert_with(|| BusinessHours {
                days: WeekHours {
                    mon: Some(["09:00".into(), "17:00".into()]),
                    tue: Some(["09:00".into(), "17:00".into()]),
                    wed: Some(["09:00".into(), "17:00".into()]),
                    thu: Some(["09:00".into(), "17:00".into()]),
                    fri: Some(["09:00".into(), "17:00".into()]),
                    ..WeekHours::default()
                },
                ..BusinessHours::default()
            });
            let slot = day_hours(&mut calendar.days, day);
            if which == 2 {
                *slot = if slot.is_some() { None } else { Some(["09:00".into(), "17:00".into()]) };
            } else if let Some(open_close) = slot.as_mut() {
                open_close[which] = value;
            }
        })
    };
    let days = DAYS
        .iter()
        .map(|&day| {
            view! {
                <div class="day-hours" data-day=day>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || hours(day).is_some() on:change=move |_| set_hours(day, 2, String::new())/>
                        {day}
                    </label>
                    <input type="time" aria-label=format!("{day} opens") prop:value=move || hours(day).map(|h| h[0].clone()).unwrap_or_default()
                        disabled=move || hours(day).is_none() on:change=move |ev| set_hours(day, 0, event_target_value(&ev))/>
                    <input type="time" aria-label=format!("{day} closes") prop:value=move || hours(day).map(|h| h[1].clone()).unwrap_or_default()
                        disabled=move || hours(day).is_none() on:change=move |ev| set_hours(day, 1, event_target_value(&ev))/>
                </div>
            }
        })
        .collect_view();
    let steps = message_steps(state);
    let goal = Memo::new(move |_| settings.with(|s| s.goal.clone()));
    let goal_mode = Memo::new(move |_| goal.with(|g| goal_kind(g.as_ref()).to_owned()));
    // The goal's own form: drawn again when its kind changes.
    let goal_form = move || match goal_mode.get().as_str() {
        CRITERIA => {
            let criteria = Signal::derive(move || goal.with(|g| g.as_ref().map(|g| g.criteria.clone()).unwrap_or_default()));
            let logic = Signal::derive(move || goal.with(|g| g.as_ref().and_then(|g| g.logic.clone())));
            let set = Callback::new(move |(criteria, logic, merge): (Vec<Criterion>, Option<Logic>, Option<String>)| {
                edit_settings_merging(state, merge.map(|m| format!("goal.{m}")), |s| {
                    if let Some(goal) = s.goal.as_mut() {
                        goal.criteria = criteria;
                        goal.logic = logic;
                    }
                })
            });
            view! { <CriteriaEditor criteria logic set steps scope="Goal"/> }.into_any()
        }
        "event" => {
            let matchers = Signal::derive(move || goal.with(|g| g.as_ref().and_then(|g| g.event.clone()).into_iter().collect::<Vec<_>>()));
            let set = Callback::new(move |(list, merge): (Vec<Matcher>, Option<String>)| {
                edit_settings_merging(state, merge.map(|m| format!("goal.{m}")), |s| {
                    if let (Some(goal), Some(matcher)) = (s.goal.as_mut(), list.into_iter().next()) {
                        goal.event = Some(matcher);
                    }
                })
            });
            view! { <MatchersEditor matchers set steps goal=true/> }.into_any()
        }
        _ => ().into_any(),
    };
    view! {
        <section class="step-details inspector flow-settings" aria-label="Flow settings">
            <h2>"Flow settings"</h2>
            <label>"Time zone"
                <input type="text" placeholder="UTC" aria-label="Flow time zone"
                    prop:value=move || settings.with(|s| s.timezone.clone().unwrap_or_default())
                    on:change=move |ev| { let zone = event_target_value(&ev); edit_settings(state, |s| s.timezone = Some(zone.trim().to_owned()).filter(|z| !z.is_empty())) }/>
            </label>
            <label>"Re-entry"
                <select aria-label="Re-entry" on:change=move |ev| {
                    let value = event_target_value(&ev);
                    edit_settings(state, |s| s.reentry = match value.as_str() { "after_exit" => Some(Reentry::AfterExit), "always" => Some(Reentry::Always), _ => None });
                }>
                    <option value="never" selected=move || settings.with(|s| matches!(s.reentry, None | Some(Reentry::Never)))>"Never (once per contact)"</option>
                    <option value="after_exit" selected=move || settings.with(|s| s.reentry == Some(Reentry::AfterExit))>"Again after leaving"</option>
                    <option value="always" selected=move || settings.with(|s| s.reentry == Some(Reentry::Always))>"Always"</option>
                </select>
            </label>
            <label>"Slow drip: at most … start per"
                <span class="row">
                    <input type="number" min="0" placeholder="no limit" aria-label="Slow drip limit"
                        prop:value=move || settings.with(|s| s.slow_drip.as_ref().map(|d| d.limit.to_string()).unwrap_or_default())
                        on:change=move |ev| {
                            let limit = event_target_value(&ev).trim().parse::<u32>().ok();
                            edit_settings(state, |s| s.slow_drip = limit.map(|limit| SlowDrip { limit, per: s.slow_drip.as_ref().map_or(DripPeriod::Day, |d| d.per) }));
                        }/>
                    <select aria-label="Slow drip period" on:change=move |ev| {
                        let per = if event_target_value(&ev) == "hour" { DripPeriod::Hour } else { DripPeriod::Day };
                        edit_settings(state, |s| if let Some(drip) = s.slow_drip.as_mut() { drip.per = per });
                    }>
                        <option value="day" selected=move || settings.with(|s| s.slow_drip.as_ref().is_none_or(|d| d.per == DripPeriod::Day))>"day"</option>
                        <option value="hour" selected=move || settings.with(|s| s.slow_drip.as_ref().is_some_and(|d| d.per == DripPeriod::Hour))>"hour"</option>
                    </select>
                </span>
            </label>
            <fieldset>
                <legend>"Business hours"</legend>
                {days}
                <label>"Read in"
                    <select aria-label="Business hours zone" on:change=move |ev| {
                        let zone = if event_target_value(&ev) == "flow" { Some(CalendarZone::Flow) } else { None };
                        edit_settings(state, |s| s.business_hours.get_or_insert_with(BusinessHours::default).zone = zone);
                    }>
                        <option value="contact" selected=move || settings.with(|s| s.business_hours.as_ref().and_then(|b| b.zone) != Some(CalendarZone::Flow))>"the contact's zone"</option>
                        <option value="flow" selected=move || settings.with(|s| s.business_hours.as_ref().and_then(|b| b.zone) == Some(CalendarZone::Flow))>"the flow's zone"</option>
                    </select>
                </label>
                <label>"Holidays (dates, comma-separated)"
                    <input type="text" placeholder="2026-12-25, 2027-01-01" aria-label="Holidays"
                        prop:value=move || settings.with(|s| s.business_hours.as_ref().map(|b| b.holidays.join(", ")).unwrap_or_default())
                        on:change=move |ev| {
                            let holidays: Vec<String> = event_target_value(&ev).split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect();
                            edit_settings(state, |s| s.business_hours.get_or_insert_with(BusinessHours::default).holidays = holidays);
                        }/>
                </label>
            </fieldset>
            <fieldset class="goal">
                <legend>"Goal"</legend>
                <label>"Participants convert when"
                    <select aria-label="Goal" on:change=move |ev| {
                        let kind = event_target_value(&ev);
                        edit_settings(state, |s| s.goal = goal_as(s.goal.as_ref(), &kind));
                    }>
                        {options(
                            pairs(&[("none", "No goal"), (CRITERIA, "The contact matches criteria"), ("event", "An event happens")]),
                            goal_mode.into(),
                        )}
                    </select>
                </label>
                {goal_form}
                <p class="hint">"Checked at every step and on every event: a participant that meets it leaves at once, as converted."</p>
            </fieldset>
            <label class="check">
                <input type="checkbox" prop:checked=move || settings.with(|s| s.exit_on_reply == Some(true))
                    on:change=move |ev| { let on = event_target_checked(&ev); edit_settings(state, |s| s.exit_on_reply = on.then_some(true)) }/>
                "Exit on reply: a reply to any of the flow's messages ends the participant"
            </label>
            <label class="check">
                <input type="checkbox" name="transactional" prop:checked=move || settings.with(|s| s.transactional == Some(true))
                    on:change=move |ev| { let on = event_target_checked(&ev); edit_settings(state, |s| s.transactional = on.then_some(true)) }/>
                "Transactional (receipts, resets): exempt from contact pressure's caps and quiet hours, not counted, and sent without List-Unsubscribe"
            </label>
            <label class="check">
                <input type="checkbox" name="tracking" prop:checked=move || settings.with(|s| s.tracking != Some(false))
                    on:change=move |ev| { let on = event_target_checked(&ev); edit_settings(state, |s| s.tracking = (!on).then_some(false)) }/>
                "Track opens and clicks in this flow's emails (an open pixel; links through the click redirect)"
            </label>
        </section>
    }
    .into_any()
}

#[component]
fn StepInspector(state: EditorState, id: String) -> impl IntoView {
    let step = {
        let id = id.clone();
        Memo::new(move |_| state.doc.with(|doc| doc.step(&id).cloned()))
    };
    let f = Fields { state, id: StoredValue::new(id.clone()), step };
    let Some(initial) = step.get_untracked() else {
        return view! { <section class="step-details inspector"><p>"That step is gone."</p></section> }.into_any();
    };
    let kind = initial.kind.clone();
    let notes = {
        let id = id.clone();
        move || {
            state.findings.with(|findings| {
                findings
                    .for_step(&id)
                    .map(|finding| {
                        let level = format!("{:?}", finding.code.level()).to_lowercase();
                        view! { <li class=level data-code=finding.code.as_str()>{finding.message.clone()}</li> }
                    })
                    .collect_view()
            })
        }
    };
    let form = match kind.clone() {
        StepKind::Start => view! { <StartForm f/> }.into_any(),
        StepKind::Wait => view! { <WaitForm f/> }.into_any(),
        StepKind::WaitUntil => view! { <WaitUntilForm f/> }.into_any(),
        StepKind::Condition => view! { <ConditionForm f/> }.into_any(),
        StepKind::SendEmail => view! { <EmailForm f/> }.into_any(),
        StepKind::SendSms => view! { <SmsForm f/> }.into_any(),
        StepKind::UpdateContact => view! { <UpdateContactForm f/> }.into_any(),
        other => match simple_form(f, other) {
            Some(form) => form,
            None => view! { <p class="hint">"Edit this step's settings as JSON below."</p> }.into_any(),
        },
    };
    let typed_form = matches!(
        kind,
        StepKind::Start
            | StepKind::Wait
            | StepKind::WaitUntil
            | StepKind::Condition
            | StepKind::SendEmail
            | StepKind::SendSms
            | StepKind::UpdateContact
    ) || simple_form_covers(&kind);
    let guarded = kind.is_known() && kind.group() != KindGroup::FlowControl;
    view! {
        <section class="step-details inspector" aria-label="Selected step" data-step=id.clone() data-kind=kind.as_str().to_owned()>
            <h2>{kind.icon()} " " {move || step.with(|s| s.as_ref().map(|s| s.display_name().to_owned()))}</h2>
            <p class="kind">{kind.label()} " · id " <code>{id.clone()}</code></p>
            <ul class="step-notes">{notes}</ul>
            <label class="field">"Name"
                <input type="text" name="step-name" placeholder=kind.label()
                    prop:value=move || step.with(|s| s.as_ref().and_then(|s| s.name.clone()).unwrap_or_default())
                    on:input=move |ev| {
                        let name = event_target_value(&ev);
                        f.edit(Some("name"), |s| s.name = (!name.trim().is_empty()).then_some(name));
                    }
                    on:blur=move |_| state.seal()/>
            </label>
            {form}
            {guarded.then(|| view! { <GuardEditor f/> })}
            <NextSteps f/>
            <JsonSettings f open=!typed_form/>
        </section>
    }
    .into_any()
}

/// `<option>`s with the current one selected. (Selecting through the
/// option, not the select's value, works whenever the options are mounted.)
fn options(choices: Vec<(String, String)>, current: Signal<String>) -> impl IntoView {
    choices
        .into_iter()
        .map(|(value, text)| {
            let this = value.clone();
            view! { <option value=value prop:selected=move || current.with(|c| *c == this)>{text}</option> }
        })
        .collect_view()
}

fn pairs(choices: &[(&str, &str)]) -> Vec<(String, String)> {
    choices.iter().map(|(v, t)| ((*v).to_owned(), (*t).to_owned())).collect()
}

fn text_field(f: Fields, key: &'static str, label: &'static str, placeholder: &'static str) -> impl IntoView {
    view! {
        <label class="field">{label}
            <input type="text" name=key placeholder=placeholder prop:value=move || f.text(key)
                on:input=move |ev| f.set(key, Some(Value::String(event_target_value(&ev))), true)
                on:blur=move |_| f.state.seal()/>
        </label>
    }
    .into_any()
}

fn text_area(f: Fields, key: &'static str, label: &'static str, placeholder: &'static str) -> impl IntoView {
    view! {
        <label class="field">{label}
            <textarea name=key rows="5" placeholder=placeholder prop:value=move || f.text(key)
                on:input=move |ev| f.set(key, Some(Value::String(event_target_value(&ev))), true)
                on:blur=move |_| f.state.seal()></textarea>
        </label>
    }
}

/// A choice among fixed values; the first is what an absent setting means.
fn choice(f: Fields, key: &'static str, label: &'static str, choices: &'static [(&'static str, &'static str)]) -> impl IntoView {
    let current = move || {
        let text = f.text(key);
        if text.is_empty() {
            choices[0].0.to_owned()
        } else {
            text
        }
    };
    view! {
        <label class="field">{label}
            <select name=key on:change=move |ev| f.set(key, Some(Value::String(event_target_value(&ev))), false)>
                {options(pairs(choices), Signal::derive(current))}
            </select>
        </label>
    }
}

/// A whole-number setting; empty removes it.
fn number_field(f: Fields, key: &'static str, label: &'static str, placeholder: &'static str) -> impl IntoView {
    view! {
        <label class="field">{label}
            <input type="number" min="0" name=key placeholder=placeholder
                prop:value=move || f.step.with(|s| s.as_ref().and_then(|s| s.settings.get(key)).and_then(Value::as_u64).map(|n| n.to_string()).unwrap_or_default())
                on:change=move |ev| f.set(key, event_target_value(&ev).trim().parse::<u64>().ok().map(Value::from), false)/>
        </label>
    }
    .into_any()
}

const OWNER_HINT: &str = "record_owner, user:ID or field:NAME";
const NOTIFY_HINT: &str = "record_owner, user:ID (or user:EMAIL), field:NAME or an address";
const FORMATS: &[(&str, &str)] = &[("json", "JSON"), ("csv", "CSV")];

/// Kinds whose settings are plain fields; the rest have their own forms or
/// (split branches, webhook bodies, data-append mappings, callback delays)
/// the JSON box.
fn simple_form_covers(kind: &StepKind) -> bool {
    !matches!(
        kind,
        StepKind::Start
            | StepKind::Wait
            | StepKind::WaitUntil
            | StepKind::Condition
            | StepKind::SendEmail
            | StepKind::SendSms
            | StepKind::UpdateContact
            | StepKind::Unknown(_)
    )
}

fn simple_form(f: Fields, kind: StepKind) -> Option<AnyView> {
    if !simple_form_covers(&kind) {
        return None;
    }
    let form = match kind.clone() {
        StepKind::Exit => view! {
            {choice(f, "contact_permission", "Contact permission", &[("", "Leave as it is"), ("allow", "Allow calls"), ("deny", "Do not call")])}
        }
        .into_any(),
        StepKind::GoToFlow => view! {
            {text_field(f, "flow", "Flow (name or id)", "e.g. Win back")}
            {choice(f, "mode", "How", &[("move", "Move the participant there"), ("copy", "Copy it there and carry on here")])}
        }
        .into_any(),
        StepKind::Restart => number_field(f, "max_restarts", "At most this many restarts", "no limit").into_any(),
        StepKind::RunActionGroup => text_field(f, "group", "Action group", "e.g. Qualify").into_any(),
        StepKind::Call => view! {
            {choice(f, "activation", "Placed", &[
                ("manual", "By a person (a task for the owner)"),
                ("automatic", "Automatically, through the telephony provider"),
            ])}
            {text_field(f, "owner", "Who calls (manual)", OWNER_HINT)}
            {text_area(f, "script", "Call script (an automatic call speaks it)", "What to say…")}
            {choice(f, "when_capped", "If contact pressure holds it (caps, quiet hours)", &[("wait", "Wait for the next allowed moment"), ("skip", "Skip this step")])}
            <p class="hint">"An automatic call's final status — completed, busy or no-answer — is its disposition; failed, canceled or no status within 90 minutes fails the step."</p>
        }
        .into_any(),
        StepKind::Task => view! {
            {text_field(f, "subject", "Subject (default: the step's name and the time)", "e.g. Send the contract")}
            {choice(f, "priority", "Priority", &[("normal", "Normal"), ("low", "Low"), ("high", "High")])}
            {text_field(f, "owner", "Owner", OWNER_HINT)}
        }
        .into_any(),
        StepKind::NotifyEmail => view! {
            {text_field(f, "to", "Notify", NOTIFY_HINT)}
            {text_field(f, "subject", "Subject", "e.g. {{ email }} replied")}
            {text_area(f, "text", "Message", "")}
        }
        .into_any(),
        StepKind::NotifySms => view! {
            {text_field(f, "to", "Notify (a number: users have no mobile on record)", "+15551234567 or field:NAME")}
            {text_area(f, "text", "Message", "")}
        }
        .into_any(),
        StepKind::AddToList | StepKind::RemoveFromList => text_field(f, "list", "List", "e.g. Engaged").into_any(),
        StepKind::OptOut => {
            choice(f, "channel", "Opt out of", &[("all", "Everything"), ("email", "Email"), ("sms", "SMS"), ("call", "Calls")]).into_any()
        }
        StepKind::Block => view! { <p class="hint">"Blocks the contact from every channel; nothing to set."</p> }.into_any(),
        StepKind::CreateActivity => view! {
            {choice(f, "type", "Activity", &[("follow_up", "Follow-up"), ("request", "Request"), ("sale", "Sale")])}
            {text_field(f, "title", "Title", "e.g. Call back about pricing")}
            {text_field(f, "owner", "Owner", OWNER_HINT)}
        }
        .into_any(),
        StepKind::DataAppend => view! {
            {text_field(f, "url", "Enrichment service address", "https://…")}
            <PairsEditor f key="mapping" legend="Response field → contact field" left="response field" right="contact field"/>
        }
        .into_any(),
        StepKind::Webhook => view! {
            {choice(f, "method", "Method", &[("POST", "POST"), ("GET", "GET"), ("PUT", "PUT"), ("PATCH", "PATCH"), ("DELETE", "DELETE")])}
            {text_field(f, "url", "Address", "https://hooks.example.com/…")}
            {choice(f, "format", "Body as", &[("json", "JSON"), ("form", "Form")])}
            <PairsEditor f key="headers" legend="Headers (merge tags allowed)" left="header" right="value"/>
            <BodyEditor f/>
        }
        .into_any(),
        StepKind::Split => view! { <SplitForm f/> }.into_any(),
        StepKind::ScheduleCallback => view! { <CallbackForm f/> }.into_any(),
        StepKind::S3Upload => view! {
            {text_field(f, "bucket", "Bucket", "e.g. exports")}
            {text_field(f, "key", "Object key", "contacts/{{ email }}.json")}
            {choice(f, "format", "Format", FORMATS)}
        }
        .into_any(),
        StepKind::FtpUpload => view! {
            {text_field(f, "path", "Remote path", "/incoming/{{ email }}.csv")}
            {choice(f, "format", "Format", FORMATS)}
        }
        .into_any(),
        StepKind::CrmPush => view! {
            {choice(f, "provider", "CRM", &[("zoho", "Zoho CRM"), ("keap", "Keap")])}
            {text_field(f, "operation", "Operation", "e.g. upsert_lead")}
        }
        .into_any(),
        StepKind::RunScript => text_area(f, "script", "Script (runs beside the flow; the participant does not wait)", "").into_any(),
        _ => return None,
    };
    Some(form)
}

#[component]
fn StartForm(f: Fields) -> impl IntoView {
    let by_list = move || f.text("entry") == "list";
    let by_event = move || f.text("entry") == "event";
    view! {
        {choice(f, "entry", "Contacts enter", &[
            ("manual", "When enrolled by hand"),
            ("list", "When they join a list"),
            ("api", "Through the API"),
            ("event", "When they do a custom event"),
        ])}
        <Show when=by_list>{text_field(f, "list", "List", "e.g. Newsletter")}</Show>
        <Show when=by_event>{text_field(f, "event", "Event name", "e.g. signed_up")}</Show>
    }
    .into_any()
}

#[component]
fn WaitForm(f: Fields) -> impl IntoView {
    let mode = move || f.text("mode");
    let amount = Signal::derive(move || f.step.with(|s| s.as_ref().and_then(|s| s.settings.get("amount")?.as_u64())));
    let unit = Signal::derive(move || f.text("unit"));
    let set = Callback::new(move |(amount, unit): (Option<u64>, String)| {
        f.edit(Some("duration"), |s| {
            match amount {
                Some(n) => s.settings.insert("amount".into(), n.into()),
                None => s.settings.remove("amount"),
            };
            s.settings.insert("unit".into(), Value::String(unit));
        })
    });
    view! {
        {choice(f, "mode", "Wait", &[
            ("duration", "For a while"),
            ("until", "Until a date and time"),
            ("time_of_day", "Until a time of day"),
            ("business_hours", "Until business hours"),
        ])}
        {move || match mode().as_str() {
            "until" => text_field(f, "at", "Until (date and time)", "2026-12-01T09:00:00Z").into_any(),
            "time_of_day" => view! {
                <label class="field">"Time of day (contact's zone)"
                    <input type="time" name="time" prop:value=move || f.text("time")
                        on:input=move |ev| f.set("time", Some(Value::String(event_target_value(&ev))), true)/>
                </label>
            }.into_any(),
            "business_hours" => view! { <p class="hint">"Continues as soon as the flow's business hours are open."</p> }.into_any(),
            _ => view! { <DurationPicker label="Wait for" amount unit set/> }.into_any(),
        }}
    }
    .into_any()
}

/// An amount and a unit, as FLOW_FORMAT's durations are written.
#[component]
fn DurationPicker(
    label: &'static str,
    amount: Signal<Option<u64>>,
    unit: Signal<String>,
    set: Callback<(Option<u64>, String)>,
    /// The inputs' accessible name, when `label` is not unique in the form.
    #[prop(optional, into)]
    aria: Option<String>,
) -> impl IntoView {
    let aria = aria.unwrap_or_else(|| label.to_owned());
    let unit_or_default = move || {
        let unit = unit.get();
        if unit.is_empty() {
            "days".to_owned()
        } else {
            unit
        }
    };
    let bad_amount = RwSignal::new(false);
    view! {
        <fieldset class="duration">
            <legend>{label}</legend>
            <input type="number" min="0" step="1" name="amount" aria-label=format!("{aria}: amount")
                prop:value=move || amount.get().map(|n| n.to_string()).unwrap_or_default()
                on:input=move |ev| {
                    let text = event_target_value(&ev);
                    match text.trim().parse::<u64>() {
                        Ok(n) => { bad_amount.set(false); set.run((Some(n), unit_or_default())); }
                        Err(_) if text.trim().is_empty() => { bad_amount.set(false); set.run((None, unit_or_default())); }
                        Err(_) => bad_amount.set(true),
                    }
                }/>
            <select name="unit" aria-label=format!("{aria}: unit")
                on:change=move |ev| set.run((amount.get_untracked(), event_target_value(&ev)))>
                {options(TimeUnit::ALL.iter().map(|u| (u.as_str().to_owned(), u.as_str().to_owned())).collect(), Signal::derive(unit_or_default))}
            </select>
            <Show when=move || bad_amount.get()>
                <p class="field-error" role="alert">"Type a whole number."</p>
            </Show>
        </fieldset>
    }
    .into_any()
}

#[component]
fn ConditionForm(f: Fields) -> impl IntoView {
    let read = move || {
        f.step.with(|s| s.as_ref().and_then(|s| read_settings::<ConditionSettings>(s).ok()).unwrap_or_default())
    };
    let criteria = Signal::derive(move || read().criteria);
    let logic = Signal::derive(move || read().logic);
    let set = Callback::new(move |(criteria, logic, merge): (Vec<Criterion>, Option<Logic>, Option<String>)| {
        f.edit(merge.as_deref(), |s| {
            s.settings.insert("criteria".into(), serde_json::to_value(&criteria).unwrap_or_default());
            match logic {
                Some(logic) => s.settings.insert("logic".into(), Value::String(logic.into())),
                None => s.settings.remove("logic"),
            };
        })
    });
    let steps = message_steps(f.state);
    view! {
        <h3>"Yes when"</h3>
        <CriteriaEditor criteria logic set steps/>
    }
    .into_any()
}

/// The flow's message steps (send email, send SMS) as `(id, "Name (id)")`:
/// what engagement matchers and operators may name.
fn message_steps(state: EditorState) -> Signal<Vec<(String, String)>> {
    Memo::new(move |_| {
        state.doc.with(|doc| {
            doc.steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::SendEmail | StepKind::SendSms))
                .map(|s| (s.id.clone(), format!("{} ({})", s.display_name(), s.id)))
                .collect::<Vec<_>>()
        })
    })
    .into()
}

/// What a `wait_until` waits for (any one of its matchers ends it by
/// "met"), and how long before it leaves by "timed out".
#[component]
fn WaitUntilForm(f: Fields) -> impl IntoView {
    let read = move || f.step.with(|s| s.as_ref().and_then(|s| read_settings::<WaitUntilSettings>(s).ok()).unwrap_or_default());
    let matchers = Memo::new(move |_| read().until);
    let set = Callback::new(move |(list, merge): (Vec<Matcher>, Option<String>)| {
        f.edit(merge.as_deref(), |s| {
            if list.is_empty() {
                s.settings.remove("until");
            } else {
                s.settings.insert("until".into(), serde_json::to_value(&list).unwrap_or_default());
            }
        })
    });
    let amount = Signal::derive(move || read().timeout.map(|t| t.amount));
    let unit = Signal::derive(move || read().timeout.map(|t| t.unit.to_string()).unwrap_or_default());
    let set_timeout = Callback::new(move |(amount, unit): (Option<u64>, String)| {
        f.edit(Some("timeout"), |s| {
            match amount {
                Some(amount) => s.settings.insert("timeout".into(), serde_json::json!({"amount": amount, "unit": unit})),
                None => s.settings.remove("timeout"),
            };
        })
    });
    view! {
        <h3>"Leave by “met” when"</h3>
        <MatchersEditor matchers=matchers.into() set steps=message_steps(f.state)/>
        <DurationPicker label="Otherwise leave by “timed out” after" aria="Time out after" amount unit set=set_timeout/>
    }
    .into_any()
}

/// A matcher's kinds, as its select offers them.
const MATCHER_KINDS: &[(&str, &str)] = &[
    ("email_opened", "Email opened"),
    ("link_clicked", "Link clicked"),
    ("replied", "Replied"),
    ("bounced", "Bounced"),
    ("complained", "Marked as spam"),
    ("unsubscribed", "Unsubscribed"),
    ("custom", "Custom event"),
    (CRITERIA, "Contact matches criteria"),
];

/// Event matchers (`wait_until`'s list, or the goal's one event): each an
/// event kind and what narrows it, or criteria over the contact.
#[component]
fn MatchersEditor(
    matchers: Signal<Vec<Matcher>>,
    set: Callback<(Vec<Matcher>, Option<String>)>,
    steps: Signal<Vec<(String, String)>>,
    /// The goal's event: exactly one, never criteria (the goal has its own).
    #[prop(optional)]
    goal: bool,
) -> impl IntoView {
    let add = move |_| {
        let mut list = matchers.get_untracked();
        list.push(new_matcher());
        set.run((list, None));
    };
    view! {
        <div class="matchers">
            <For each=move || 0..matchers.with(Vec::len) key=|i| *i
                children=move |i| view! { <MatcherRow i matchers set steps goal/> }/>
            {(!goal).then(|| view! { <button type="button" class="add" on:click=add>"+ Add something to wait for"</button> })}
        </div>
    }
    .into_any()
}

#[component]
fn MatcherRow(
    i: usize,
    matchers: Signal<Vec<Matcher>>,
    set: Callback<(Vec<Matcher>, Option<String>)>,
    steps: Signal<Vec<(String, String)>>,
    goal: bool,
) -> impl IntoView {
    let n = i + 1;
    let name = StoredValue::new(if goal { "Goal event".to_owned() } else { format!("Matcher {n}") });
    let label = move |what: &str| format!("{}: {what}", name.get_value());
    let update = move |merge: Option<String>, edit: &dyn Fn(&mut Matcher)| {
        let mut list = matchers.get_untracked();
        if let Some(matcher) = list.get_mut(i) {
            edit(matcher);
            set.run((list, merge.map(|m| format!("until{i}.{m}"))));
        }
    };
    let matcher = move || matchers.with(|m| m.get(i).cloned().unwrap_or_default());
    let kind = Memo::new(move |_| matchers.with(|m| m.get(i).map(|m| matcher_kind(m).to_owned()).unwrap_or_default()));
    let kinds = move || {
        let now = kind.get();
        let mut choices: Vec<(String, String)> = pairs(MATCHER_KINDS).into_iter().filter(|(v, _)| !(goal && v == CRITERIA)).collect();
        if !choices.iter().any(|(v, _)| *v == now) {
            choices.push((now.clone(), now));
        }
        options(choices, kind.into())
    };
    // What narrows the kind chosen: drawn again when the kind changes, not
    // as its fields are typed.
    let details = move || {
        let kind = kind.get();
        let step = names_step(&kind).then(|| {
            let current = Signal::derive(move || matcher().step.unwrap_or_default());
            let any = if goal { "any message" } else { "any message (from when the wait begins)" };
            view! {
                <label class="field">"Which message"
                    <select name="matcher-step" aria-label=label("which message")
                        on:change=move |ev| { let step = event_target_value(&ev); update(None, &|m| m.step = optional_text(&step)) }>
                        {move || options(step_choices(&steps.get(), &current.get(), "", any), current)}
                    </select>
                </label>
            }
        });
        let url = (kind == "link_clicked").then(|| view! {
            <label class="field">"Link contains (empty: any link)"
                <input type="text" name="url_contains" placeholder="e.g. /pricing" aria-label=label("link contains")
                    prop:value=move || matcher().url_contains.unwrap_or_default()
                    on:input=move |ev| { let text = event_target_value(&ev); update(Some("url".into()), &|m| m.url_contains = optional_text(&text)) }/>
            </label>
        });
        let custom = (kind == "custom").then(|| {
            let rows = Signal::derive(move || matcher().where_);
            let set_where = Callback::new(move |(rows, _, merge): (Vec<Criterion>, Option<Logic>, Option<String>)| {
                update(merge.map(|m| format!("where.{m}")), &|m| m.where_ = rows.clone())
            });
            view! {
                <label class="field">"Event name (empty: any)"
                    <input type="text" name="event-name" placeholder="e.g. purchased" aria-label=label("event name")
                        prop:value=move || matcher().name.unwrap_or_default()
                        on:input=move |ev| { let text = event_target_value(&ev); update(Some("name".into()), &|m| m.name = optional_text(&text)) }/>
                </label>
                <p class="sub">"Where its properties (all must match)"</p>
                <CriteriaEditor criteria=rows logic=Signal::derive(|| None) set=set_where steps fields_only=true scope=name.get_value()/>
            }
        });
        let machine = counts_machines(&kind).then(|| view! {
            <label class="check">
                <input type="checkbox" name="include_machine" aria-label=label("include machine opens and clicks")
                    prop:checked=move || matcher().include_machine
                    on:change=move |ev| { let on = event_target_checked(&ev); update(None, &|m| m.include_machine = on) }/>
                "Include machine opens and clicks (privacy proxies, link scanners)"
            </label>
        });
        let criteria = (kind == CRITERIA).then(|| {
            let rows = Signal::derive(move || matcher().criteria);
            let logic = Signal::derive(move || matcher().logic);
            let set_criteria = Callback::new(move |(rows, logic, merge): (Vec<Criterion>, Option<Logic>, Option<String>)| {
                update(merge, &|m| {
                    m.criteria = rows.clone();
                    m.logic = logic.clone();
                })
            });
            view! {
                <p class="sub">"Checked again whenever the contact changes"</p>
                <CriteriaEditor criteria=rows logic set=set_criteria steps scope=name.get_value()/>
            }
        });
        let unsubscribed = (kind == "unsubscribed").then(|| view! { <p class="sub">"From email, SMS or everything"</p> });
        view! { {step} {url} {custom} {machine} {criteria} {unsubscribed} }
    };
    view! {
        <fieldset class="matcher" data-matcher=n data-kind=move || kind.get()>
            <legend>{if goal { "The event" } else if i == 0 { "Wait for" } else { "…or" }}</legend>
            <div class="matcher-head">
                <select name="matcher-kind" aria-label=label("kind")
                    on:change=move |ev| { let kind = event_target_value(&ev); update(None, &|m| *m = with_kind(m, &kind)) }>
                    {kinds}
                </select>
                {(!goal).then(|| view! {
                    <button type="button" class="remove" aria-label=format!("Remove matcher {n}") on:click=move |_| {
                        let mut list = matchers.get_untracked();
                        if i < list.len() {
                            list.remove(i);
                            set.run((list, None));
                        }
                    }>"×"</button>
                })}
            </div>
            {details}
        </fieldset>
    }
    .into_any()
}

/// Rows of field / operator / value, and how they combine (all, any, or
/// custom logic, whose parse error is shown as it is typed). Engagement
/// operators (opened, clicked, replied, …) name no field: their row picks
/// a message step of the flow (or any), a channel, or an event name.
#[component]
fn CriteriaEditor(
    criteria: Signal<Vec<Criterion>>,
    logic: Signal<Option<Logic>>,
    set: Callback<(Vec<Criterion>, Option<Logic>, Option<String>)>,
    /// The flow's message steps, `(id, shown name)`, for engagement operators.
    steps: Signal<Vec<(String, String)>>,
    /// Only field operators (criteria over an event's properties).
    #[prop(optional)]
    fields_only: bool,
    /// Whose criteria, when one form holds several lists (`Matcher 1`):
    /// it begins each control's accessible name.
    #[prop(optional, into)]
    scope: String,
) -> impl IntoView {
    let scope = StoredValue::new(scope);
    let combine = move |what: &str| match scope.get_value() {
        scope if scope.is_empty() => what.to_owned(),
        scope => format!("{scope}: {}", what.to_lowercase()),
    };
    let add = move |_| {
        let mut rows = criteria.get_untracked();
        rows.push(new_criterion());
        set.run((rows, logic.get_untracked().or(Some(Logic::All)), None));
    };
    let logic_kind = move || match logic.get() {
        None | Some(Logic::All) => "all",
        Some(Logic::Any) => "any",
        Some(Logic::Custom(_)) => "custom",
    };
    let custom_text = move || match logic.get() {
        Some(Logic::Custom(text)) => text,
        _ => String::new(),
    };
    let logic_error = move || match logic.get() {
        Some(Logic::Custom(text)) => LogicExpr::parse(&text, criteria.with(Vec::len)).err().map(|err| err.to_string()),
        _ => None,
    };
    let choose_logic = move |ev: leptos::ev::Event| {
        let rows = criteria.get_untracked();
        let logic = match event_target_value(&ev).as_str() {
            "any" => Logic::Any,
            "custom" => Logic::Custom((1..=rows.len().max(1)).map(|n| n.to_string()).collect::<Vec<_>>().join(" AND ")),
            _ => Logic::All,
        };
        set.run((rows, Some(logic), None));
    };
    let what = if fields_only { "+ Add a property condition" } else { "+ Add criterion" };
    view! {
        <div class="criteria">
            <For each=move || 0..criteria.with(Vec::len) key=|i| *i
                children=move |i| view! { <CriterionRow i criteria logic set steps fields_only scope=scope.get_value()/> }/>
            <button type="button" class="add" on:click=add>{what}</button>
            {(!fields_only).then(|| view! {
                <label class="field">"Combine"
                    <select name="logic" aria-label=combine("Combine") on:change=choose_logic>
                        {options(
                            pairs(&[("all", "All must match"), ("any", "Any may match"), ("custom", "Custom logic")]),
                            Signal::derive(move || logic_kind().to_owned()),
                        )}
                    </select>
                </label>
                <Show when=move || logic_kind() == "custom">
                    <label class="field">"Custom logic"
                        <input type="text" name="custom-logic" placeholder="1 AND (2 OR NOT 3)" prop:value=custom_text
                            aria-label=combine("Custom logic")
                            class:invalid=move || logic_error().is_some()
                            on:input=move |ev| set.run((criteria.get_untracked(), Some(Logic::Custom(event_target_value(&ev))), Some("logic".into())))/>
                    </label>
                    {move || logic_error().map(|message| view! { <p class="field-error" role="alert">{message}</p> })}
                </Show>
            })}
        </div>
    }
    .into_any()
}

/// One criterion: a field, the operator and a value; or, for engagement
/// operators, the message (with a link's URL part and whether machines
/// count), the channel, or the event name and how recent.
#[component]
fn CriterionRow(
    i: usize,
    criteria: Signal<Vec<Criterion>>,
    logic: Signal<Option<Logic>>,
    set: Callback<(Vec<Criterion>, Option<Logic>, Option<String>)>,
    steps: Signal<Vec<(String, String)>>,
    fields_only: bool,
    scope: String,
) -> impl IntoView {
    let n = i + 1;
    let noun = if fields_only { "property" } else { "criterion" };
    let name = StoredValue::new(if scope.is_empty() { format!("Criterion {n}") } else { format!("{scope}: {noun} {n}") });
    let label = move |what: &str| format!("{} {what}", name.get_value());
    let update = move |merge: Option<String>, edit: &dyn Fn(&mut Criterion)| {
        let mut rows = criteria.get_untracked();
        if let Some(row) = rows.get_mut(i) {
            edit(row);
            set.run((rows, logic.get_untracked(), merge));
        }
    };
    let row = move || criteria.with(|c| c.get(i).cloned());
    let shape = Memo::new(move |_| criteria.with(|c| c.get(i).map(|c| criterion_shape(&c.op)).unwrap_or(CriterionShape::Field)));
    let op = Signal::derive(move || criteria.with(|c| c.get(i).map(|c| c.op.as_str().to_owned()).unwrap_or_default()));
    let value = move || criteria.with(|c| c.get(i).map(value_text).unwrap_or_default());
    let operators = {
        let group = |engagement: bool| -> Vec<(String, String)> {
            Operator::ALL
                .iter()
                .filter(|op| op.is_engagement() == engagement)
                .map(|op| (op.as_str().to_owned(), op.as_str().replace('_', " ")))
                .collect()
        };
        if fields_only {
            options(group(false), op).into_any()
        } else {
            view! {
                <optgroup label="A contact field">{options(group(false), op)}</optgroup>
                <optgroup label="What the contact did">{options(group(true), op)}</optgroup>
            }
            .into_any()
        }
    };
    let set_value = move |text: String| {
        move |c: &mut Criterion| c.value = optional_text(&text).map(Value::String)
    };
    // The controls after the operator: redrawn when the kind of operator
    // changes, not as its values are typed.
    let controls = move || match shape.get() {
        CriterionShape::Field => view! {
            <input type="text" name="value" placeholder="value" aria-label=label("value")
                class:hidden=move || row().is_some_and(|c| !c.op.takes_value())
                prop:value=value
                on:input=move |ev| {
                    let text = event_target_value(&ev);
                    update(Some(format!("criteria{i}.value")), &|c| c.value = value_from_text(&c.op, &text))
                }/>
        }
        .into_any(),
        CriterionShape::Step { .. } => {
            let current = Signal::derive(value);
            view! {
                <select name="value" aria-label=label("message") on:change=move |ev| update(None, &set_value(event_target_value(&ev)))>
                    {move || options(step_choices(&steps.get(), &current.get(), "any", "any message"), current)}
                </select>
            }
            .into_any()
        }
        CriterionShape::Channel => {
            let current = Signal::derive(value);
            view! {
                <select name="value" aria-label=label("channel") on:change=move |ev| update(None, &set_value(event_target_value(&ev)))>
                    {move || {
                        let mut choices = pairs(&[("email", "email"), ("sms", "SMS"), ("all", "all channels")]);
                        let now = current.get();
                        if !now.is_empty() && !choices.iter().any(|(v, _)| *v == now) {
                            choices.push((now.clone(), now));
                        }
                        options(choices, current)
                    }}
                </select>
            }
            .into_any()
        }
        CriterionShape::Event => view! {
            <input type="text" name="value" placeholder="event name" aria-label=label("event name")
                prop:value=value
                on:input=move |ev| {
                    let text = event_target_value(&ev);
                    update(Some(format!("criteria{i}.value")), &set_value(text))
                }/>
        }
        .into_any(),
    };
    // What some engagement operators take besides: below the row.
    let extra = move || match shape.get() {
        CriterionShape::Step { url, machine } => Some(view! {
            <div class="extra">
                {url.then(|| view! {
                    <label class="inline">"link contains"
                        <input type="text" name="url_contains" placeholder="any link" aria-label=label("link contains")
                            prop:value=move || row().and_then(|c| c.url_contains).unwrap_or_default()
                            on:input=move |ev| {
                                let text = event_target_value(&ev);
                                update(Some(format!("criteria{i}.url")), &|c| c.url_contains = optional_text(&text))
                            }/>
                    </label>
                })}
                {machine.then(|| view! {
                    <label class="check small">
                        <input type="checkbox" name="include_machine" aria-label=label("counts machine opens and clicks")
                            prop:checked=move || row().is_some_and(|c| c.include_machine)
                            on:change=move |ev| { let on = event_target_checked(&ev); update(None, &|c| c.include_machine = on) }/>
                        "counts machine opens and clicks"
                    </label>
                })}
            </div>
        }
        .into_any()),
        CriterionShape::Event => {
            let amount = Signal::derive(move || row().and_then(|c| c.within).map(|d| d.amount));
            let unit = Signal::derive(move || row().and_then(|c| c.within).map(|d| d.unit.to_string()).unwrap_or_default());
            let set_within = Callback::new(move |(amount, unit): (Option<u64>, String)| {
                update(Some(format!("criteria{i}.within")), &|c| c.within = amount.map(|amount| Duration { amount, unit: TimeUnit::from(unit.clone()) }))
            });
            Some(view! {
                <div class="extra">
                    <DurationPicker label="Within the last (empty: ever)" aria=label("within") amount unit set=set_within/>
                </div>
            }
            .into_any())
        }
        CriterionShape::Field | CriterionShape::Channel => None,
    };
    view! {
        <div class="criterion" class:engagement=move || shape.get() != CriterionShape::Field data-row=n>
            <span class="number">{n}</span>
            {move || (shape.get() == CriterionShape::Field).then(|| view! {
                <input type="text" name="field" placeholder=if fields_only { "property, e.g. plan" } else { "field, e.g. country" } aria-label=label("field")
                    prop:value=move || row().map(|c| c.field).unwrap_or_default()
                    on:input=move |ev| { let text = event_target_value(&ev); update(Some(format!("criteria{i}.field")), &|c| c.field = text.clone()) }/>
            })}
            <select name="op" aria-label=label("operator")
                on:change=move |ev| { let op = Operator::from(event_target_value(&ev)); update(None, &|c| *c = with_operator(c, op.clone())) }>
                {operators}
            </select>
            {controls}
            <button type="button" class="remove" aria-label=format!("Remove {}", name.get_value().to_lowercase().replace(": ", " ")) on:click=move |_| {
                let mut rows = criteria.get_untracked();
                if i < rows.len() {
                    rows.remove(i);
                    set.run((rows, logic.get_untracked(), None));
                }
            }>"×"</button>
            {extra}
        </div>
    }
    .into_any()
}

/// A message step choice: `(none_value, none_text)` first, then the flow's
/// message steps, then the current value if it names none of them (so the
/// choice shows what the document says; the validator says what is wrong).
fn step_choices(steps: &[(String, String)], current: &str, none_value: &str, none_text: &str) -> Vec<(String, String)> {
    let mut choices = vec![(none_value.to_owned(), none_text.to_owned())];
    choices.extend(steps.iter().cloned());
    if !current.is_empty() && !choices.iter().any(|(v, _)| v == current) {
        choices.push((current.to_owned(), format!("{current} (not a message step)")));
    }
    choices
}

fn value_text(criterion: &Criterion) -> String {
    match &criterion.value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect::<Vec<_>>().join(", ")
        }
        Some(other) => other.to_string(),
    }
}

/// `in` and `not in` take a comma-separated list; the rest take the text.
fn value_from_text(op: &Operator, text: &str) -> Option<Value> {
    if text.trim().is_empty() {
        return None;
    }
    Some(match op {
        Operator::In | Operator::NotIn => {
            Value::Array(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| Value::String(t.into())).collect())
        }
        _ => Value::String(text.to_owned()),
    })
}

#[component]
fn GuardEditor(f: Fields) -> impl IntoView {
    let guard = move || f.step.with(|s| s.as_ref().and_then(|s| s.guard.clone()));
    let has_guard = move || guard().is_some();
    let toggle = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        f.edit(None, |s| {
            s.guard = on.then(|| Guard { criteria: Vec::new(), logic: Some(Logic::All), when_unmet: Some(WhenUnmet::Skip), hold_timeout: None })
        });
    };
    let criteria = Signal::derive(move || guard().map(|g| g.criteria).unwrap_or_default());
    let logic = Signal::derive(move || guard().and_then(|g| g.logic));
    let set = Callback::new(move |(criteria, logic, merge): (Vec<Criterion>, Option<Logic>, Option<String>)| {
        let merge = merge.map(|m| format!("guard.{m}"));
        f.edit(merge.as_deref(), |s| {
            if let Some(guard) = s.guard.as_mut() {
                guard.criteria = criteria;
                guard.logic = logic;
            }
        })
    });
    let holds = move || guard().is_some_and(|g| g.when_unmet == Some(WhenUnmet::Hold));
    let timeout_amount = Signal::derive(move || guard().and_then(|g| g.hold_timeout).map(|d| d.amount));
    let timeout_unit = Signal::derive(move || guard().and_then(|g| g.hold_timeout).map(|d| d.unit.to_string()).unwrap_or_default());
    let set_timeout = Callback::new(move |(amount, unit): (Option<u64>, String)| {
        f.edit(Some("guard.hold_timeout"), |s| {
            if let Some(guard) = s.guard.as_mut() {
                guard.hold_timeout = amount.map(|amount| Duration { amount, unit: TimeUnit::from(unit) });
            }
        })
    });
    view! {
        <section class="guard">
            <label class="check"><input type="checkbox" name="guarded" prop:checked=has_guard on:change=toggle/>
                " Only run this step when…"</label>
            <Show when=has_guard>
                <CriteriaEditor criteria logic set steps=message_steps(f.state)/>
                <label class="field">"When not met"
                    <select name="when_unmet"
                        on:change=move |ev| {
                            let hold = event_target_value(&ev) == "hold";
                            f.edit(None, |s| if let Some(g) = s.guard.as_mut() {
                                g.when_unmet = Some(if hold { WhenUnmet::Hold } else { WhenUnmet::Skip });
                                if !hold { g.hold_timeout = None; }
                            })
                        }>
                        {options(
                            pairs(&[("skip", "Skip the step"), ("hold", "Hold until met")]),
                            Signal::derive(move || if holds() { "hold".to_owned() } else { "skip".to_owned() }),
                        )}
                    </select>
                </label>
                <Show when=holds>
                    <DurationPicker label="Give up after" amount=timeout_amount unit=timeout_unit set=set_timeout/>
                </Show>
            </Show>
        </section>
    }
    .into_any()
}

/// The tags every contact has, for the merge-tag help.
const MERGE_TAGS: &[(&str, &str)] = &[
    ("first_name", "first name (a custom field)"),
    ("email", "email address"),
    ("mobile", "mobile number"),
    ("timezone", "time zone"),
    ("owner", "the record owner"),
];

/// The contact the email preview is written for.
fn sample_contact() -> Contact {
    let mut contact = Contact {
        email: Some("ada@example.com".into()),
        mobile: Some("+1 555 0100".into()),
        timezone: Some("Europe/London".into()),
        owner: Some("user:grace".into()),
        ..Contact::default()
    };
    for (field, value) in [("first_name", "Ada"), ("last_name", "Lovelace"), ("company", "Analytical Engines")] {
        contact.fields.insert(field.into(), Value::String(value.into()));
    }
    contact
}

#[component]
fn EmailForm(f: Fields) -> impl IntoView {
    // The engine's own merge: what the preview shows is what is sent.
    let contact = StoredValue::new(sample_contact());
    let preview_subject = move || contact.with_value(|c| render(&f.text("subject"), c, Escape::None));
    // The body is HTML: merged values are escaped, as when sent, and it is
    // shown in a sandboxed frame (no scripts, no forms, its own origin).
    let preview_body = move || contact.with_value(|c| render(&f.text("body"), c, Escape::Html));
    view! {
        {text_field(f, "subject", "Subject", "Welcome, {{first_name}}!")}
        {text_area(f, "body", "Body", "Hi {{first_name}}, …")}
        <MergeTags/>
        {choice(f, "activation", "Sent", &[("automatic", "Automatically"), ("manual", "By a person (manual)")])}
        {choice(f, "timing", "Timing", &[
            ("immediate", "Immediately"),
            ("business_hours_weekday", "Business hours, weekdays"),
            ("business_hours_any_day", "Business hours, any day"),
        ])}
        {choice(f, "if_no_email", "If the contact has no email", &[("skip", "Skip this step"), ("exit", "Leave the flow")])}
        {choice(f, "when_capped", "If contact pressure holds it (caps, quiet hours)", &[("wait", "Wait for the next allowed moment"), ("skip", "Skip this step")])}
        <section class="email-preview" aria-label="Email preview">
            <h3>"Preview for a sample contact (Ada)"</h3>
            <p class="subject">{preview_subject}</p>
            <iframe class="body" title="Email body preview" sandbox="" srcdoc=preview_body></iframe>
        </section>
    }
    .into_any()
}

#[component]
fn MergeTags() -> impl IntoView {
    view! {
        <details class="merge-tags">
            <summary>"Merge tags"</summary>
            <p class="hint">
                "Put a contact's details in the text. Any custom field works, like " <code>"{{company}}"</code>
                "; a missing one is left empty unless you give a fallback: " <code>"{{ first_name | default(\"there\") }}"</code> "."
                " Conditions and lists work too: " <code>"{% if vip %}…{% endif %}"</code> ", "
                <code>"{% for item in interests %}{{ item }} {% endfor %}"</code> ", dates: " <code>"{{ renewal | date(\"%d %B %Y\") }}"</code> "."
            </p>
            <ul>{MERGE_TAGS.iter().map(|(tag, what)| view! { <li><code>{format!("{{{{{tag}}}}}")}</code> " " {*what}</li> }).collect_view()}</ul>
        </details>
    }
    .into_any()
}

#[component]
fn SmsForm(f: Fields) -> impl IntoView {
    let counter = move || {
        let length = measure(&f.text("text"));
        let encoding = match length.encoding {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "Unicode (UCS-2)",
        };
        let plural = if length.segments == 1 { "" } else { "s" };
        format!("{} characters · {} segment{plural} · {encoding} ({} fit in one)", length.units, length.segments, length.single_limit)
    };
    let many = move || measure(&f.text("text")).segments > 1;
    view! {
        {text_area(f, "text", "Text", "Hi {{first_name}}, …")}
        <p class="sms-counter" class:warning=many aria-live="polite">{counter}</p>
        <MergeTags/>
        {choice(f, "if_no_mobile", "If the contact has no mobile number", &[("skip", "Skip this step"), ("exit", "Leave the flow")])}
        {choice(f, "when_capped", "If contact pressure holds it (caps, quiet hours)", &[("wait", "Wait for the next allowed moment"), ("skip", "Skip this step")])}
    }
    .into_any()
}

const CHANGE_OPS: [&str; 6] = ["set", "clear", "increment", "decrement", "append", "remove"];

#[component]
fn UpdateContactForm(f: Fields) -> impl IntoView {
    let changes = Signal::derive(move || {
        f.step.with(|s| s.as_ref().and_then(|s| read_settings::<UpdateContactSettings>(s).ok()).unwrap_or_default().changes)
    });
    let write = move |rows: Vec<FieldChange>, merge: Option<String>| {
        f.edit(merge.as_deref(), |s| {
            s.settings.insert("changes".into(), serde_json::to_value(&rows).unwrap_or_default());
        })
    };
    let update = move |i: usize, merge: Option<String>, edit: &dyn Fn(&mut FieldChange)| {
        let mut rows = changes.get_untracked();
        if let Some(row) = rows.get_mut(i) {
            edit(row);
            write(rows, merge);
        }
    };
    view! {
        <h3>"Change these fields"</h3>
        <div class="changes">
            <For each=move || 0..changes.with(Vec::len) key=|i| *i let:i>
                <div class="change-row" data-row=i + 1>
                    <input type="text" name="field" placeholder="field" aria-label=format!("Change {} field", i + 1)
                        prop:value=move || changes.with(|c| c.get(i).map(|c| c.field.clone()).unwrap_or_default())
                        on:input=move |ev| { let text = event_target_value(&ev); update(i, Some(format!("changes{i}.field")), &|c| c.field = text.clone()) }/>
                    <select name="op" aria-label=format!("Change {} operation", i + 1)
                        on:change=move |ev| { let op = event_target_value(&ev); update(i, None, &|c| c.op = op.clone()) }>
                        {options(
                            CHANGE_OPS.iter().map(|op| ((*op).to_owned(), (*op).to_owned())).collect(),
                            Signal::derive(move || changes.with(|c| c.get(i).map(|c| c.op.clone()).unwrap_or_default())),
                        )}
                    </select>
                    <input type="text" name="value" placeholder="value or {{tag}}" aria-label=format!("Change {} value", i + 1)
                        class:hidden=move || changes.with(|c| c.get(i).is_some_and(|c| c.op == "clear"))
                        prop:value=move || changes.with(|c| c.get(i).and_then(|c| c.value.as_ref()).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default())
                        on:input=move |ev| {
                            let text = event_target_value(&ev);
                            update(i, Some(format!("changes{i}.value")), &|c| c.value = (!text.is_empty()).then(|| Value::String(text.clone())))
                        }/>
                    <button type="button" class="remove" aria-label=format!("Remove change {}", i + 1) on:click=move |_| {
                        let mut rows = changes.get_untracked();
                        if i < rows.len() { rows.remove(i); write(rows, None); }
                    }>"×"</button>
                </div>
            </For>
            <button type="button" class="add" on:click=move |_| {
                let mut rows = changes.get_untracked();
                rows.push(FieldChange { field: String::new(), op: "set".into(), value: None });
                write(rows, None);
            }>"+ Add a change"</button>
        </div>
    }
    .into_any()
}

/// Where each output leads: the keyboard way to connect steps.
#[component]
fn NextSteps(f: Fields) -> impl IntoView {
    let state = f.state;
    let outputs = move || f.step.with(|s| s.as_ref().map(|s| ports(s).into_iter().map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default());
    // The steps an output may lead to, shared by every output's choice and
    // rebuilt only when a name or the set of steps changes (not when a step
    // moves): a big flow's list is a thousand options.
    let choices = Memo::new(move |_| {
        let id = f.id.get_value();
        state.doc.with(|d| {
            d.steps
                .iter()
                .filter(|s| s.id != id && s.kind != StepKind::Start)
                .map(|s| (s.id.clone(), format!("{} ({})", s.display_name(), s.id)))
                .collect::<Vec<_>>()
        })
    });
    (move || {
        let outputs = outputs();
        if outputs.is_empty() {
            return None;
        }
        let id = f.id.get_value();
        let rows = outputs
            .into_iter()
            .map(|port| {
                let current = {
                    let (id, port) = (id.clone(), port.clone());
                    Memo::new(move |_| state.doc.with(|d| d.edges.iter().find(|e| e.from == id && e.port == port).map(|e| e.to.clone()).unwrap_or_default()))
                };
                // Until the choice is reached (pointer over it, or focus), it
                // holds only the current step: the browser measures every
                // option's text, and a big flow's list is a thousand.
                let reached = RwSignal::new(false);
                let reach = move || {
                    if !reached.get_untracked() {
                        reached.set(true);
                    }
                };
                // Plain options, the current one marked: the list is drawn
                // again when the choice or the choices change, not watched
                // option by option.
                let others = move || {
                    let current = current.get();
                    let all = reached.get();
                    choices.with(|choices| {
                        choices
                            .iter()
                            .filter(|(value, _)| all || *value == current)
                            .map(|(value, text)| view! { <option value=value.clone() selected=*value == current>{text.clone()}</option> })
                            .collect_view()
                    })
                };
                let choose = {
                    let (id, port) = (id.clone(), port.clone());
                    move |ev: leptos::ev::Event| {
                        let to = event_target_value(&ev);
                        let old = state.doc.with_untracked(|d| d.edges.iter().find(|e| e.from == id && e.port == port).cloned());
                        let mut changes: Vec<Change> = old.into_iter().map(Change::disconnect).collect();
                        if !to.is_empty() {
                            changes.push(Change::Connect(Edge { from: id.clone(), port: port.clone(), to }));
                        }
                        state.change(Change::Batch(changes));
                    }
                };
                let label = if port == "next" { "Then go to".to_owned() } else { format!("“{}” goes to", port.replace('_', " ")) };
                view! {
                    <label class="field">{label}
                        <select name=format!("next-{port}") on:change=choose on:focus=move |_| reach() on:pointerenter=move |_| reach()>
                            <option value="" prop:selected=move || current.with(String::is_empty)>"— nowhere (participants end here) —"</option>
                            {others}
                        </select>
                    </label>
                }
            })
            .collect_view();
        Some(view! { <section class="next-steps"><h3>"Next step"</h3>{rows}</section> })
    })
    .into_any()
}

/// The settings as JSON: every setting of every kind, editable. Text that
/// does not parse is kept in the box (with the reason) and not applied.
/// Rows of name and text editing an object setting (webhook headers, a
/// data append's mapping). Rows with an empty name are not written.
#[component]
fn PairsEditor(f: Fields, key: &'static str, legend: &'static str, left: &'static str, right: &'static str) -> impl IntoView {
    let rows = move || -> Vec<(String, String)> {
        f.step.with(|s| {
            s.as_ref()
                .and_then(|s| s.settings.get(key)?.as_object().cloned())
                .map(|map| map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
                .unwrap_or_default()
        })
    };
    let write = move |rows: Vec<(String, String)>| {
        let map: serde_json::Map<String, Value> =
            rows.into_iter().filter(|(k, _)| !k.trim().is_empty()).map(|(k, v)| (k.trim().to_owned(), Value::String(v))).collect();
        f.set(key, (!map.is_empty()).then_some(Value::Object(map)), false);
    };
    // A row being typed that has no name yet lives here until it has one.
    let draft = RwSignal::new(None::<(String, String)>);
    view! {
        <fieldset class="pairs" data-setting=key>
            <legend>{legend}</legend>
            {move || rows().into_iter().enumerate().map(|(i, (name, value))| view! {
                <div class="pair">
                    <input type="text" aria-label=format!("{left} {}", i + 1) prop:value=name.clone()
                        on:change=move |ev| {
                            let mut all = rows();
                            all[i].0 = event_target_value(&ev);
                            write(all);
                        }/>
                    <input type="text" aria-label=format!("{right} {}", i + 1) prop:value=value
                        on:change=move |ev| {
                            let mut all = rows();
                            all[i].1 = event_target_value(&ev);
                            write(all);
                        }/>
                    <button type="button" class="icon" aria-label=format!("Remove {left} {}", i + 1)
                        on:click=move |_| {
                            let mut all = rows();
                            all.remove(i);
                            write(all);
                        }>"×"</button>
                </div>
            }).collect_view()}
            <div class="pair new">
                <input type="text" aria-label=format!("New {left}") placeholder=left
                    prop:value=move || draft.with(|d| d.as_ref().map(|d| d.0.clone()).unwrap_or_default())
                    on:input=move |ev| draft.update(|d| d.get_or_insert_default().0 = event_target_value(&ev))/>
                <input type="text" aria-label=format!("New {right}") placeholder=right
                    prop:value=move || draft.with(|d| d.as_ref().map(|d| d.1.clone()).unwrap_or_default())
                    on:input=move |ev| draft.update(|d| d.get_or_insert_default().1 = event_target_value(&ev))/>
                <button type="button" on:click=move |_| {
                    if let Some((name, value)) = draft.get_untracked().filter(|(name, _)| !name.trim().is_empty()) {
                        let mut all = rows();
                        all.retain(|(k, _)| k != name.trim());
                        all.push((name, value));
                        write(all);
                        draft.set(None);
                    }
                }>"Add"</button>
            </div>
        </fieldset>
    }
    .into_any()
}

/// A webhook's body: JSON, checked as it is typed; merge tags go inside strings.
#[component]
fn BodyEditor(f: Fields) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let shown = move || {
        f.step.with(|s| s.as_ref().and_then(|s| s.settings.get("body")).map(|b| serde_json::to_string_pretty(b).unwrap_or_default()).unwrap_or_default())
    };
    view! {
        <label class="field">"Body (JSON; merge tags like {{ email }} inside strings)"
            <textarea name="body" rows="5" prop:value=shown placeholder="{\"email\": \"{{ email }}\"}"
                on:change=move |ev| {
                    let text = event_target_value(&ev);
                    if text.trim().is_empty() {
                        error.set(None);
                        f.set("body", None, false);
                        return;
                    }
                    match serde_json::from_str::<Value>(&text) {
                        Ok(body) => { error.set(None); f.set("body", Some(body), false); }
                        Err(err) => error.set(Some(format!("Not JSON yet: {err}. Nothing was changed."))),
                    }
                }></textarea>
        </label>
        {move || error.get().map(|message| view! { <p class="field-error" role="alert">{message}</p> })}
    }
    .into_any()
}

/// A split's branches: a port name and a percentage each, with the total.
#[component]
fn SplitForm(f: Fields) -> impl IntoView {
    let branches = move || -> Vec<(String, u64)> {
        f.step.with(|s| {
            s.as_ref()
                .and_then(|s| s.settings.get("branches")?.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|b| (b["port"].as_str().unwrap_or_default().to_owned(), b["percent"].as_u64().unwrap_or(0)))
                .collect()
        })
    };
    let write = move |rows: Vec<(String, u64)>| {
        let list: Vec<Value> = rows.into_iter().map(|(port, percent)| serde_json::json!({"port": port, "percent": percent})).collect();
        f.set("branches", Some(Value::Array(list)), false);
    };
    let total = move || branches().iter().map(|(_, p)| p).sum::<u64>();
    view! {
        <fieldset class="pairs split" data-setting="branches">
            <legend>"Branches (each is an output port)"</legend>
            {move || branches().into_iter().enumerate().map(|(i, (port, percent))| view! {
                <div class="pair">
                    <input type="text" aria-label=format!("Branch {} port", i + 1) prop:value=port
                        on:change=move |ev| {
                            let name = event_target_value(&ev).trim().to_owned();
                            let mut all = branches();
                            if !name.is_empty() && !all.iter().any(|(p, _)| *p == name) {
                                all[i].0 = name;
                                write(all);
                            }
                        }/>
                    <input type="number" min="0" max="100" aria-label=format!("Branch {} percent", i + 1) prop:value=percent.to_string()
                        on:change=move |ev| {
                            if let Ok(percent) = event_target_value(&ev).trim().parse::<u64>() {
                                let mut all = branches();
                                all[i].1 = percent.min(100);
                                write(all);
                            }
                        }/>
                    <span>"%"</span>
                    <button type="button" class="icon" aria-label=format!("Remove branch {}", i + 1)
                        on:click=move |_| {
                            let mut all = branches();
                            all.remove(i);
                            write(all);
                        }>"×"</button>
                </div>
            }).collect_view()}
            <button type="button" on:click=move |_| {
                let mut all = branches();
                let port = (b'a'..=b'z').map(|c| (c as char).to_string()).find(|p| !all.iter().any(|(q, _)| q == p)).unwrap_or_else(|| format!("b{}", all.len() + 1));
                all.push((port, 0));
                write(all);
            }>"Add a branch"</button>
            <p class=move || if total() == 100 { "hint" } else { "field-error" } data-total=total>
                "Total " {total} "%" {move || (total() != 100).then_some(": the branches should add up to 100%.")}
            </p>
        </fieldset>
    }
    .into_any()
}

/// When a scheduled callback is due: after a delay, or at a date and time.
#[component]
fn CallbackForm(f: Fields) -> impl IntoView {
    let at_time = move || f.step.with(|s| s.as_ref().is_some_and(|s| s.settings.contains_key("at") && !s.settings.contains_key("after")));
    let amount = Signal::derive(move || f.step.with(|s| s.as_ref().and_then(|s| s.settings.get("after")?.get("amount")?.as_u64())));
    let unit = Signal::derive(move || {
        f.step.with(|s| s.as_ref().and_then(|s| s.settings.get("after")?.get("unit")?.as_str().map(str::to_owned)).unwrap_or_default())
    });
    let set = Callback::new(move |(amount, unit): (Option<u64>, String)| {
        f.edit(Some("after"), |s| {
            s.settings.remove("at");
            match amount {
                Some(n) => s.settings.insert("after".into(), serde_json::json!({"amount": n, "unit": unit})),
                None => s.settings.remove("after"),
            };
        })
    });
    view! {
        <label class="field">"Due"
            <select name="callback-timing" on:change=move |ev| {
                let at = event_target_value(&ev) == "at";
                f.edit(None, |s| {
                    if at {
                        s.settings.remove("after");
                        s.settings.entry("at").or_insert(Value::String(String::new()));
                    } else {
                        s.settings.remove("at");
                    }
                });
            }>
                <option value="after" prop:selected=move || !at_time()>"After a delay"</option>
                <option value="at" prop:selected=at_time>"At a date and time"</option>
            </select>
        </label>
        {move || if at_time() {
            text_field(f, "at", "At (date and time)", "2026-12-01T09:00:00Z").into_any()
        } else {
            view! { <DurationPicker label="Call back after" amount unit set/> }.into_any()
        }}
    }
    .into_any()
}

#[component]
fn JsonSettings(f: Fields, open: bool) -> impl IntoView {
    let pretty = move || f.step.with_untracked(|s| s.as_ref().map(|s| serde_json::to_string_pretty(&s.settings).unwrap_or_default()).unwrap_or_default());
    let text = RwSignal::new(pretty());
    let error = RwSignal::new(None::<String>);
    // Follow edits made elsewhere (a form field, undo) unless the box holds
    // exactly those settings already.
    // A step just deleted has nothing to show, and this box is about to
    // go: writing its signals now would wake its bindings after they are
    // disposed (the page's script panicked on every deletion of a step
    // whose box was open).
    Effect::new(move |_| {
        let Some(settings) = f.step.with(|s| s.as_ref().map(|s| s.settings.clone())) else { return };
        let same = serde_json::from_str::<Map<String, Value>>(&text.get_untracked()).ok().as_ref() == Some(&settings);
        if !same {
            text.set(pretty());
            error.set(None);
        }
    });
    view! {
        <details class="json-settings" open=open>
            <summary>"Settings as JSON"</summary>
            <textarea name="settings-json" rows="8" spellcheck="false" aria-label="Settings as JSON"
                prop:value=move || text.get()
                on:input=move |ev| {
                    let typed = event_target_value(&ev);
                    text.set(typed.clone());
                    match serde_json::from_str::<Value>(&typed) {
                        Ok(Value::Object(settings)) => {
                            error.set(None);
                            f.edit(Some("settings-json"), |s| s.settings = settings);
                        }
                        Ok(_) => error.set(Some("Settings must be a JSON object, like {\"list\": \"VIP\"}.".into())),
                        Err(err) => error.set(Some(format!("Not applied: {err}"))),
                    }
                }
                on:blur=move |_| f.state.seal()></textarea>
            {move || error.get().map(|message| view! { <p class="field-error" role="alert">{message}</p> })}
        </details>
    }
    .into_any()
}
