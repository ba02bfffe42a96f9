//! Column expressions: what `df.births * 2`, `df.state == "AK"` and
//! `df.date.dt.year` build. An expression is data (it travels inside task
//! parameters) and is evaluated on one partition at a time with Arrow's
//! compute kernels. Its output type is known when the graph is built, so a
//! misspelt column or a string compared with a number is an error at once,
//! not in the middle of a computation.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, new_null_array};
use arrow::compute::kernels::{cmp, numeric};
use arrow::compute::{DatePart, and_kleene, cast, date_part, not, or_kleene};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::dtype::{dtype_name, is_numeric};
use crate::error::{FrameError, Result};

/// A literal value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl From<i64> for Lit {
    fn from(v: i64) -> Self {
        Lit::Int(v)
    }
}
impl From<i32> for Lit {
    fn from(v: i32) -> Self {
        Lit::Int(i64::from(v))
    }
}
impl From<f64> for Lit {
    fn from(v: f64) -> Self {
        Lit::Float(v)
    }
}
impl From<bool> for Lit {
    fn from(v: bool) -> Self {
        Lit::Bool(v)
    }
}
impl From<&str> for Lit {
    fn from(v: &str) -> Self {
        Lit::Str(v.to_string())
    }
}
impl From<String> for Lit {
    fn from(v: String) -> Self {
        Lit::Str(v)
    }
}

impl Lit {
    fn data_type(&self) -> DataType {
        match self {
            Lit::Null => DataType::Null,
            Lit::Bool(_) => DataType::Boolean,
            Lit::Int(_) => DataType::Int64,
            Lit::Float(_) => DataType::Float64,
            Lit::Str(_) => DataType::Utf8,
        }
    }

    /// A one-element array of the literal.
    pub(crate) fn to_array(&self) -> ArrayRef {
        match self {
            Lit::Null => new_null_array(&DataType::Null, 1),
            Lit::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
            Lit::Int(i) => Arc::new(Int64Array::from(vec![*i])),
            Lit::Float(f) => Arc::new(Float64Array::from(vec![*f])),
            Lit::Str(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        }
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `%`: floored, the result takes the divisor's sign (pandas/numpy).
    Rem,
    /// `//`: floor division (pandas/numpy).
    FloorDiv,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::FloorDiv => "//",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&",
            BinOp::Or => "|",
        }
    }

    fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

/// String operations (`Series.str`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StrOp {
    Lower,
    Upper,
    Len,
    Contains(String),
    StartsWith(String),
    EndsWith(String),
}

/// Datetime parts (`Series.dt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DtPart {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Monday = 0, as pandas counts.
    DayOfWeek,
    DayOfYear,
}

/// A column expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Col(String),
    Lit(Lit),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsNull(Box<Expr>),
    NotNull(Box<Expr>),
    IsIn(Box<Expr>, Vec<Lit>),
    Str(StrOp, Box<Expr>),
    Dt(DtPart, Box<Expr>),
    Cast(Box<Expr>, #[serde(with = "datatype_serde")] DataType),
}

/// A reference to column `name`.
pub fn col(name: &str) -> Expr {
    Expr::Col(name.to_string())
}

/// A literal.
pub fn lit(v: impl Into<Lit>) -> Expr {
    Expr::Lit(v.into())
}

macro_rules! bin_methods {
    ($($name:ident => $op:ident),* $(,)?) => {$(
        pub fn $name(self, other: impl Into<Expr>) -> Expr {
            Expr::Bin(BinOp::$op, Box::new(self), Box::new(other.into()))
        }
    )*};
}

impl Expr {
    bin_methods!(
        eq => Eq, ne => Ne, lt => Lt, le => Le, gt => Gt, ge => Ge,
        and => And, or => Or, floordiv => FloorDiv,
    );

    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }

    pub fn is_null(self) -> Expr {
        Expr::IsNull(Box::new(self))
    }

    pub fn not_null(self) -> Expr {
        Expr::NotNull(Box::new(self))
    }

    pub fn isin<L: Into<Lit>>(self, values: impl IntoIterator<Item = L>) -> Expr {
        Expr::IsIn(Box::new(self), values.into_iter().map(Into::into).collect())
    }

    /// `lo <= self <= hi`, pandas' `between` with `inclusive="both"`.
    pub fn between(self, lo: impl Into<Lit>, hi: impl Into<Lit>) -> Expr {
        self.clone().ge(Expr::Lit(lo.into())).and(self.le(Expr::Lit(hi.into())))
    }

    pub fn str(self, op: StrOp) -> Expr {
        Expr::Str(op, Box::new(self))
    }

    pub fn dt(self, part: DtPart) -> Expr {
        Expr::Dt(part, Box::new(self))
    }

    pub fn cast(self, to: DataType) -> Expr {
        Expr::Cast(Box::new(self), to)
    }

    /// Columns the expression reads.
    pub fn columns(&self, out: &mut Vec<String>) {
        match self {
            Expr::Col(c) => {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
            Expr::Lit(_) => {}
            Expr::Bin(_, a, b) => {
                a.columns(out);
                b.columns(out);
            }
            unary => {
                if let Some(e) = unary.operand() {
                    e.columns(out);
                }
            }
        }
    }

    /// The operand of a one-operand expression.
    fn operand(&self) -> Option<&Expr> {
        match self {
            Expr::Not(e)
            | Expr::Neg(e)
            | Expr::IsNull(e)
            | Expr::NotNull(e)
            | Expr::IsIn(e, _)
            | Expr::Str(_, e)
            | Expr::Dt(_, e)
            | Expr::Cast(e, _) => Some(e),
            Expr::Col(_) | Expr::Lit(_) | Expr::Bin(..) => None,
        }
    }

    /// A short name for the expression's result, as pandas would name the
    /// series: the column it is built on.
    pub fn default_name(&self) -> String {
        match self {
            Expr::Col(c) => c.clone(),
            Expr::Lit(_) => "literal".into(),
            Expr::Bin(_, a, b) => {
                let n = a.default_name();
                if n == "literal" { b.default_name() } else { n }
            }
            unary => unary.operand().map_or_else(|| "literal".into(), Expr::default_name),
        }
    }

    /// The result type over `schema`, or an error saying what is wrong.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType> {
        Ok(match self {
            Expr::Col(c) => crate::plan::field(schema, c)?.data_type().clone(),
            Expr::Lit(l) => l.data_type(),
            Expr::Bin(op, a, b) => {
                let (ta, tb) = (a.data_type(schema)?, b.data_type(schema)?);
                check_literal_bounds(*op, a, &ta, b, &tb)?;
                binary_type(*op, &ta, &tb, literal(a), literal(b)).ok_or_else(|| {
                    FrameError::Schema(format!(
                        "cannot apply {} to {} ({}) and {} ({})",
                        op.symbol(),
                        a.default_name(),
                        dtype_name(&ta),
                        b.default_name(),
                        dtype_name(&tb)
                    ))
                })?
            }
            Expr::Not(e) => {
                let t = e.data_type(schema)?;
                if t != DataType::Boolean {
                    return Err(FrameError::Schema(format!("~ needs a boolean, got {}", dtype_name(&t))));
                }
                t
            }
            Expr::Neg(e) => {
                let t = e.data_type(schema)?;
                if !t.is_numeric() {
                    return Err(FrameError::Schema(format!("cannot negate {}", dtype_name(&t))));
                }
                t
            }
            Expr::IsNull(e) | Expr::NotNull(e) | Expr::IsIn(e, _) => {
                e.data_type(schema)?;
                DataType::Boolean
            }
            Expr::Str(op, e) => {
                let t = e.data_type(schema)?;
                if t != DataType::Utf8 {
                    return Err(FrameError::Schema(format!(
                        ".str accessor needs a string column, {} is {}",
                        e.default_name(),
                        dtype_name(&t)
                    )));
                }
                match op {
                    StrOp::Lower | StrOp::Upper => DataType::Utf8,
                    StrOp::Len => DataType::Int64,
                    StrOp::Contains(_) | StrOp::StartsWith(_) | StrOp::EndsWith(_) => DataType::Boolean,
                }
            }
            Expr::Dt(_, e) => {
                let t = e.data_type(schema)?;
                if !matches!(t, DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64) {
                    return Err(FrameError::Schema(format!(
                        ".dt accessor needs a datetime column, {} is {}; parse it with parse_dates or astype",
                        e.default_name(),
                        dtype_name(&t)
                    )));
                }
                DataType::Int32
            }
            Expr::Cast(e, to) => {
                e.data_type(schema)?;
                to.clone()
            }
        })
    }

    /// Evaluates over one partition.
    pub fn eval(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let n = batch.num_rows();
        Ok(match self {
            Expr::Col(c) => batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| FrameError::Compute(format!("no column {c:?} in partition")))?,
            Expr::Lit(l) => broadcast(l, n)?,
            Expr::Bin(op, a, b) => {
                let (la, lb) = (literal(a), literal(b));
                let (x, y) = (a.eval(batch)?, b.eval(batch)?);
                let compute = compute_type(*op, x.data_type(), y.data_type(), la, lb);
                // Both sides in the compute type: a Python-style literal takes
                // the column's type (NEP 50), bools compute as int64.
                let to_compute = |v: ArrayRef| -> Result<ArrayRef> {
                    match &compute {
                        Some(t) if !matches!(op, BinOp::And | BinOp::Or) && v.data_type() != t => Ok(cast(&v, t)?),
                        _ => Ok(v),
                    }
                };
                let (x, y) = (to_compute(x)?, to_compute(y)?);
                eval_binary(*op, &x, &y, lb, &b.default_name())?
            }
            Expr::Not(e) => Arc::new(not(as_bool(&e.eval(batch)?)?)?),
            Expr::Neg(e) => numeric::neg(&e.eval(batch)?)?,
            // pandas' isna/notna: NaN is missing too.
            Expr::IsNull(e) => Arc::new(not(&crate::plan::valid_mask(&e.eval(batch)?)?)?),
            Expr::NotNull(e) => Arc::new(crate::plan::valid_mask(&e.eval(batch)?)?),
            Expr::IsIn(e, values) => Arc::new(isin(&e.eval(batch)?, values)?),
            Expr::Str(op, e) => eval_str(op, &e.eval(batch)?)?,
            Expr::Dt(part, e) => eval_dt(*part, &e.eval(batch)?)?,
            Expr::Cast(e, to) => cast_like_pandas(&e.eval(batch)?, to, &e.default_name())?,
        })
    }
}

/// `astype`: pandas refuses to make integers of missing or infinite values
/// (`IntCastingNaNError`) and of strings that are not integers, where
/// Arrow's cast would give a null.
fn cast_like_pandas(a: &ArrayRef, to: &DataType, name: &str) -> Result<ArrayRef> {
    if !to.is_integer() || a.data_type() == to {
        return Ok(cast(a, to)?);
    }
    let floats = a.data_type().is_floating().then(|| cast(a, &DataType::Float64)).transpose()?;
    let non_finite = floats
        .as_ref()
        .and_then(|f| f.as_any().downcast_ref::<Float64Array>())
        .is_some_and(|f| f.iter().any(|v| v.is_none_or(|x| !x.is_finite())));
    if non_finite || (is_numeric(a.data_type()) && a.null_count() > 0) {
        return Err(FrameError::Compute(format!(
            "cannot convert non-finite values (NA or inf) to integer in column {name:?}: \
             drop or fill them first (dropna, fillna)"
        )));
    }
    let out = cast(a, to)?;
    if out.null_count() > a.null_count() {
        return Err(FrameError::Compute(format!(
            "column {name:?} has values that are not {}: astype cannot convert them",
            dtype_name(to)
        )));
    }
    Ok(out)
}

macro_rules! arith_ops {
    ($($trait:ident, $method:ident => $op:ident);* $(;)?) => {$(
        impl<T: Into<Expr>> std::ops::$trait<T> for Expr {
            type Output = Expr;
            fn $method(self, rhs: T) -> Expr {
                Expr::Bin(BinOp::$op, Box::new(self), Box::new(rhs.into()))
            }
        }
    )*};
}
arith_ops!(Add, add => Add; Sub, sub => Sub; Mul, mul => Mul; Div, div => Div; Rem, rem => Rem);

impl std::ops::BitAnd for Expr {
    type Output = Expr;
    fn bitand(self, rhs: Expr) -> Expr {
        self.and(rhs)
    }
}

impl std::ops::BitOr for Expr {
    type Output = Expr;
    fn bitor(self, rhs: Expr) -> Expr {
        self.or(rhs)
    }
}

impl std::ops::Not for Expr {
    type Output = Expr;
    fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }
}

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::Neg(Box::new(self))
    }
}

impl From<Lit> for Expr {
    fn from(l: Lit) -> Self {
        Expr::Lit(l)
    }
}

macro_rules! expr_from_lit {
    ($($t:ty),*) => {$(
        impl From<$t> for Expr {
            fn from(v: $t) -> Self {
                Expr::Lit(v.into())
            }
        }
    )*};
}
expr_from_lit!(i64, i32, f64, bool, &str, String);

fn broadcast(l: &Lit, n: usize) -> Result<ArrayRef> {
    Ok(match l {
        Lit::Null => new_null_array(&DataType::Null, n),
        Lit::Bool(b) => Arc::new(BooleanArray::from(vec![*b; n])),
        Lit::Int(i) => Arc::new(Int64Array::from_value(*i, n)),
        Lit::Float(f) => Arc::new(Float64Array::from_value(*f, n)),
        Lit::Str(s) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s.as_str(), n))),
    })
}

/// The literal an operand is, if it is a number literal: a Python scalar
/// in pandas, which takes the other operand's type (NEP 50).
fn literal(e: &Expr) -> Option<&Lit> {
    match e {
        Expr::Lit(l @ (Lit::Int(_) | Lit::Float(_))) => Some(l),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Signed,
    Unsigned,
    Float,
}

fn kind(t: &DataType) -> Option<(Kind, usize)> {
    use DataType::*;
    Some(match t {
        Boolean => (Kind::Bool, 1),
        Int8 => (Kind::Signed, 1),
        Int16 => (Kind::Signed, 2),
        Int32 => (Kind::Signed, 4),
        Int64 => (Kind::Signed, 8),
        UInt8 => (Kind::Unsigned, 1),
        UInt16 => (Kind::Unsigned, 2),
        UInt32 => (Kind::Unsigned, 4),
        UInt64 => (Kind::Unsigned, 8),
        Float32 => (Kind::Float, 4),
        Float64 => (Kind::Float, 8),
        _ => return None,
    })
}

fn of_kind(k: Kind, bytes: usize) -> DataType {
    use DataType::*;
    match (k, bytes) {
        (Kind::Bool, _) => Boolean,
        (Kind::Signed, 1) => Int8,
        (Kind::Signed, 2) => Int16,
        (Kind::Signed, 4) => Int32,
        (Kind::Signed, _) => Int64,
        (Kind::Unsigned, 1) => UInt8,
        (Kind::Unsigned, 2) => UInt16,
        (Kind::Unsigned, 4) => UInt32,
        (Kind::Unsigned, _) => UInt64,
        (Kind::Float, 4) => Float32,
        (Kind::Float, _) => Float64,
    }
}

/// numpy's `result_type` of two column types (pandas computes on numpy
/// arrays): int32 with int32 stays int32, int32 with float32 is float64.
fn promote(a: &DataType, b: &DataType) -> Option<DataType> {
    let ((ka, sa), (kb, sb)) = (kind(a)?, kind(b)?);
    Some(match (ka, kb) {
        _ if a == b => a.clone(),
        (Kind::Bool, _) => b.clone(),
        (_, Kind::Bool) => a.clone(),
        (Kind::Float, Kind::Float) => of_kind(Kind::Float, sa.max(sb)),
        (Kind::Float, _) | (_, Kind::Float) => {
            let (f, other) = if ka == Kind::Float { (sa, sb) } else { (sb, sa) };
            if f == 4 && other <= 2 { DataType::Float32 } else { DataType::Float64 }
        }
        _ if ka == kb => of_kind(ka, sa.max(sb)),
        _ => {
            let (signed, unsigned) = if ka == Kind::Signed { (sa, sb) } else { (sb, sa) };
            if signed > unsigned {
                of_kind(Kind::Signed, signed)
            } else if unsigned < 8 {
                of_kind(Kind::Signed, unsigned * 2)
            } else {
                DataType::Float64
            }
        }
    })
}

/// A number literal against a column type: an int literal keeps an integer
/// or float column's type (a bool column becomes int64), a float literal
/// keeps a float column's and makes others float64.
fn promote_literal(column: &DataType, l: &Lit) -> Option<DataType> {
    let (k, _) = kind(column)?;
    Some(match (l, k) {
        (Lit::Float(_), Kind::Float) => column.clone(),
        (Lit::Float(_), _) => DataType::Float64,
        (_, Kind::Bool) => DataType::Int64,
        _ => column.clone(),
    })
}

fn int_fits(t: &DataType, v: i64) -> bool {
    use DataType::*;
    match t {
        Int8 => i8::try_from(v).is_ok(),
        Int16 => i16::try_from(v).is_ok(),
        Int32 => i32::try_from(v).is_ok(),
        UInt8 => u8::try_from(v).is_ok(),
        UInt16 => u16::try_from(v).is_ok(),
        UInt32 => u32::try_from(v).is_ok(),
        UInt64 => v >= 0,
        _ => true,
    }
}

/// The type both operands are brought to before the kernel runs.
fn compute_type(op: BinOp, a: &DataType, b: &DataType, la: Option<&Lit>, lb: Option<&Lit>) -> Option<DataType> {
    if !is_numeric(a) || !is_numeric(b) {
        return None;
    }
    let t = match (la, lb) {
        (Some(_), Some(_)) | (None, None) => promote(a, b)?,
        (Some(l), None) => promote_literal(b, l)?,
        (None, Some(l)) => promote_literal(a, l)?,
    };
    // Comparisons with an int literal the column cannot hold are still
    // exact in pandas: compare in int64.
    let out_of_range = [la, lb].into_iter().flatten().any(|l| matches!(l, Lit::Int(v) if !int_fits(&t, *v)));
    Some(if op.is_comparison() && out_of_range {
        DataType::Int64
    } else if !op.is_comparison() && t == DataType::Boolean {
        // Arithmetic on two bool columns computes in int64 (Arrow has no
        // bool arithmetic; numpy's bool `+` would be a logical or).
        DataType::Int64
    } else {
        t
    })
}

/// numpy 2 (and so pandas) refuses arithmetic with an int literal the
/// column's integer type cannot hold: "Python integer 300 out of bounds
/// for int8".
fn check_literal_bounds(op: BinOp, a: &Expr, ta: &DataType, b: &Expr, tb: &DataType) -> Result<()> {
    if op.is_comparison() || matches!(op, BinOp::And | BinOp::Or | BinOp::Div) {
        return Ok(());
    }
    for (l, other) in [(literal(a), tb), (literal(b), ta)] {
        if let Some(Lit::Int(v)) = l
            && other.is_integer()
            && !int_fits(other, *v)
        {
            return Err(FrameError::Schema(format!("Python integer {v} out of bounds for {}", dtype_name(other))));
        }
    }
    Ok(())
}

/// Whether `e` is the literal integer zero (a divisor that makes pandas'
/// integer `%` and `//` float64: NaN and ±inf).
fn is_int_zero(l: Option<&Lit>) -> bool {
    matches!(l, Some(Lit::Int(0)))
}

fn binary_type(op: BinOp, a: &DataType, b: &DataType, la: Option<&Lit>, lb: Option<&Lit>) -> Option<DataType> {
    let null = |t: &DataType| *t == DataType::Null;
    match op {
        BinOp::And | BinOp::Or => {
            ((*a == DataType::Boolean || null(a)) && (*b == DataType::Boolean || null(b))).then_some(DataType::Boolean)
        }
        _ if op.is_comparison() => {
            let ok = a == b
                || compute_type(op, a, b, la, lb).is_some()
                || null(a)
                || null(b)
                || (matches!(a, DataType::Timestamp(..)) && *b == DataType::Utf8)
                || (matches!(b, DataType::Timestamp(..)) && *a == DataType::Utf8);
            ok.then_some(DataType::Boolean)
        }
        BinOp::Add if *a == DataType::Utf8 && *b == DataType::Utf8 => Some(DataType::Utf8),
        _ if null(a) || null(b) => {
            let other = if null(a) { b } else { a };
            is_numeric(other).then(|| if op == BinOp::Div { DataType::Float64 } else { other.clone() })
        }
        _ => {
            let t = compute_type(op, a, b, la, lb)?;
            let float = t.is_floating();
            Some(match op {
                BinOp::Div if !float => DataType::Float64,
                BinOp::Rem | BinOp::FloorDiv if !float && is_int_zero(lb) => DataType::Float64,
                _ => t,
            })
        }
    }
}

fn as_bool(a: &ArrayRef) -> Result<&BooleanArray> {
    a.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| FrameError::Compute("expected a boolean column".into()))
}

/// Brings both operands to one type before a kernel runs.
fn unify(op: BinOp, x: &ArrayRef, y: &ArrayRef) -> Result<(ArrayRef, ArrayRef)> {
    let (tx, ty) = (x.data_type(), y.data_type());
    if tx == ty {
        return Ok((x.clone(), y.clone()));
    }
    if *tx == DataType::Null {
        return Ok((cast(x, ty)?, y.clone()));
    }
    if *ty == DataType::Null {
        return Ok((x.clone(), cast(y, tx)?));
    }
    if let DataType::Timestamp(..) = tx {
        return Ok((x.clone(), cast(y, tx)?));
    }
    if let DataType::Timestamp(..) = ty {
        return Ok((cast(x, ty)?, y.clone()));
    }
    let t =
        promote(tx, ty).ok_or_else(|| FrameError::Compute(format!("cannot apply {} to {tx} and {ty}", op.symbol())))?;
    Ok((cast(x, &t)?, cast(y, &t)?))
}

fn eval_binary(op: BinOp, x: &ArrayRef, y: &ArrayRef, divisor: Option<&Lit>, divisor_name: &str) -> Result<ArrayRef> {
    if matches!(op, BinOp::And | BinOp::Or) {
        let x = if *x.data_type() == DataType::Null { cast(x, &DataType::Boolean)? } else { x.clone() };
        let y = if *y.data_type() == DataType::Null { cast(y, &DataType::Boolean)? } else { y.clone() };
        let (a, b) = (as_bool(&x)?, as_bool(&y)?);
        return Ok(Arc::new(if op == BinOp::And { and_kleene(a, b)? } else { or_kleene(a, b)? }));
    }
    if op == BinOp::Div {
        let f32s = *x.data_type() == DataType::Float32 && *y.data_type() == DataType::Float32;
        let t = if f32s { DataType::Float32 } else { DataType::Float64 };
        let (a, b) = (cast(x, &t)?, cast(y, &t)?);
        return Ok(numeric::div(&a, &b)?);
    }
    if op == BinOp::Add && *x.data_type() == DataType::Utf8 && *y.data_type() == DataType::Utf8 {
        let (a, b) = (strings(x)?, strings(y)?);
        return Ok(Arc::new(
            a.iter().zip(b.iter()).map(|(p, q)| Some(format!("{}{}", p?, q?))).collect::<StringArray>(),
        ));
    }
    let (a, b) = unify(op, x, y)?;
    Ok(match op {
        BinOp::Add => numeric::add_wrapping(&a, &b)?,
        BinOp::Sub => numeric::sub_wrapping(&a, &b)?,
        BinOp::Mul => numeric::mul_wrapping(&a, &b)?,
        BinOp::Rem | BinOp::FloorDiv => floored(op, &a, &b, is_int_zero(divisor), divisor_name)?,
        BinOp::Eq => Arc::new(cmp::eq(&a, &b)?),
        BinOp::Ne => Arc::new(cmp::neq(&a, &b)?),
        BinOp::Lt => Arc::new(cmp::lt(&a, &b)?),
        BinOp::Le => Arc::new(cmp::lt_eq(&a, &b)?),
        BinOp::Gt => Arc::new(cmp::gt(&a, &b)?),
        BinOp::Ge => Arc::new(cmp::gt_eq(&a, &b)?),
        BinOp::Div | BinOp::And | BinOp::Or => unreachable_op(op)?,
    })
}

/// numpy's `divmod` for floats: the remainder takes the divisor's sign, the
/// quotient is floored; by zero the remainder is NaN and the quotient
/// `x / 0` (±inf, or NaN for 0 / 0).
fn float_divmod(x: f64, y: f64) -> (f64, f64) {
    let m = x % y;
    if y == 0.0 {
        return (x / y, m);
    }
    let mut div = (x - m) / y;
    let m = if m != 0.0 {
        if (y < 0.0) != (m < 0.0) {
            div -= 1.0;
            m + y
        } else {
            m
        }
    } else {
        0f64.copysign(y)
    };
    let q = if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 { f + 1.0 } else { f }
    } else {
        0f64.copysign(x / y)
    };
    (q, m)
}

fn int_floored(op: BinOp, x: i64, y: i64) -> i64 {
    let r = x.wrapping_rem(y);
    let adjust = r != 0 && ((r < 0) != (y < 0));
    match op {
        BinOp::Rem if adjust => r.wrapping_add(y),
        BinOp::Rem => r,
        _ if adjust => x.wrapping_div(y).wrapping_sub(1),
        _ => x.wrapping_div(y),
    }
}

/// `%` and `//` with pandas' (numpy's) floored semantics. Integers by a
/// literal zero give float64 as pandas does (`%` NaN; `//` ±inf, NaN for
/// 0 // 0). An integer column holding a zero divisor is an error naming it:
/// pandas would turn the whole result into float64, a type rask could not
/// know before computing.
fn floored(op: BinOp, a: &ArrayRef, b: &ArrayRef, literal_zero: bool, divisor_name: &str) -> Result<ArrayRef> {
    let t = a.data_type().clone();
    if t.is_floating() || literal_zero {
        let (fa, fb) = (cast(a, &DataType::Float64)?, cast(b, &DataType::Float64)?);
        let (fa, fb) = (as_f64(&fa)?, as_f64(&fb)?);
        let out: Float64Array = fa
            .iter()
            .zip(fb.iter())
            .map(|(x, y)| {
                let (q, m) = float_divmod(x?, y?);
                Some(if op == BinOp::Rem { m } else { q })
            })
            .collect();
        let out: ArrayRef = Arc::new(out);
        return Ok(if t == DataType::Float32 { cast(&out, &t)? } else { out });
    }
    let wide = if t == DataType::Boolean { DataType::Int8 } else { t.clone() };
    let (ia, ib) = (cast(a, &DataType::Int64)?, cast(b, &DataType::Int64)?);
    let (ia, ib) = (as_i64(&ia)?, as_i64(&ib)?);
    let mut out = Vec::with_capacity(ia.len());
    for (x, y) in ia.iter().zip(ib.iter()) {
        out.push(match (x, y) {
            (Some(_), Some(0)) => {
                return Err(FrameError::Compute(format!(
                    "integer {} by zero: the divisor ({divisor_name:?}) holds 0, where pandas gives NaN and a float64 column; \
                     cast a side to float64 first",
                    op.symbol()
                )));
            }
            (Some(x), Some(y)) => Some(int_floored(op, x, y)),
            _ => None,
        });
    }
    let out: ArrayRef = Arc::new(Int64Array::from(out));
    // Results fit the operands' type (x % y lies between 0 and y, x // y
    // wraps only for MIN // -1, as numpy's does).
    Ok(arrow::compute::cast_with_options(
        &out,
        &wide,
        &arrow::compute::CastOptions { safe: true, ..Default::default() },
    )?)
}

fn as_f64(a: &ArrayRef) -> Result<&Float64Array> {
    a.as_any().downcast_ref::<Float64Array>().ok_or_else(|| FrameError::Compute("expected a float64 column".into()))
}

fn as_i64(a: &ArrayRef) -> Result<&Int64Array> {
    a.as_any().downcast_ref::<Int64Array>().ok_or_else(|| FrameError::Compute("expected an int64 column".into()))
}

fn unreachable_op(op: BinOp) -> Result<ArrayRef> {
    Err(FrameError::Compute(format!("operator {} was not dispatched", op.symbol())))
}

pub(crate) fn strings(a: &ArrayRef) -> Result<&StringArray> {
    a.as_any().downcast_ref::<StringArray>().ok_or_else(|| FrameError::Compute("expected a string column".into()))
}

fn isin(a: &ArrayRef, values: &[Lit]) -> Result<BooleanArray> {
    match a.data_type() {
        DataType::Utf8 => {
            let set: FxHashSet<&str> =
                values.iter().filter_map(|v| if let Lit::Str(s) = v { Some(s.as_str()) } else { None }).collect();
            Ok(strings(a)?.iter().map(|v| Some(v.is_some_and(|s| set.contains(s)))).collect())
        }
        t if is_numeric(t) => {
            let f = cast(a, &DataType::Float64)?;
            let f = f
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| FrameError::Compute("numeric cast failed".into()))?;
            let set: Vec<f64> = values
                .iter()
                .filter_map(|v| match v {
                    Lit::Int(i) => Some(*i as f64),
                    Lit::Float(x) => Some(*x),
                    Lit::Bool(b) => Some(f64::from(u8::from(*b))),
                    _ => None,
                })
                .collect();
            Ok(f.iter().map(|v| Some(v.is_some_and(|x| set.contains(&x)))).collect())
        }
        t => Err(FrameError::Compute(format!("isin is not supported on {}", dtype_name(t)))),
    }
}

fn eval_str(op: &StrOp, a: &ArrayRef) -> Result<ArrayRef> {
    let s = strings(a)?;
    Ok(match op {
        StrOp::Lower => Arc::new(s.iter().map(|v| v.map(str::to_lowercase)).collect::<StringArray>()),
        StrOp::Upper => Arc::new(s.iter().map(|v| v.map(str::to_uppercase)).collect::<StringArray>()),
        StrOp::Len => Arc::new(s.iter().map(|v| v.map(|x| x.chars().count() as i64)).collect::<Int64Array>()),
        StrOp::Contains(p) => Arc::new(s.iter().map(|v| v.map(|x| x.contains(p.as_str()))).collect::<BooleanArray>()),
        StrOp::StartsWith(p) => {
            Arc::new(s.iter().map(|v| v.map(|x| x.starts_with(p.as_str()))).collect::<BooleanArray>())
        }
        StrOp::EndsWith(p) => Arc::new(s.iter().map(|v| v.map(|x| x.ends_with(p.as_str()))).collect::<BooleanArray>()),
    })
}

fn eval_dt(part: DtPart, a: &ArrayRef) -> Result<ArrayRef> {
    let a = if matches!(a.data_type(), DataType::Timestamp(TimeUnit::Nanosecond, None)) {
        a.clone()
    } else {
        cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?
    };
    let p = match part {
        DtPart::Year => DatePart::Year,
        DtPart::Month => DatePart::Month,
        DtPart::Day => DatePart::Day,
        DtPart::Hour => DatePart::Hour,
        DtPart::Minute => DatePart::Minute,
        DtPart::Second => DatePart::Second,
        DtPart::DayOfWeek => DatePart::DayOfWeekMonday0,
        DtPart::DayOfYear => DatePart::DayOfYear,
    };
    Ok(date_part(&a, p)?)
}

/// Serde for Arrow data types, by their display name for the few types
/// dataframes use.
pub mod datatype_serde {
    use arrow::datatypes::DataType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::dtype::dtype_name(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let name = String::deserialize(d)?;
        crate::dtype::parse_dtype(&name).map_err(serde::de::Error::custom)
    }
}
