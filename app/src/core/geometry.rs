//! Canvas geometry: where a step's ports sit and the curve a wire follows.
//! Pure functions of positions, so the drawing is testable as text.
//!
//! Flows read left to right: a step's input is the middle of its left side,
//! its outputs are spread down its right side.

use crate::core::flow::Position;

pub const NODE_WIDTH: f64 = 168.0;
pub const NODE_HEIGHT: f64 = 56.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

pub fn input_point(at: Position) -> Point {
    Point { x: at.x, y: at.y + NODE_HEIGHT / 2.0 }
}

/// Output `index` of `count`, evenly spaced down the right side.
pub fn output_point(at: Position, index: usize, count: usize) -> Point {
    let slot = NODE_HEIGHT / (count.max(1) as f64 + 1.0);
    Point { x: at.x + NODE_WIDTH, y: at.y + slot * (index as f64 + 1.0) }
}

/// A cubic bezier from an output to an input, leaving and arriving
/// horizontally. Wires that run backwards bulge further so they stay visible.
pub fn edge_path(from: Point, to: Point) -> String {
    let reach = ((to.x - from.x).abs() / 2.0).max(48.0);
    let (c1, c2) = (Point { x: from.x + reach, y: from.y }, Point { x: to.x - reach, y: to.y });
    format!(
        "M{} {} C{} {} {} {} {} {}",
        num(from.x),
        num(from.y),
        num(c1.x),
        num(c1.y),
        num(c2.x),
        num(c2.y),
        num(to.x),
        num(to.y)
    )
}

/// The curve's midpoint (t = 0.5), where a wire's label goes.
pub fn edge_midpoint(from: Point, to: Point) -> Point {
    let reach = ((to.x - from.x).abs() / 2.0).max(48.0);
    let (c1x, c2x) = (from.x + reach, to.x - reach);
    Point { x: (from.x + 3.0 * c1x + 3.0 * c2x + to.x) / 8.0, y: (from.y + 3.0 * from.y + 3.0 * to.y + to.y) / 8.0 }
}

/// The smallest box holding every position, padded; `(x, y, width, height)`.
pub fn bounds(positions: impl IntoIterator<Item = Position>, padding: f64) -> (f64, f64, f64, f64) {
    let mut min = Point { x: f64::INFINITY, y: f64::INFINITY };
    let mut max = Point { x: f64::NEG_INFINITY, y: f64::NEG_INFINITY };
    for at in positions {
        min.x = min.x.min(at.x);
        min.y = min.y.min(at.y);
        max.x = max.x.max(at.x + NODE_WIDTH);
        max.y = max.y.max(at.y + NODE_HEIGHT);
    }
    if !min.x.is_finite() {
        return (0.0, 0.0, 640.0, 360.0);
    }
    (min.x - padding, min.y - padding, max.x - min.x + 2.0 * padding, max.y - min.y + 2.0 * padding)
}

/// Two positions whose cards span every card at `positions`: the
/// top-left-most corner and the bottom-right-most card's place. [`bounds`]
/// of the pair (with anything else) equals [`bounds`] of them all, so the
/// minimap measures the steps once per edit, not once per pan.
pub fn extent(positions: impl IntoIterator<Item = Position>) -> Option<(Position, Position)> {
    positions.into_iter().fold(None, |acc, at| {
        let (min, max) = acc.unwrap_or((at, at));
        Some((Position { x: min.x.min(at.x), y: min.y.min(at.y) }, Position { x: max.x.max(at.x), y: max.y.max(at.y) }))
    })
}

/// Numbers for SVG: at most one decimal, no trailing zeros.
pub fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_wire_is_a_horizontal_s_curve() {
        let from = output_point(Position { x: 0.0, y: 0.0 }, 0, 1);
        let to = input_point(Position { x: 300.0, y: 100.0 });
        assert_eq!(edge_path(from, to), "M168 28 C234 28 234 128 300 128");
    }

    #[test]
    fn backward_wire_bulges_out_both_sides() {
        let from = output_point(Position { x: 300.0, y: 0.0 }, 1, 2);
        let to = input_point(Position { x: 0.0, y: 0.0 });
        assert_eq!(edge_path(from, to), "M468 37.3 C702 37.3 -234 28 0 28");
    }

    #[test]
    fn ports_spread_evenly_and_midpoint_is_between_ends() {
        let at = Position { x: 10.0, y: 20.0 };
        let ys: Vec<String> = (0..3).map(|i| num(output_point(at, i, 3).y)).collect();
        assert_eq!(ys, ["34", "48", "62"]);
        let mid = edge_midpoint(Point { x: 0.0, y: 0.0 }, Point { x: 200.0, y: 100.0 });
        assert_eq!((num(mid.x), num(mid.y)), ("100".into(), "50".into()));
    }

    #[test]
    fn the_extent_stands_in_for_every_step_in_bounds() {
        let steps = [Position { x: 40.0, y: 300.0 }, Position { x: -20.0, y: 80.0 }, Position { x: 500.0, y: 120.0 }];
        let (a, b) = extent(steps).unwrap();
        assert_eq!((a, b), (Position { x: -20.0, y: 80.0 }, Position { x: 500.0, y: 300.0 }));
        let view = [Position { x: 100.0, y: -400.0 }, Position { x: 900.0, y: 200.0 }];
        assert_eq!(bounds([a, b].into_iter().chain(view), 20.0), bounds(steps.into_iter().chain(view), 20.0));
        assert_eq!(extent([]), None);
    }

    #[test]
    fn bounds_pad_the_steps() {
        let (x, y, w, h) = bounds([Position { x: 0.0, y: 0.0 }, Position { x: 100.0, y: 50.0 }], 20.0);
        assert_eq!((x, y, w, h), (-20.0, -20.0, 100.0 + NODE_WIDTH + 40.0, 50.0 + NODE_HEIGHT + 40.0));
        assert_eq!(bounds([], 20.0), (0.0, 0.0, 640.0, 360.0));
    }
}
