//! Paired comparisons of two runs that scored the same items (task runs) or the same windows
//! (perplexity runs on the same corpus, mode and tokenizer): the question "did it get worse, or
//! is that noise?" answered on the differences item by item, which is far more sensitive than
//! comparing two standard errors.
//!
//! Per metric: McNemar's exact test for accuracies (with the discordant counts) or a paired
//! z-test on the per-unit differences for losses; a seeded paired-bootstrap percentile interval
//! of the difference B − A; the minimum detectable effect at this size (two-sided α = 0.05,
//! power 0.8: (z₀.₉₇₅ + z₀.₈)·sd(d)/√n); Wilson intervals for the accuracies; and
//! Benjamini–Hochberg q-values over every test of the comparison.

use std::collections::BTreeMap;

use lmdensity_core::stats::argmax;
use lmdensity_core::{ItemSample, Sample, StoredRun, WindowSample};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// z of the two-sided 5% level.
const Z_ALPHA: f64 = 1.959_963_984_540_054;
/// z of 80% power.
const Z_POWER: f64 = 0.841_621_233_572_914_3;

/// One metric compared on the paired units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedTest {
    /// Metric name (`arc_easy/acc`, `bits_per_byte`).
    pub metric: String,
    /// Units compared (items or windows both runs scored).
    pub n: usize,
    /// Run A's value on the paired units.
    pub a: f64,
    /// Run B's value on the paired units.
    pub b: f64,
    /// Wilson 95% interval of A's accuracy (accuracies only).
    pub a_wilson: Option<(f64, f64)>,
    /// Wilson 95% interval of B's accuracy.
    pub b_wilson: Option<(f64, f64)>,
    /// B − A.
    pub difference: f64,
    /// Paired-bootstrap 95% percentile interval of B − A.
    pub ci: (f64, f64),
    /// The test: `McNemar exact` or `paired z`.
    pub test: String,
    /// Accuracies: (A right and B wrong, A wrong and B right).
    pub discordant: Option<(usize, usize)>,
    /// Two-sided p-value of "no difference".
    pub p_value: f64,
    /// Benjamini–Hochberg q-value over the comparison's tests.
    pub q_value: f64,
    /// Smallest |B − A| this many paired units detect with power 0.8 at α = 0.05.
    pub minimum_detectable_effect: f64,
}

/// The paired part of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    /// `items` or `windows`.
    pub unit: String,
    /// Units in both runs.
    pub paired: usize,
    /// Units only one run has (left out of the tests).
    pub unpaired: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// One test per metric.
    pub tests: Vec<PairedTest>,
}

/// Whether the runs could be paired, and the tests when they could.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// The runs scored common units.
    Paired(Paired),
    /// They did not: the reason (the comparison above is then unpaired).
    Unpaired(String),
}

/// Pairs two runs from their samples; `None` for kinds that have no units to pair (bench).
pub fn pair(
    a: &StoredRun,
    b: &StoredRun,
    samples_a: &[Sample],
    samples_b: &[Sample],
    resamples: usize,
    seed: u64,
) -> Option<Pairing> {
    let setting = |run: &StoredRun, key: &str| run.manifest.settings.get(key).cloned();
    match (a.manifest.kind.as_str(), b.manifest.kind.as_str()) {
        ("task", "task") => {
            if setting(a, "task") != setting(b, "task") {
                return Some(Pairing::Unpaired("the runs scored different tasks".into()));
            }
            Some(pair_items(samples_a, samples_b, resamples, seed))
        }
        ("perplexity", "perplexity") => {
            for key in ["corpus_sha256", "mode", "max_length", "n_ctx"] {
                if setting(a, key) != setting(b, key) {
                    return Some(Pairing::Unpaired(format!(
                        "the runs differ in {key}: not the same windows"
                    )));
                }
            }
            let bytes = setting(a, "corpus_bytes").and_then(|v| v.as_f64());
            Some(pair_windows(samples_a, samples_b, bytes, resamples, seed))
        }
        _ => None,
    }
}

fn items(samples: &[Sample]) -> BTreeMap<usize, &ItemSample> {
    let mut out = BTreeMap::new();
    for s in samples {
        if let Sample::TaskItem(item) = s {
            out.entry(item.index).or_insert(item);
        }
    }
    out
}

/// Per-item correctness (`acc`: highest log-likelihood, or greedy match for single-target
/// items; `acc_norm`: per character) and gold loss (nats per gold token).
fn item_values(item: &ItemSample) -> [f64; 3] {
    let c = &item.choices;
    let hit = |i: usize| f64::from(u8::from(i == item.gold));
    let acc = if c.len() == 1 {
        f64::from(u8::from(c[0].is_greedy))
    } else {
        hit(argmax(c.iter().map(|x| x.loglikelihood)))
    };
    let acc_norm = hit(argmax(
        c.iter().map(|x| x.loglikelihood / x.n_chars.max(1) as f64),
    ));
    let gold = c
        .get(item.gold)
        .map_or(f64::NAN, |g| -g.loglikelihood / g.n_tokens.max(1) as f64);
    [acc, acc_norm, gold]
}

fn pair_items(a: &[Sample], b: &[Sample], resamples: usize, seed: u64) -> Pairing {
    let (ia, ib) = (items(a), items(b));
    let common: Vec<(&ItemSample, &ItemSample)> = ia
        .iter()
        .filter_map(|(i, x)| ib.get(i).map(|y| (*x, *y)))
        .filter(|(x, y)| x.gold == y.gold && x.choices.len() == y.choices.len())
        .collect();
    if common.is_empty() {
        return Pairing::Unpaired("the runs have no items in common".into());
    }
    let unpaired = ia.len() + ib.len() - 2 * common.len();
    let values: Vec<([f64; 3], [f64; 3])> = common
        .iter()
        .map(|(x, y)| (item_values(x), item_values(y)))
        .collect();
    let task = |name: &str| name.to_string();
    let column =
        |k: usize| -> (Vec<f64>, Vec<f64>) { values.iter().map(|(x, y)| (x[k], y[k])).unzip() };
    let mut tests = Vec::new();
    for (k, name) in [(0, "acc"), (1, "acc_norm")] {
        let (xa, xb) = column(k);
        tests.push(accuracy_test(task(name), &xa, &xb, resamples, seed));
    }
    let (xa, xb) = column(2);
    if xa.iter().chain(&xb).all(|v| v.is_finite()) {
        tests.push(mean_test(
            task("gold_nll_per_token (item mean)"),
            &xa,
            &xb,
            resamples,
            seed,
        ));
    }
    Pairing::Paired(finish(
        "items",
        common.len(),
        unpaired,
        resamples,
        seed,
        tests,
    ))
}

fn windows(samples: &[Sample]) -> BTreeMap<usize, &WindowSample> {
    let mut out = BTreeMap::new();
    for s in samples {
        if let Sample::PerplexityWindow(w) = s {
            out.entry(w.index).or_insert(w);
        }
    }
    out
}

fn pair_windows(
    a: &[Sample],
    b: &[Sample],
    corpus_bytes: Option<f64>,
    resamples: usize,
    seed: u64,
) -> Pairing {
    let (wa, wb) = (windows(a), windows(b));
    let common: Vec<(&WindowSample, &WindowSample)> = wa
        .iter()
        .filter_map(|(i, x)| wb.get(i).map(|y| (*x, *y)))
        .filter(|(x, y)| x.first_scored_token == y.first_scored_token && x.n_scored == y.n_scored)
        .collect();
    if common.is_empty() {
        return Pairing::Unpaired(
            "the runs have no windows in common (another tokenizer or corpus)".into(),
        );
    }
    let unpaired = wa.len() + wb.len() - 2 * common.len();
    let tokens: Vec<f64> = common.iter().map(|(x, _)| x.n_scored as f64).collect();
    let total_tokens: f64 = tokens.iter().sum();
    // Nats per token over the windows (a ratio of sums), or bits per byte when every window
    // of the corpus is paired: Σ nll / (bytes · ln 2).
    let per_byte = corpus_bytes.filter(|_| unpaired == 0);
    let (metric, scale) = match per_byte {
        Some(bytes) => (
            "bits_per_byte",
            total_tokens / (bytes * std::f64::consts::LN_2),
        ),
        None => ("nll_per_token", 1.0),
    };
    let nll_a: Vec<f64> = common.iter().map(|(x, _)| x.nll_sum).collect();
    let nll_b: Vec<f64> = common.iter().map(|(_, y)| y.nll_sum).collect();
    let stat = |idx: &[usize], nll: &[f64]| {
        let (n, t) = idx
            .iter()
            .fold((0.0, 0.0), |(n, t), &i| (n + nll[i], t + tokens[i]));
        scale * n / t
    };
    let all: Vec<usize> = (0..common.len()).collect();
    let (va, vb) = (stat(&all, &nll_a), stat(&all, &nll_b));
    let ci = bootstrap_ci(common.len(), resamples, seed, |idx| {
        stat(idx, &nll_b) - stat(idx, &nll_a)
    });
    // Per-window differences in the metric's units, token-weighted, for the z-test and MDE.
    let d: Vec<f64> = (0..common.len())
        .map(|i| scale * (nll_b[i] - nll_a[i]) / tokens[i])
        .collect();
    let w: Vec<f64> = tokens.iter().map(|t| t / total_tokens).collect();
    let mean_d: f64 = d.iter().zip(&w).map(|(d, w)| d * w).sum();
    let var: f64 = d
        .iter()
        .zip(&w)
        .map(|(d, w)| w * (d - mean_d).powi(2))
        .sum();
    let n_eff = 1.0 / w.iter().map(|w| w * w).sum::<f64>();
    let se = (var / n_eff.max(1.0)).sqrt();
    let test = PairedTest {
        metric: metric.into(),
        n: common.len(),
        a: va,
        b: vb,
        a_wilson: None,
        b_wilson: None,
        difference: vb - va,
        ci,
        test: "paired z (token-weighted windows)".into(),
        discordant: None,
        p_value: two_sided_p((vb - va) / se),
        q_value: f64::NAN,
        minimum_detectable_effect: (Z_ALPHA + Z_POWER) * se,
    };
    Pairing::Paired(finish(
        "windows",
        common.len(),
        unpaired,
        resamples,
        seed,
        vec![test],
    ))
}

fn finish(
    unit: &str,
    paired: usize,
    unpaired: usize,
    resamples: usize,
    seed: u64,
    mut tests: Vec<PairedTest>,
) -> Paired {
    let q = benjamini_hochberg(&tests.iter().map(|t| t.p_value).collect::<Vec<_>>());
    for (t, q) in tests.iter_mut().zip(q) {
        t.q_value = q;
    }
    Paired {
        unit: unit.into(),
        paired,
        unpaired,
        resamples,
        seed,
        tests,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Sample standard deviation of the paired differences.
fn sd_of_differences(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let m = mean(&d);
    let n = d.len();
    if n < 2 {
        return 0.0;
    }
    (d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

fn accuracy_test(metric: String, a: &[f64], b: &[f64], resamples: usize, seed: u64) -> PairedTest {
    let n = a.len();
    let right = |v: &[f64]| v.iter().filter(|&&x| x > 0.5).count();
    let a_only = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x > 0.5 && **y < 0.5)
        .count();
    let b_only = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x < 0.5 && **y > 0.5)
        .count();
    let (va, vb) = (mean(a), mean(b));
    let sd = sd_of_differences(a, b);
    PairedTest {
        metric,
        n,
        a: va,
        b: vb,
        a_wilson: Some(wilson(right(a), n)),
        b_wilson: Some(wilson(right(b), n)),
        difference: vb - va,
        ci: bootstrap_ci(n, resamples, seed, |idx| {
            idx.iter().map(|&i| b[i] - a[i]).sum::<f64>() / idx.len() as f64
        }),
        test: "McNemar exact".into(),
        discordant: Some((a_only, b_only)),
        p_value: mcnemar_exact(a_only, b_only),
        q_value: f64::NAN,
        minimum_detectable_effect: (Z_ALPHA + Z_POWER) * sd / (n as f64).sqrt(),
    }
}

fn mean_test(metric: String, a: &[f64], b: &[f64], resamples: usize, seed: u64) -> PairedTest {
    let n = a.len();
    let (va, vb) = (mean(a), mean(b));
    let se = sd_of_differences(a, b) / (n as f64).sqrt();
    PairedTest {
        metric,
        n,
        a: va,
        b: vb,
        a_wilson: None,
        b_wilson: None,
        difference: vb - va,
        ci: bootstrap_ci(n, resamples, seed, |idx| {
            idx.iter().map(|&i| b[i] - a[i]).sum::<f64>() / idx.len() as f64
        }),
        test: "paired z".into(),
        discordant: None,
        p_value: two_sided_p((vb - va) / se),
        q_value: f64::NAN,
        minimum_detectable_effect: (Z_ALPHA + Z_POWER) * se,
    }
}

/// Percentile interval (2.5%, 97.5%) of `stat` over `resamples` resamples of `n` unit indices
/// drawn with replacement (ChaCha8 seeded with `seed`: the same interval every time).
pub fn bootstrap_ci(
    n: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> f64,
) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx = vec![0usize; n];
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            idx.iter_mut().for_each(|i| *i = rng.random_range(0..n));
            stat(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    (at(0.025), at(0.975))
}

/// McNemar's exact test: two-sided binomial p-value of `b` vs `c` discordant pairs under
/// p = ½ (min(1, 2·P[X ≤ min(b, c)]), X ~ Bin(b + c, ½)), summed in log space.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let mut log_term = -(n as f64) * std::f64::consts::LN_2; // ln C(n,0)·½ⁿ
    let mut log_sum = log_term;
    for i in 0..k {
        log_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        let (hi, lo) = if log_term > log_sum {
            (log_term, log_sum)
        } else {
            (log_sum, log_term)
        };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    (2.0 * log_sum.exp()).min(1.0)
}

/// Wilson score interval (95%) of `successes` out of `n`.
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z2 = Z_ALPHA * Z_ALPHA;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_ALPHA * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided normal p-value of `z` (1 when z is not finite: no spread, no evidence).
fn two_sided_p(z: f64) -> f64 {
    if z.is_finite() {
        libm::erfc(z.abs() / std::f64::consts::SQRT_2)
    } else {
        1.0
    }
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the input's order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[j].total_cmp(&p[i]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank_from_top, &i) in order.iter().enumerate() {
        let rank = m - rank_from_top;
        running = running.min(p[i] * m as f64 / rank as f64);
        q[i] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // 2 vs 8 discordant: 2·(C(10,0)+C(10,1)+C(10,2))/2¹⁰ = 2·56/1024 = 0.109375.
        assert!((mcnemar_exact(2, 8) - 0.109_375).abs() < 1e-12);
        assert!((mcnemar_exact(8, 2) - 0.109_375).abs() < 1e-12);
        // 0 vs 6: 2/64.
        assert!((mcnemar_exact(0, 6) - 0.031_25).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite (log-space sum): 400 vs 500 is far beyond chance.
        let p = mcnemar_exact(400, 500);
        assert!(p > 0.0 && p < 1e-3, "{p}");
    }

    #[test]
    fn wilson_and_bh_match_textbook_values() {
        // 81 of 263 (Wilson's own example scale): centre and bounds by the formula.
        let (lo, hi) = wilson(81, 263);
        assert!(
            (lo - 0.2553).abs() < 1e-3 && (hi - 0.3662).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 10).0, 0.0);
        // BH: p = (0.01, 0.04, 0.03, 0.2) → q = (0.04, 0.0533, 0.0533, 0.2).
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        let want = [0.04, 0.04 * 4.0 / 3.0, 0.04 * 4.0 / 3.0, 0.2];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn hand_computed_paired_case() {
        // 10 items: A right on 0-5, B right on 0-2 and 6-9. Discordant: A only 3..=5 (3), B only
        // 6..=9 (4); McNemar p = 2·(C(7,0)+C(7,1)+C(7,2)+C(7,3))/2⁷ = 2·64/128 = 1.
        let a: Vec<f64> = (0..10).map(|i| f64::from(u8::from(i < 6))).collect();
        let b: Vec<f64> = (0..10)
            .map(|i| f64::from(u8::from(!(3..6).contains(&i))))
            .collect();
        let t = accuracy_test("acc".into(), &a, &b, 2000, 0);
        assert_eq!(t.discordant, Some((3, 4)));
        assert!((t.p_value - 1.0).abs() < 1e-12);
        assert!((t.difference - 0.1).abs() < 1e-12);
        // The resampled mean of d ∈ {−1 ×3, +1 ×4, 0 ×3} stays within what 10 draws can give.
        assert!(
            t.ci.0 >= -1.0 && t.ci.1 <= 1.0 && t.ci.0 < 0.1 && t.ci.1 > 0.1,
            "{:?}",
            t.ci
        );
        // A constant difference has a degenerate interval at that difference.
        let c = mean_test("loss".into(), &[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5], 500, 3);
        assert_eq!(c.ci, (0.5, 0.5));
        assert!((c.difference - 0.5).abs() < 1e-12);
        // MDE for accuracies: (z.975 + z.8)·sd(d)/√n, sd of {−1,−1,−1,1,1,1,1,0,0,0}.
        let d_mean = 0.1f64;
        let var =
            (3.0 * (-1.0 - d_mean).powi(2) + 4.0 * (1.0 - d_mean).powi(2) + 3.0 * d_mean * d_mean)
                / 9.0;
        let want = (Z_ALPHA + Z_POWER) * var.sqrt() / 10f64.sqrt();
        assert!((t.minimum_detectable_effect - want).abs() < 1e-12);
    }

    #[test]
    fn paired_bootstrap_interval_is_seeded_and_brackets_the_difference() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i % 3 != 0))).collect();
        let b: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i % 4 != 0))).collect();
        let t1 = accuracy_test("acc".into(), &a, &b, 500, 7);
        let t2 = accuracy_test("acc".into(), &a, &b, 500, 7);
        assert_eq!(t1.ci, t2.ci, "same seed, same interval");
        assert!(
            t1.ci.0 <= t1.difference && t1.difference <= t1.ci.1,
            "{t1:?}"
        );
        assert!(t1.minimum_detectable_effect > 0.0);
        let (a_only, b_only) = t1.discordant.expect("counts");
        // A right, B wrong: i % 4 == 0 and i % 3 != 0; A wrong, B right: i % 3 == 0, i % 4 != 0.
        assert_eq!(
            a_only,
            (0..200).filter(|i| i % 4 == 0 && i % 3 != 0).count()
        );
        assert_eq!(
            b_only,
            (0..200).filter(|i| i % 3 == 0 && i % 4 != 0).count()
        );
    }
}
