//! Validator benchmark: `cargo bench -p app --bench validate`.
//!
//! Validates (1) a generated flow of 10,000 steps and 20,000 edges, with
//! loops through waits, and (2) the shared 1,000-step flow
//! (`benches/graph-1000.json`, a copy of shared/bench/graph-1000.json), and
//! prints the median, fastest and slowest of repeated runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use app::core::flow::{Edge, FlowDocument, Position, Step};
use app::core::kinds::{ports, StepKind};
use app::core::{validate, Context};
use serde_json::json;

/// A deterministic generator, so every run measures the same flow.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn generated(steps: usize, edges: usize) -> FlowDocument {
    let mut rng = Lcg(42);
    let mut doc = FlowDocument::new_draft("bench");
    doc.steps[0].id = "s0".into();
    for i in 1..steps {
        let (kind, settings) = match i % 10 {
            0 => (StepKind::Wait, json!({"mode": "duration", "amount": 1, "unit": "days"})),
            5 => (StepKind::Split, json!({"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 30}, {"port": "c", "percent": 20}]})),
            _ => (StepKind::Condition, json!({"criteria": [{"field": "score", "op": "greater_than", "value": i}], "logic": "all"})),
        };
        let mut step = Step::new(format!("s{i}"), kind);
        step.name = Some(format!("Step {i}"));
        step.position = Some(Position { x: (i % 100) as f64 * 200.0, y: (i / 100) as f64 * 90.0 });
        step.settings = settings.as_object().unwrap().clone();
        doc.steps.push(step);
    }
    // Each output goes forward, except that now and then a wait's output
    // loops back: cycles that contain a wait, as real nurture loops do.
    'outer: for i in 0..steps {
        for port in ports(&doc.steps[i]) {
            if doc.edges.len() == edges {
                break 'outer;
            }
            let to = if doc.steps[i].kind == StepKind::Wait && rng.below(3) == 0 {
                1 + rng.below(i)
            } else {
                (i + 1 + rng.below(40)).min(steps - 1)
            };
            let to = if to == i { 10 } else { to }; // s10 is a wait: the loop pauses
            doc.edges.push(Edge { from: format!("s{i}"), port: port.to_owned(), to: format!("s{to}") });
        }
    }
    doc
}

fn measure(label: &str, runs: usize, mut run: impl FnMut()) {
    run(); // warm up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<48} median {:>8.2} ms   min {:>8.2} ms   max {:>8.2} ms   ({runs} runs)",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
}

fn main() {
    let context = Context::default();
    let big = generated(10_000, 20_000);
    let findings = validate(&big, &context);
    for error in &findings.errors {
        println!("  error: {}", error.message);
    }
    println!(
        "generated flow: {} steps, {} edges -> {} errors, {} warnings",
        big.steps.len(),
        big.edges.len(),
        findings.errors.len(),
        findings.warnings.len()
    );
    measure("validate 10,000 steps / 20,000 edges", 31, || {
        black_box(validate(black_box(&big), &context));
    });
    let big_json = big.to_canonical_json();
    measure("parse + validate 10,000 steps (from JSON text)", 31, || {
        let doc = FlowDocument::from_json(black_box(&big_json)).unwrap();
        black_box(validate(&doc, &context));
    });

    let shared = include_str!("graph-1000.json");
    let doc = FlowDocument::from_json(shared).expect("graph-1000.json reads");
    let findings = validate(&doc, &context);
    println!(
        "graph-1000.json: {} steps, {} edges -> {} errors, {} warnings",
        doc.steps.len(),
        doc.edges.len(),
        findings.errors.len(),
        findings.warnings.len()
    );
    measure("validate graph-1000.json", 101, || {
        black_box(validate(black_box(&doc), &context));
    });
}

