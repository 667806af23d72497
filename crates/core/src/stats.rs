//! Small statistics shared by every metric.

/// Running sums of a quantity over independent-ish observations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accumulator {
    /// Number of observations.
    pub n: usize,
    /// Σ x.
    pub sum: f64,
    /// Σ x².
    pub sum_sq: f64,
}

impl Accumulator {
    /// Adds one observation.
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// Adds pre-summed observations.
    pub fn merge(&mut self, n: usize, sum: f64, sum_sq: f64) {
        self.n += n;
        self.sum += sum;
        self.sum_sq += sum_sq;
    }

    /// Mean, or NaN with no observations.
    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// Sample standard deviation (n − 1 denominator); `None` below two observations.
    pub fn sample_sd(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        Some(var.max(0.0).sqrt())
    }

    /// Standard error of the mean, sd / √n; `None` below two observations.
    pub fn stderr_of_mean(&self) -> Option<f64> {
        self.sample_sd().map(|sd| sd / (self.n as f64).sqrt())
    }
}

/// Mean of `values` and its standard error, sample standard deviation / √n (as lm-eval's
/// `mean_stderr`); `None` below two values. Two passes, so large means lose no precision.
pub fn mean_and_stderr(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some((var / n).sqrt()))
}

/// Mean and sample standard deviation of `xs` (`None` for the sd below two values).
pub fn mean_sd(xs: &[f64]) -> (f64, Option<f64>) {
    let mut acc = Accumulator::default();
    xs.iter().for_each(|&x| acc.push(x));
    (acc.mean(), acc.sample_sd())
}

/// Index of the largest value; the first on ties (as numpy's argmax); 0 for no values.
pub fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// A count with an SI suffix and three decimals, as tables print parameter and token
/// counts: 1.439B, 160.000M.
pub fn si_count(value: f64) -> String {
    let (scale, suffix) = match value.abs() {
        v if v >= 1e12 => (1e12, "T"),
        v if v >= 1e9 => (1e9, "B"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "K"),
        _ => (1.0, ""),
    };
    format!("{:.3}{suffix}", value / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sd_of_known_samples() {
        let (mean, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((mean - 5.0).abs() < 1e-12);
        // sample variance = 32 / 7
        assert!((sd.expect("8 values") - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn one_value_has_no_sd() {
        assert_eq!(mean_sd(&[3.0]).1, None);
    }

    #[test]
    fn merge_equals_push() {
        let mut a = Accumulator::default();
        [1.0, 2.0, 3.5].iter().for_each(|&x| a.push(x));
        let mut b = Accumulator::default();
        b.merge(3, 6.5, 1.0 + 4.0 + 12.25);
        assert_eq!(a, b);
        let se = a.stderr_of_mean().expect("3 values");
        assert!((se - a.sample_sd().expect("3 values") / 3f64.sqrt()).abs() < 1e-15);
    }
}
