//! The dask_ml part: splitting data and linear regression.
//!
//! `LinearRegression` is fitted from one pass over the partitions: each
//! partition reduces to its row count, column means and centered
//! co-moment matrix of `[X, y]`, and those merge exactly (Chan's pairwise
//! formula) up a tree. The normal equations are then solved on centered
//! moments, which avoids the cancellation of raw `XᵀX` on data with large
//! means, and gives scikit-learn's coefficients to rounding.

use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use rask::core::ops::OpEntry;
use rask::core::{OpError, Params, TableValue, Value};
use rask::{ArgPart, Delayed};

use crate::dtype::is_numeric;
use crate::error::{FrameError, Result};
use crate::expr::{Expr, col, lit};
use crate::frame::{DataFrame, Series};
use crate::kernels::{encode, params, table};

pub const MOMENTS: &str = "ml.moments";
pub const MOMENTS_MERGE: &str = "ml.moments_merge";
pub const R2_PARTIAL: &str = "ml.r2_partial";
pub const R2_MERGE: &str = "ml.r2_merge";

/// `train_test_split(X, y, test_size, seed)`: the same rows go to the same
/// side in `X` and `y`, which must be partitioned alike.
pub fn train_test_split(
    x: &DataFrame,
    y: &Series,
    test_size: f64,
    seed: u64,
) -> Result<(DataFrame, DataFrame, Series, Series)> {
    if !(0.0..1.0).contains(&test_size) || test_size == 0.0 {
        return Err(FrameError::Schema(format!("test_size must be in (0, 1), got {test_size}")));
    }
    let fr = [1.0 - test_size, test_size];
    let xs = x.random_split(&fr, seed)?;
    let yf = y.to_frame()?;
    let ys = yf.random_split(&fr, seed)?;
    let [x_train, x_test] = <[DataFrame; 2]>::try_from(xs).map_err(|_| FrameError::Compute("split".into()))?;
    let [y_train, y_test] = <[DataFrame; 2]>::try_from(ys).map_err(|_| FrameError::Compute("split".into()))?;
    Ok((x_train, x_test, y_train.col(y.name()), y_test.col(y.name())))
}

/// Ordinary least squares, as `sklearn.linear_model.LinearRegression`.
#[derive(Clone, Debug, Default)]
pub struct LinearRegression {
    pub fit_intercept: bool,
    /// One coefficient per feature column, after `fit`.
    pub coef_: Vec<f64>,
    pub intercept_: f64,
    features: Vec<String>,
}

/// Numeric feature columns of `x`.
fn features(x: &DataFrame) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in x.schema().fields() {
        if x.index().contains(f.name()) {
            continue;
        }
        if !is_numeric(f.data_type()) {
            return Err(FrameError::Schema(format!(
                "feature {:?} is {}; regression needs numeric columns",
                f.name(),
                crate::dtype::dtype_name(f.data_type())
            )));
        }
        out.push(f.name().clone());
    }
    if out.is_empty() {
        return Err(FrameError::Schema("X has no feature columns".into()));
    }
    Ok(out)
}

/// Pairs partition `i` of `x` with partition `i` of `y`.
type Parts = Vec<Delayed<TableValue>>;

fn paired(x: &DataFrame, y: &Series) -> Result<(Parts, Parts)> {
    let xp = x.partitions()?;
    let yp = y.to_frame()?.partitions()?;
    if xp.len() != yp.len() {
        return Err(FrameError::Schema(format!(
            "X has {} partitions and y has {}; they must be partitioned alike",
            xp.len(),
            yp.len()
        )));
    }
    Ok((xp, yp))
}

impl LinearRegression {
    pub fn new() -> Self {
        Self { fit_intercept: true, ..Self::default() }
    }

    pub fn fit(&mut self, x: &DataFrame, y: &Series) -> Result<&mut Self> {
        let feats = features(x)?;
        let (xp, yp) = paired(x, y)?;
        let t = rask::core::key::token(format!("{}{}{}", x.plan_token()?, y.name(), feats.join(",")).as_bytes());
        let n = format!("lr-moments-{t}");
        let parts: Vec<Delayed<Value>> = xp
            .iter()
            .zip(&yp)
            .enumerate()
            .map(|(i, (a, b))| {
                let k = rask::core::Key::chunk(n.as_str().into(), &[i as u32]);
                Delayed::from_task(k, MOMENTS, encode(&feats), vec![ArgPart::of(a), ArgPart::of(b)])
            })
            .collect();
        let merged = DataFrame::tree(
            parts,
            "lr-merge",
            &t,
            (MOMENTS_MERGE, Params::default()),
            (MOMENTS_MERGE, Params::default()),
        );
        let m = Moments::from_value(&merged.compute()?)?;
        let p = feats.len();
        if m.n < 1.0 {
            return Err(FrameError::Compute("cannot fit on no rows".into()));
        }
        // Centered (or raw, without an intercept) normal equations.
        let at = |i: usize, j: usize| {
            let c = m.c[i * (p + 1) + j];
            if self.fit_intercept { c } else { c + m.n * m.mean[i] * m.mean[j] }
        };
        let mut a: Vec<Vec<f64>> = (0..p).map(|i| (0..p).map(|j| at(i, j)).collect()).collect();
        let mut b: Vec<f64> = (0..p).map(|i| at(i, p)).collect();
        let coef = solve(&mut a, &mut b)?;
        self.intercept_ = if self.fit_intercept {
            m.mean[p] - coef.iter().zip(&m.mean).map(|(c, x)| c * x).sum::<f64>()
        } else {
            0.0
        };
        self.coef_ = coef;
        self.features = feats;
        Ok(self)
    }

    fn check_fitted(&self) -> Result<()> {
        if self.features.is_empty() {
            return Err(FrameError::Schema("this LinearRegression is not fitted yet; call fit first".into()));
        }
        Ok(())
    }

    /// The prediction expression over the feature columns.
    fn expression(&self) -> Expr {
        self.features.iter().zip(&self.coef_).fold(lit(self.intercept_), |acc, (f, c)| acc + col(f) * *c)
    }

    /// Predictions as a lazy series over `x`.
    pub fn predict(&self, x: &DataFrame) -> Result<Series> {
        self.check_fitted()?;
        Series::new(x, self.expression(), "prediction")
    }

    /// R² of the predictions for `x` against `y`.
    pub fn score(&self, x: &DataFrame, y: &Series) -> Result<f64> {
        self.check_fitted()?;
        let (xp, yp) = paired(x, y)?;
        let prm = encode(&(self.features.clone(), self.coef_.clone(), self.intercept_));
        let t = rask::core::key::token(format!("{}{}{:?}", x.plan_token()?, y.name(), prm.0).as_bytes());
        let n = format!("lr-score-{t}");
        let parts: Vec<Delayed<Value>> = xp
            .iter()
            .zip(&yp)
            .enumerate()
            .map(|(i, (a, b))| {
                let k = rask::core::Key::chunk(n.as_str().into(), &[i as u32]);
                Delayed::from_task(k, R2_PARTIAL, prm.clone(), vec![ArgPart::of(a), ArgPart::of(b)])
            })
            .collect();
        let merged = DataFrame::tree(parts, "lr-r2", &t, (R2_MERGE, Params::default()), (R2_MERGE, Params::default()));
        let v = floats(&merged.compute()?)?;
        let [_, ss_res, _, ss_tot] = <[f64; 4]>::try_from(v).map_err(|_| FrameError::Compute("bad R² state".into()))?;
        Ok(if ss_tot == 0.0 { if ss_res == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - ss_res / ss_tot })
    }
}

/// Gaussian elimination with partial pivoting; a singular system (collinear
/// features) is an error.
fn solve(a: &mut [Vec<f64>], b: &mut [f64]) -> Result<Vec<f64>> {
    let p = b.len();
    let scale = (0..p).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    for k in 0..p {
        let piv = (k..p).max_by(|&i, &j| a[i][k].abs().total_cmp(&a[j][k].abs())).unwrap_or(k);
        if a[piv][k].abs() <= scale * 1e-12 {
            return Err(FrameError::Compute(
                "the features are collinear (singular XᵀX); drop a redundant column".into(),
            ));
        }
        a.swap(k, piv);
        b.swap(k, piv);
        let (top, rest) = a.split_at_mut(k + 1);
        let pivot_row = &top[k];
        for (off, row) in rest.iter_mut().enumerate() {
            let f = row[k] / pivot_row[k];
            for (x, p) in row[k..].iter_mut().zip(&pivot_row[k..]) {
                *x -= f * p;
            }
            b[k + 1 + off] -= f * b[k];
        }
    }
    let mut x = vec![0.0; p];
    for k in (0..p).rev() {
        let s: f64 = (k + 1..p).map(|j| a[k][j] * x[j]).sum();
        x[k] = (b[k] - s) / a[k][k];
    }
    Ok(x)
}

/// Row count, means and centered co-moments of `[x_1 .. x_p, y]`.
struct Moments {
    n: f64,
    mean: Vec<f64>,
    c: Vec<f64>,
}

impl Moments {
    fn to_value(&self) -> Value {
        let mut v = vec![self.n];
        v.extend(&self.mean);
        v.extend(&self.c);
        Value::list(v.into_iter().map(Value::Float))
    }

    fn from_value(v: &Value) -> Result<Self> {
        let f = floats(v)?;
        // 1 + d + d² values for d = p + 1.
        let d = (1..64).find(|d| 1 + d + d * d == f.len()).ok_or_else(|| FrameError::Compute("bad moments".into()))?;
        Ok(Self { n: f[0], mean: f[1..=d].to_vec(), c: f[1 + d..].to_vec() })
    }

    /// Chan's pairwise merge.
    fn merge(&mut self, o: &Moments) {
        if o.n == 0.0 {
            return;
        }
        if self.n == 0.0 {
            *self = Moments { n: o.n, mean: o.mean.clone(), c: o.c.clone() };
            return;
        }
        let d = self.mean.len();
        let n = self.n + o.n;
        let delta: Vec<f64> = (0..d).map(|i| o.mean[i] - self.mean[i]).collect();
        let w = self.n * o.n / n;
        for i in 0..d {
            for j in 0..d {
                self.c[i * d + j] += o.c[i * d + j] + delta[i] * delta[j] * w;
            }
        }
        for (m, d) in self.mean.iter_mut().zip(&delta) {
            *m += d * o.n / n;
        }
        self.n = n;
    }
}

fn floats(v: &Value) -> Result<Vec<f64>> {
    let Value::List(items) = v else { return Err(FrameError::Compute("expected a list of floats".into())) };
    items
        .iter()
        .map(|x| match x {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            _ => Err(FrameError::Compute("expected a float".into())),
        })
        .collect()
}

/// Columns of a batch as f64, refusing missing values as scikit-learn does.
fn dense(batch: &RecordBatch, cols: &[String], what: &str) -> std::result::Result<Vec<Vec<f64>>, OpError> {
    cols.iter()
        .map(|c| {
            let a = batch.column_by_name(c).ok_or_else(|| OpError::new(format!("{what}: no column {c:?}")))?;
            let a = cast(a, &DataType::Float64).map_err(FrameError::from)?;
            let a = a.as_any().downcast_ref::<Float64Array>().ok_or_else(|| OpError::new("not numeric"))?;
            if a.null_count() > 0 || a.values().iter().any(|v| v.is_nan()) {
                return Err(OpError::new(format!("{what}: column {c:?} has missing values; drop them first (dropna)")));
            }
            Ok(a.values().to_vec())
        })
        .collect()
}

fn two_tables(args: Vec<Value>, op: &str) -> std::result::Result<(RecordBatch, RecordBatch), OpError> {
    let [a, b] = <[Value; 2]>::try_from(args).map_err(|_| OpError::new(format!("{op} takes X and y")))?;
    let (x, y) = (table(a, op)?, table(b, op)?);
    if x.num_rows() != y.num_rows() {
        return Err(OpError::new(format!(
            "{op}: a partition of X has {} rows and the matching partition of y has {}",
            x.num_rows(),
            y.num_rows()
        )));
    }
    Ok((x, y))
}

fn y_values(y: &RecordBatch, op: &str) -> std::result::Result<Vec<f64>, OpError> {
    let name = y.schema().fields().last().map(|f| f.name().clone()).ok_or_else(|| OpError::new("y has no column"))?;
    Ok(dense(y, &[name], op)?.pop().unwrap_or_default())
}

fn moments(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let feats: Vec<String> = params(p, MOMENTS)?;
    let (x, y) = two_tables(args, MOMENTS)?;
    let mut cols = dense(&x, &feats, MOMENTS)?;
    cols.push(y_values(&y, MOMENTS)?);
    let d = cols.len();
    let n = x.num_rows();
    let mean: Vec<f64> = cols.iter().map(|c| if n == 0 { 0.0 } else { c.iter().sum::<f64>() / n as f64 }).collect();
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let s: f64 = cols[i].iter().zip(&cols[j]).map(|(a, b)| (a - mean[i]) * (b - mean[j])).sum();
            c[i * d + j] = s;
            c[j * d + i] = s;
        }
    }
    Ok(Moments { n: n as f64, mean, c }.to_value())
}

fn moments_merge(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let [Value::List(items)] = <[Value; 1]>::try_from(args).map_err(|_| OpError::new("merge takes a list"))? else {
        return Err(OpError::new("merge takes a list"));
    };
    let mut acc: Option<Moments> = None;
    for it in items.iter() {
        let m = Moments::from_value(it)?;
        match &mut acc {
            None => acc = Some(m),
            Some(a) => a.merge(&m),
        }
    }
    acc.map(|m| m.to_value()).ok_or_else(|| OpError::new("nothing to merge"))
}

fn r2_partial(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let (feats, coef, intercept): (Vec<String>, Vec<f64>, f64) = params(p, R2_PARTIAL)?;
    let (x, y) = two_tables(args, R2_PARTIAL)?;
    let cols = dense(&x, &feats, R2_PARTIAL)?;
    let yv = y_values(&y, R2_PARTIAL)?;
    let n = yv.len();
    let mean = if n == 0 { 0.0 } else { yv.iter().sum::<f64>() / n as f64 };
    let mut ss_res = 0.0;
    let mut m2 = 0.0;
    for (r, yr) in yv.iter().enumerate() {
        let pred = intercept + cols.iter().zip(&coef).map(|(c, w)| c[r] * w).sum::<f64>();
        ss_res += (yr - pred) * (yr - pred);
        m2 += (yr - mean) * (yr - mean);
    }
    Ok(Value::list([n as f64, ss_res, mean, m2].into_iter().map(Value::Float)))
}

fn r2_merge(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let [Value::List(items)] = <[Value; 1]>::try_from(args).map_err(|_| OpError::new("merge takes a list"))? else {
        return Err(OpError::new("merge takes a list"));
    };
    let (mut n, mut ss, mut mean, mut m2) = (0.0, 0.0, 0.0, 0.0);
    for it in items.iter() {
        let v = floats(it)?;
        let [nb, sb, mb, qb] = <[f64; 4]>::try_from(v).map_err(|_| OpError::new("bad R² state"))?;
        if nb == 0.0 {
            continue;
        }
        let total = n + nb;
        let d = mb - mean;
        m2 += qb + d * d * n * nb / total;
        mean += d * nb / total;
        n = total;
        ss += sb;
    }
    Ok(Value::list([n, ss, mean, m2].into_iter().map(Value::Float)))
}

rask::core::inventory::submit! { OpEntry { name: MOMENTS, func: moments } }
rask::core::inventory::submit! { OpEntry { name: MOMENTS_MERGE, func: moments_merge } }
rask::core::inventory::submit! { OpEntry { name: R2_PARTIAL, func: r2_partial } }
rask::core::inventory::submit! { OpEntry { name: R2_MERGE, func: r2_merge } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_and_refuses_singular() {
        let mut a = vec![vec![2.0, 1.0], vec![1.0, 3.0]];
        let mut b = vec![3.0, 5.0];
        let x = solve(&mut a, &mut b).expect("solves");
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        let mut a = vec![vec![1.0, 2.0], vec![2.0, 4.0]];
        let mut b = vec![1.0, 2.0];
        assert!(solve(&mut a, &mut b).is_err());
    }

    #[test]
    fn moments_merge_exactly() {
        let mk = |rows: &[[f64; 2]]| {
            let n = rows.len() as f64;
            let mean: Vec<f64> = (0..2).map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / n).collect();
            let mut c = vec![0.0; 4];
            for r in rows {
                for i in 0..2 {
                    for j in 0..2 {
                        c[i * 2 + j] += (r[i] - mean[i]) * (r[j] - mean[j]);
                    }
                }
            }
            Moments { n, mean, c }
        };
        let all = [[1.0, 2.0], [3.0, 5.0], [4.0, 4.0], [8.0, 1.0]];
        let whole = mk(&all);
        let mut a = mk(&all[..1]);
        a.merge(&mk(&all[1..]));
        for (x, y) in a.c.iter().zip(&whole.c) {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
