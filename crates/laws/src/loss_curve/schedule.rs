//! Learning-rate schedules, rebuilt per step: the area terms of both loss-curve laws sum the
//! learning rate of every step, not only of the logged ones.
//!
//! [`KnownSchedule`] rebuilds the nine schedules of Luo et al.'s runs exactly as their
//! `src/lr_schedules.py` defines them (peak 3e-4, `np.linspace(0, peak, 2160)` as warmup, so
//! η₀ = 0 and η₂₁₅₉ = peak). [`Schedule::from_logged`] rebuilds any other run's schedule from
//! its CSV's own `lr` column by linear interpolation between logged steps.

use crate::LawError;

/// Peak learning rate of Luo et al.'s runs.
pub const PEAK_LR: f64 = 3e-4;
/// Final learning rate of their cosine and WSD schedules.
pub const END_LR: f64 = 3e-5;
/// Warmup steps (a linear ramp from 0 to the peak).
pub const WARMUP: usize = 2160;
/// Step at which the two-stage schedules (`wsdcon_k`) drop to k·1e-5.
pub const TWO_STAGE_SWITCH: usize = 8000;
/// Length of the two-stage schedules.
pub const TWO_STAGE_TOTAL: usize = 16000;

/// One of Luo et al.'s schedules, named as their file stems are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownSchedule {
    /// `cosine_T`: cosine from the peak to 3e-5 over T steps.
    Cosine {
        /// Total steps T.
        total: usize,
    },
    /// `constant_T`: the peak for T steps.
    Constant {
        /// Total steps T.
        total: usize,
    },
    /// `wsd_D_T`: the peak to step D, then geometric decay to 3e-5 at T.
    Wsd {
        /// First step of the decay.
        decay: usize,
        /// Total steps.
        total: usize,
    },
    /// `wsdld_D_T`: the peak to step D, then linear decay to 3e-5 at T.
    WsdLinear {
        /// First step of the decay.
        decay: usize,
        /// Total steps.
        total: usize,
    },
    /// `wsdcon_k`: the peak to step 8000, then k·1e-5 to step 16000.
    TwoStage {
        /// The second stage's learning rate in units of 1e-5.
        k: u32,
    },
}

impl KnownSchedule {
    /// Parses a file stem such as `cosine_24000`, `wsd_20000_24000` or `wsdcon_9`; `None` for
    /// anything else (including totals not beyond the warmup, or a decay outside the run).
    pub fn parse(stem: &str) -> Option<Self> {
        let mut parts = stem.split('_');
        let kind = parts.next()?;
        let numbers: Vec<usize> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let schedule = match (kind, numbers.as_slice()) {
            ("cosine", &[total]) => KnownSchedule::Cosine { total },
            ("constant", &[total]) => KnownSchedule::Constant { total },
            ("wsd", &[decay, total]) => KnownSchedule::Wsd { decay, total },
            ("wsdld", &[decay, total]) => KnownSchedule::WsdLinear { decay, total },
            ("wsdcon", &[k]) if k > 0 => KnownSchedule::TwoStage {
                k: u32::try_from(k).ok()?,
            },
            _ => return None,
        };
        let valid = match schedule {
            KnownSchedule::Cosine { total } | KnownSchedule::Constant { total } => total > WARMUP,
            KnownSchedule::Wsd { decay, total } | KnownSchedule::WsdLinear { decay, total } => {
                decay >= WARMUP && total > decay
            }
            KnownSchedule::TwoStage { .. } => true,
        };
        valid.then_some(schedule)
    }

    /// The name it was parsed from.
    pub fn name(&self) -> String {
        match self {
            KnownSchedule::Cosine { total } => format!("cosine_{total}"),
            KnownSchedule::Constant { total } => format!("constant_{total}"),
            KnownSchedule::Wsd { decay, total } => format!("wsd_{decay}_{total}"),
            KnownSchedule::WsdLinear { decay, total } => format!("wsdld_{decay}_{total}"),
            KnownSchedule::TwoStage { k } => format!("wsdcon_{k}"),
        }
    }

    /// Number of steps (the schedule covers steps 0 … total − 1).
    pub fn total(&self) -> usize {
        match *self {
            KnownSchedule::Cosine { total }
            | KnownSchedule::Constant { total }
            | KnownSchedule::Wsd { total, .. }
            | KnownSchedule::WsdLinear { total, .. } => total,
            KnownSchedule::TwoStage { .. } => TWO_STAGE_TOTAL,
        }
    }

    /// The learning rate of step `s` (`s < total`).
    pub fn rate(&self, s: usize) -> f64 {
        if s < WARMUP {
            // np.linspace(0, peak, WARMUP)
            return PEAK_LR * s as f64 / (WARMUP - 1) as f64;
        }
        let x = s as f64;
        match *self {
            KnownSchedule::Cosine { total } => {
                let phase = (x - WARMUP as f64) / (total - WARMUP) as f64;
                END_LR + 0.5 * (PEAK_LR - END_LR) * (1.0 + (std::f64::consts::PI * phase).cos())
            }
            KnownSchedule::Constant { .. } => PEAK_LR,
            KnownSchedule::Wsd { decay, .. } | KnownSchedule::WsdLinear { decay, .. }
                if s < decay =>
            {
                PEAK_LR
            }
            KnownSchedule::Wsd { decay, total } => {
                let span = (total - decay) as f64;
                PEAK_LR.powf((total as f64 - x) / span) * END_LR.powf((x - decay as f64) / span)
            }
            KnownSchedule::WsdLinear { decay, total } => {
                let f = (x - decay as f64) / (total - decay) as f64;
                PEAK_LR * (1.0 - f) + END_LR * f
            }
            KnownSchedule::TwoStage { k } if s >= TWO_STAGE_SWITCH => f64::from(k) * 1e-5,
            KnownSchedule::TwoStage { .. } => PEAK_LR,
        }
    }

    /// The learning rate of every step.
    pub fn rates(&self) -> Vec<f64> {
        (0..self.total()).map(|s| self.rate(s)).collect()
    }
}

/// Where a curve's per-step learning rates came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleSource {
    /// One of Luo et al.'s schedules, rebuilt from its definition.
    Known(KnownSchedule),
    /// The CSV's own `lr` column: linear interpolation between logged steps, a linear ramp
    /// from 0 at step 0 to the first logged step, and the last logged rate held after it.
    Logged,
}

impl std::fmt::Display for ScheduleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleSource::Known(k) => write!(f, "{} (rebuilt per step)", k.name()),
            ScheduleSource::Logged => {
                f.write_str("the file's lr column (linear between logged steps)")
            }
        }
    }
}

/// The learning rate of every step 0 … len − 1, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Origin of the rates.
    pub source: ScheduleSource,
    /// η_s for s = 0 … len − 1.
    pub rates: Vec<f64>,
}

impl Schedule {
    /// A known schedule, rebuilt per step.
    pub fn known(schedule: KnownSchedule) -> Self {
        Schedule {
            source: ScheduleSource::Known(schedule),
            rates: schedule.rates(),
        }
    }

    /// Per-step rates from logged `(step, lr)` pairs (steps increasing, rates finite and ≥ 0),
    /// covering steps 0 … `last` (at least the last logged step). Between two logged steps the
    /// rate is interpolated linearly (a drop between two logs becomes a ramp over that
    /// interval: give the schedule's name when it is known); before the first logged step it
    /// ramps linearly from 0 at step 0 (an assumed warmup); after the last it is held.
    pub fn from_logged(steps: &[usize], lrs: &[f64], last: usize) -> Result<Self, LawError> {
        let (Some(&first), Some(&end)) = (steps.first(), steps.last()) else {
            return Err(LawError::BadInput("no logged learning rates".into()));
        };
        if steps.len() != lrs.len() || steps.windows(2).any(|w| w[1] <= w[0]) {
            return Err(LawError::BadInput(
                "logged steps must increase, one rate each".into(),
            ));
        }
        let len = last.max(end) + 1;
        let mut rates = Vec::with_capacity(len);
        let mut knots: Vec<(usize, f64)> = steps.iter().copied().zip(lrs.iter().copied()).collect();
        if first > 0 {
            knots.insert(0, (0, 0.0));
        }
        for pair in knots.windows(2) {
            let ((s0, r0), (s1, r1)) = (pair[0], pair[1]);
            let span = (s1 - s0) as f64;
            rates.extend((s0..s1).map(|s| r0 + (r1 - r0) * (s - s0) as f64 / span));
        }
        let held = lrs[lrs.len() - 1];
        rates.resize(len, held);
        Ok(Schedule {
            source: ScheduleSource::Logged,
            rates,
        })
    }

    /// Number of steps covered.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether it covers no step.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The cumulative sums P_s = η₀ + … + η_s (numpy's `cumsum`): S1(t) = P_t.
    pub fn prefix_sums(&self) -> Vec<f64> {
        let mut total = 0.0;
        self.rates
            .iter()
            .map(|r| {
                total += r;
                total
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 + 1e-12 * b.abs()
    }

    #[test]
    fn names_round_trip_and_bad_names_are_none() {
        for name in [
            "cosine_24000",
            "constant_72000",
            "wsd_20000_24000",
            "wsdld_20000_24000",
            "wsdcon_3",
        ] {
            let parsed = KnownSchedule::parse(name).expect(name);
            assert_eq!(parsed.name(), name);
        }
        for bad in [
            "cosine",
            "cosine_x",
            "wsd_24000_20000",
            "cosine_100",
            "my_run",
            "wsdcon_0",
        ] {
            assert_eq!(KnownSchedule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn warmup_is_numpys_linspace() {
        let s = KnownSchedule::parse("constant_24000").expect("known");
        assert_eq!(s.rate(0), 0.0);
        assert!(close(s.rate(WARMUP - 1), PEAK_LR));
        assert!(close(s.rate(1), PEAK_LR / 2159.0));
        assert_eq!(s.rates().len(), 24000);
    }

    #[test]
    fn cosine_runs_from_the_peak_to_the_end_rate() {
        let s = KnownSchedule::Cosine { total: 24000 };
        assert!(close(s.rate(WARMUP), PEAK_LR));
        // The authors' logged lr at step 2288 and 23920 (csv_25/cosine_24000.csv).
        assert!(close(s.rate(2288), 0.0002999771173709568));
        assert!(close(s.rate(23920), 3.000893868085248e-05));
        // Half-way through the decay: the mean of peak and end.
        assert!(close(
            s.rate(WARMUP + (24000 - WARMUP) / 2),
            0.5 * (PEAK_LR + END_LR)
        ));
    }

    #[test]
    fn wsd_schedules_hold_then_decay_to_the_end_rate() {
        let geometric = KnownSchedule::Wsd {
            decay: 20000,
            total: 24000,
        };
        let linear = KnownSchedule::WsdLinear {
            decay: 20000,
            total: 24000,
        };
        for s in [geometric, linear] {
            assert_eq!(s.rate(19999), PEAK_LR);
            assert!(close(s.rate(20000), PEAK_LR));
            // At step T (one past the last) both would reach the end rate exactly.
            assert!(s.rate(23999) > END_LR && s.rate(23999) < 1.01 * END_LR);
        }
        // The authors' logged values (csv_25).
        assert!(close(geometric.rate(20064), 0.0002891487070871911));
        assert!(close(linear.rate(23904), 3.648e-05));
        let two = KnownSchedule::TwoStage { k: 9 };
        assert_eq!(two.rate(7999), PEAK_LR);
        assert!(close(two.rate(8000), 9e-5));
        assert_eq!(two.rates().len(), TWO_STAGE_TOTAL);
    }

    #[test]
    fn logged_rates_are_interpolated_ramped_and_held() {
        let s = Schedule::from_logged(&[10, 20], &[1.0, 0.5], 25).expect("valid");
        assert_eq!(s.len(), 26);
        assert_eq!(s.rates[0], 0.0);
        assert!(close(s.rates[5], 0.5));
        assert_eq!(s.rates[10], 1.0);
        assert!(close(s.rates[15], 0.75));
        assert_eq!(s.rates[20], 0.5);
        assert_eq!(s.rates[25], 0.5);
        let p = s.prefix_sums();
        assert!(close(p[1], 0.1));
        assert!(Schedule::from_logged(&[], &[], 3).is_err());
        assert!(Schedule::from_logged(&[2, 2], &[1.0, 1.0], 3).is_err());
    }
}
