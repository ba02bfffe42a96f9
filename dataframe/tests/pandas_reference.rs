//! Every dataframe operation against pandas and scikit-learn on generated
//! data with gaps, strings, quoted fields, dates and booleans. The Python
//! side lives in `reference/pandas_ref.py` and runs in the reference venv
//! that scripts/setup.sh makes; without it this test fails, it never skips.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use rask_dataframe::ml::{LinearRegression, train_test_split};
use rask_dataframe::{CsvOptions, DataFrame, DtPart, How, Lit, StrOp, Table, col, read_csv};
use serde_json::{Value as Json, json};

fn python() -> String {
    let default = format!("{}/.cache/rask/pyref/bin/python", std::env::var("HOME").unwrap_or_default());
    std::env::var("RASK_PYREF_PYTHON").unwrap_or(default)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/pandas_ref.py")
}

fn run_py(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .expect("run the pandas reference (scripts/setup.sh installs it)");
    assert!(out.status.success(), "pandas_ref.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A generated file and pandas' results on it.
fn fixture(rows: usize, seed: u64) -> (String, Json) {
    let dir = std::env::temp_dir().join(format!("rask-pandas-ref-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("data.csv").to_string_lossy().into_owned();
    run_py(&["gen", &path, &rows.to_string(), &seed.to_string()]);
    let reference = serde_json::from_str(&run_py(&["eval", &path])).expect("reference JSON");
    (path, reference)
}

/// A column as JSON values, dates as pandas prints them.
fn column_json(t: &Table, name: &str) -> Vec<Json> {
    let a = t.column(name).unwrap_or_else(|e| panic!("{e}"));
    let is_time = matches!(a.data_type(), DataType::Timestamp(..));
    let a = match a.data_type() {
        DataType::Timestamp(..) => cast(a, &DataType::Utf8).expect("cast"),
        DataType::Int32 => cast(a, &DataType::Int64).expect("cast"),
        _ => a.clone(),
    };
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                return Json::Null;
            }
            if let Some(x) = a.as_any().downcast_ref::<Int64Array>() {
                json!(x.value(i))
            } else if let Some(x) = a.as_any().downcast_ref::<Float64Array>() {
                if x.value(i).is_nan() { Json::Null } else { json!(x.value(i)) }
            } else if let Some(x) = a.as_any().downcast_ref::<BooleanArray>() {
                json!(x.value(i))
            } else if let Some(x) = a.as_any().downcast_ref::<StringArray>() {
                if is_time { json!(x.value(i).replace('T', " ")) } else { json!(x.value(i)) }
            } else {
                panic!("unexpected column type {}", a.data_type())
            }
        })
        .collect()
}

fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

/// Compares a table with pandas' result: same columns, same values in the
/// same order (or as sorted rows when `sorted`), and dtypes when asked.
fn check(case: &str, reference: &Json, t: &Table, dtypes: bool, sorted: bool) {
    let want = &reference[case];
    let cols: Vec<String> = serde_json::from_value(want["columns"].clone()).expect("columns");
    let mut ours: Vec<Vec<Json>> = cols.iter().map(|c| column_json(t, c)).collect();
    let mut theirs: Vec<Vec<Json>> =
        cols.iter().map(|c| want["data"][c].as_array().cloned().unwrap_or_default()).collect();
    assert_eq!(ours[0].len(), theirs[0].len(), "{case}: row count");
    if sorted {
        let rows = |cols: &Vec<Vec<Json>>| {
            let mut r: Vec<String> = (0..cols[0].len())
                .map(|i| cols.iter().map(|c| format!("{:.6}", Num(&c[i]))).collect::<Vec<_>>().join("|"))
                .collect();
            r.sort();
            r
        };
        assert_eq!(rows(&ours), rows(&theirs), "{case}: rows differ");
        return;
    }
    for (c, name) in cols.iter().enumerate() {
        for (i, (x, y)) in ours[c].iter_mut().zip(theirs[c].iter_mut()).enumerate() {
            assert!(same(x, y), "{case}: column {name} row {i}: rask {x} vs pandas {y}");
        }
    }
    if dtypes {
        let want_types: Vec<String> = serde_json::from_value(want["dtypes"].clone()).expect("dtypes");
        let ours: Vec<String> =
            cols.iter().map(|c| rask_dataframe::dtype::dtype_name(t.column(c).expect("column").data_type())).collect();
        assert_eq!(ours, want_types, "{case}: dtypes");
    }
}

/// Formats numbers to a fixed precision so sorted rows compare.
struct Num<'a>(&'a Json);
impl std::fmt::Display for Num<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Json::Number(n) => write!(f, "{:.6}", n.as_f64().unwrap_or(f64::NAN)),
            other => write!(f, "{other}"),
        }
    }
}

fn frame(path: &str, blocksize: u64) -> DataFrame {
    read_csv(path, CsvOptions::default().blocksize(Some(blocksize)).parse_dates(&["d"])).expect("reads")
}

fn run_cases(path: &str, r: &Json, blocksize: u64) {
    let df = frame(path, blocksize);
    assert!(df.npartitions() > 1, "the test needs several partitions");
    check("read", r, &df.compute().expect("read"), true, false);
    let filtered = df.filter(df.col("i").gt(500) & df.col("s").isin(["apple", "fig"])).expect("filter");
    check("filter", r, &filtered.compute().expect("filter"), true, false);
    let arith = df
        .assign("p", col("i") * 2 + col("f"))
        .and_then(|d| d.assign("q", col("i") / 3))
        .and_then(|d| d.assign("m", col("i") % 7))
        .and_then(|d| d.assign("n", -col("a")))
        .and_then(|d| d.select(&["p", "q", "m", "n"]))
        .expect("arith");
    check("arith", r, &arith.compute().expect("arith"), true, false);
    let strings = df
        .assign("lower", col("s").str(StrOp::Lower))
        .and_then(|d| d.assign("len", col("s").str(StrOp::Len)))
        .and_then(|d| d.assign("contains", col("s").str(StrOp::Contains("an".into()))))
        .and_then(|d| d.assign("starts", col("s").str(StrOp::StartsWith("B".into()))))
        .and_then(|d| d.select(&["lower", "len", "contains", "starts"]))
        .and_then(|d| d.dropna())
        .expect("strings");
    check("strings", r, &strings.compute().expect("strings"), false, false);
    let dates = df
        .assign("year", col("d").dt(DtPart::Year))
        .and_then(|d| d.assign("month", col("d").dt(DtPart::Month)))
        .and_then(|d| d.assign("day", col("d").dt(DtPart::Day)))
        .and_then(|d| d.assign("dow", col("d").dt(DtPart::DayOfWeek)))
        .and_then(|d| d.select(&["year", "month", "day", "dow"]))
        .expect("dates");
    check("dates", r, &dates.compute().expect("dates"), false, false);
    let flags = df
        .assign("bt", col("i").between(100, 200))
        .and_then(|d| d.assign("na", col("a").is_null()))
        .and_then(|d| d.assign("nn", col("s").not_null()))
        .and_then(|d| d.select(&["bt", "na", "nn"]))
        .expect("flags");
    check("between_isnull", r, &flags.compute().expect("flags"), true, false);
    let cast = df
        .select(&["i", "g", "a"])
        .and_then(|d| d.astype(&[("i", "float64"), ("a", "float64")]))
        .and_then(|d| d.rename(&[("g", "group")]))
        .expect("astype");
    check("astype_rename", r, &cast.compute().expect("astype"), true, false);
    let head: Vec<Json> = column_json(&df.head(4).expect("head"), "id");
    assert_eq!(head, r["head_tail"]["head"].as_array().cloned().unwrap_or_default());
    let tail: Vec<Json> = column_json(&df.tail(3).expect("tail"), "id");
    assert_eq!(tail, r["head_tail"]["tail"].as_array().cloned().unwrap_or_default());
    let more = df
        .assign("upper", col("s").str(StrOp::Upper))
        .and_then(|d| d.assign("ends", col("s").str(StrOp::EndsWith("e".into()))))
        .and_then(|d| d.select(&["upper", "ends"]))
        .and_then(|d| d.dropna())
        .expect("strings");
    check("more_strings", r, &more.compute().expect("strings"), false, false);
    let dropped = df.select(&["id", "a", "s"]).and_then(|d| d.dropna()).expect("dropna");
    check("dropna", r, &dropped.compute().expect("dropna"), true, false);
    let filled = df
        .select(&["id", "a", "s"])
        .and_then(|d| d.fillna(&[("a", Lit::Float(0.0)), ("s", Lit::Str("none".into()))]))
        .expect("fillna");
    check("fillna", r, &filled.compute().expect("fillna"), true, false);

    let funcs_i = ["count", "sum", "mean", "min", "max", "std", "var"];
    let funcs_f = ["count", "sum", "mean", "min", "max", "std"];
    let aggs: Vec<(&str, &str)> = funcs_i.iter().map(|f| ("i", *f)).chain(funcs_f.iter().map(|f| ("f", *f))).collect();
    let g = df.groupby(&["k"]).agg(&aggs).expect("agg");
    check("groupby_agg", r, &g.compute().expect("agg"), true, false);
    let two = df.select(&["k", "g", "i", "f"]).and_then(|d| d.groupby(&["k", "g"]).mean()).expect("two keys");
    check("groupby_two_keys", r, &two.compute().expect("two keys"), true, false);
    check("groupby_size", r, &df.groupby(&["k"]).size().expect("size").compute().expect("size"), true, false);
    let nun = df.groupby(&["k"]).nunique("s").expect("nunique");
    check("groupby_nunique", r, &nun.compute().expect("nunique"), false, false);
    let mins = df.select(&["k", "s"]).and_then(|d| d.groupby(&["k"]).min()).expect("min");
    check("groupby_minmax_str", r, &mins.compute().expect("min"), true, false);
    check("value_counts", r, &df.col("s").value_counts().expect("vc").compute().expect("vc"), true, false);
    let nl = df.nlargest(7, "f").and_then(|d| d.select(&["id", "f"])).expect("nlargest");
    check("nlargest", r, &nl.compute().expect("nlargest"), true, false);
    let ns = df.nsmallest(7, "i").and_then(|d| d.select(&["id", "i"])).expect("nsmallest");
    check("nsmallest", r, &ns.compute().expect("nsmallest"), true, false);
    let unique = df.col("s").unique().expect("unique").compute().expect("unique");
    let want: Vec<Json> = r["unique"]["values"].as_array().cloned().unwrap_or_default();
    assert_eq!(column_json(&unique, "s"), want, "unique in order of appearance");
    let sorted = df.sort_values(&["f"], true).and_then(|d| d.select(&["id", "f"])).expect("sort");
    check("sort_values", r, &sorted.compute().expect("sort"), true, false);
    let dd = df.select(&["k", "g"]).and_then(|d| d.drop_duplicates(&[])).expect("dedup");
    check("drop_duplicates", r, &dd.compute().expect("dedup"), true, false);

    let described = df.select(&["i", "a", "f"]).and_then(|d| d.describe()).expect("describe");
    check("describe", r, &described.compute().expect("describe"), false, false);

    let red = &r["reductions"];
    let f = df.col("f");
    let close = |name: &str, v: f64| {
        let want = red[name].as_f64().expect("number");
        assert!((v - want).abs() <= 1e-9 * want.abs().max(1.0), "{name}: rask {v} vs pandas {want}");
    };
    close("sum", f.sum().expect("sum").compute().expect("sum"));
    close("mean", f.mean().expect("mean").compute().expect("mean"));
    close("std", f.std().expect("std").compute().expect("std"));
    close("var", f.var().expect("var").compute().expect("var"));
    close("min", f.min().expect("min").compute().expect("min"));
    close("max", f.max().expect("max").compute().expect("max"));
    assert_eq!(f.count().expect("count").compute().expect("count"), red["count"].as_i64().expect("int"));
    close("isum", df.col("i").sum().expect("sum").compute().expect("sum"));
    assert_eq!(df.col("s").nunique().expect("n").compute().expect("n"), red["nunique"].as_i64().expect("int"));
    assert_eq!(df.len().expect("len") as i64, red["len"].as_i64().expect("int"));

    // merge: a small right side (broadcast) and a partitioned one (shuffle).
    let left = df.select(&["id", "k", "i"]).expect("left");
    let keys = df
        .select(&["k", "g"])
        .and_then(|d| d.drop_duplicates(&["k"]))
        .and_then(|d| d.rename(&[("g", "gk")]))
        .expect("right");
    let extra = rask_dataframe::from_batches(vec![
        arrow::record_batch::RecordBatch::try_new(
            keys.schema().clone(),
            vec![
                std::sync::Arc::new(StringArray::from(vec!["nowhere"])),
                std::sync::Arc::new(Int64Array::from(vec![99])),
            ],
        )
        .expect("batch"),
    ])
    .expect("frame");
    let right_parts = [keys.partitions().expect("p"), extra.partitions().expect("p")].concat();
    let right = rask_dataframe::from_partitions(right_parts, keys.schema().clone()).expect("right");
    let small = df
        .filter(col("i").lt(30))
        .and_then(|d| d.select(&["g", "f"]))
        .and_then(|d| d.rename(&[("f", "i")]))
        .expect("small");
    let ids = df.select(&["id", "g", "i"]).expect("ids");
    for (how, label) in [(How::Inner, "inner"), (How::Left, "left"), (How::Right, "right"), (How::Outer, "outer")] {
        let m = left.merge(&right, &["k"], how).expect("merge");
        check(&format!("merge_{label}"), r, &m.compute().expect("merge"), false, true);
        let m = ids.merge(&small, &["g"], how).expect("merge");
        check(&format!("merge_g_{label}"), r, &m.compute().expect("merge"), false, true);
    }

    let clean = df.select(&["x1", "x2", "y"]).and_then(|d| d.dropna()).expect("clean");
    let x = clean.select(&["x1", "x2"]).expect("X");
    let y = clean.col("y");
    let mut lr = LinearRegression::new();
    lr.fit(&x, &y).expect("fit");
    let want = &r["linreg"];
    for (c, w) in lr.coef_.iter().zip(want["coef"].as_array().expect("coef")) {
        let w = w.as_f64().expect("f64");
        assert!((c - w).abs() < 1e-9 * w.abs().max(1.0), "coef {c} vs sklearn {w}");
    }
    let wi = want["intercept"].as_f64().expect("f64");
    assert!((lr.intercept_ - wi).abs() < 1e-8, "intercept {} vs sklearn {wi}", lr.intercept_);
    let ws = want["score"].as_f64().expect("f64");
    let score = lr.score(&x, &y).expect("score");
    assert!((score - ws).abs() < 1e-10, "score {score} vs sklearn {ws}");
    let pred = lr.predict(&x).expect("predict").compute().expect("predict");
    assert_eq!(pred.num_rows(), clean.len().expect("len"));

    let (xtr, xte, ytr, yte) = train_test_split(&x, &y, 0.25, 42).expect("split");
    let (ntr, nte) = (xtr.len().expect("len"), xte.len().expect("len"));
    assert_eq!(ntr + nte, clean.len().expect("len"));
    assert!((nte as f64 / (ntr + nte) as f64 - 0.25).abs() < 0.05, "test share {nte}/{}", ntr + nte);
    assert_eq!(ytr.len().expect("len"), ntr);
    assert_eq!(yte.len().expect("len"), nte);
    let mut lr2 = LinearRegression::new();
    lr2.fit(&xtr, &ytr).expect("fit");
    assert!(lr2.score(&xte, &yte).expect("score") > 0.98);
}

#[test]
fn matches_pandas_on_generated_data() {
    let (path, reference) = fixture(4000, 1);
    for blocksize in [37_000u64, 150_000] {
        run_cases(&path, &reference, blocksize);
    }
}

#[test]
fn parquet_interoperates_with_pandas() {
    let (path, reference) = fixture(2500, 3);
    let dir = std::path::Path::new(&path).parent().expect("dir").to_path_buf();
    // pandas writes, rask reads: the same values and dtypes as reading the CSV.
    let from_pandas = dir.join("pandas.parquet").to_string_lossy().into_owned();
    run_py(&["parquet_write", &path, &from_pandas]);
    let df = rask_dataframe::read_parquet(&from_pandas, None).expect("reads pandas' Parquet");
    assert!(df.npartitions() > 1, "one partition per row group");
    check("read", &reference, &df.compute().expect("computes"), true, false);
    // rask writes, pandas reads.
    let out = dir.join("rask-parquet");
    frame(&path, 37_000).to_parquet(out.to_str().expect("utf-8")).expect("writes");
    let theirs: Json =
        serde_json::from_str(&run_py(&["parquet_read", &format!("{}/part.*.parquet", out.display())])).expect("JSON");
    let wrapped = json!({ "read": theirs });
    let ours = frame(&path, 37_000).compute().expect("computes");
    check("read", &wrapped, &ours, true, false);
}

/// Each codec pandas infers from a suffix: pandas and rask read the same
/// compressed file (written as two concatenated members where the codec
/// allows) to the same values and dtypes; the file is one partition; and
/// the results do not depend on how the plain file is split.
#[test]
fn compressed_files_match_pandas() {
    let (path, reference) = fixture(3000, 5);
    let dir = std::path::Path::new(&path).parent().expect("dir").to_path_buf();
    let plain = frame(&path, 41_000);
    assert!(plain.npartitions() > 1, "the plain file is split");
    let plain_read = plain.compute().expect("plain");
    for suffix in ["gz", "bz2", "xz", "zst"] {
        let out = dir.join(format!("data.csv.{suffix}")).to_string_lossy().into_owned();
        run_py(&["compress", &path, &out]);
        let theirs: Json = serde_json::from_str(&run_py(&["eval", &out])).expect("reference JSON");
        // pandas reads the compressed file as it reads the plain one.
        assert_eq!(theirs["read"], reference["read"], "{suffix}: pandas reads the compressed file the same");
        let df = frame(&out, 41_000);
        assert_eq!(df.npartitions(), 1, "{suffix}: a compressed file is one partition");
        let ours = df.compute().expect("reads");
        check("read", &theirs, &ours, true, false);
        assert_eq!(ours.num_rows(), plain_read.num_rows(), "{suffix}");
        let g = df.groupby(&["k"]).agg(&[("i", "sum"), ("f", "mean")]).expect("agg").compute().expect("agg");
        let want = plain.groupby(&["k"]).agg(&[("i", "sum"), ("f", "mean")]).expect("agg").compute().expect("agg");
        assert_eq!(format!("{g}"), format!("{want}"), "{suffix}: the same groupby as the split plain file");
        check("value_counts", &theirs, &df.col("s").value_counts().expect("vc").compute().expect("vc"), true, false);
    }
    // A glob over plain and compressed files: each compressed one is one
    // partition, the plain one is split; the rows are all there, in file order.
    let both = read_csv(
        &format!("{}/data.csv*", dir.display()),
        CsvOptions::default().blocksize(Some(41_000)).parse_dates(&["d"]),
    )
    .expect("glob");
    assert_eq!(both.npartitions(), plain.npartitions() + 4);
    assert_eq!(both.len().expect("len"), 5 * plain_read.num_rows());
    // An explicit codec overrides the name; a wrong one is an error naming file and codec.
    let gz = dir.join("data.csv.gz");
    let renamed = dir.join("gzipped.bin");
    std::fs::copy(&gz, &renamed).expect("copy");
    let opts = CsvOptions::default().compression(rask_dataframe::Compression::Gzip).parse_dates(&["d"]);
    check(
        "read",
        &reference,
        &read_csv(renamed.to_str().expect("utf-8"), opts).expect("reads").compute().expect("computes"),
        true,
        false,
    );
    let wrong = CsvOptions::default().compression(rask_dataframe::Compression::Xz);
    let err = read_csv(renamed.to_str().expect("utf-8"), wrong).expect_err("not xz").to_string();
    assert!(err.contains("gzipped.bin") && err.contains("xz"), "{err}");
}

/// A bad row in a compressed file is reported with the file and its line
/// in the decompressed text, as for a plain file.
#[test]
fn errors_in_compressed_files_name_file_and_line() {
    let dir = std::env::temp_dir().join(format!("rask-compressed-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let src = dir.join("bad.csv");
    let mut text = String::from("id,v\n");
    for i in 0..5000 {
        text.push_str(&format!("{i},{}\n", i * 2));
    }
    text.push_str("5000,1,2\n");
    std::fs::write(&src, &text).expect("write");
    for suffix in ["gz", "bz2", "xz", "zst"] {
        let out = dir.join(format!("bad.csv.{suffix}"));
        run_py(&["compress", src.to_str().expect("utf-8"), out.to_str().expect("utf-8")]);
        let df = read_csv(out.to_str().expect("utf-8"), CsvOptions::default()).expect("builds");
        let err = df.compute().expect_err("a row with 3 fields").to_string();
        assert!(
            err.contains(&format!("bad.csv.{suffix}:5002:")) && err.contains("expected 2 fields"),
            "{suffix}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
