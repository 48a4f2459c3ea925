//! The admins' validation review: every flow's errors and warnings in one
//! table, filtered by code and flow through the address (so a filtered view
//! can be shared and works before the page hydrates).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use leptos::form::ActionForm;

use crate::admin_api::{set_review_required, AcknowledgeFinding, SetReviewRequired};
use crate::api::{error_text, validation_review, ReviewRow};
use crate::core::{Code, Level};
use crate::pages::ErrorNote;

#[component]
pub fn ReviewPage() -> impl IntoView {
    let query = use_query_map();
    let acknowledge = ServerAction::<AcknowledgeFinding>::new();
    let require = ServerAction::<SetReviewRequired>::new();
    let rows = Resource::new(move || acknowledge.version().get(), |_| validation_review());
    let required = Resource::new(move || require.version().get(), |_| set_review_required(None));
    let code = move || query.read().get("code").filter(|c| !c.is_empty());
    let flow = move || query.read().get("flow").filter(|f| !f.is_empty());

    view! {
        <Title text="Validation review"/>
        <section class="page">
            <div class="page-head"><h1>"Validation review"</h1></div>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let on = required.await.unwrap_or(false);
                    view! {
                        <ActionForm action=require attr:class="inline-form review-setting">
                            <input type="hidden" name="required" value=(!on).to_string()/>
                            <span>{if on {
                                "Publishing waits until an admin has acknowledged every warning."
                            } else {
                                "Flows with warnings can be published without an admin's review."
                            }}</span>
                            <button type="submit">{if on { "Stop requiring review" } else { "Require review before publishing" }}</button>
                        </ActionForm>
                    }
                })}
            </Suspense>
            {move || acknowledge.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            <Suspense fallback=|| view! { <p class="loading">"Checking every flow…"</p> }>
                {move || Suspend::new(async move {
                    let rows = match rows.await {
                        Ok(rows) => rows,
                        Err(err) => return view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    };
                    let mut flows: Vec<(i64, String)> = rows.iter().map(|r| (r.flow_id, r.flow_name.clone())).collect();
                    flows.sort_by_key(|(_, name)| name.to_lowercase());
                    flows.dedup();
                    let (code, flow) = (code(), flow());
                    let shown: Vec<ReviewRow> = rows
                        .into_iter()
                        .filter(|r| code.as_deref().is_none_or(|c| r.finding.code.as_str() == c))
                        .filter(|r| flow.as_deref().is_none_or(|f| r.flow_id.to_string() == f))
                        .collect();
                    let errors = shown.iter().filter(|r| r.level == Level::Error).count();
                    let warnings = shown.len() - errors;
                    let pending = shown.iter().filter(|r| r.level == Level::Warning && r.ack.is_none()).count();
                    view! {
                        <form method="get" class="filters">
                            <label>"Code "
                                <select name="code">
                                    <option value="">"All codes"</option>
                                    {Code::ALL.iter().map(|c| view! {
                                        <option value=c.as_str() selected=code.as_deref() == Some(c.as_str())>{c.as_str()}</option>
                                    }).collect_view()}
                                </select>
                            </label>
                            <label>"Flow "
                                <select name="flow">
                                    <option value="">"All flows"</option>
                                    {flows.into_iter().map(|(id, name)| view! {
                                        <option value=id.to_string() selected=flow.as_deref() == Some(id.to_string().as_str())>{name}</option>
                                    }).collect_view()}
                                </select>
                            </label>
                            <button type="submit">"Filter"</button>
                            <a class="button" href="/review">"Clear"</a>
                        </form>
                        <p class="summary">{errors} " errors, " {warnings} " warnings, "
                            <strong data-pending=pending>{pending} " waiting for acknowledgement"</strong></p>
                        <table class="review">
                            <thead><tr><th>"Flow"</th><th>"Level"</th><th>"Code"</th><th>"Step"</th><th>"Finding"</th><th>"Review"</th></tr></thead>
                            <tbody>
                                {shown.into_iter().map(|row| {
                                    let link = match &row.finding.step {
                                        Some(step) => format!("/flows/{}?step={}", row.flow_id, encode(step)),
                                        None => format!("/flows/{}", row.flow_id),
                                    };
                                    let level = match row.level { Level::Error => "error", Level::Warning => "warning" };
                                    let review = match (row.ack.clone(), row.level, row.finding.step.clone()) {
                                        (Some(ack), _, _) => view! {
                                            <span class="ack">"Acknowledged by " {ack.by} ": " <q>{ack.note}</q></span>
                                        }.into_any(),
                                        (None, Level::Warning, Some(step)) => view! {
                                            <ActionForm action=acknowledge attr:class="ack-form">
                                                <input type="hidden" name="flow" value=row.flow_id/>
                                                <input type="hidden" name="step" value=step/>
                                                <input type="hidden" name="code" value=row.finding.code.as_str()/>
                                                <input name="note" placeholder="Why this is acceptable" required/>
                                                <button type="submit">"Acknowledge"</button>
                                            </ActionForm>
                                        }.into_any(),
                                        _ => ().into_any(),
                                    };
                                    view! {
                                        <tr class=level data-code=row.finding.code.as_str()>
                                            <td><a href=format!("/flows/{}", row.flow_id)>{row.flow_name.clone()}</a></td>
                                            <td><span class=format!("pill {level}")>{level}</span></td>
                                            <td><code>{row.finding.code.as_str()}</code></td>
                                            <td><a href=link>{row.finding.step.clone().unwrap_or_else(|| "—".into())}</a></td>
                                            <td>{row.finding.message.clone()}</td>
                                            <td>{review}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                })}
            </Suspense>
        </section>
    }
}

/// Percent-encodes a step id for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
