//! The home dashboard, above the flows list: today's sends by channel,
//! participants active, tasks due, failures needing a retry, and flows
//! with something new (unacknowledged findings, decided split tests).

use leptos::prelude::*;

use crate::api::error_text;
use crate::dashboard_api::{home_dashboard, Dashboard};

#[component]
pub fn HomeDashboard() -> impl IntoView {
    let data = Resource::new(|| (), |_| home_dashboard());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! { <Tiles d/> }.into_any(),
                    Err(err) => view! { <p class="notice error" role="alert">{error_text(&err)}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Tiles(d: Dashboard) -> impl IntoView {
    let sends: u64 = d.sends_today.iter().map(|(_, n)| n).sum();
    let by_channel = if d.sends_today.is_empty() {
        "none yet".to_owned()
    } else {
        d.sends_today.iter().map(|(channel, n)| format!("{n} {channel}")).collect::<Vec<_>>().join(" · ")
    };
    let news = d
        .news
        .iter()
        .map(|n| view! { <li><a href=n.href.clone()>{n.flow_name.clone()}</a> ": " {n.what.clone()}</li> })
        .collect_view();
    view! {
        <section class="dashboard report" aria-label="Today">
            <dl class="tiles">
                <div><dt>{format!("Sent today ({} UTC)", d.today)}</dt><dd data-dash="sends">{sends}</dd><dd class="meta">{by_channel}</dd></div>
                <div><dt>"Active participants"</dt><dd data-dash="active">{d.active}</dd></div>
                <div><dt>"Tasks due"</dt><dd data-dash="tasks"><a href="/inbox">{d.tasks_due}</a></dd></div>
                <div><dt>"Failures to retry"</dt><dd data-dash="failures"><a href="/participants">{d.failed_participants}</a></dd>
                    <dd class="meta">{format!("{} failed effects", d.failed_effects)}</dd></div>
            </dl>
            {(!d.news.is_empty()).then(|| view! {
                <h2>"Flows with news"</h2>
                <ul class="news">{news}</ul>
            })}
        </section>
    }
}
