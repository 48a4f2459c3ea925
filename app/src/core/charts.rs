//! Charts for reports (DESIGN §12), as plain data: the marks to draw in a
//! fixed view box, a title and a summary for screen readers, and the table
//! of the same numbers behind each (shown under the chart, and what its
//! CSV export writes). The page draws the marks with the framework's own
//! SVG elements; [`Chart::to_svg`] writes the standalone file a person
//! downloads, escaping every text it carries.
//!
//! Pure functions of the figures: no IO, no clock, no Leptos.

use serde::{Deserialize, Serialize};

/// The series colours, in order (colour-blind safe: Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

pub const WIDTH: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mark {
    /// A polyline through `points` (x, y).
    Line { points: Vec<(f64, f64)>, stroke: String, label: String },
    /// A bar; `label` is its tooltip (`<title>`).
    Rect { x: f64, y: f64, width: f64, height: f64, fill: String, label: String },
    Text { x: f64, y: f64, text: String, anchor: Anchor, muted: bool },
    /// A grid or axis line.
    Rule { x1: f64, y1: f64, x2: f64, y2: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    pub fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// The numbers behind a chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180 CSV, every field quoted when it needs to be; a field a
    /// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, a tab or a
    /// carriage return first: OWASP's list) is written with a leading `'`
    /// unless it is a plain number.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(&self.head).chain(&self.rows) {
            let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

fn csv_field(field: &str) -> String {
    // Plain numbers as this module writes them (no `inf`, no exponent).
    let number = field.parse::<f64>().is_ok_and(f64::is_finite) && !field.contains(|c: char| c.is_alphabetic());
    let mut text = if !number && field.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{field}") } else { field.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        text = format!("\"{}\"", text.replace('"', "\"\""));
    }
    text
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Also the SVG's `<title>`.
    pub title: String,
    /// What the chart shows, in a sentence (the SVG's `<desc>`).
    pub summary: String,
    pub width: f64,
    pub height: f64,
    pub marks: Vec<Mark>,
    /// Series names and colours.
    pub legend: Vec<(String, String)>,
    pub table: Table,
}

/// A series of a line chart: its name and one value per x label.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// A round step for axis ticks: 1, 2 or 5 times a power of ten, giving
/// about `ticks` ticks up to `max`.
pub fn nice_step(max: f64, ticks: usize) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / ticks.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    (nice * power).max(1e-9)
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.1}")
    }
}

/// Counts per day: one line per series over `days` (x labels).
pub fn line_chart(title: &str, summary: &str, days: &[String], series: &[Series]) -> Chart {
    let height = 260.0;
    let bottom = 36.0;
    let plot_h = height - TOP - bottom;
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
    let step = nice_step(max, 4);
    let top = (max / step).ceil().max(1.0) * step;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let x = |i: usize| LEFT + if days.len() > 1 { i as f64 * plot_w / (days.len() - 1) as f64 } else { plot_w / 2.0 };
    let mut marks = Vec::new();
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        marks.push(Mark::Rule { x1: LEFT, y1: y(tick), x2: WIDTH - RIGHT, y2: y(tick) });
        marks.push(Mark::Text { x: LEFT - 6.0, y: y(tick) + 4.0, text: number(tick), anchor: Anchor::End, muted: true });
        tick += step;
    }
    // About six date labels, first and last included.
    let every = days.len().div_ceil(6).max(1);
    for (i, day) in days.iter().enumerate() {
        if i % every == 0 || i + 1 == days.len() {
            // The first and last labels end inside the chart, not past its edges.
            let anchor = match i {
                0 if days.len() > 1 => Anchor::Start,
                _ if i + 1 == days.len() && days.len() > 1 => Anchor::End,
                _ => Anchor::Middle,
            };
            marks.push(Mark::Text { x: x(i), y: height - bottom + 16.0, text: short_day(day), anchor, muted: true });
        }
    }
    let mut legend = Vec::new();
    for (n, s) in series.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()].to_owned();
        let points: Vec<(f64, f64)> = s.values.iter().enumerate().map(|(i, v)| (round(x(i)), round(y(*v)))).collect();
        marks.push(Mark::Line { points, stroke: colour.clone(), label: s.name.clone() });
        legend.push((s.name.clone(), colour));
    }
    let mut head = vec!["day".to_owned()];
    head.extend(series.iter().map(|s| s.name.clone()));
    let rows = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let mut row = vec![day.clone()];
            row.extend(series.iter().map(|s| number(s.values.get(i).copied().unwrap_or(0.0))));
            row
        })
        .collect();
    Chart { title: title.into(), summary: summary.into(), width: WIDTH, height, marks, legend, table: Table { head, rows } }
}

/// `2026-11-23` → `23 Nov`.
fn short_day(day: &str) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut parts = day.split('-');
    match (parts.next(), parts.next().and_then(|m| m.parse::<usize>().ok()), parts.next().and_then(|d| d.parse::<u32>().ok())) {
        (Some(_), Some(m @ 1..=12), Some(d)) => format!("{d} {}", MONTHS[m - 1]),
        _ => day.to_owned(),
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// One group of bars: a label and one value per series.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub label: String,
    pub values: Vec<f64>,
}

/// How a bar chart's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    /// Values are fractions (0.25), shown as percentages.
    Percent,
}

/// Horizontal bars: one row per group, one bar per series within it.
pub fn bar_chart(title: &str, summary: &str, series: &[String], groups: &[Group], unit: Unit) -> Chart {
    let label_w = 170.0;
    let bar_h = 14.0;
    let gap = 10.0;
    let group_h = bar_h * series.len().max(1) as f64 + gap;
    let height = TOP + group_h * groups.len().max(1) as f64 + 24.0;
    let plot_w = WIDTH - label_w - RIGHT - 70.0;
    let max = groups.iter().flat_map(|g| g.values.iter().copied()).fold(0.0, f64::max);
    let top = match unit {
        Unit::Percent => max.max(0.01),
        Unit::Count => max.max(1.0),
    };
    let show = |v: f64| match unit {
        Unit::Count => number(v),
        Unit::Percent => format!("{:.1}%", v * 100.0),
    };
    let mut marks = vec![Mark::Rule { x1: label_w, y1: TOP - 4.0, x2: label_w, y2: height - 20.0 }];
    for (g, group) in groups.iter().enumerate() {
        let y0 = TOP + g as f64 * group_h;
        marks.push(Mark::Text { x: label_w - 8.0, y: y0 + bar_h * series.len() as f64 / 2.0 + 4.0, text: clip(&group.label, 26), anchor: Anchor::End, muted: false });
        for (s, value) in group.values.iter().enumerate() {
            let width = round((value / top * plot_w).max(0.0));
            let y = y0 + s as f64 * bar_h;
            let name = series.get(s).cloned().unwrap_or_default();
            marks.push(Mark::Rect {
                x: label_w,
                y,
                width,
                height: bar_h - 2.0,
                fill: PALETTE[s % PALETTE.len()].to_owned(),
                label: format!("{}, {name}: {}", group.label, show(*value)),
            });
            marks.push(Mark::Text { x: label_w + width + 4.0, y: y + bar_h - 4.0, text: show(*value), anchor: Anchor::Start, muted: true });
        }
    }
    let legend = series.iter().enumerate().map(|(s, name)| (name.clone(), PALETTE[s % PALETTE.len()].to_owned())).collect();
    let mut head = vec![String::new()];
    head.extend(series.iter().cloned());
    let rows = groups
        .iter()
        .map(|g| {
            let mut row = vec![g.label.clone()];
            row.extend(g.values.iter().map(|v| match unit {
                Unit::Count => number(*v),
                Unit::Percent => format!("{:.4}", v),
            }));
            row
        })
        .collect();
    Chart { title: title.into(), summary: summary.into(), width: WIDTH, height, marks, legend, table: Table { head, rows } }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Escapes text and attribute values for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// The points of a [`Mark::Line`] as an SVG `points` attribute.
pub fn points(points: &[(f64, f64)]) -> String {
    points.iter().map(|(x, y)| format!("{x},{y}")).collect::<Vec<_>>().join(" ")
}

impl Chart {
    /// The chart as a standalone SVG file (what "download SVG" gives),
    /// with its title, summary and legend; every text escaped.
    pub fn to_svg(&self) -> String {
        let legend_h = if self.legend.is_empty() { 0.0 } else { 22.0 };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-labelledby=\"t d\" font-family=\"sans-serif\" font-size=\"12\">",
            self.width,
            self.height + legend_h,
            self.width,
            self.height + legend_h
        );
        svg.push_str(&format!("<title id=\"t\">{}</title><desc id=\"d\">{}</desc>", escape(&self.title), escape(&self.summary)));
        svg.push_str(&format!("<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>", self.width, self.height + legend_h));
        for mark in &self.marks {
            match mark {
                Mark::Line { points: p, stroke, label } => svg.push_str(&format!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></polyline>",
                    points(p),
                    escape(stroke),
                    escape(label)
                )),
                Mark::Rect { x, y, width, height, fill, label } => svg.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{width}\" height=\"{height}\" fill=\"{}\"><title>{}</title></rect>",
                    escape(fill),
                    escape(label)
                )),
                Mark::Text { x, y, text, anchor, muted } => svg.push_str(&format!(
                    "<text x=\"{x}\" y=\"{y}\" text-anchor=\"{}\" fill=\"{}\">{}</text>",
                    anchor.as_str(),
                    if *muted { "#555555" } else { "#111111" },
                    escape(text)
                )),
                Mark::Rule { x1, y1, x2, y2 } => {
                    svg.push_str(&format!("<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#dddddd\"/>"))
                }
            }
        }
        let mut x = LEFT;
        for (name, colour) in &self.legend {
            let y = self.height + 6.0;
            svg.push_str(&format!("<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/>", escape(colour)));
            svg.push_str(&format!("<text x=\"{}\" y=\"{}\">{}</text>", x + 14.0, y + 9.0, escape(name)));
            x += 24.0 + 7.0 * name.chars().count() as f64;
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize) -> Vec<String> {
        (1..=n).map(|d| format!("2026-11-{d:02}")).collect()
    }

    #[test]
    fn nice_steps_are_round() {
        assert_eq!(nice_step(100.0, 4), 50.0);
        assert_eq!(nice_step(7.0, 4), 2.0);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(nice_step(1234.0, 4), 500.0);
    }

    #[test]
    fn a_line_chart_puts_each_value_on_its_day_and_height() {
        let series = [Series { name: "entered".into(), values: vec![0.0, 10.0, 20.0] }];
        let chart = line_chart("Entered", "per day", &days(3), &series);
        let Some(Mark::Line { points, .. }) = chart.marks.iter().find(|m| matches!(m, Mark::Line { .. })) else { panic!() };
        // 20 is the top of the scale (step 5 → top 20): the highest point is at the top.
        assert_eq!(points[0].0, LEFT);
        assert_eq!(points[2].0, WIDTH - RIGHT);
        assert_eq!(points[2].1, TOP);
        assert!(points[0].1 > points[1].1 && points[1].1 > points[2].1);
        assert_eq!(chart.table.head, ["day", "entered"]);
        let labels: Vec<(f64, Anchor)> =
            chart.marks.iter().filter_map(|m| if let Mark::Text { x, anchor, muted: true, text, .. } = m { text.contains("Nov").then_some((*x, *anchor)) } else { None }).collect();
        assert_eq!(labels.first(), Some(&(LEFT, Anchor::Start)), "the first day's label starts at the plot's left edge");
        assert_eq!(labels.last(), Some(&(WIDTH - RIGHT, Anchor::End)), "the last day's label ends at the plot's right edge");
        assert_eq!(chart.table.rows[1], ["2026-11-02", "10"]);
    }

    #[test]
    fn bars_are_as_long_as_their_values_and_the_table_says_them() {
        let groups = [Group { label: "A".into(), values: vec![0.2] }, Group { label: "B".into(), values: vec![0.1] }];
        let chart = bar_chart("Conversion", "per branch", &["conversion".into()], &groups, Unit::Percent);
        let widths: Vec<f64> = chart.marks.iter().filter_map(|m| if let Mark::Rect { width, .. } = m { Some(*width) } else { None }).collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[0] - 2.0 * widths[1]).abs() < 0.2, "{widths:?}");
        assert_eq!(chart.table.rows, [["A", "0.2000"], ["B", "0.1000"]]);
    }

    #[test]
    fn the_svg_escapes_what_people_typed_and_carries_a_title() {
        let groups = [Group { label: "<script>alert(1)</script> & \"x\"".into(), values: vec![3.0] }];
        let chart = bar_chart("Steps <&>", "funnel", &["reached".into()], &groups, Unit::Count);
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("<title id=\"t\">Steps &lt;&amp;&gt;</title>"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let table = Table { head: vec!["step".into(), "n".into()], rows: vec![vec!["=HYPERLINK(\"x\")".into(), "-3".into()], vec!["a,b".into(), "4".into()]] };
        assert_eq!(table.to_csv(), "step,n\r\n\"'=HYPERLINK(\"\"x\"\")\",-3\r\n\"a,b\",4\r\n");
    }

    #[test]
    fn csv_defuses_every_formula_a_spreadsheet_would_run() {
        let attacks = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "-inf"];
        let table = Table { head: vec!["name".into()], rows: attacks.iter().map(|a| vec![a.to_string()]).collect() };
        let csv = table.to_csv();
        let lines: Vec<&str> = csv.split("\r\n").skip(1).filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "'=cmd|' /C calc'!A0");
        assert_eq!(lines[1], "'+1+1");
        assert_eq!(lines[2], "'-2+3");
        assert_eq!(lines[3], "'@SUM(A1)");
        assert_eq!(lines[4], "'\t=1+1");
        assert!(csv.contains("\"'\r=1+1\""), "{csv:?}");
        assert!(csv.contains("'-inf"), "{csv:?}");
        // Numbers stay numbers.
        let numbers = Table { head: vec!["n".into()], rows: vec![vec!["-3".into()], vec!["0.2500".into()], vec!["+4".into()]] };
        assert_eq!(numbers.to_csv(), "n\r\n-3\r\n0.2500\r\n+4\r\n");
    }

    #[test]
    fn markup_in_labels_stays_text_in_the_svg() {
        let attacks = ["<img src=x onerror=alert(1)>", "\"><svg onload=alert(1)>", "&lt;script&gt;alert(1)&lt;/script&gt;", "' onmouseover='alert(1)"];
        let groups: Vec<Group> = attacks.iter().map(|a| Group { label: a.to_string(), values: vec![1.0] }).collect();
        let series = [Series { name: attacks[1].into(), values: vec![1.0, 2.0] }];
        for chart in [bar_chart(attacks[0], attacks[1], &[attacks[3].into()], &groups, Unit::Count), line_chart(attacks[2], attacks[0], &days(2), &series)] {
            let svg = chart.to_svg();
            // Every `<` that starts a tag is one of ours; every quote in an attribute closes our own value.
            let tags: Vec<&str> = svg.split('<').skip(1).map(|t| t.split([' ', '>', '/']).next().unwrap_or_default()).collect();
            assert!(tags.iter().all(|t| ["svg", "title", "desc", "rect", "polyline", "text", "line", ""].contains(t)), "{tags:?}");
            assert!(!svg.contains("onerror=") || svg.contains("&lt;img src=x onerror=alert(1)&gt;"), "{svg}");
            assert!(!svg.contains("\"><svg"), "{svg}");
            assert!(!svg.contains("&lt;script&gt;alert") || svg.contains("&amp;lt;script&amp;gt;"), "{svg}");
        }
    }

    #[test]
    fn day_labels_are_short() {
        assert_eq!(short_day("2026-11-23"), "23 Nov");
        assert_eq!(short_day("odd"), "odd");
    }
}
