//! Counter-based random numbers: element i of a seeded array is a pure
//! function of (seed, i). Blocks are generated independently and in
//! parallel, and the values do not depend on the chunking at all.

/// SplitMix64's finalizer: a fast, well-mixed bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The starting point of one stream of a seed.
fn start(seed: u64, stream: u64) -> u64 {
    mix(seed ^ mix(stream.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// 64 random bits for element `index` of stream `stream` under `seed`:
/// SplitMix64 evaluated at position `index`, one mix per element.
pub fn bits(seed: u64, stream: u64, index: u64) -> u64 {
    Stream::new(seed, stream).bits(index)
}

/// A seeded stream, with its start computed once per block.
#[derive(Clone, Copy, Debug)]
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64, stream: u64) -> Self {
        Stream(start(seed, stream))
    }

    #[inline]
    pub fn bits(self, index: u64) -> u64 {
        mix(self.0.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
    }

    #[inline]
    pub fn randint(self, index: u64, low: i64, range: u64) -> i64 {
        let r = ((u128::from(self.bits(index)) * u128::from(range)) >> 64) as u64;
        low.wrapping_add(r as i64)
    }
}

/// Uniform in [0, 1) with 53 random bits.
pub fn uniform(seed: u64, index: u64) -> f64 {
    (bits(seed, 0, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal by Box–Muller: elements 2k and 2k+1 take the cosine and
/// sine branches of one pair of uniforms, so each element is still a pure
/// function of its index.
pub fn normal(seed: u64, index: u64) -> f64 {
    let (c, s) = normal_pair(seed, index / 2);
    if index.is_multiple_of(2) { c } else { s }
}

/// Both normals of pair `pair`.
pub fn normal_pair(seed: u64, pair: u64) -> (f64, f64) {
    let u1 = ((bits(seed, 1, pair) >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64); // (0, 1]
    let u2 = (bits(seed, 2, pair) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Uniform integer in [low, high) by multiply-shift (Lemire), unbiased
/// enough for ranges far below 2^64.
pub fn randint(seed: u64, index: u64, low: i64, high: i64) -> i64 {
    let range = high.wrapping_sub(low) as u64;
    let r = ((u128::from(bits(seed, 3, index)) * u128::from(range)) >> 64) as u64;
    low.wrapping_add(r as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_right() {
        let n = 200_000u64;
        let mean_u: f64 = (0..n).map(|i| uniform(7, i)).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.005, "{mean_u}");
        let xs: Vec<f64> = (0..n).map(|i| normal(7, i)).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "mean {m} var {v}");
        let ints: Vec<i64> = (0..n).map(|i| randint(7, i, 0, 100)).collect();
        assert!(ints.iter().all(|x| (0..100).contains(x)));
        let mi = ints.iter().sum::<i64>() as f64 / n as f64;
        assert!((mi - 49.5).abs() < 0.3, "{mi}");
        assert_ne!(uniform(7, 0), uniform(8, 0), "seeds differ");
    }
}
