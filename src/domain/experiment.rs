//! An A/B test of the call script: a second script (`b`) given to a share of the leads, chosen
//! by a hash of the lead id, so a lead keeps its variant however often its call is handled.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::script::Script;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Experiment {
    /// The script variant `b`; none: every call uses the script (`a`).
    pub variant_b: Option<Script>,
    /// The share of leads (0 to 1) called with `b`.
    pub share_b: f64,
}

impl Experiment {
    pub fn running(&self) -> bool {
        self.variant_b.is_some() && self.share_b > 0.0
    }

    /// `a` or `b` for this lead: the same answer for the same lead id, every time.
    pub fn variant_for(&self, lead_id: Uuid) -> &'static str {
        if !self.running() {
            return "a";
        }
        let digest = Sha256::digest(lead_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let point = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
        if point < self.share_b { "b" } else { "a" }
    }
}

/// One variant's calls and what came of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantFigures {
    pub variant: String,
    pub calls: u64,
    /// Calls with every question's answer read.
    pub complete_calls: u64,
    pub qualified: u64,
    pub booked: u64,
    pub median_call_secs: Option<f64>,
}

impl VariantFigures {
    pub fn qualified_rate(&self) -> f64 {
        rate(self.qualified, self.calls)
    }

    pub fn booking_rate(&self) -> f64 {
        rate(self.booked, self.calls)
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

/// The two variants side by side: each one's figures and rates, and whether the qualified and
/// booking rates differ beyond chance (p below 0.05).
pub fn comparison(a: &VariantFigures, b: &VariantFigures) -> serde_json::Value {
    let side = |v: &VariantFigures| {
        serde_json::json!({
            "variant": v.variant, "calls": v.calls, "complete_calls": v.complete_calls,
            "qualified": v.qualified, "qualified_rate": v.qualified_rate(),
            "booked": v.booked, "booking_rate": v.booking_rate(), "median_call_secs": v.median_call_secs,
        })
    };
    let test = |x1, x2| {
        let p = two_proportion_p(x1, a.calls, x2, b.calls);
        serde_json::json!({ "p_value": p.map(|p| (p * 1000.0).round() / 1000.0), "significant": p.is_some_and(|p| p < 0.05) })
    };
    serde_json::json!({
        "variants": [side(a), side(b)],
        "qualified_rate": test(a.qualified, b.qualified),
        "booking_rate": test(a.booked, b.booked),
    })
}

/// Whether two rates differ beyond chance: the two-sided p-value of a two-proportion z-test of
/// `x1` of `n1` against `x2` of `n2`; none when either group is empty or no rate varies.
pub fn two_proportion_p(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p1 - p2).abs() / se;
    Some((2.0 * (1.0 - normal_cdf(z))).clamp(0.0, 1.0))
}

/// The standard normal distribution function, from erf (Abramowitz and Stegun 7.1.26, error
/// below 1.5e-7: plenty for a p-value read against 0.05).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    0.5 * (1.0 + if x >= 0.0 { erf } else { -erf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifty_fifty_split_of_400_leads_gives_each_variant_200_give_or_take_30_and_never_moves() {
        let experiment = Experiment {
            variant_b: Some(Script::default()),
            share_b: 0.5,
        };
        let leads: Vec<Uuid> = (0..400).map(|_| Uuid::now_v7()).collect();
        let b = leads.iter().filter(|id| experiment.variant_for(**id) == "b").count();
        assert!((170..=230).contains(&b), "{b} of 400 got b");
        for id in &leads {
            assert_eq!(experiment.variant_for(*id), experiment.variant_for(*id));
        }
        let off = Experiment {
            share_b: 0.5,
            ..Experiment::default()
        };
        assert!(
            leads.iter().all(|id| off.variant_for(*id) == "a"),
            "no variant b: all a"
        );
    }

    #[test]
    fn the_two_proportion_test_tells_a_real_difference_from_noise() {
        // 60% against 40% of 200 each is far beyond chance; 52% against 50% is not.
        assert!(two_proportion_p(120, 200, 80, 200).is_some_and(|p| p < 0.001));
        assert!(two_proportion_p(104, 200, 100, 200).is_some_and(|p| p > 0.5));
        assert_eq!(two_proportion_p(1, 0, 1, 10), None);
        // z = 1.96 is p = 0.05.
        assert!((2.0 * (1.0 - normal_cdf(1.96)) - 0.05).abs() < 1e-3);
    }
}
