//! The statistics reports use: rates, and comparing a split's branches
//! with a two-proportion z-test, so that a report says "not yet
//! significant" rather than crown a branch on a lucky week.
//!
//! Pure functions of counts; nothing here reads the clock or the store.

use serde::{Deserialize, Serialize};

/// The significance level a difference must reach (two-sided).
pub const ALPHA: f64 = 0.05;

/// Below this many participants in a branch, or this many successes or
/// failures, the normal approximation behind the test does not hold:
/// no difference is called significant.
pub const MIN_PARTICIPANTS: u64 = 30;
pub const MIN_OUTCOMES: u64 = 5;

/// `part / whole`, or `None` when there is no whole.
pub fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A rate as people read it: `12.5%`, or `–` without a whole.
pub fn percent(part: u64, whole: u64) -> String {
    match rate(part, whole) {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "–".into(),
    }
}

/// One side of a comparison: `successes` out of `trials`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

/// The two-proportion z-test of `a` against `b`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZTest {
    /// `rate(a) - rate(b)`.
    pub difference: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    /// Enough data for the test to be read at all ([`MIN_PARTICIPANTS`], [`MIN_OUTCOMES`]).
    pub enough_data: bool,
}

impl ZTest {
    /// Significant at `alpha`, with enough data.
    pub fn significant_at(&self, alpha: f64) -> bool {
        self.enough_data && self.p_value < alpha
    }
}

/// The pooled two-proportion z-test; `None` when a side has no trials.
/// With no variance at all (every trial a success, or none) the sides
/// are equal (z = 0) or entirely apart (z infinite, p = 0).
pub fn two_proportion(a: Proportion, b: Proportion) -> Option<ZTest> {
    if a.trials == 0 || b.trials == 0 {
        return None;
    }
    let (n1, n2) = (a.trials as f64, b.trials as f64);
    let (p1, p2) = (a.successes as f64 / n1, b.successes as f64 / n2);
    let pooled = (a.successes + b.successes) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let difference = p1 - p2;
    let (z, p_value) = if se == 0.0 {
        if difference == 0.0 {
            (0.0, 1.0)
        } else {
            (f64::INFINITY.copysign(difference), 0.0)
        }
    } else {
        let z = difference / se;
        (z, erfc(z.abs() / std::f64::consts::SQRT_2))
    };
    let enough = |p: Proportion| {
        p.trials >= MIN_PARTICIPANTS && p.successes >= MIN_OUTCOMES && p.trials - p.successes.min(p.trials) >= MIN_OUTCOMES
    };
    Some(ZTest { difference, z, p_value, enough_data: enough(a) && enough(b) })
}

/// The leading branch among `branches` and whether it leads significantly:
/// it must beat every other branch at `ALPHA / (k - 1)` (Bonferroni, so
/// that more branches do not mean more lucky winners).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leader {
    /// Index into the branches given.
    pub index: usize,
    /// Its test against the runner-up (the closest other branch).
    pub against_runner_up: Option<ZTest>,
    pub significant: bool,
}

pub fn leader(branches: &[Proportion]) -> Option<Leader> {
    let rate_of = |p: &Proportion| rate(p.successes, p.trials).unwrap_or(-1.0);
    let index = (0..branches.len()).max_by(|&i, &j| rate_of(&branches[i]).total_cmp(&rate_of(&branches[j])).then(j.cmp(&i)))?;
    if branches.len() < 2 {
        return Some(Leader { index, against_runner_up: None, significant: false });
    }
    let alpha = ALPHA / (branches.len() - 1) as f64;
    let tests: Vec<(usize, Option<ZTest>)> =
        (0..branches.len()).filter(|&i| i != index).map(|i| (i, two_proportion(branches[index], branches[i]))).collect();
    let significant = tests.iter().all(|(_, t)| t.is_some_and(|t| t.difference > 0.0 && t.significant_at(alpha)));
    let runner_up = tests.iter().max_by(|a, b| rate_of(&branches[a.0]).total_cmp(&rate_of(&branches[b.0]))).and_then(|(_, t)| *t);
    Some(Leader { index, against_runner_up: runner_up, significant })
}

/// The complementary error function, to within 1.2e-7 everywhere
/// (Numerical Recipes' `erfcc`, a Chebyshev fit): enough for p-values.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(successes: u64, trials: u64) -> Proportion {
        Proportion { successes, trials }
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    // Reference values from Python's math.erfc on the same formula
    // (z = (p1 - p2) / sqrt(p(1-p)(1/n1 + 1/n2)), p = erfc(|z| / √2)).
    #[test]
    fn the_z_test_matches_known_values() {
        let cases = [
            (p(200, 1000), p(250, 1000), -2.677398, 0.00741965),
            (p(120, 1000), p(100, 1000), 1.429301, 0.15291778),
            (p(30, 100), p(45, 100), -2.190890, 0.02845974),
            (p(1, 10), p(9, 10), -3.577709, 0.00034662),
            (p(50, 500), p(50, 500), 0.0, 1.0),
        ];
        for (a, b, z, pv) in cases {
            let t = two_proportion(a, b).unwrap();
            assert!(close(t.z, z, 1e-5), "{a:?} {b:?}: z {} ≠ {z}", t.z);
            assert!(close(t.p_value, pv, 1e-6), "{a:?} {b:?}: p {} ≠ {pv}", t.p_value);
        }
    }

    #[test]
    fn small_samples_are_never_significant_however_far_apart() {
        let t = two_proportion(p(1, 10), p(9, 10)).unwrap();
        assert!(t.p_value < 0.001);
        assert!(!t.enough_data && !t.significant_at(ALPHA));
        let t = two_proportion(p(200, 1000), p(250, 1000)).unwrap();
        assert!(t.enough_data && t.significant_at(ALPHA));
        assert!(!two_proportion(p(120, 1000), p(100, 1000)).unwrap().significant_at(ALPHA));
    }

    #[test]
    fn no_trials_no_test_and_no_variance_is_handled() {
        assert_eq!(two_proportion(p(0, 0), p(1, 10)), None);
        let same = two_proportion(p(0, 50), p(0, 50)).unwrap();
        assert_eq!((same.z, same.p_value), (0.0, 1.0));
        // Every trial a success on one side, none on the other: z = 10.
        let apart = two_proportion(p(50, 50), p(0, 50)).unwrap();
        assert!(close(apart.z, 10.0, 1e-9) && apart.p_value < 1e-20, "{apart:?}");
    }

    #[test]
    fn erfc_matches_the_table() {
        // erfc(0) = 1, erfc(1) = 0.157299207, erfc(2) = 0.004677735, erfc(-1) = 1.842700793
        for (x, want) in [(0.0, 1.0), (1.0, 0.157_299_207), (2.0, 0.004_677_735), (-1.0, 1.842_700_793), (0.5, 0.479_500_122)] {
            assert!(close(erfc(x), want, 2e-7), "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn the_leader_must_beat_every_branch_with_the_level_shared_out() {
        // Two branches, clearly apart: B leads significantly.
        let l = leader(&[p(200, 1000), p(250, 1000)]).unwrap();
        assert_eq!((l.index, l.significant), (1, true));
        // Three branches: B beats A but not C by enough.
        let l = leader(&[p(200, 1000), p(250, 1000), p(240, 1000)]).unwrap();
        assert_eq!((l.index, l.significant), (1, false));
        // p = 0.0074 < 0.05, but with four branches the level is 0.0167 — still in; at 0.02845 (30/100 vs 45/100) it is out.
        let l = leader(&[p(45, 100), p(30, 100), p(10, 100), p(12, 100)]).unwrap();
        assert_eq!((l.index, l.significant), (0, false));
        let l = leader(&[p(45, 100), p(30, 100)]).unwrap();
        assert_eq!((l.index, l.significant), (0, true));
        assert_eq!(leader(&[]), None);
        assert!(!leader(&[p(5, 10)]).unwrap().significant);
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(rate(3, 4), Some(0.75));
    }
}
