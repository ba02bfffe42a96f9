//! The tutorial's dataframe section on its real dataset, with the values
//! the tutorial prints: read as shipped (`data/Birthdays.csv.xz`, one
//! partition) and as a plain CSV written from it and split into blocks.

use std::path::PathBuf;
use std::sync::OnceLock;

use rask_dataframe::{CsvOptions, DataFrame, read_csv};

/// The repository's copy of the tutorial's Birthdays.csv, compressed.
fn shipped() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/Birthdays.csv.xz");
    p.to_str().expect("utf-8 path").to_string()
}

/// The same data as a plain CSV: the shipped file read and written back by
/// rask once per test process.
fn plain() -> &'static str {
    static PLAIN: OnceLock<String> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rask-birthdays-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let df = read_csv(&shipped(), CsvOptions::default()).expect("reads the shipped file");
        let pattern = dir.join("Birthdays-*.csv");
        let paths = df.to_csv(pattern.to_str().expect("utf-8")).expect("writes");
        assert_eq!(paths.len(), 1, "one partition, one file");
        paths.into_iter().next().expect("one path")
    })
}

fn birthdays(blocksize: Option<u64>) -> DataFrame {
    read_csv(plain(), CsvOptions::default().blocksize(blocksize)).expect("reads")
}

#[test]
fn schema_and_display_without_reading() {
    let df = birthdays(Some(4_000_000));
    assert_eq!(df.npartitions(), 4);
    let cols: Vec<String> = df.columns();
    assert_eq!(cols, ["Unnamed: 0", "state", "year", "month", "day", "date", "wday", "births"]);
    let dtypes: Vec<String> = df.dtypes().into_iter().map(|d| d.1).collect();
    assert_eq!(dtypes, ["int64", "object", "int64", "int64", "int64", "object", "object", "int64"]);
    let shown = df.to_string();
    assert!(shown.contains("npartitions=4") && shown.contains("births"), "{shown}");
}

#[test]
fn tutorial_values() {
    tutorial_values_of(&birthdays(Some(4_000_000)));
}

#[test]
fn tutorial_values_from_the_compressed_file() {
    let df = read_csv(&shipped(), CsvOptions::default().blocksize(Some(4_000_000))).expect("reads");
    assert_eq!(df.npartitions(), 1, "a compressed file is one partition");
    assert_eq!(df.dtypes(), birthdays(Some(4_000_000)).dtypes(), "the same dtypes as the plain file");
    tutorial_values_of(&df);
}

fn tutorial_values_of(df: &DataFrame) {
    assert_eq!(df.len().expect("len"), 372_864);
    let head = df.head(5).expect("head");
    assert_eq!(head.num_rows(), 5);
    assert_eq!(head.strings("state").expect("state")[0].as_deref(), Some("AK"));

    let ak = df.filter(df.col("state").eq("AK")).expect("filter");
    assert_eq!(ak.len().expect("len"), 7306);

    let means = df.groupby(&["state"]).mean().expect("groupby").compute().expect("computes");
    let states = means.strings("state").expect("keys");
    let births = means.f64s("births").expect("births");
    let at = |s: &str| births[states.iter().position(|x| x.as_deref() == Some(s)).expect("state present")];
    assert!((at("AK") - 25.374350).abs() < 1e-6, "{}", at("AK"));
    assert!((at("CA") - 1067.956997).abs() < 1e-6, "{}", at("CA"));

    let top = df.groupby(&["state"]).mean().expect("groupby").col("births").nlargest(10).expect("nlargest");
    let top = top.compute().expect("computes");
    let order: Vec<String> = top.strings("state").expect("index").into_iter().flatten().collect();
    assert_eq!(order, ["CA", "TX", "NY", "IL", "OH", "PA", "MI", "FL", "NJ", "GA"]);

    let unique = df.col("state").unique().expect("unique").compute().expect("computes");
    assert_eq!(unique.num_rows(), 51);
    assert_eq!(df.col("state").nunique().expect("nunique").compute().expect("computes"), 51);

    let counts = df.col("state").value_counts().expect("value_counts").compute().expect("computes");
    assert_eq!(counts.num_rows(), 51);
    let c = counts.i64s("count").expect("counts");
    assert!(c.windows(2).all(|w| w[0] >= w[1]), "sorted largest first");
    assert_eq!(c.iter().flatten().sum::<i64>(), 372_864);

    // Dask's per-partition index: loc[0] is one row per partition.
    let first_rows = df.loc(0).expect("loc").compute().expect("computes");
    assert_eq!(first_rows.num_rows(), df.npartitions());
}

#[test]
fn results_do_not_depend_on_blocksize() {
    let whole = birthdays(None);
    let split = birthdays(Some(1_000_000));
    assert_eq!(whole.npartitions(), 1);
    assert!(split.npartitions() >= 14);
    let a = whole.groupby(&["state"]).agg(&[("births", "sum"), ("births", "std"), ("day", "max")]).expect("agg");
    let b = split.groupby(&["state"]).agg(&[("births", "sum"), ("births", "std"), ("day", "max")]).expect("agg");
    let (a, b) = (a.compute().expect("a"), b.compute().expect("b"));
    assert_eq!(a.i64s("births_sum").expect("sum"), b.i64s("births_sum").expect("sum"));
    for (x, y) in a.f64s("births_std").expect("std").iter().zip(b.f64s("births_std").expect("std")) {
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(whole.len().expect("len"), split.len().expect("len"));
}
