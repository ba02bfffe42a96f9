//! Results do not depend on how a frame is partitioned.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use proptest::prelude::*;
use rask_dataframe::{How, Table, col, from_batch};

fn batch(rows: &[(Option<i64>, Option<f64>, Option<u8>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let names = ["a", "b", "c", "d", "e"];
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.1).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.2.map(|k| names[k as usize % 5])).collect::<StringArray>()),
        ],
    )
    .expect("valid batch")
}

/// Everything the frame computes, as text that must not change.
fn results(b: &RecordBatch, parts: usize) -> Vec<String> {
    let df = from_batch(b, parts).expect("frame");
    let show = |t: Table| t.to_string();
    // A range-partitioned sort keeps the partition count.
    assert_eq!(df.sort_values(&["f"], false).expect("sort").npartitions(), df.npartitions());
    let mut out = vec![
        df.len().expect("len").to_string(),
        show(
            df.groupby(&["s"])
                .agg(&[("i", "sum"), ("i", "count"), ("f", "min"), ("f", "max")])
                .expect("agg")
                .compute()
                .expect("c"),
        ),
        show(df.col("s").value_counts().expect("vc").compute().expect("c")),
        show(df.col("s").unique().expect("u").compute().expect("c")),
        show(df.nlargest(3, "i").expect("nl").compute().expect("c")),
        show(df.sort_values(&["f"], false).expect("sort").compute().expect("c")),
        show(df.sort_values(&["s", "i"], true).expect("sort").compute().expect("c")),
        show(df.drop_duplicates(&["s"]).expect("dd").compute().expect("c")),
        show(df.filter(col("f").gt(0.0)).expect("filter").compute().expect("c")),
    ];
    let mut shuffled =
        df.groupby(&["s"]).split_out(3).agg(&[("i", "sum"), ("i", "count")]).expect("agg").compute().expect("c");
    shuffled = Table::new(
        rask_dataframe::agg::sort_batch(shuffled.batch(), &["s".into()], &[true]).expect("sort"),
        vec!["s".into()],
    );
    let whole = df.groupby(&["s"]).agg(&[("i", "sum"), ("i", "count")]).expect("agg").compute().expect("c");
    assert_eq!(shuffled.to_string(), whole.to_string(), "split_out gives the same groups");
    out.push(shuffled.to_string());
    // Float sums and means can differ in the last bits with the order of
    // additions; compare them rounded.
    let mean = df.groupby(&["s"]).agg(&[("f", "mean"), ("f", "std")]).expect("agg").compute().expect("c");
    out.push(format!("{:?}", mean.f64s("f_mean").expect("m").iter().map(|v| format!("{v:.9}")).collect::<Vec<_>>()));
    out.push(format!("{:?}", mean.f64s("f_std").expect("s").iter().map(|v| format!("{v:.9}")).collect::<Vec<_>>()));
    let other = from_batch(b, 1).expect("frame").select(&["s", "i"]).expect("select").rename(&[("i", "j")]).expect("r");
    let mut merged = df.merge(&other, &["s"], How::Outer).expect("merge").compute().expect("c");
    merged = Table::new(
        rask_dataframe::agg::sort_batch(merged.batch(), &["s".into(), "i".into(), "j".into(), "f".into()], &[true; 4])
            .expect("sort"),
        vec![],
    );
    out.push(merged.to_string());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn same_results_for_any_partitioning(
        rows in prop::collection::vec(
            (prop::option::weighted(0.9, -20i64..20), prop::option::weighted(0.85, -5.0f64..5.0), prop::option::weighted(0.9, 0u8..5)),
            0..60,
        ),
        parts in 2usize..7,
    ) {
        let b = batch(&rows);
        prop_assert_eq!(results(&b, 1), results(&b, parts));
    }
}
