//! A flow's report (DESIGN §12): over a chosen period, participants per
//! day, the step funnel, each message's rates, each split's branches
//! compared (with "not yet significant" until they are), and the versions.
//! Every chart is drawn on the server as SVG (readable without the wasm),
//! has a title and summary for screen readers and the table of its
//! numbers behind it, and downloads as CSV, SVG and PNG. Charts fill their
//! card (the view box scales); on a narrow screen they keep a width their
//! text stays readable at and scroll sideways. The period, the
//! split metric and the machine-opens switch are the page's query, so a
//! plain GET form changes them.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::error_text;
use crate::core::charts::{points, Chart, Mark, Table};
use crate::core::stats::percent;
use crate::pages::ErrorNote;
use crate::report_api::{charts, compare, funnel_note, get_flow_report, message_table, ChooseBranch, FlowReport, Metric};

#[component]
pub fn ReportPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0);
    let period = move || {
        let q = query.read();
        (q.get("from").filter(|s| !s.is_empty()), q.get("to").filter(|s| !s.is_empty()))
    };
    let choose = ServerAction::<ChooseBranch>::new();
    let data = Resource::new(move || (id(), period(), choose.version().get()), |(id, (from, to), _)| get_flow_report(id, from, to));
    let metric = move || query.read().get("metric").as_deref().and_then(Metric::parse).unwrap_or_default();
    let machine = move || query.read().get("machine").is_some_and(|m| m == "on" || m == "1");
    view! {
        <section class="page report">
            <Transition fallback=|| view! { <p class="loading">"Adding up the figures…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(report) => view! { <Report report metric=metric() machine=machine() choose/> }.into_any(),
                        Err(err) => view! { <h1>"Report"</h1><ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The query string of a download link for the report as shown.
fn download_query(report: &FlowReport, metric: Metric, machine: bool) -> String {
    let mut q = format!("from={}&to={}&metric={}", report.from, report.to, metric.as_str());
    if machine {
        q.push_str("&machine=on");
    }
    q
}

#[component]
fn Report(report: FlowReport, metric: Metric, machine: bool, choose: ServerAction<ChooseBranch>) -> impl IntoView {
    let flow_id = report.flow_id;
    let query = download_query(&report, metric, machine);
    let all = charts(&report, metric, machine);
    let total = |f: fn(&crate::report_api::DayFigures) -> u64| report.days.iter().map(f).sum::<u64>();
    let (entered, completed, converted, exited, failed, cancelled) =
        (total(|d| d.entered), total(|d| d.completed), total(|d| d.converted), total(|d| d.exited), total(|d| d.failed), total(|d| d.cancelled));
    let funnel_note = funnel_note(&report);
    let active_now: u64 = report.steps.iter().map(|s| s.waiting).sum();
    let chart_of = |name: &str| all.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone());
    let base = format!("/api/v1/flows/{flow_id}/report");
    let view_chart = {
        let (base, query) = (base.clone(), query.clone());
        move |name: &str, chart: Chart, table: Option<Table>| {
            view! { <ChartView name=name.to_owned() chart table base=base.clone() query=query.clone()/> }
        }
    };
    let messages = (!report.messages.is_empty()).then(|| {
        let table = message_table(&report, machine);
        view_chart("messages", chart_of("messages").expect("messages chart"), Some(table))
    });
    let splits = report
        .splits
        .iter()
        .map(|split| {
            let comparison = compare(split, metric);
            let name = format!("split-{}", split.step);
            let chart = chart_of(&name).expect("a chart per split");
            let step = split.step.clone();
            let (split_attr, verdict_attr) = (step.clone(), step.clone());
            let decision = split.decision.clone();
            let ports: Vec<String> = split.branches.iter().map(|b| b.port.clone()).collect();
            view! {
                <section class="split" data-split=split_attr>
                    <h3>{split.name.clone()}</h3>
                    <p class="verdict" data-verdict=verdict_attr>{comparison.verdict.clone()}</p>
                    {decision.map(|d| view! {
                        <p class="decision" role="status">
                            {match &d.overridden_by {
                                Some(who) => format!("Everyone arriving now takes “{}”, chosen by {who} on {}.", d.port, d.decided_at),
                                None => format!("Automatic winner: “{}”, decided {}. {}", d.port, d.decided_at, d.figures),
                            }}
                        </p>
                    })}
                    {view_chart(&name, chart, None)}
                    <ActionForm action=choose attr:class="inline-form">
                        <input type="hidden" name="flow_id" value=flow_id/>
                        <input type="hidden" name="step" value=step.clone()/>
                        <label>"Send everyone arriving from now on down "
                            <select name="port">
                                {ports.into_iter().map(|p| view! { <option value=p.clone()>{p.clone()}</option> }).collect_view()}
                            </select>
                        </label>
                        <button type="submit">"Choose this branch"</button>
                    </ActionForm>
                </section>
            }
        })
        .collect_view();
    view! {
        <Title text=format!("Report · {}", report.name)/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href=format!("/flows/{flow_id}")>{report.name.clone()}</a> " / report"</p>
                <h1>"Report"</h1>
                <p class="meta">{format!("{} to {} (UTC days)", report.from, report.to)}</p>
            </div>
        </div>
        <form method="get" class="inline-form report-period" aria-label="Report period">
            <label>"From " <input type="date" name="from" value=report.from.clone()/></label>
            <label>"To " <input type="date" name="to" value=report.to.clone()/></label>
            <label>"Compare splits on "
                <select name="metric">
                    {Metric::ALL.into_iter().map(|m| view! { <option value=m.as_str() selected=m == metric>{m.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label><input type="checkbox" name="machine" checked=machine/> " Count machine opens and clicks"</label>
            <button type="submit">"Show"</button>
        </form>
        <dl class="tiles">
            <div><dt>"Entered"</dt><dd data-total="entered">{entered}</dd></div>
            <div><dt>"Active now"</dt><dd data-total="active">{active_now}</dd></div>
            <div><dt>"Completed"</dt><dd data-total="completed">{completed}</dd></div>
            <div><dt>"Converted"</dt><dd data-total="converted">{converted}</dd><dd class="meta">{percent(converted, entered)}</dd></div>
            <div><dt>"Exited"</dt><dd data-total="exited">{exited}</dd></div>
            <div><dt>"Failed"</dt><dd data-total="failed">{failed}</dd></div>
            <div><dt>"Cancelled"</dt><dd data-total="cancelled">{cancelled}</dd></div>
        </dl>
        <h2>"Participants per day"</h2>
        {view_chart("days", chart_of("days").expect("days chart"), None)}
        <h2>"Steps"</h2>
        {funnel_note.map(|note| view! { <p class="chart-note" data-note="funnel">{note}</p> })}
        {view_chart("funnel", chart_of("funnel").expect("funnel chart"), None)}
        {messages.map(|m| view! { <h2>"Messages"</h2> {m} })}
        {(!report.splits.is_empty()).then(|| view! { <h2>"Splits"</h2> })}
        {splits}
        <h2>"Versions"</h2>
        {view_chart("versions", chart_of("versions").expect("versions chart"), None)}
    }
    .into_any()
}

/// A chart drawn as SVG with its title and summary, its legend, the
/// table behind it and its downloads. `table`: shown instead of the
/// chart's own (the messages' counts with rates).
#[component]
fn ChartView(name: String, chart: Chart, table: Option<Table>, base: String, query: String) -> impl IntoView {
    let title_id = format!("chart-{name}-title");
    let desc_id = format!("chart-{name}-desc");
    let marks = chart
        .marks
        .iter()
        .map(|mark| match mark.clone() {
            Mark::Line { points: p, stroke, label } => {
                let series = label.clone();
                view! {
                    <polyline points=points(&p) fill="none" stroke=stroke stroke-width="2" data-series=series><title>{label}</title></polyline>
                }
                .into_any()
            }
            Mark::Rect { x, y, width, height, fill, label } => view! {
                <rect x=x y=y width=width height=height fill=fill><title>{label}</title></rect>
            }
            .into_any(),
            Mark::Text { x, y, text, anchor, muted } => view! {
                <text x=x y=y text-anchor=anchor.as_str() class=if muted { "muted" } else { "" }>{text}</text>
            }
            .into_any(),
            Mark::Rule { x1, y1, x2, y2 } => view! { <line x1=x1 y1=y1 x2=x2 y2=y2 class="rule"/> }.into_any(),
        })
        .collect_view();
    let legend = chart
        .legend
        .iter()
        .map(|(series, colour)| view! { <li><span class="swatch" style=format!("background:{colour}")></span>{series.clone()}</li> })
        .collect_view();
    let table = table.unwrap_or_else(|| chart.table.clone());
    let head = table.head.iter().map(|h| view! { <th scope="col">{h.clone()}</th> }).collect_view();
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let mut cells = row.iter();
            let first = cells.next().cloned().unwrap_or_default();
            view! { <tr><th scope="row">{first}</th>{cells.map(|c| view! { <td>{c.clone()}</td> }).collect_view()}</tr> }
        })
        .collect_view();
    let labelled_by = format!("{title_id} {desc_id}");
    // A split's chart is named after its step id, which may hold any character.
    let file = crate::core::merge::escape_url(&name);
    let (csv, svg, png) = (format!("{base}/{file}.csv?{query}"), format!("{base}/{file}.svg?{query}"), format!("{base}/{file}.png?{query}"));
    let (figure_attr, table_attr, open) = (name.clone(), name.clone(), name == "messages");
    view! {
        <figure class="chart" data-chart=figure_attr>
            <div class="chart-scroll">
                <svg viewBox=format!("0 0 {} {}", chart.width, chart.height) preserveAspectRatio="xMinYMin meet" role="img" aria-labelledby=labelled_by class="chart-svg">
                    <title id=title_id>{chart.title.clone()}</title>
                    <desc id=desc_id>{chart.summary.clone()}</desc>
                    {marks}
                </svg>
            </div>
            <figcaption>
                <ul class="legend">{legend}</ul>
                <span class="downloads">
                    <a href=csv download>"CSV"</a>
                    " · "
                    <a href=svg download>"SVG"</a>
                    " · "
                    <a href=png download>"PNG"</a>
                </span>
            </figcaption>
            <details class="chart-table" open=open>
                <summary>"The numbers"</summary>
                <table data-table=table_attr>
                    <thead><tr>{head}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
        </figure>
    }
}
