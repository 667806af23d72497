//! Calibration of multiple-choice runs, recomputed from their samples (no rerun): each item's
//! choice distribution is the softmax of the choices' log-likelihoods (raw, and normalised by
//! the choice's characters as acc_norm ranks them); confidence = the top choice's probability,
//! correct = the top choice is the gold one. Reported: expected calibration error with
//! equal-mass bins (10 and 15), the multi-class Brier score, and the AUROC of confidence
//! against correctness (does the model know when it is right?).

use lmdensity_core::{ItemSample, Sample};
use serde::Serialize;

/// One reliability-diagram bin: items of similar confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Items in the bin.
    pub n: usize,
    /// Mean confidence.
    pub confidence: f64,
    /// Fraction correct.
    pub accuracy: f64,
}

/// Calibration of one way of reading the choices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// `raw` (softmax of log-likelihoods) or `per_char` (of log-likelihood per character).
    pub scoring: String,
    /// Items with at least two choices.
    pub items: usize,
    /// Fraction whose top choice is gold.
    pub accuracy: f64,
    /// Mean confidence of the top choice.
    pub mean_confidence: f64,
    /// ECE over 10 equal-mass bins: Σ (n_b/N)·|accuracy_b − confidence_b|.
    pub ece_10: f64,
    /// ECE over 15 equal-mass bins.
    pub ece_15: f64,
    /// Mean over items of Σ_j (p_j − [j = gold])².
    pub brier: f64,
    /// Probability that a correct item has higher confidence than a wrong one (ties count ½);
    /// none when every item is right or every item wrong.
    pub auroc: Option<f64>,
    /// The 10 equal-mass bins, by rising confidence (the reliability diagram).
    pub bins: Vec<Bin>,
}

/// One item's (confidence, correct, Brier term) under `score`.
fn item(item: &ItemSample, score: impl Fn(usize) -> f64) -> (f64, bool, f64) {
    let logits: Vec<f64> = (0..item.choices.len()).map(score).collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    let p: Vec<f64> = logits.iter().map(|l| (l - max).exp() / z).collect();
    let top = p
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        });
    let brier = p
        .iter()
        .enumerate()
        .map(|(j, pj)| (pj - f64::from(u8::from(j == item.gold))).powi(2))
        .sum();
    (top.1, top.0 == item.gold, brier)
}

/// Equal-mass bins over items sorted by confidence: bin b holds items ⌊bN/B⌋..⌊(b+1)N/B⌋.
pub fn equal_mass_bins(sorted: &[(f64, bool)], n_bins: usize) -> Vec<Bin> {
    let n = sorted.len();
    (0..n_bins)
        .filter_map(|b| {
            let part = &sorted[b * n / n_bins..(b + 1) * n / n_bins];
            (!part.is_empty()).then(|| Bin {
                n: part.len(),
                confidence: part.iter().map(|(c, _)| c).sum::<f64>() / part.len() as f64,
                accuracy: part.iter().filter(|(_, ok)| *ok).count() as f64 / part.len() as f64,
            })
        })
        .collect()
}

fn ece(bins: &[Bin], n: usize) -> f64 {
    bins.iter()
        .map(|b| b.n as f64 / n as f64 * (b.accuracy - b.confidence).abs())
        .sum()
}

/// AUROC of confidence for telling correct from wrong items (Mann–Whitney, ties ½).
pub fn auroc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|(_, ok)| *ok).count();
    let negatives = sorted.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the positives' mid-ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let j = (i..sorted.len())
            .find(|&j| sorted[j].0 != sorted[i].0)
            .unwrap_or(sorted.len());
        let mid_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mid_rank * sorted[i..j].iter().filter(|(_, ok)| *ok).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

fn calibration(scoring: &str, items: &[&ItemSample], per_char: bool) -> Calibration {
    let rows: Vec<(f64, bool, f64)> = items
        .iter()
        .map(|it| {
            item(it, |j| {
                let c = &it.choices[j];
                match per_char {
                    true => c.loglikelihood / c.n_chars.max(1) as f64,
                    false => c.loglikelihood,
                }
            })
        })
        .collect();
    let n = rows.len();
    let mut scored: Vec<(f64, bool)> = rows.iter().map(|&(c, ok, _)| (c, ok)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bins_10 = equal_mass_bins(&scored, 10);
    Calibration {
        scoring: scoring.into(),
        items: n,
        accuracy: scored.iter().filter(|(_, ok)| *ok).count() as f64 / n as f64,
        mean_confidence: scored.iter().map(|(c, _)| c).sum::<f64>() / n as f64,
        ece_10: ece(&bins_10, n),
        ece_15: ece(&equal_mass_bins(&scored, 15), n),
        brier: rows.iter().map(|r| r.2).sum::<f64>() / n as f64,
        auroc: auroc(&scored),
        bins: bins_10,
    }
}

/// Calibration of a task run's items, raw and per character; none when no item has two or
/// more choices (LAMBADA's single targets have no choice distribution).
pub fn of_samples(samples: &[Sample]) -> Vec<Calibration> {
    let items: Vec<&ItemSample> = samples
        .iter()
        .filter_map(|s| match s {
            Sample::TaskItem(i) if i.choices.len() >= 2 && i.gold < i.choices.len() => Some(i),
            _ => None,
        })
        .collect();
    if items.is_empty() {
        return Vec::new();
    }
    vec![
        calibration("raw", &items, false),
        calibration("per_char", &items, true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmdensity_core::ChoiceScore;

    fn two_choice(gold: usize, p_first: f64) -> Sample {
        let choice = |p: f64| ChoiceScore {
            loglikelihood: p.ln(),
            is_greedy: false,
            n_tokens: 1,
            n_chars: 1,
            n_bytes: 1,
        };
        Sample::TaskItem(ItemSample {
            index: 0,
            gold,
            choices: vec![choice(p_first), choice(1.0 - p_first)],
        })
    }

    #[test]
    fn a_perfectly_calibrated_run_has_zero_ece_and_a_hand_computed_brier() {
        // Ten groups of ten items; a group at confidence c has 10·c items right, so each
        // equal-mass bin of ten is one group whose accuracy equals its confidence.
        let groups = [0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8, 0.9, 0.9, 0.9];
        let samples: Vec<Sample> = groups
            .iter()
            .flat_map(|&c| {
                let right = (c * 10.0_f64).round() as usize;
                (0..10).map(move |i| two_choice(if i < right { 0 } else { 1 }, c))
            })
            .collect();
        let raw = &of_samples(&samples)[0];
        assert!(raw.ece_10.abs() < 1e-9, "{raw:?}");
        // Right: 2(1 − c)²; wrong: 2c²; over a group: 20·c·(1 − c) per 10 items.
        let brier: f64 = groups.iter().map(|c| 20.0 * c * (1.0 - c)).sum::<f64>() / 100.0;
        assert!(
            (raw.brier - brier).abs() < 1e-12,
            "{} vs {brier}",
            raw.brier
        );
        let auroc = raw.auroc.expect("both classes");
        assert!(auroc > 0.5 && auroc < 1.0, "{auroc}");
    }

    #[test]
    fn overconfidence_shows_in_ece_and_auroc_ranks_right_above_wrong() {
        let samples: Vec<Sample> = (0..20)
            .map(|i| match i % 2 {
                0 => two_choice(0, 0.95),
                _ => two_choice(1, 0.6),
            })
            .collect();
        let raw = &of_samples(&samples)[0];
        // Half right at 0.95, half wrong at 0.6: ECE = ½·|1 − 0.95| + ½·|0 − 0.6| = 0.325.
        assert!((raw.ece_10 - 0.325).abs() < 1e-9, "{raw:?}");
        assert_eq!(raw.auroc, Some(1.0));
        assert_eq!(raw.bins.len(), 10);
    }

    #[test]
    fn single_target_items_have_no_calibration() {
        let one = Sample::TaskItem(ItemSample {
            index: 0,
            gold: 0,
            choices: vec![ChoiceScore {
                loglikelihood: -1.0,
                is_greedy: true,
                n_tokens: 1,
                n_chars: 1,
                n_bytes: 1,
            }],
        });
        assert!(of_samples(&[one]).is_empty());
    }
}
