//! The flow as a standalone SVG picture (for slides, tickets, reviews):
//! the same cards and wires as the canvas, with the styles written inline
//! so the file looks right anywhere.

use crate::core::editor::positions;
use crate::core::flow::FlowDocument;
use crate::core::geometry::{bounds, edge_midpoint, edge_path, input_point, num, output_point, NODE_HEIGHT, NODE_WIDTH};
use crate::core::kinds::{ports, KindGroup};
use crate::core::{Findings, Level};

/// `flow` drawn as an SVG document, with a badge on each step that has
/// findings.
pub fn flow_svg(flow: &FlowDocument, findings: &Findings) -> String {
    let at = positions(flow);
    let (x, y, width, height) = bounds(at.values().copied(), 40.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{} {} {} {}\" width=\"{}\" height=\"{}\" \
         font-family=\"system-ui, sans-serif\">\n",
        num(x),
        num(y),
        num(width),
        num(height),
        num(width),
        num(height)
    );
    svg.push_str(&format!("<title>{}</title>\n", escape(&flow.name)));
    svg.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
         orient=\"auto-start-reverse\"><path d=\"M0 0 L10 5 L0 10 z\" fill=\"#8a94a6\"/></marker></defs>\n",
    );
    svg.push_str(&format!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n",
        num(x),
        num(y),
        num(width),
        num(height)
    ));
    for edge in &flow.edges {
        let (Some(from_step), Some(&from), Some(&to)) =
            (flow.step(&edge.from), at.get(edge.from.as_str()), at.get(edge.to.as_str()))
        else {
            continue;
        };
        let outputs = ports(from_step);
        let index = outputs.iter().position(|port| *port == edge.port).unwrap_or(0);
        let start = output_point(from, index, outputs.len().max(1));
        let end = input_point(to);
        svg.push_str(&format!(
            "<path d=\"{}\" fill=\"none\" stroke=\"#8a94a6\" stroke-width=\"1.6\" marker-end=\"url(#arrow)\"/>\n",
            edge_path(start, end)
        ));
        if edge.port != "next" {
            let mid = edge_midpoint(start, end);
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#5b6678\" text-anchor=\"middle\">{}</text>\n",
                num(mid.x),
                num(mid.y - 4.0),
                escape(&edge.port)
            ));
        }
    }
    for step in &flow.steps {
        let Some(&p) = at.get(step.id.as_str()) else { continue };
        let fill = match step.kind.group() {
            KindGroup::FlowControl => "#f3f6fc",
            KindGroup::Outreach => "#f2fbf5",
            KindGroup::RecordUpdates => "#fbf7ef",
            KindGroup::Integrations => "#f7f3fc",
        };
        svg.push_str(&format!("<g transform=\"translate({} {})\">\n", num(p.x), num(p.y)));
        svg.push_str(&format!(
            "<rect width=\"{}\" height=\"{}\" rx=\"10\" fill=\"{fill}\" stroke=\"#b8c1d1\" stroke-width=\"1.2\"/>\n",
            num(NODE_WIDTH),
            num(NODE_HEIGHT)
        ));
        svg.push_str(&format!(
            "<text x=\"22\" y=\"34\" font-size=\"18\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"42\" y=\"25\" font-size=\"13\" font-weight=\"600\" fill=\"#1b2330\">{}</text>\n\
             <text x=\"42\" y=\"42\" font-size=\"11\" fill=\"#5b6678\">{}</text>\n",
            escape(step.kind.icon()),
            escape(step.display_name()),
            escape(step.kind.label())
        ));
        let level = findings.for_step(&step.id).map(|f| f.code.level()).min_by_key(|level| *level != Level::Error);
        if let Some(level) = level {
            let (colour, mark) = match level {
                Level::Error => ("#c62828", "!"),
                Level::Warning => ("#b26a00", "⚠"),
            };
            svg.push_str(&format!(
                "<circle cx=\"{x}\" cy=\"4\" r=\"10\" fill=\"{colour}\"/>\
                 <text x=\"{x}\" y=\"8.5\" font-size=\"12\" font-weight=\"700\" fill=\"#fff\" text-anchor=\"middle\">{mark}</text>\n",
                x = num(NODE_WIDTH - 4.0)
            ));
        }
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::{Edge, Position, Step};
    use crate::core::kinds::StepKind;
    use crate::core::validate::{validate, Context};

    #[test]
    fn the_picture_has_every_step_wire_and_badge() {
        let mut flow = FlowDocument::new_draft("Spring <sale> & more");
        let mut check = Step::new("c1", StepKind::Condition);
        check.position = Some(Position { x: 300.0, y: 80.0 });
        flow.steps.push(check);
        flow.edges.push(Edge { from: "start".into(), port: "next".into(), to: "c1".into() });
        let findings = validate(&flow, &Context::default());
        let svg = flow_svg(&flow, &findings);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"40 40 468 136\""), "{svg}");
        assert!(svg.contains("<title>Spring &lt;sale&gt; &amp; more</title>"));
        // the wire from start's output to the condition's input
        assert!(svg.contains("<path d=\"M248 108 C296 108 252 108 300 108\""), "{svg}");
        assert_eq!(svg.matches("<g transform=").count(), 2);
        // the condition has no criteria (an error) and unconnected outputs
        assert!(svg.contains("fill=\"#c62828\""));
        assert!(svg.ends_with("</svg>\n"));
    }
}
