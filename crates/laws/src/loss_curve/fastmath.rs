//! ln(1 + x) for x ≥ 0 and eʸ for y ≤ 0, branch-free, so that the Multi-Power Law's inner
//! loop (one of each per step where η changes, per point: millions per evaluation)
//! vectorises; `std`'s calls into libm do not. Both agree with `std` to a few ulp (tested).

/// ln 2 = LN2_HI + LN2_LO, the high part with its last 32 bits zero (fdlibm's split), so
/// that n·LN2_HI is exact for the n here.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// 1.5·2⁵²: adding it rounds to an integer held in the low mantissa bits.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// ln(1 + x) for finite x ≥ 0 (x = ∞ gives 1024·ln 2 instead of ∞).
#[inline(always)]
pub(crate) fn ln_1p(x: f64) -> f64 {
    let u = 1.0 + x;
    // The rounding error of 1 + x, put back to first order.
    let correction = (x - (u - 1.0)) / u;
    let bits = u.to_bits();
    // The biased exponent as f64 without an integer conversion (none is vectorised on AVX2).
    let biased = f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52)) - 4_503_599_627_370_496.0;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    m = if big { 0.5 * m } else { m };
    let e = biased - 1023.0 + if big { 1.0 } else { 0.0 };
    // ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut p = 1.0 / 23.0;
    for k in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * z + 1.0 / k;
    }
    e * LN2_HI + (e * LN2_LO + (2.0 * s * p + correction))
}

/// eʸ for y ≤ 0 (values below −708 give e⁻⁷⁰⁸ ≈ 3e-308, not a subnormal or 0).
#[inline(always)]
pub(crate) fn exp_neg(y: f64) -> f64 {
    let y = y.clamp(-708.0, 0.0);
    let t = y * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = y - n * LN2_HI - n * LN2_LO;
    // Taylor series to r¹³/13! (|r| ≤ 0.347: remainder below 1e-17).
    let mut p = 1.0 / 6_227_020_800.0;
    for k in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / k;
    }
    let integer = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let scale = f64::from_bits(((integer + 1023) as u64) << 52);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs() * f64::EPSILON)
    }

    #[test]
    fn ln_1p_agrees_with_std() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-12;
        while x < 1e12 {
            worst = worst.max(ulps(ln_1p(x), x.ln_1p()));
            x *= 1.0137;
        }
        assert!(worst < 8.0, "{worst} ulp");
        assert_eq!(ln_1p(0.0), 0.0);
    }

    #[test]
    fn exp_neg_agrees_with_std() {
        let mut worst: f64 = 0.0;
        let mut y = 0.0;
        while y > -700.0 {
            worst = worst.max(ulps(exp_neg(y), y.exp()));
            y -= 0.01371;
        }
        assert!(worst < 8.0, "{worst} ulp");
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1e6) > 0.0 && exp_neg(-1e6) < 1e-300);
    }
}
