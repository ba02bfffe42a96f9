//! Block matrix products. Float blocks go through faer's matrix multiply,
//! which picks AVX-512, AVX2 or SSE kernels at run time on stable Rust; on
//! the 2-core AVX-512 VM of docs/BENCHMARKS.md it runs a 2500² float64
//! product at about 60 GFLOP/s on one core, where ndarray's own
//! (matrixmultiply, AVX2 at most) runs about 30. Integer blocks keep
//! ndarray's product. One block product runs on the calling thread
//! (`Par::Seq`): a worker already runs one task per thread, as Dask's do
//! with their BLAS limited to one thread.

use ndarray::{Array2, ArrayView2, LinalgScalar};

/// `acc = x · y` (`replace`) or `acc += x · y`, for one element type.
pub(crate) trait BlockProduct: LinalgScalar {
    fn mul_into(acc: &mut Array2<Self>, x: &ArrayView2<'_, Self>, y: &ArrayView2<'_, Self>, replace: bool) {
        let beta = if replace { Self::zero() } else { Self::one() };
        ndarray::linalg::general_mat_mul(Self::one(), x, y, beta, acc);
    }
}

/// Integer products wrap on overflow as numpy's do (ndarray's `+` and `*`
/// would panic in a debug build): an i-k-j loop over rows.
macro_rules! int_product {
    ($($t:ty),*) => {$(
        impl BlockProduct for $t {
            fn mul_into(acc: &mut Array2<$t>, x: &ArrayView2<'_, $t>, y: &ArrayView2<'_, $t>, replace: bool) {
                if replace {
                    acc.fill(0);
                }
                for (mut out_row, x_row) in acc.rows_mut().into_iter().zip(x.rows()) {
                    for (&a, y_row) in x_row.iter().zip(y.rows()) {
                        if a == 0 {
                            continue;
                        }
                        for (o, &b) in out_row.iter_mut().zip(y_row.iter()) {
                            *o = o.wrapping_add(a.wrapping_mul(b));
                        }
                    }
                }
            }
        }
    )*};
}
int_product!(i64, i32, u64);

macro_rules! faer_product {
    ($t:ty) => {
        impl BlockProduct for $t {
            fn mul_into(acc: &mut Array2<$t>, x: &ArrayView2<'_, $t>, y: &ArrayView2<'_, $t>, replace: bool) {
                let (m, n) = acc.dim();
                // faer takes contiguous row- or column-major blocks; others
                // (strided slices) are copied once into row-major order.
                let (xc, yc);
                let lhs = match faer_ref(x) {
                    Some(r) => r,
                    None => {
                        xc = x.as_standard_layout();
                        standard(&xc.view())
                    }
                };
                let rhs = match faer_ref(y) {
                    Some(r) => r,
                    None => {
                        yc = y.as_standard_layout();
                        standard(&yc.view())
                    }
                };
                let Some(out) = acc.as_slice_mut() else {
                    // Not reached: accumulators are made in standard layout.
                    let beta = if replace { 0.0 } else { 1.0 };
                    return ndarray::linalg::general_mat_mul(1.0, x, y, beta, acc);
                };
                let dst = faer::MatMut::from_row_major_slice_mut(out, m, n);
                let accum = if replace { faer::Accum::Replace } else { faer::Accum::Add };
                faer::linalg::matmul::matmul(dst, accum, lhs, rhs, 1.0, faer::Par::Seq);
            }
        }
    };
}

faer_product!(f64);
faer_product!(f32);

/// A faer view of a block in standard layout.
fn standard<'a, T>(v: &ArrayView2<'a, T>) -> faer::MatRef<'a, T> {
    let (r, c) = v.dim();
    faer::MatRef::from_row_major_slice(v.to_slice().unwrap_or_default(), r, c)
}

/// A faer view of a contiguous 2-D block, in whichever order it is stored.
fn faer_ref<'a, T>(v: &ArrayView2<'a, T>) -> Option<faer::MatRef<'a, T>> {
    let (r, c) = v.dim();
    if let Some(s) = v.to_slice() {
        return Some(faer::MatRef::from_row_major_slice(s, r, c));
    }
    (*v).reversed_axes().to_slice().map(|s| faer::MatRef::from_column_major_slice(s, r, c))
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};

    use super::BlockProduct;

    fn naive(x: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros((x.nrows(), y.ncols()));
        for i in 0..x.nrows() {
            for j in 0..y.ncols() {
                out[[i, j]] = (0..x.ncols()).map(|k| x[[i, k]] * y[[k, j]]).sum();
            }
        }
        out
    }

    fn close(a: &Array2<f64>, b: &Array2<f64>) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-9 * (1.0 + q.abs()))
    }

    #[test]
    fn float_products_match_the_definition_for_every_layout() {
        let x = Array2::from_shape_fn((37, 53), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let y = Array2::from_shape_fn((53, 29), |(i, j)| ((i * 5 + j * 2) % 13) as f64 / 3.0);
        let want = naive(&x, &y);
        let mut acc = Array2::zeros((37, 29));
        f64::mul_into(&mut acc, &x.view(), &y.view(), true);
        assert!(close(&acc, &want));
        // Accumulating adds, transposed (column-major) operands are read as such.
        let (xt, yt) = (x.t().to_owned(), y.t().to_owned());
        f64::mul_into(&mut acc, &xt.t(), &yt.t(), false);
        assert!(close(&acc, &(&want * 2.0)));
        // A strided slice is neither row- nor column-major.
        let wide = Array2::from_shape_fn((37, 106), |(i, j)| x[[i, j / 2]]);
        f64::mul_into(&mut acc, &wide.slice(s![.., ..;2]), &y.view(), true);
        assert!(close(&acc, &want));
        // Empty inner dimension: zeros, as numpy gives.
        let mut e = Array2::from_elem((3, 4), 9.0);
        f64::mul_into(&mut e, &Array2::zeros((3, 0)).view(), &Array2::zeros((0, 4)).view(), true);
        assert!(e.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn single_precision_and_integers_use_their_own_types() {
        let x = Array2::from_shape_fn((5, 4), |(i, j)| (i + j) as f32);
        let mut acc = Array2::zeros((5, 5));
        f32::mul_into(&mut acc, &x.view(), &x.t(), true);
        assert_eq!(acc[[4, 3]], (0..4).map(|k| ((4 + k) * (3 + k)) as f32).sum::<f32>());
        let xi = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as i64);
        let mut ai = Array2::zeros((3, 3));
        i64::mul_into(&mut ai, &xi.view(), &xi.t(), true);
        assert_eq!(ai[[2, 2]], 4 * 4 + 5 * 5);
    }
}
