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
    unit(bits(seed, 0, index))
}

/// Standard normal for element `index` by the ziggurat method (Marsaglia and
/// Tsang, 256 layers): one 64-bit draw and a table comparison for 98.8 % of
/// the elements, a few more draws for the rest. The draws of element `index`
/// are a sequence seeded by its own counter-based bits, so the value is still
/// a pure function of (seed, index).
pub fn normal(seed: u64, index: u64) -> f64 {
    Normals::new(seed).get(index)
}

/// Layers of the 256-layer normal ziggurat.
const LAYERS: usize = 256;
/// Where the tail starts, and the area of each layer (base layer included).
const TAIL: f64 = 3.654_152_885_361_009;
const AREA: f64 = 4.928_673_233_99e-3;

struct Ziggurat {
    /// Right edges: `x[0]` is the base layer's pseudo-width `AREA / f(TAIL)`,
    /// `x[1] = TAIL`, decreasing to `x[LAYERS] = 0`.
    x: [f64; LAYERS + 1],
    /// `f(x[i])`, with `f(x) = exp(-x²/2)`.
    f: [f64; LAYERS + 1],
}

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

fn ziggurat() -> &'static Ziggurat {
    static TABLES: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; LAYERS + 1];
        x[0] = AREA / density(TAIL);
        x[1] = TAIL;
        for i in 1..LAYERS - 1 {
            // Each layer has the same area: x[i] * (f(x[i+1]) - f(x[i])) = AREA.
            x[i + 1] = (-2.0 * (AREA / x[i] + density(x[i])).ln()).sqrt();
        }
        x[LAYERS] = 0.0;
        let mut f = [0.0; LAYERS + 1];
        for (f, x) in f.iter_mut().zip(&x) {
            *f = density(*x);
        }
        Ziggurat { x, f }
    })
}

/// 53 random bits as a float in [0, 1).
#[inline]
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normals of one seed, with the tables looked up once.
#[derive(Clone, Copy)]
pub struct Normals {
    stream: Stream,
    tables: &'static Ziggurat,
}

impl std::fmt::Debug for Normals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normals").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Normals {
    pub fn new(seed: u64) -> Self {
        Normals { stream: Stream::new(seed, 1), tables: ziggurat() }
    }

    /// The standard normal of element `index`.
    #[inline]
    pub fn get(&self, index: u64) -> f64 {
        let first = self.stream.bits(index);
        let z = &self.tables;
        // Fast path: the point falls inside the layer's rectangle.
        let layer = (first & 0xff) as usize;
        let x = unit(first) * z.x[layer];
        if x < z.x[layer + 1] {
            return if first & 0x100 == 0 { x } else { -x };
        }
        self.slow(first)
    }

    /// The rare cases: the wedge beside a layer, and the tail, drawing
    /// further bits from a sequence that starts at the element's first draw.
    #[cold]
    fn slow(&self, first: u64) -> f64 {
        let z = &self.tables;
        let mut state = first;
        let mut next = || {
            state = state.wrapping_add(GOLDEN);
            mix(state)
        };
        let mut bits = first;
        loop {
            let layer = (bits & 0xff) as usize;
            let negative = bits & 0x100 != 0;
            let x = unit(bits) * z.x[layer];
            let value = if x < z.x[layer + 1] {
                Some(x)
            } else if layer == 0 {
                // The tail beyond TAIL (Marsaglia's method): u in (0, 1].
                loop {
                    let a = -(1.0 - unit(next())).ln() / TAIL;
                    let b = -(1.0 - unit(next())).ln();
                    if 2.0 * b >= a * a {
                        break Some(TAIL + a);
                    }
                }
            } else if z.f[layer] + unit(next()) * (z.f[layer + 1] - z.f[layer]) < density(x) {
                Some(x)
            } else {
                None
            };
            if let Some(v) = value {
                return if negative { -v } else { v };
            }
            bits = next();
        }
    }
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

    #[test]
    fn ziggurat_layers_close_and_have_equal_areas() {
        let z = ziggurat();
        // The recursion defines layers 1..=254; the top layer (under the
        // peak) must come out with the same area, which checks the constants.
        let top = z.x[LAYERS - 1] * (1.0 - z.f[LAYERS - 1]);
        assert!((top - AREA).abs() < 1e-9, "top layer area {top}");
        assert!(z.x.windows(2).all(|w| w[0] > w[1]), "edges decrease");
        let base = TAIL * z.f[1] + (z.x[0] - TAIL) * z.f[1];
        assert!((base - AREA).abs() < 1e-15, "base layer area {base}");
    }

    /// P(a < Z < b) for a standard normal, by Simpson's rule on the density.
    fn probability(a: f64, b: f64) -> f64 {
        let steps = 2000;
        let h = (b - a) / steps as f64;
        let pdf = |x: f64| density(x) / (2.0 * std::f64::consts::PI).sqrt();
        let inner: f64 = (1..steps).map(|k| pdf(a + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 }).sum();
        (pdf(a) + pdf(b) + inner) * h / 3.0
    }

    #[test]
    fn normals_follow_the_normal_distribution() {
        // Chi-square over 50 bins (width 0.1 across [-2, 2], wider out to ±4,
        // then the two tails), on a million draws: the fast path, the wedges and the
        // tail (beyond 3.65) all have to be right for this to pass.
        let n = 1_000_000u64;
        let mut edges: Vec<f64> = (-20..=20).map(|k| f64::from(k) * 0.1).collect();
        edges.splice(0..0, [-4.0, -3.65, -3.0, -2.5]);
        edges.extend([2.5, 3.0, 3.65, 4.0]);
        let mut counts = vec![0u64; edges.len() + 1];
        let normals = Normals::new(42);
        for i in 0..n {
            let z = normals.get(i);
            counts[edges.partition_point(|e| *e <= z)] += 1;
        }
        let mut chi2 = 0.0;
        for (k, observed) in counts.iter().enumerate() {
            let low = if k == 0 { -40.0 } else { edges[k - 1] };
            let high = if k == edges.len() { 40.0 } else { edges[k] };
            let expected = probability(low, high) * n as f64;
            chi2 += (*observed as f64 - expected).powi(2) / expected.max(1e-9);
        }
        // 49 degrees of freedom: the 99.99th percentile is 94.6.
        assert!(chi2 < 94.6, "chi-square {chi2} over {} bins: {counts:?}", counts.len());
        // The tail beyond TAIL: expected 1.29e-4 of draws on each side.
        let beyond = (0..n).filter(|i| normals.get(*i) > TAIL).count() as f64 / n as f64;
        assert!((beyond - 1.29e-4).abs() < 4e-5, "{beyond}");
    }
}
