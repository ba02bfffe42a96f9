//! `rask demo dataframe`: the tutorial's dataframe and dask_ml sections.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use rask_dataframe::ml::{LinearRegression, train_test_split};
use rask_dataframe::{CsvOptions, read_csv};

use crate::data;

use crate::demo::report;

pub fn dataframe_section(birthdays: Option<&Path>) -> anyhow::Result<()> {
    println!("\n== dataframe: partitioned dataframes on Arrow ==");
    let path = match birthdays {
        Some(p) => p.to_path_buf(),
        None => data::birthdays().context(
            "Birthdays.csv.xz not found beside the rask binary (../share/rask/, data/) nor in a checkout's data/ \
             folder: pass --birthdays PATH",
        )?,
    };
    let path = path.to_str().context("the Birthdays path is not UTF-8")?.to_string();
    let df = read_csv(&path, CsvOptions::default().blocksize(Some(4_000_000)))?;
    println!(
        "df = read_csv({path:?}, blocksize=4 MB)   (only a sample read so far; a compressed file is one partition)"
    );
    for line in df.to_string().lines() {
        println!("    {line}");
    }
    let started = Instant::now();
    let head = df.head(5)?;
    report("df.head()  [first partition only]", format!("{} rows", head.num_rows()), started);
    for line in head.to_string().lines() {
        println!("    {line}");
    }
    let started = Instant::now();
    report("len(df)", df.len()?, started);
    let started = Instant::now();
    let ak = df.filter(df.col("state").eq("AK"))?;
    report("len(df[df.state == \"AK\"])", ak.len()?, started);

    let started = Instant::now();
    let means = df.groupby(&["state"]).mean()?.compute()?;
    let states = means.strings("state")?;
    let births = means.f64s("births")?;
    let mean_of = |s: &str| states.iter().position(|x| x.as_deref() == Some(s)).map_or(f64::NAN, |i| births[i]);
    report("groupby(\"state\").mean().births [AK, CA]", format!("{:.6}, {:.6}", mean_of("AK"), mean_of("CA")), started);
    let started = Instant::now();
    let top = df.groupby(&["state"]).mean()?.col("births").nlargest(10)?.compute()?;
    let order: Vec<String> = top.strings("state")?.into_iter().flatten().collect();
    report("....births.nlargest(10)", order.join(" "), started);
    let started = Instant::now();
    let unique = df.col("state").unique()?.compute()?;
    report("df.state.unique()", format!("{} states", unique.num_rows()), started);
    let started = Instant::now();
    let counts = df.col("state").value_counts()?.compute()?;
    let (s, c) = (counts.strings("state")?, counts.i64s("count")?);
    report(
        "df.state.value_counts() [top 3]",
        (0..3.min(s.len()))
            .map(|i| format!("{}={}", s[i].as_deref().unwrap_or("?"), c[i].unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" "),
        started,
    );
    let started = Instant::now();
    let first = df.loc(0)?.compute()?;
    report("df.loc[0]  [one row per partition]", format!("{} rows", first.num_rows()), started);

    regression_section()
}

/// The taxi-style regression: a dtype inference error and its fix, then
/// dropna, train_test_split and LinearRegression.
fn regression_section() -> anyhow::Result<()> {
    println!("\n== dask_ml: linear regression on taxi-style trips ==");
    let dir = std::env::temp_dir().join(format!("rask-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("taxi.csv");
    data::write_taxi_csv(&path, 400_000, 7)?;
    let path = path.to_str().context("temp path is not UTF-8")?.to_string();
    let opts = CsvOptions::default().blocksize(Some(4_000_000));
    let guessed = read_csv(&path, opts.clone())?;
    match guessed.col("taxi_id").max().and_then(|m| Ok(m.compute()?)) {
        Err(e) => println!("  inferred dtypes fail on a later partition, as in the tutorial:\n    {e}"),
        Ok(m) => println!("  (the inferred dtypes happened to fit every row; max taxi_id {m})"),
    }
    let df = read_csv(&path, opts.dtype("taxi_id", "float64"))?;
    println!("  with dtype={{\"taxi_id\": \"float64\"}}: {} partitions", df.npartitions());
    let started = Instant::now();
    let clean = df.select(&["trip_seconds", "fare"])?.dropna()?;
    let x = clean.select(&["trip_seconds"])?;
    let y = clean.col("fare");
    let (x_train, x_test, y_train, y_test) = train_test_split(&x, &y, 0.25, 42)?;
    let mut lr = LinearRegression::new();
    lr.fit(&x_train, &y_train)?;
    report(
        "LinearRegression().fit(trip_seconds -> fare)",
        format!("coef_ {:.6}, intercept_ {:.4}", lr.coef_[0], lr.intercept_),
        started,
    );
    let started = Instant::now();
    report("score(X_test, y_test)  [R²]", format!("{:.4}", lr.score(&x_test, &y_test)?), started);
    let started = Instant::now();
    let preds = lr.predict(&x_test)?.head(3)?;
    report("predict(X_test).head(3)", format!("{:?}", preds.f64s("prediction")?), started);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
