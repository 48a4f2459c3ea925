//! The contact-pressure settings page (DESIGN §13; admins): the one
//! policy every flow's sends obey, as rows of caps and a quiet-hours
//! section. The form holds what was typed; on save it becomes a
//! `core::pressure::Policy`, which the server checks with the core's
//! `problems()` and refuses whole, answering each problem, which is shown
//! in a summary and beside its field. Nothing here decides what the
//! policy means: the engine does, at send time.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::error_text;
use crate::core::flow::{Duration, TimeUnit};
use crate::core::pressure::{Cap, Policy, QuietHours, CHANNELS};
use crate::pages::ErrorNote;
use crate::pressure_api::{pressure_policy, PressureError, PressureSettings, SavePressure};

/// A channel as the page names it.
fn channel_label(channel: &str) -> &str {
    match channel {
        "email" => "Email",
        "sms" => "SMS",
        "call" => "Automatic calls",
        other => other,
    }
}

/// One cap as typed; read into a [`Cap`] when saved.
#[derive(Clone, Copy)]
struct CapRow {
    /// Stable while the page is open: element ids and the row's identity.
    key: usize,
    channel: RwSignal<String>,
    max: RwSignal<String>,
    amount: RwSignal<String>,
    unit: RwSignal<String>,
}

/// The whole form's state.
#[derive(Clone, Copy)]
struct PolicyForm {
    caps: RwSignal<Vec<CapRow>>,
    next_key: StoredValue<usize>,
    quiet: RwSignal<bool>,
    quiet_channels: RwSignal<Vec<String>>,
    from: RwSignal<String>,
    to: RwSignal<String>,
}

/// Quiet hours' defaults when turned on: the US rule (TCPA) for texts and calls.
const QUIET_DEFAULT: (&[&str], &str, &str) = (&["sms", "call"], "21:00", "08:00");

impl PolicyForm {
    fn new(policy: &Policy) -> PolicyForm {
        let form = PolicyForm {
            caps: RwSignal::new(Vec::new()),
            next_key: StoredValue::new(0),
            quiet: RwSignal::new(policy.quiet_hours.is_some()),
            quiet_channels: RwSignal::new(match &policy.quiet_hours {
                Some(quiet) => quiet.channels.clone(),
                None => QUIET_DEFAULT.0.iter().map(|c| c.to_string()).collect(),
            }),
            from: RwSignal::new(policy.quiet_hours.as_ref().map_or(QUIET_DEFAULT.1.into(), |q| q.from.clone())),
            to: RwSignal::new(policy.quiet_hours.as_ref().map_or(QUIET_DEFAULT.2.into(), |q| q.to.clone())),
        };
        for cap in &policy.caps {
            form.push(&cap.channel, &cap.max.to_string(), &cap.per.amount.to_string(), cap.per.unit.as_str());
        }
        form
    }

    fn push(&self, channel: &str, max: &str, amount: &str, unit: &str) -> usize {
        let key = self.next_key.get_value();
        self.next_key.set_value(key + 1);
        let row = CapRow {
            key,
            channel: RwSignal::new(channel.into()),
            max: RwSignal::new(max.into()),
            amount: RwSignal::new(amount.into()),
            unit: RwSignal::new(unit.into()),
        };
        self.caps.update(|rows| rows.push(row));
        key
    }

    /// A new cap: one a day, on the first channel without a cap yet.
    fn add(&self) -> usize {
        let taken: Vec<String> = self.caps.with_untracked(|rows| rows.iter().map(|r| r.channel.get_untracked()).collect());
        let channel = CHANNELS.iter().find(|c| !taken.iter().any(|t| t == *c)).unwrap_or(&CHANNELS[0]);
        self.push(channel, "1", "1", TimeUnit::Days.as_str())
    }

    /// The policy the form says, or what keeps it from being one (in the
    /// core's `path: words` form, so they show where the server's do).
    fn policy(&self) -> Result<Policy, Vec<String>> {
        let mut problems = Vec::new();
        let whole = |text: String, path: String, problems: &mut Vec<String>| match text.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) if text.trim().is_empty() => {
                problems.push(format!("{path}: enter a number"));
                None
            }
            Err(_) => {
                problems.push(format!("{path}: “{text}” is not a whole number"));
                None
            }
        };
        let mut caps = Vec::new();
        for (i, row) in self.caps.get().iter().enumerate() {
            let max = whole(row.max.get(), format!("caps[{i}].max"), &mut problems);
            let max = max.and_then(|n| match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(format!("caps[{i}].max: {n} is more than any cap needs"));
                    None
                }
            });
            let amount = whole(row.amount.get(), format!("caps[{i}].per"), &mut problems);
            if let (Some(max), Some(amount)) = (max, amount) {
                caps.push(Cap { channel: row.channel.get(), max, per: Duration { amount, unit: TimeUnit::from(row.unit.get()) } });
            }
        }
        let quiet_hours = self.quiet.get().then(|| QuietHours {
            // In the page's order, whatever order they were ticked in.
            channels: CHANNELS.iter().filter(|c| self.quiet_channels.with(|on| on.iter().any(|o| o == *c))).map(|c| c.to_string()).collect(),
            from: self.from.get(),
            to: self.to.get(),
        });
        if quiet_hours.as_ref().is_some_and(|q| q.channels.is_empty()) {
            problems.push("quiet_hours.channels: choose the channels they hold, or turn quiet hours off".into());
        }
        if problems.is_empty() {
            Ok(Policy { caps, quiet_hours })
        } else {
            Err(problems)
        }
    }
}

/// `caps[1].max: words` as `Cap 2: words`; `quiet_hours.from: words` as
/// `Quiet hours: words`.
fn readable(problem: &str) -> String {
    let Some((path, words)) = problem.split_once(": ") else { return problem.to_owned() };
    if let Some(index) = path.strip_prefix("caps[").and_then(|rest| rest.split(']').next()).and_then(|i| i.parse::<usize>().ok()) {
        return format!("Cap {}: {words}", index + 1);
    }
    if path == "quiet_hours" || path.starts_with("quiet_hours.") {
        return format!("Quiet hours: {words}");
    }
    problem.to_owned()
}

/// The words of the problems at `path` exactly (`caps[0].max`), or under
/// it when `path` ends with `.` or `[`.
fn problems_at(problems: &[String], path: &str) -> Vec<String> {
    problems
        .iter()
        .filter_map(|p| p.split_once(": ").filter(|(at, _)| *at == path || (path.ends_with('.') && at.starts_with(path))))
        .map(|(_, words)| words.to_owned())
        .collect()
}

/// `2026-11-22T13:26:30.857Z` as `2026-11-22 13:26 UTC`.
fn when(timestamp: &str) -> String {
    timestamp.parse::<jiff::Timestamp>().map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|_| timestamp.to_owned())
}

#[component]
pub fn PressurePage() -> impl IntoView {
    let settings = Resource::new(|| (), |_| pressure_policy());
    view! {
        <Title text="Contact pressure"/>
        <section class="page pressure">
            <div class="page-head"><h1>"Contact pressure"</h1></div>
            <p class="hint">
                "One policy for every flow: how many messages a contact may get on each channel, and the hours when they get none. "
                "Like consent, it is checked when a step is about to send."
            </p>
            <Transition fallback=|| view! { <p class="loading">"Loading the policy…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(settings) => view! { <PolicyEditor settings/> }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn PolicyEditor(settings: PressureSettings) -> impl IntoView {
    let form = PolicyForm::new(&settings.policy);
    let save = ServerAction::<SavePressure>::new();
    // What is stored, to tell saved from edited; and who changed it.
    let stored = RwSignal::new(settings.policy);
    let changed = RwSignal::new((settings.updated_at, settings.updated_by));
    // Problems found before sending (numbers that are not numbers).
    let local = RwSignal::new(Vec::<String>::new());
    Effect::new(move || {
        if let Some(Ok(saved)) = save.value().get() {
            stored.set(saved.policy);
            changed.set((saved.updated_at, saved.updated_by));
        }
    });
    let problems = Memo::new(move |_| {
        let local = local.get();
        if !local.is_empty() {
            return local;
        }
        match save.value().get() {
            Some(Err(PressureError::Refused(problems))) => problems,
            _ => Vec::new(),
        }
    });
    let failure = move || match save.value().get() {
        Some(Err(PressureError::Failed(message))) => Some(message),
        _ => None,
    };
    // Problems name rows by position: once rows move, they are stale.
    let forget_problems = move || {
        local.set(Vec::new());
        if matches!(save.value().get_untracked(), Some(Err(PressureError::Refused(_)))) {
            save.value().set(None);
        }
    };
    let dirty = Memo::new(move |_| form.policy().ok().as_ref() != Some(&stored.get()));
    let summary = NodeRef::<leptos::html::Div>::new();
    // A refusal takes the keyboard to its summary, which reads it out.
    Effect::new(move || {
        if !problems.with(Vec::is_empty) {
            if let Some(summary) = summary.get() {
                let _ = summary.focus();
            }
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match untrack(|| form.policy()) {
            Ok(policy) => {
                local.set(Vec::new());
                save.dispatch(SavePressure { policy_json: serde_json::to_string(&policy).expect("policies serialize") });
            }
            Err(found) => local.set(found),
        }
    };
    let add_button = NodeRef::<leptos::html::Button>::new();
    // The row just added, whose channel takes the focus once it is there.
    let focus_row = RwSignal::new(None::<usize>);
    let add = move |_| {
        forget_problems();
        let key = form.add();
        focus_row.set(Some(key));
    };
    let remove = Callback::new(move |key: usize| {
        forget_problems();
        form.caps.update(|rows| rows.retain(|r| r.key != key));
        if let Some(button) = add_button.get_untracked() {
            let _ = button.focus();
        }
    });
    let status = move || {
        if save.pending().get() {
            "Saving…".to_owned()
        } else if dirty.get() {
            "Unsaved changes.".to_owned()
        } else if matches!(save.value().get(), Some(Ok(_))) {
            "Saved. It applies from the next send.".to_owned()
        } else {
            String::new()
        }
    };

    view! {
        <div class="pressure-layout">
            <form class="pressure-form" on:submit=submit novalidate=true data-form="pressure">
                {move || (!problems.with(Vec::is_empty)).then(|| view! {
                    <div class="notice error problems" role="alert" tabindex="-1" node_ref=summary>
                        <p><strong>"The policy was not saved."</strong> " Fix these and save again:"</p>
                        <ul>{problems.get().iter().map(|p| view! { <li>{readable(p)}</li> }).collect_view()}</ul>
                    </div>
                })}
                {move || failure().map(|message| view! { <ErrorNote message/> })}

                <fieldset class="panel caps">
                    <legend>"Frequency caps"</legend>
                    <p class="hint">
                        "At most so many messages of a channel per rolling window, counted across every flow. "
                        "Several caps on one channel all hold (for example 1 a day and 3 a week)."
                    </p>
                    {move || form.caps.with(Vec::is_empty).then(|| view! {
                        <p class="empty">"No caps: a contact may get any number of messages."</p>
                    })}
                    <ol class="cap-rows">
                        <For each=move || form.caps.get() key=|row| row.key children=move |row| view! {
                            <CapRowView row form problems=problems.into() remove focus_row/>
                        }/>
                    </ol>
                    <button type="button" class="add-cap" node_ref=add_button on:click=add>"+ Add a cap"</button>
                </fieldset>

                <QuietHoursView form problems=problems.into()/>

                <div class="actions save-bar">
                    <button type="submit" class="primary" disabled=move || save.pending().get()>"Save policy"</button>
                    <p class="save-status" role="status" class:saved=move || !dirty.get() && matches!(save.value().get(), Some(Ok(_)))>{status}</p>
                </div>
                <p class="meta changed">{move || match changed.get() {
                    (Some(at), Some(by)) => format!("Last changed {} by {by}.", when(&at)),
                    _ => "Never changed: no caps and no quiet hours are in force.".to_owned(),
                }}</p>
            </form>
            <aside class="panel explain" aria-labelledby="pressure-how">
                <h2 id="pressure-how">"How it applies"</h2>
                <ul>
                    <li><strong>"Across every flow."</strong> " A cap counts every message of its channel the contact got from any flow in the window, not per flow."</li>
                    <li><strong>"In the contact's time zone"</strong> " (their " <code>"timezone"</code> " field), else the flow's, for quiet hours; daylight-saving changes included."</li>
                    <li><strong>"Held sends wait."</strong> " A send the policy holds waits for the next allowed moment. A step set to " <em>"If contact pressure holds it: Skip this step"</em> " is skipped instead. The participant's timeline says which rule held it and until when."</li>
                    <li><strong>"Transactional flows are exempt."</strong> " Flows marked transactional (receipts, password resets) are neither held nor counted."</li>
                    <li><strong>"Agents are never blocked."</strong> " Their manual sends count towards the caps, but go out at once; the agent sees a warning."</li>
                </ul>
            </aside>
        </div>
    }
}

#[component]
fn CapRowView(row: CapRow, form: PolicyForm, problems: Signal<Vec<String>>, remove: Callback<usize>, focus_row: RwSignal<Option<usize>>) -> impl IntoView {
    let key = row.key;
    let id = move |field: &str| format!("cap-{key}-{field}");
    // Problems name the row by its place in the list.
    let index = move || form.caps.with(|rows| rows.iter().position(|r| r.key == key).unwrap_or(0));
    let at = move |field: &'static str| move || problems.with(|p| problems_at(p, &format!("caps[{}].{field}", index())));
    let invalid = move |field: &'static str| move || (!at(field)().is_empty()).then_some("true");
    let row_problems = move || problems.with(|p| problems_at(p, &format!("caps[{}].", index())));
    let error_id = id("error");
    let described = move || (!row_problems().is_empty()).then(|| format!("cap-{key}-error"));
    let channel_ref = NodeRef::<leptos::html::Select>::new();
    Effect::new(move || {
        if let Some(select) = channel_ref.get() {
            if focus_row.get_untracked() == Some(key) {
                let _ = select.focus();
                focus_row.set(None);
            }
        }
    });
    let (channel, unit) = (row.channel.get_untracked(), row.unit.get_untracked());
    // A unit this version does not know stays as stored, not silently changed.
    let mut units: Vec<String> = TimeUnit::ALL.iter().map(|u| u.as_str().to_owned()).collect();
    if !units.contains(&unit) {
        units.push(unit.clone());
    }
    view! {
        <li class="cap-row" data-cap=key class:invalid=move || !row_problems().is_empty()>
            <fieldset>
                <legend class="visually-hidden">{move || format!("Cap {}", index() + 1)}</legend>
                <label for=id("channel")>
                    <span class="label">"Channel"</span>
                    <select id=id("channel") node_ref=channel_ref aria-invalid=invalid("channel") aria-describedby=described
                        on:change=move |ev| row.channel.set(event_target_value(&ev))>
                        {CHANNELS.iter().map(|c| view! { <option value=*c selected=*c == channel>{channel_label(c)}</option> }).collect_view()}
                    </select>
                </label>
                <label for=id("max")>
                    <span class="label">"At most"</span>
                    <span class="with-suffix">
                        <input id=id("max") type="number" inputmode="numeric" min="1" step="1" class="count" value=row.max.get_untracked()
                            aria-invalid=invalid("max") aria-describedby=described on:input=move |ev| row.max.set(event_target_value(&ev))/>
                        <span class="suffix">"messages"</span>
                    </span>
                </label>
                <label for=id("amount")>
                    <span class="label">"Per"</span>
                    <input id=id("amount") type="number" inputmode="numeric" min="1" step="1" class="count" value=row.amount.get_untracked()
                        aria-invalid=invalid("per") aria-describedby=described on:input=move |ev| row.amount.set(event_target_value(&ev))/>
                </label>
                <label for=id("unit")>
                    <span class="label visually-hidden">"Window unit"</span>
                    <select id=id("unit") aria-invalid=invalid("per") aria-describedby=described on:change=move |ev| row.unit.set(event_target_value(&ev))>
                        {units.into_iter().map(|u| { let (selected, label) = (u == unit, u.clone()); view! { <option value=u selected=selected>{label}</option> } }).collect_view()}
                    </select>
                </label>
                <button type="button" class="link remove" on:click=move |_| remove.run(key)>
                    "Remove" <span class="visually-hidden">{move || format!(" cap {}", index() + 1)}</span>
                </button>
            </fieldset>
            {move || {
                let found = row_problems();
                (!found.is_empty()).then(|| view! { <p class="field-error" id=error_id.clone()>{found.join(" ")}</p> })
            }}
        </li>
    }
}

#[component]
fn QuietHoursView(form: PolicyForm, problems: Signal<Vec<String>>) -> impl IntoView {
    let invalid = move |path: &'static str| move || problems.with(|p| !problems_at(p, path).is_empty()).then_some("true");
    let all = move || problems.with(|p| problems_at(p, "quiet_hours.").into_iter().chain(problems_at(p, "quiet_hours")).collect::<Vec<_>>());
    let described = move || (!all().is_empty()).then_some("quiet-error");
    let channels = CHANNELS.iter().map(|channel| {
        let checked = form.quiet_channels.with_untracked(|on| on.iter().any(|c| c == channel));
        view! {
            <label class="check">
                <input type="checkbox" name="quiet-channel" value=*channel checked=checked
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        form.quiet_channels.update(|list| {
                            list.retain(|c| c != channel);
                            if on {
                                list.push(channel.to_string());
                            }
                        });
                    }/>
                {channel_label(channel)}
            </label>
        }
    });
    view! {
        <fieldset class="panel quiet">
            <legend>"Quiet hours"</legend>
            <p class="hint">"Nothing on the chosen channels reaches a contact between these times; what would is held until they end. US rules (TCPA) expect texts and calls only from 08:00 to 21:00 local time."</p>
            <label class="check switch">
                <input type="checkbox" id="quiet-on" checked=form.quiet.get_untracked() on:change=move |ev| form.quiet.set(event_target_checked(&ev))/>
                "Hold messages during quiet hours"
            </label>
            <fieldset class="quiet-detail" disabled=move || !form.quiet.get()>
                <legend class="visually-hidden">"When and what"</legend>
                <div class="quiet-channels" role="group" aria-labelledby="quiet-channels-label" aria-invalid=invalid("quiet_hours.channels")>
                    <span class="label" id="quiet-channels-label">"Channels held"</span>
                    {channels.collect_view()}
                </div>
                <div class="quiet-times">
                    <label for="quiet-from">
                        <span class="label">"From"</span>
                        <input type="time" id="quiet-from" value=form.from.get_untracked() aria-invalid=invalid("quiet_hours.from") aria-describedby=described
                            on:input=move |ev| form.from.set(event_target_value(&ev))/>
                    </label>
                    <label for="quiet-to">
                        <span class="label">"To"</span>
                        <input type="time" id="quiet-to" value=form.to.get_untracked() aria-invalid=invalid("quiet_hours.to") aria-describedby=described
                            on:input=move |ev| form.to.set(event_target_value(&ev))/>
                    </label>
                    <p class="hint">"In the contact's time zone, else the flow's. A From later than To runs overnight: 21:00 to 08:00 holds from nine in the evening until eight the next morning."</p>
                </div>
                {move || {
                    let found = all();
                    (!found.is_empty()).then(|| view! { <p class="field-error" id="quiet-error">{found.join(" ")}</p> })
                }}
            </fieldset>
        </fieldset>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_as_the_row_or_section_they_are_in() {
        assert_eq!(readable("caps[1].max: a cap of 0 would never send"), "Cap 2: a cap of 0 would never send");
        assert_eq!(readable("quiet_hours.from: “9pm” is not a time like 21:00"), "Quiet hours: “9pm” is not a time like 21:00");
        assert_eq!(readable("quiet_hours: from and to are the same time"), "Quiet hours: from and to are the same time");
        assert_eq!(readable("something else"), "something else");
        let found = vec!["caps[0].max: zero".to_owned(), "caps[0].per: long".to_owned(), "caps[10].max: other".to_owned()];
        assert_eq!(problems_at(&found, "caps[0].max"), vec!["zero"]);
        assert_eq!(problems_at(&found, "caps[0]."), vec!["zero", "long"]);
        assert_eq!(problems_at(&found, "caps[1]."), Vec::<String>::new());
    }

    #[test]
    fn the_form_gives_back_the_policy_it_was_filled_from_and_names_what_is_not_a_number() {
        let owner = Owner::new();
        owner.with(|| {
            let policy: Policy = serde_json::from_value(serde_json::json!({
                "caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}},
                         {"channel": "sms", "max": 1, "per": {"amount": 36, "unit": "hours"}}],
                "quiet_hours": {"channels": ["sms", "call"], "from": "21:00", "to": "08:00"}}))
            .unwrap();
            let form = PolicyForm::new(&policy);
            assert_eq!(form.policy(), Ok(policy.clone()));
            // Ticked in another order, the channels keep the page's.
            form.quiet_channels.set(vec!["call".into(), "sms".into()]);
            assert_eq!(form.policy(), Ok(policy));
            // A new cap takes the first channel without one.
            form.add();
            assert_eq!(form.caps.with_untracked(|rows| rows[2].channel.get_untracked()), "call");
            form.caps.with_untracked(|rows| {
                rows[0].max.set("two".into());
                rows[1].amount.set(" ".into());
            });
            form.quiet_channels.set(Vec::new());
            assert_eq!(
                form.policy(),
                Err(vec![
                    "caps[0].max: “two” is not a whole number".to_owned(),
                    "caps[1].per: enter a number".to_owned(),
                    "quiet_hours.channels: choose the channels they hold, or turn quiet hours off".to_owned(),
                ])
            );
            // Quiet hours off: none, whatever their fields say.
            form.quiet.set(false);
            assert!(form.policy().unwrap_err().iter().all(|p| p.starts_with("caps[")));
        });
    }
}
