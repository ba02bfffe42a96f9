//! Writing and reading files: CSV and Parquet round trips, projection and
//! row-group pruning, and clear errors for bad input.

use rask_dataframe::{CsvOptions, col, from_batch, read_csv, read_parquet};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rask-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

fn sample_csv(dir: &std::path::Path) -> String {
    let mut text = String::from("id,name,score,ok,when\n");
    for i in 0..500 {
        let name = match i % 4 {
            0 => "plain".to_string(),
            1 => format!("\"quoted, with comma {i}\""),
            2 => format!("\"two\nlines {i}\""),
            _ => String::new(),
        };
        let score = if i % 7 == 0 { String::new() } else { format!("{}", i as f64 * 0.5) };
        text.push_str(&format!("{i},{name},{score},{},2021-03-{:02}\n", i % 3 == 0, 1 + i % 28));
    }
    write(dir, "sample.csv", &text)
}

#[test]
fn csv_round_trip() {
    let dir = temp_dir("csv");
    let src = sample_csv(&dir);
    let opts = CsvOptions::default().blocksize(Some(2_000)).parse_dates(&["when"]);
    let df = read_csv(&src, opts.clone()).expect("reads");
    assert!(df.npartitions() > 3);
    let original = df.compute().expect("computes");
    let out = dir.join("out");
    let paths = df.to_csv(out.to_str().expect("utf-8")).expect("writes");
    assert_eq!(paths.len(), df.npartitions());
    let back = read_csv(&format!("{}/*.csv", out.display()), opts).expect("reads back").compute().expect("computes");
    assert_eq!(back.batch(), original.batch());
}

#[test]
fn parquet_round_trip_projection_and_pruning() {
    let dir = temp_dir("parquet");
    let src = sample_csv(&dir);
    let df = read_csv(&src, CsvOptions::default().blocksize(Some(2_000)).parse_dates(&["when"])).expect("reads");
    let out = dir.join("pq");
    df.to_parquet(out.to_str().expect("utf-8")).expect("writes");
    // A dataset directory reads as its data files, as pandas and Dask read
    // it: marker and hidden files (Spark's `_SUCCESS`, `.crc`) are skipped.
    std::fs::write(out.join("_SUCCESS"), b"").expect("marker");
    std::fs::write(out.join(".part.0.parquet.crc"), b"junk").expect("hidden");
    let pq = read_parquet(out.to_str().expect("utf-8"), None).expect("reads the directory");
    assert_eq!(pq.npartitions(), df.npartitions());
    let globbed = read_parquet(&format!("{}/*.parquet", out.display()), None).expect("reads the glob");
    assert_eq!(globbed.npartitions(), pq.npartitions());
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("empty dir");
    let e = read_parquet(empty.to_str().expect("utf-8"), None).expect_err("an empty directory").to_string();
    assert!(e.contains("empty"), "{e}");
    assert_eq!(pq.dtypes(), df.dtypes());
    // Files come back in name order; compare sorted by id.
    let sorted = |d: &rask_dataframe::DataFrame| d.sort_values(&["id"], true).expect("sort").compute().expect("c");
    assert_eq!(sorted(&pq).batch(), sorted(&df).batch());
    let some = read_parquet(&format!("{}/*.parquet", out.display()), Some(&["score", "id"])).expect("reads");
    assert_eq!(some.columns(), ["score", "id"]);
    // `id` grows through the file, so most row groups fail `id > 450` on
    // their statistics alone; the answer must not change.
    let hi = some.filter(col("id").gt(450)).expect("filter");
    let want = df.filter(col("id").gt(450)).expect("filter").select(&["score", "id"]).expect("select");
    assert_eq!(hi.compute().expect("c").batch(), want.compute().expect("c").batch());
    assert_eq!(hi.len().expect("len"), 49);
    assert!(hi.pruned_row_groups() >= hi.npartitions() - 2, "{} of {}", hi.pruned_row_groups(), hi.npartitions());
}

#[test]
fn pruning_uses_statistics() {
    use rask_dataframe::parquet::{RowGroup, prunable};
    use rask_dataframe::plan::Step;
    let g = RowGroup { path: "x".into(), index: 0, rows: 10, stats: vec![("id".into(), 0.0, 99.0)] };
    assert!(prunable(&g, &[Step::Filter(col("id").gt(99))]));
    assert!(prunable(&g, &[Step::Filter(col("id").eq(150) & col("id").gt(0))]));
    assert!(!prunable(&g, &[Step::Filter(col("id").ge(99))]));
    assert!(!prunable(&g, &[Step::Filter(col("other").gt(1000))]));
    // An assignment before the filter could redefine the column.
    assert!(!prunable(&g, &[Step::Assign(vec![("id".into(), col("id") * 10)]), Step::Filter(col("id").gt(99))]));
}

#[test]
fn bad_rows_name_the_file_and_line() {
    let dir = temp_dir("bad");
    let p = write(&dir, "bad.csv", "a,b\n1,2\n3,4\n5,6,7\n8,9\n");
    let df = read_csv(&p, CsvOptions::default()).expect("the header and sample are fine");
    let err = df.compute().expect_err("row 4 has three fields").to_string();
    assert!(err.contains("bad.csv:4") && err.contains("expected 2 fields"), "{err}");
    let p = write(&dir, "typed.csv", "a,b\n1,2\n3,x\n");
    let err =
        read_csv(&p, CsvOptions::default().dtype("b", "int64")).expect("reads").compute().expect_err("x").to_string();
    assert!(err.contains("typed.csv:3") && err.contains("\"x\""), "{err}");
}

/// `value_counts` and `groupby(key).size()` on a CSV string column are
/// counted inside the reader; a filter that keeps every row forces the
/// plain path (parse the column, then aggregate). Both must agree, with
/// missing markers, quoted separators and newlines, CRLF line ends and
/// blank lines, whatever the block size.
#[test]
fn counts_fused_into_the_reader_equal_the_unfused_ones() {
    let dir = temp_dir("counts");
    let mut text = String::from("id,name,v\r\n");
    for i in 0..400 {
        let name = match i % 9 {
            0 => "plain".to_string(),
            1 => format!("\"quoted, comma {}\"", i % 5),
            2 => format!("\"two\nlines {}\"", i % 3),
            3 => String::new(),
            4 => "NA".to_string(),
            5 => "\"\"".to_string(),
            6 => "\"plain\"".to_string(),
            7 => format!("w{}", i % 11),
            _ => "\"say \"\"hi\"\"\"".to_string(),
        };
        text.push_str(&format!("{i},{name},{}\r\n", i % 4));
        if i % 37 == 0 {
            text.push_str("\r\n");
        }
    }
    let src = write(&dir, "names.csv", &text);
    for blocksize in [None, Some(97), Some(1_000), Some(4_000)] {
        let df = read_csv(&src, CsvOptions::default().blocksize(blocksize)).expect("reads");
        let all = df.filter(col("id").ge(0)).expect("filter");
        let show = |t: rask_dataframe::Table| t.batch().clone();
        let fused = show(df.col("name").value_counts().expect("vc").compute().expect("computes"));
        let plain = show(all.col("name").value_counts().expect("vc").compute().expect("computes"));
        assert_eq!(fused, plain, "blocksize {blocksize:?}");
        assert!(fused.num_rows() > 10, "{fused:?}");
        let sizes = show(df.groupby(&["name"]).size().expect("size").compute().expect("computes"));
        let plain_sizes = show(all.groupby(&["name"]).size().expect("size").compute().expect("computes"));
        assert_eq!(sizes, plain_sizes, "blocksize {blocksize:?}");
        let renamed = df.rename(&[("name", "n")]).expect("rename");
        let renamed_all = all.rename(&[("name", "n")]).expect("rename");
        assert_eq!(
            show(renamed.col("n").value_counts().expect("vc").compute().expect("computes")),
            show(renamed_all.col("n").value_counts().expect("vc").compute().expect("computes")),
        );
    }
    // Errors still name the file and line.
    let bad = write(&dir, "bad.csv", "a,b\nx,1\ny,2\nz,3,4\n");
    let err = read_csv(&bad, CsvOptions::default())
        .expect("reads")
        .col("a")
        .value_counts()
        .expect("vc")
        .compute()
        .expect_err("row 4 has three fields")
        .to_string();
    assert!(err.contains("bad.csv:4") && err.contains("expected 2 fields"), "{err}");
}

#[test]
fn missing_input_is_a_clear_error() {
    let err = read_csv("/nonexistent/rask/file.csv", CsvOptions::default()).expect_err("missing").to_string();
    assert!(err.contains("/nonexistent/rask/file.csv"), "{err}");
    let err = read_csv("/nonexistent/rask/*.csv", CsvOptions::default()).expect_err("no match").to_string();
    assert!(err.contains("no files match"), "{err}");
    let dir = temp_dir("notpq");
    let p = write(&dir, "x.parquet", "this is not parquet");
    let err = read_parquet(&p, None).expect_err("not parquet").to_string();
    assert!(err.contains("not a Parquet file"), "{err}");
    let df = from_batch(
        &arrow::record_batch::RecordBatch::new_empty(std::sync::Arc::new(arrow::datatypes::Schema::empty())),
        1,
    )
    .expect("empty frame");
    assert!(df.filter(col("nope").gt(1)).is_err(), "unknown columns are refused when the graph is built");
}
