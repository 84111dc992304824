//! Element-wise functions written so the compiler vectorises them (no branches, no calls into
//! libm): `exp`, `erf` and GELU, and the row operations built on them (layer norm, softmax).

use rayon::prelude::*;

/// Values below which a slice is processed on the calling thread.
const SEQUENTIAL_VALUES: usize = 1 << 15;

/// Lanes of the partial sums in reductions: wide enough for AVX-512, and summing in lanes lets
/// the compiler vectorise (a single running float sum has to stay in order).
pub(crate) const LANES: usize = 16;

/// `e^x` within 2 ulp for x in [-87, 88]; outside it, the value at the nearer end (so never
/// infinite, never below the smallest normal float).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so `n·ln 2` is exact in the first part.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_LOW, n.mul_add(-LN2_HIGH, x));
    // Taylor series to r⁶ on |r| ≤ ln 2 / 2: the remainder is below 1.3e-7 relative.
    let mut p: f32 = 1.0 / 720.0;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // 2ⁿ built from its exponent bits without a float-to-integer conversion (which the
    // compiler does not vectorise) or an integer add (which the workspace's one profile checks
    // for overflow, with the same effect): adding 2²³ puts n + 127, an integer in 1..=254, in
    // the low bits of the float's mantissa.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0xff;
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// The error function, with an absolute error below 2e-7: its Maclaurin series below 1 (where
/// the other form would lose digits to cancellation), Abramowitz and Stegun 7.1.26 above.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // 2/√π · (-1)ⁿ / (n! (2n+1)), for x·P(x²).
    const SERIES: [f32; 11] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        -0.376_126_4,
        0.112_837_92,
        -0.026_866_17,
        0.005_223_978,
        -0.000_854_832_7,
        0.000_120_553_33,
        -1.492_565e-5,
        1.646_211_4e-6,
        -1.636_584_5e-7,
        1.480_719_3e-8,
    ];
    let a = x.abs();
    let z = a * a;
    let mut series = SERIES[10];
    for coefficient in SERIES[..10].iter().rev() {
        series = series.mul_add(z, *coefficient);
    }
    let small = a * series;
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let mut p = 1.061_405_4f32;
    p = p.mul_add(t, -1.453_152);
    p = p.mul_add(t, 1.421_413_8);
    p = p.mul_add(t, -0.284_496_74);
    p = p.mul_add(t, 0.254_829_6);
    let large = 1.0 - p * t * exp(-z);
    // Both are computed and one chosen, so the loop over values stays branch-free.
    let value = if a < 1.0 { small } else { large };
    value.copysign(x)
}

/// GELU as BERT defines it, `x·Φ(x)` with the exact normal distribution, on every value.
pub fn gelu_in_place(values: &mut [f32]) {
    if values.len() <= SEQUENTIAL_VALUES {
        gelu_widest(values);
    } else {
        values.par_chunks_mut(SEQUENTIAL_VALUES / 2).for_each(gelu_widest);
    }
}

/// GELU on each value, in the widest vectors the CPU has: the function is some fifty
/// operations per value, so sixteen lanes instead of eight halve its time.
fn gelu_widest(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe {
            gelu_avx512(values)
        };
        return;
    }
    gelu_values(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_avx512(values: &mut [f32]) {
    gelu_values(values);
}

#[inline(always)]
fn gelu_values(values: &mut [f32]) {
    for value in values {
        let x = *value;
        *value = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// The sum of `values`, in lanes.
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `target += scale · values`.
#[inline(always)]
pub fn add_scaled(target: &mut [f32], values: &[f32], scale: f32) {
    for (target, value) in target.iter_mut().zip(values) {
        *target = value.mul_add(scale, *target);
    }
}

/// `sums += scale · values[..LANES]`, on fixed-size arrays so the compiler makes it vector
/// operations (on slices it leaves sixteen scalar ones).
#[inline(always)]
pub(crate) fn multiply_add(sums: &mut [f32; LANES], scale: f32, values: &[f32]) {
    let values: &[f32; LANES] = values[..LANES].try_into().expect("a block of values");
    for lane in 0..LANES {
        sums[lane] = scale.mul_add(values[lane], sums[lane]);
    }
}

/// A layer norm's parameters.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub epsilon: f32,
}

impl LayerNorm {
    /// Normalises one row in place: zero mean and unit variance, then scaled and shifted.
    pub fn apply(&self, row: &mut [f32]) {
        let width = row.len() as f32;
        let mean = sum(row) / width;
        let mut lanes = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest: f32 = chunks.remainder().iter().map(|value| (value - mean) * (value - mean)).sum();
        for chunk in chunks {
            for (lane, value) in lanes.iter_mut().zip(chunk) {
                let centred = value - mean;
                *lane = centred.mul_add(centred, *lane);
            }
        }
        let variance = (lanes.iter().sum::<f32>() + rest) / width;
        let inverse = 1.0 / (variance + self.epsilon).sqrt();
        for ((value, weight), bias) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *value = ((*value - mean) * inverse).mul_add(*weight, *bias);
        }
    }

    /// Adds `residual` to each row of `rows` (both `width` wide), then normalises the row.
    pub fn add_and_apply(&self, rows: &mut [f32], residual: &[f32]) {
        let width = self.weight.len();
        assert_eq!(rows.len(), residual.len(), "rows and residual differ in size");
        let run = |(rows, residual): (&mut [f32], &[f32])| {
            for (row, residual) in rows.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
                for (value, residual) in row.iter_mut().zip(residual) {
                    *value += residual;
                }
                self.apply(row);
            }
        };
        // Tasks of whole rows: enough for every thread, none so small it costs more than it runs.
        let rows_per_task = (SEQUENTIAL_VALUES / 4 / width).max(1);
        if rows.len() <= SEQUENTIAL_VALUES {
            run((rows, residual));
        } else {
            let values_per_task = rows_per_task * width;
            rows.par_chunks_mut(values_per_task).zip(residual.par_chunks(values_per_task)).for_each(run);
        }
    }
}

/// Turns a row of scores into probabilities in place.
#[inline(always)]
pub fn softmax_in_place(row: &mut [f32]) {
    let largest = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for value in row.iter_mut() {
        *value = exp(*value - largest);
    }
    let total = sum(row);
    let inverse = 1.0 / total;
    for value in row.iter_mut() {
        *value *= inverse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(from: f32, to: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |step| from + (to - from) * step as f32 / steps as f32)
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library() {
        for x in grid(-87.0, 88.0, 200_000) {
            let (got, want) = (exp(x), f64::from(x).exp());
            let relative = ((f64::from(got) - want) / want).abs();
            assert!(relative < 2.5e-7, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_its_bound_and_odd() {
        for x in grid(-6.0, 6.0, 100_000) {
            let want = libm_erf(f64::from(x));
            assert!((f64::from(erf(x)) - want).abs() < 2e-7, "erf({x}) = {}, want {want}", erf(x));
            assert_eq!(erf(-x), -erf(x));
        }
    }

    /// erf in f64 by its series and continued fraction: a reference independent of the code
    /// under test.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let value = if a < 3.0 {
            // Maclaurin series: converges fast enough below 3.
            let mut term = a;
            let mut total = a;
            for n in 1..200 {
                term *= -a * a / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Continued fraction for erfc.
            let mut fraction = 0.0;
            for n in (1..60).rev() {
                fraction = n as f64 / 2.0 / (a + fraction);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + fraction)
        };
        value.copysign(x)
    }

    #[test]
    fn gelu_matches_its_definition_serially_and_in_parallel() {
        let mut values: Vec<f32> = grid(-8.0, 8.0, 100_000).collect();
        let inputs = values.clone();
        gelu_in_place(&mut values);
        for (x, got) in inputs.iter().zip(&values) {
            let want = 0.5 * f64::from(*x) * (1.0 + libm_erf(f64::from(*x) / 2f64.sqrt()));
            assert!((f64::from(*got) - want).abs() < 1e-6, "gelu({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn layer_norm_gives_zero_mean_and_unit_variance_before_its_affine() {
        // Few rows run on the calling thread, many on the pool, in tasks of whole rows.
        for (width, count) in [(37, 3), (384, 1500), (37, 5000)] {
            layer_norm_rows(width, count);
        }
    }

    fn layer_norm_rows(width: usize, count: usize) {
        let norm = LayerNorm { weight: vec![2.0; width], bias: vec![1.0; width], epsilon: 1e-12 };
        let mut rows: Vec<f32> = (0..width * count).map(|index| (index as f32 * 0.37).sin() * 5.0).collect();
        let residual: Vec<f32> = (0..width * count).map(|index| (index % 1000) as f32 * 0.01).collect();
        norm.add_and_apply(&mut rows, &residual);
        for row in rows.chunks_exact(width) {
            let unscaled: Vec<f64> = row.iter().map(|value| (f64::from(*value) - 1.0) / 2.0).collect();
            let mean = unscaled.iter().sum::<f64>() / width as f64;
            let variance = unscaled.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / width as f64;
            assert!(mean.abs() < 1e-5 && (variance - 1.0).abs() < 1e-4, "{mean} {variance}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 3.0, -2.0, 3.0, 12.0, -1e9];
        softmax_in_place(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[4] > 0.999 && row[5] < 1e-30 && row[1] == row[3] && row[1] > row[0]);
        let mut row = vec![0.5, 1.5, 2.5];
        softmax_in_place(&mut row);
        let total: f64 = [0.5f64, 1.5, 2.5].iter().map(|x| x.exp()).sum();
        for (got, x) in row.iter().zip([0.5f64, 1.5, 2.5]) {
            assert!((f64::from(*got) - x.exp() / total).abs() < 1e-6);
        }
    }

    #[test]
    fn sums_in_lanes_and_scaled_additions_match_plain_ones() {
        let left: Vec<f32> = (0..53).map(|index| index as f32 * 0.25 - 3.0).collect();
        let right: Vec<f32> = (0..53).map(|index| (index as f32).cos()).collect();
        let plain_sum: f64 = left.iter().map(|value| f64::from(*value)).sum();
        assert!((f64::from(sum(&left)) - plain_sum).abs() < 1e-4);
        let mut target = vec![1.0; 53];
        add_scaled(&mut target, &right, 2.0);
        assert!(target.iter().zip(&right).all(|(t, r)| (t - (1.0 + 2.0 * r)).abs() < 1e-6));
    }
}
