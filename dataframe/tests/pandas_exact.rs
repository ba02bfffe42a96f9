//! Exactness against pandas where rask once differed: floored `%` and `//`,
//! numpy's dtype rules for column arithmetic (int32 stays int32, literals
//! follow NEP 50), `astype` to int refusing NaN, and `merge` matching
//! missing keys with each other. Every case runs at several partition
//! counts and must give pandas' values and dtypes (or pandas' error).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly, naming the case

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use rask_dataframe::{DataFrame, Expr, How, Lit, Table, col, from_batch, lit};
use serde_json::{Value as Json, json};

fn python() -> String {
    let default = format!("{}/.cache/rask/pyref/bin/python", std::env::var("HOME").unwrap_or_default());
    std::env::var("RASK_PYREF_PYTHON").unwrap_or(default)
}

/// pandas' results for `cases` (Python expressions over the named frames).
fn pandas(frames: &Json, cases: &[String]) -> Vec<Json> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/pandas_exact.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the pandas reference (scripts/setup.sh installs it)");
    let input = json!({"frames": frames, "cases": cases});
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pandas_exact.py failed");
    serde_json::from_slice(&out.stdout).expect("JSON from pandas_exact.py")
}

fn dtype_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "int64",
        DataType::Int32 => "int32",
        DataType::Int8 => "int8",
        DataType::Float64 => "float64",
        DataType::Float32 => "float32",
        DataType::Boolean => "bool",
        DataType::Utf8 => "object",
        other => panic!("unexpected type {other}"),
    }
}

/// A column's values as pandas_exact.py writes them.
fn values(a: &ArrayRef) -> Vec<Json> {
    if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
        return s.iter().map(|v| v.map_or(Json::Null, |x| json!(x))).collect();
    }
    if let Some(b) = a.as_any().downcast_ref::<BooleanArray>() {
        return b.iter().map(|v| v.map_or(Json::Null, |x| json!(x))).collect();
    }
    if a.data_type().is_integer() {
        let i = cast(a, &DataType::Int64).unwrap();
        return i
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .map(|v| v.map_or(Json::Null, |x| json!(x)))
            .collect();
    }
    let f = cast(a, &DataType::Float64).unwrap();
    let f = f.as_any().downcast_ref::<Float64Array>().unwrap().clone();
    f.iter()
        .map(|v| match v {
            None => Json::Null,
            Some(x) if x.is_nan() => Json::Null,
            Some(x) if x.is_infinite() => json!(if x > 0.0 { "inf" } else { "-inf" }),
            Some(x) => json!(x),
        })
        .collect()
}

fn same(a: &Json, b: &Json) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Rows of a table (or of pandas' answer) as comparable strings, sorted when
/// the order is not part of the contract (joins).
fn rows(columns: &[String], data: &[Vec<Json>], sort: bool) -> Vec<Vec<Json>> {
    let n = data.first().map_or(0, Vec::len);
    let mut out: Vec<Vec<Json>> = (0..n).map(|r| data.iter().map(|c| c[r].clone()).collect()).collect();
    assert_eq!(columns.len(), data.len());
    if sort {
        out.sort_by_key(|r| {
            r.iter()
                .map(|v| v.as_f64().map_or_else(|| v.to_string(), |x| format!("{:+030.10}", x)))
                .collect::<Vec<_>>()
                .join("|")
        });
    }
    out
}

fn compare(label: &str, ours: &Table, want: &Json, sort: bool) {
    if let Some(e) = want.get("error") {
        panic!("{label}: pandas raised {e}, rask computed");
    }
    let batch = ours.batch();
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let want_names: Vec<String> =
        want["columns"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(names, want_names, "{label}: columns");
    let dtypes: Vec<&str> = batch.schema().fields().iter().map(|f| dtype_name(f.data_type())).collect();
    let want_dtypes: Vec<&str> = want["dtypes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(dtypes, want_dtypes, "{label}: dtypes");
    let ours_data: Vec<Vec<Json>> = batch.columns().iter().map(values).collect();
    let want_data: Vec<Vec<Json>> = want_names.iter().map(|c| want["data"][c].as_array().unwrap().clone()).collect();
    let (a, b) = (rows(&names, &ours_data, sort), rows(&names, &want_data, sort));
    assert_eq!(a.len(), b.len(), "{label}: rows");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.iter().zip(y).all(|(p, q)| same(p, q)), "{label}: row {i}: rask {x:?} pandas {y:?}");
    }
}

fn column_json(a: &ArrayRef) -> Json {
    json!({"dtype": dtype_name(a.data_type()), "values": values(a)})
}

fn numbers() -> RecordBatch {
    let x: ArrayRef = Arc::new(Int64Array::from(vec![-4, 5, 0, 7, -9, 12, 3, -1, 100, -7, 8, 0, i64::MAX, -13]));
    let y: ArrayRef = Arc::new(Int64Array::from(vec![7, -3, 2, -2, 4, 5, -6, 3, 7, 2, -5, 9, 10, -1]));
    let z: ArrayRef = Arc::new(Int64Array::from(vec![7, 0, 2, -2, 4, 5, -6, 3, 0, 2, -5, 9, 1, 1]));
    let f: ArrayRef = Arc::new(Float64Array::from(vec![
        -4.5,
        2.5,
        f64::NAN,
        7.0,
        -0.0,
        1e10,
        -3.25,
        0.5,
        9.75,
        -8.0,
        f64::NAN,
        6.0,
        0.0,
        -1e-3,
    ]));
    let g: ArrayRef =
        Arc::new(Float64Array::from(vec![7.0, -2.5, 3.0, 0.0, -1.5, 2.0, 0.0, -0.5, 4.0, 3.5, 1.0, -7.0, -0.0, 0.3]));
    let i: ArrayRef = Arc::new(Int32Array::from(vec![-4, 5, 0, 7, -9, 12, 3, -1, 100, -7, 8, 0, 2_000_000_000, -13]));
    let j: ArrayRef = Arc::new(Int32Array::from(vec![3, -3, 2, -2, 4, 5, -6, 3, 7, 2, -5, 9, 2_000_000_000, 1]));
    let schema = Schema::new(
        ["x", "y", "z", "f", "g", "i", "j"]
            .iter()
            .zip([&x, &y, &z, &f, &g, &i, &j])
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), vec![x, y, z, f, g, i, j]).unwrap()
}

fn frames_json(frames: &[(&str, &RecordBatch)]) -> Json {
    let mut out = serde_json::Map::new();
    for (name, b) in frames {
        let mut cols = serde_json::Map::new();
        for (f, a) in b.schema().fields().iter().zip(b.columns()) {
            cols.insert(f.name().clone(), column_json(a));
        }
        out.insert(name.to_string(), Json::Object(cols));
    }
    Json::Object(out)
}

fn series(df: &DataFrame, e: Expr) -> rask_dataframe::Result<Table> {
    df.assign("out", e)?.select(&["out"])?.compute()
}

#[test]
fn arithmetic_follows_pandas_dtypes_and_floored_division() {
    let batch = numbers();
    let cases: Vec<(Expr, &str)> = vec![
        (col("x") % 7, "df.x % 7"),
        (col("x").floordiv(7), "df.x // 7"),
        (col("x") % -3, "df.x % -3"),
        (col("x").floordiv(-3), "df.x // -3"),
        (col("x") % col("y"), "df.x % df.y"),
        (col("x").floordiv(col("y")), "df.x // df.y"),
        (col("x") % 0, "df.x % 0"),
        (col("x").floordiv(0), "df.x // 0"),
        (col("f") % col("g"), "df.f % df.g"),
        (col("f").floordiv(col("g")), "df.f // df.g"),
        (col("f") % 2.5, "df.f % 2.5"),
        (col("f").floordiv(-0.75), "df.f // -0.75"),
        (col("f") % 0, "df.f % 0"),
        (-col("x") % 7, "(-df.x) % 7"),
        (col("i") % col("j"), "df.i % df.j"),
        (col("i").floordiv(col("j")), "df.i // df.j"),
        (col("i") + col("j"), "df.i + df.j"),
        (col("i") * 3, "df.i * 3"),
        (col("i") - col("x"), "df.i - df.x"),
        (col("i") + 2.5, "df.i + 2.5"),
        (col("i") / col("j"), "df.i / df.j"),
        (col("i").cast(DataType::Float32) * 2.5, "df.i.astype('float32') * 2.5"),
        (col("i").cast(DataType::Float32) + col("j"), "df.i.astype('float32') + df.j"),
        (col("i").lt(lit(1_i64 << 40)), "df.i < 2**40"),
        (col("i").ge(lit(-(1_i64 << 40))), "df.i >= -2**40"),
        (col("i").eq(lit(1_i64 << 40)), "df.i == 2**40"),
    ];
    let frames = frames_json(&[("df", &batch)]);
    let reference = pandas(&frames, &cases.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>());
    for parts in [1, 3, 5, 14] {
        let df = from_batch(&batch, parts).unwrap();
        for ((expr, label), want) in cases.iter().zip(&reference) {
            let label = format!("{label} ({parts} partitions)");
            let got = series(&df, expr.clone()).unwrap_or_else(|e| panic!("{label}: {e}"));
            // pandas names the series after the column; compare values only.
            let mut want = want.clone();
            let first = want["columns"][0].as_str().unwrap().to_string();
            want["columns"] = json!(["out"]);
            want["data"] = json!({"out": want["data"][&first]});
            compare(&label, &got, &want, false);
        }
    }
}

/// Bool columns in arithmetic compute in int64 (a documented difference:
/// pandas gives bool for `+`); the result type must be what runs.
#[test]
fn bool_arithmetic_is_int64() {
    let b: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true, true]));
    let schema = Schema::new(vec![Field::new("b", DataType::Boolean, true)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![b]).unwrap();
    for parts in [1, 3] {
        let df = from_batch(&batch, parts).unwrap();
        for (e, want) in [
            (col("b") + col("b"), vec![2, 0, 2, 2]),
            (col("b") * col("b"), vec![1, 0, 1, 1]),
            (col("b") + 1, vec![2, 1, 2, 2]),
            (col("b") % 2, vec![1, 0, 1, 1]),
        ] {
            let out = series(&df, e).unwrap();
            let a = out.batch().column(0);
            assert_eq!(a.data_type(), &DataType::Int64);
            assert_eq!(values(a), want.iter().map(|v| json!(v)).collect::<Vec<_>>());
        }
    }
}

#[test]
fn bad_arithmetic_fails_as_pandas_does() {
    let batch = numbers();
    let frames = frames_json(&[("df", &batch)]);
    let cases = ["df.i + 2**40", "df.i * -(2**40)", "df.f.astype('int64')", "df.x % df.z"];
    let reference = pandas(&frames, &cases.iter().map(ToString::to_string).collect::<Vec<_>>());
    for parts in [1, 4] {
        let df = from_batch(&batch, parts).unwrap();
        // NEP 50: refused when the graph is built, with numpy's message.
        let Err(e) = df.assign("out", col("i") + lit(1_i64 << 40)) else { panic!("int32 + 2**40 is refused") };
        let want = reference[0]["error"].as_str().unwrap();
        assert!(want.ends_with(&e.to_string()), "rask: {e}; pandas: {want}");
        let Err(e) = df.assign("out", col("i") * lit(-(1_i64 << 40))) else { panic!("int32 * -2**40 is refused") };
        assert!(reference[1]["error"].as_str().unwrap().ends_with(&e.to_string()), "rask: {e}");
        // astype to int with NaN: pandas' IntCastingNaNError.
        let Err(e) = df.astype(&[("f", "int64")]).unwrap().compute() else { panic!("NaN to int64 is refused") };
        let want = reference[2]["error"].as_str().unwrap().to_lowercase();
        assert!(want.contains("cannot convert non-finite values (na or inf) to integer"), "{want}");
        assert!(
            e.to_string().to_lowercase().contains("cannot convert non-finite values (na or inf) to integer"),
            "{e}"
        );
        assert!(e.to_string().contains("\"f\""), "the error names the column: {e}");
        // Integer % by a column holding 0: pandas makes float64 with NaN,
        // a type known only after computing; rask refuses, naming the column.
        assert_eq!(reference[3]["dtypes"][0], "float64");
        let Err(e) = series(&df, col("x") % col("z")) else { panic!("% by a zero is refused") };
        assert!(e.to_string().contains("(\"z\") holds 0"), "{e}");
    }
    // Without NaN the cast is pandas' (truncation toward zero).
    let df = from_batch(&batch, 3).unwrap().filter(col("f").not_null()).unwrap();
    let got = df.astype(&[("f", "int64")]).unwrap().select(&["f"]).unwrap().compute().unwrap();
    let want = pandas(&frames, &["df.f.dropna().astype('int64')".to_string()]);
    compare("astype int64 without NaN", &got, &want[0], false);
}

fn keyed(keys: &[Option<f64>], names: &[Option<&str>], v: &str, start: i64) -> RecordBatch {
    let n = keys.len();
    let k: ArrayRef = Arc::new(Float64Array::from(keys.iter().map(|k| k.unwrap_or(f64::NAN)).collect::<Vec<_>>()));
    let s: ArrayRef = Arc::new(StringArray::from(names.to_vec()));
    let v_col: ArrayRef = Arc::new(Int64Array::from((start..start + n as i64).collect::<Vec<_>>()));
    let schema = Schema::new(vec![
        Field::new("k", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new(v, DataType::Int64, true),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![k, s, v_col]).unwrap()
}

#[test]
fn merge_matches_missing_keys_like_pandas() {
    let left = keyed(
        &[Some(1.0), None, Some(2.0), None, Some(-0.0), Some(3.0), None, Some(1.0), Some(9.0), None],
        &[Some("a"), None, Some("b"), Some("a"), None, Some("c"), None, Some("z"), Some("b"), Some("q")],
        "v",
        0,
    );
    let right = keyed(
        &[None, Some(1.0), Some(0.0), None, Some(2.0), Some(7.0), None],
        &[None, Some("a"), Some("b"), Some("a"), None, Some("y"), Some("c")],
        "w",
        100,
    );
    let frames = frames_json(&[("l", &left), ("r", &right)]);
    let hows = [(How::Inner, "inner"), (How::Left, "left"), (How::Right, "right"), (How::Outer, "outer")];
    let mut cases = Vec::new();
    for (_, how) in hows {
        cases.push(format!("pd.merge(l, r, on='k', how='{how}')"));
        cases.push(format!("pd.merge(l, r, on='s', how='{how}')"));
        cases.push(format!("pd.merge(l, r, on=['k', 's'], how='{how}')"));
    }
    let reference = pandas(&frames, &cases);
    let inner_k = reference[0]["data"]["k"].as_array().unwrap().len();
    assert!(inner_k > 4, "missing keys match each other in pandas ({inner_k} rows)");
    for (lp, rp) in [(1, 1), (3, 1), (2, 3), (5, 4)] {
        let l = from_batch(&left, lp).unwrap();
        let r = from_batch(&right, rp).unwrap();
        let mut want = reference.iter();
        for (how, name) in hows {
            for on in [vec!["k"], vec!["s"], vec!["k", "s"]] {
                let label = format!("merge on {on:?} how={name} ({lp} x {rp} partitions)");
                let merged = l.merge(&r, &on, how).unwrap();
                let reference = want.next().unwrap();
                let dtypes: Vec<String> = merged.dtypes().into_iter().map(|(_, t)| t).collect();
                let want_dtypes: Vec<String> =
                    reference["dtypes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
                assert_eq!(dtypes, want_dtypes, "{label}: dtypes() before computing");
                compare(&label, &merged.compute().unwrap(), reference, true);
            }
        }
    }
    // A null literal key column stays usable in expressions afterwards.
    let _ = Lit::Null;
}
