//! `DataFrame`, `Series` and `GroupBy`: lazy, partitioned, pandas-like.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use rask::core::key::token;
use rask::core::{Key, Params, TableValue, Value};
use rask::{ArgPart, Client, Delayed};
use rask_storage::StorageOptions;
use serde::Serialize;

use crate::agg::{Agg, AggFunc, AggSpec};
use crate::csv::{self, CsvFile, CsvOptions, ReadSpec};
use crate::dtype::Column;
use crate::dtype::{dtype_name, is_numeric, parse_dtype};
use crate::error::{FrameError, Result};
use crate::expr::{Expr, Lit, col};
use crate::join::{How, JoinSpec};
use crate::kernels::{
    self, ApplyParams, FinalParams, JoinParams, Post, RangeSortParams, ScanParams, SortParams, SplitParams, TopKParams,
    encode,
};
use crate::parquet::{ParquetRead, RowGroup};
use crate::plan::{self, Step};
use crate::table::Table;

/// How many partial results one combine task merges.
const SPLIT_EVERY: usize = 8;
/// Key rows each partition contributes to the splitters of a range sort.
const SAMPLES_PER_PARTITION: usize = 100;

/// Where partitions come from.
#[derive(Debug)]
enum Source {
    Csv { files: Vec<CsvFile>, columns: Vec<(String, DataType)>, options: CsvOptions, token: String },
    Parts { parts: Vec<Delayed<TableValue>>, token: String },
    Parquet { groups: Vec<RowGroup>, columns: Vec<Column>, token: String, storage: StorageOptions },
}

/// A lazy, partitioned dataframe.
///
/// Each partition is an Arrow record batch. Like Dask, the default index
/// is per partition: it restarts at 0 in every partition, so
/// [`loc`](DataFrame::loc)`(0)` gives one row per partition. Results of a
/// group-by carry their keys as index columns instead.
#[derive(Clone, Debug)]
pub struct DataFrame {
    source: Arc<Source>,
    source_schema: SchemaRef,
    steps: Vec<Step>,
    schema: SchemaRef,
    index: Vec<String>,
    npartitions: usize,
}

/// Serialized bytes of a token part.
fn ser<T: Serialize + ?Sized>(x: &T) -> Vec<u8> {
    postcard::to_stdvec(x).unwrap_or_default()
}

/// A deterministic token over several serialized parts.
fn tok(parts: &[Vec<u8>]) -> String {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(&(p.len() as u64).to_le_bytes());
        bytes.extend_from_slice(p);
    }
    token(&bytes)
}

fn name(prefix: &str, t: &str) -> Arc<str> {
    Arc::from(format!("{prefix}-{t}"))
}

fn key(name: &Arc<str>, i: usize) -> Key {
    Key::chunk(name.clone(), &[i as u32])
}

/// The files a path, glob or `s3://` URL names, sorted; none is an error.
/// `s3://bucket/prefix/` names the objects directly under the prefix.
fn expand(pattern: &str, storage: &StorageOptions) -> Result<Vec<String>> {
    Ok(rask_storage::expand(pattern, storage)?)
}

/// Reads CSV files matching a path or glob (local or `s3://`) into a
/// dataframe. Building it reads each file's size and the first file's
/// sample; the partitions are read by the tasks, on the workers.
/// Compressed files (`.gz`, `.zst`, `.bz2`, `.xz`, inferred from the name
/// unless [`CsvOptions::compression`] says otherwise) are one partition each.
pub fn read_csv(pattern: &str, options: CsvOptions) -> Result<DataFrame> {
    let paths = expand(pattern, &options.storage)?;
    let mut sized = Vec::with_capacity(paths.len());
    let mut versions = Vec::with_capacity(paths.len());
    for path in paths {
        let meta = rask_storage::stat(&path, &options.storage)?;
        versions.push(meta.version);
        sized.push((path, meta.size));
    }
    let blocksize = options.effective_blocksize(sized.iter().map(|f| f.1).sum());
    // A compressed file cannot be entered mid-stream: one partition each.
    let files: Vec<CsvFile> = sized
        .into_iter()
        .map(|(path, size)| {
            let parts = if options.codec(&path).is_compressed() { 1 } else { csv::parts_for(size, blocksize) };
            CsvFile { parts, path, size }
        })
        .collect();
    let options = CsvOptions { blocksize, split_for_cores: false, ..options };
    let columns = csv::infer_schema(&files[0].path, &options)?;
    let schema = csv::exposed_schema(&columns, &options)?;
    let stamp: Vec<(&str, u64, &str)> =
        files.iter().zip(&versions).map(|(f, v)| (f.path.as_str(), f.size, v.as_str())).collect();
    let token = tok(&[ser(&stamp), ser(&options), ser(&columns.iter().map(|c| dtype_name(&c.1)).collect::<Vec<_>>())]);
    let npartitions = files.iter().map(|f| f.parts).sum();
    Ok(DataFrame {
        source: Arc::new(Source::Csv { files, columns, options, token }),
        source_schema: schema.clone(),
        steps: Vec::new(),
        schema,
        index: Vec::new(),
        npartitions,
    })
}

/// Reads Parquet files matching a path or glob, one partition per row
/// group, optionally only some columns.
pub fn read_parquet(pattern: &str, columns: Option<&[&str]>) -> Result<DataFrame> {
    read_parquet_with(pattern, columns, &StorageOptions::default())
}

/// [`read_parquet`] with per-call storage options. On S3, building reads
/// each footer with one suffix-range GET; each partition task then fetches
/// only its row group's needed column chunks.
pub fn read_parquet_with(pattern: &str, columns: Option<&[&str]>, storage: &StorageOptions) -> Result<DataFrame> {
    let paths = expand(pattern, storage)?;
    let (cols, groups) = crate::parquet::inspect(&paths, storage)?;
    let schema: SchemaRef = Arc::new(arrow::datatypes::Schema::new(
        cols.iter().map(|c| arrow::datatypes::Field::new(&c.name, c.dtype.clone(), true)).collect::<Vec<_>>(),
    ));
    let stamp: Vec<(&str, String)> =
        paths.iter().map(|p| Ok((p.as_str(), rask_storage::stat(p, storage)?.version))).collect::<Result<_>>()?;
    let token = tok(&[ser(&stamp), ser(&groups)]);
    let npartitions = groups.len();
    let df = DataFrame {
        source: Arc::new(Source::Parquet { groups, columns: cols, token, storage: storage.clone() }),
        source_schema: schema.clone(),
        steps: Vec::new(),
        schema,
        index: Vec::new(),
        npartitions,
    };
    match columns {
        Some(c) => df.select(c),
        None => Ok(df),
    }
}

/// A dataframe over in-memory batches, one partition each.
pub fn from_batches(batches: Vec<RecordBatch>) -> Result<DataFrame> {
    let Some(first) = batches.first() else {
        return Err(FrameError::Schema("from_batches needs at least one batch".into()));
    };
    let schema = first.schema();
    for b in &batches {
        if b.schema().fields() != schema.fields() {
            return Err(FrameError::Schema("all batches must have the same schema".into()));
        }
    }
    let ipc: Vec<Vec<u8>> =
        batches.iter().map(|b| TableValue::new(b.clone()).to_ipc()).collect::<std::result::Result<_, _>>()?;
    let t = token(&ipc.concat());
    let n = name("from-batches", &t);
    let parts = batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            Delayed::from_task(
                key(&n, i),
                rask::core::ops::builtin::IDENTITY,
                Params::default(),
                vec![ArgPart::literal(Value::Table(TableValue::new(b)))],
            )
        })
        .collect();
    Ok(DataFrame::from_parts(parts, schema, Vec::new(), t))
}

/// A dataframe over partitions computed by other tasks, which must all
/// produce `schema`.
pub fn from_partitions(parts: Vec<Delayed<TableValue>>, schema: SchemaRef) -> Result<DataFrame> {
    if parts.is_empty() {
        return Err(FrameError::Schema("a dataframe needs at least one partition".into()));
    }
    let keys: Vec<String> = parts.iter().map(|p| p.key().to_string()).collect();
    let t = token(keys.join(",").as_bytes());
    Ok(DataFrame::from_parts(parts, schema, Vec::new(), t))
}

/// Splits one batch into `n` nearly equal partitions.
pub fn from_batch(batch: &RecordBatch, n: usize) -> Result<DataFrame> {
    let n = n.max(1);
    let rows = batch.num_rows();
    let parts = (0..n).map(|i| batch.slice(i * rows / n, (i + 1) * rows / n - i * rows / n)).collect();
    from_batches(parts)
}

impl DataFrame {
    fn from_parts(parts: Vec<Delayed<TableValue>>, schema: SchemaRef, index: Vec<String>, token: String) -> Self {
        let npartitions = parts.len();
        Self {
            source: Arc::new(Source::Parts { parts, token }),
            source_schema: schema.clone(),
            steps: Vec::new(),
            schema,
            index,
            npartitions,
        }
    }

    /// A new frame with one more step, checked against the schema.
    fn with_step(&self, step: Step) -> Result<DataFrame> {
        let schema = Arc::new(step.output_schema(&self.schema)?);
        let mut steps = self.steps.clone();
        steps.push(step);
        Ok(Self { steps, schema, ..self.clone() })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn columns(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).filter(|n| !self.index.contains(n)).collect()
    }

    /// `(column, dtype name)` pairs, pandas' `dtypes`.
    pub fn dtypes(&self) -> Vec<(String, String)> {
        self.schema
            .fields()
            .iter()
            .filter(|f| !self.index.contains(f.name()))
            .map(|f| (f.name().clone(), dtype_name(f.data_type())))
            .collect()
    }

    pub fn npartitions(&self) -> usize {
        self.npartitions
    }

    /// Index columns (empty for the default per-partition index).
    pub fn index(&self) -> &[String] {
        &self.index
    }

    /// The same frame with these columns as its index (they must exist):
    /// for frames rebuilt from partitions of an indexed one (`persist`).
    pub fn with_index(mut self, index: Vec<String>) -> Result<DataFrame> {
        for c in &index {
            plan::field(&self.schema, c)?;
        }
        self.index = index;
        Ok(self)
    }

    /// Parquet row groups the plan's filters let readers skip unread.
    pub fn pruned_row_groups(&self) -> usize {
        match self.source.as_ref() {
            Source::Parquet { groups, .. } => {
                groups.iter().filter(|g| crate::parquet::prunable(g, &self.steps)).count()
            }
            _ => 0,
        }
    }

    /// The tasks computing each partition.
    pub fn partitions(&self) -> Result<Vec<Delayed<TableValue>>> {
        match self.source.as_ref() {
            Source::Parts { parts, token } => {
                if self.steps.is_empty() {
                    return Ok(parts.clone());
                }
                let n = name("apply", &tok(&[ser(token), ser(&self.steps)]));
                Ok(parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let params = encode(&ApplyParams { steps: self.steps.clone(), part: i });
                        Delayed::from_task(key(&n, i), kernels::APPLY, params, vec![ArgPart::of(p)])
                    })
                    .collect())
            }
            Source::Parquet { groups, columns, token, storage } => {
                let projection = plan::needed_columns(&self.source_schema, &self.steps)?;
                let n = name("read-parquet", &tok(&[ser(token), ser(&self.steps), ser(&projection)]));
                Ok(groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let spec = ParquetRead {
                            group: g.clone(),
                            part: i,
                            columns: columns.clone(),
                            projection: projection.clone(),
                            pruned: crate::parquet::prunable(g, &self.steps),
                            storage: storage.clone(),
                            steps: self.steps.clone(),
                        };
                        Delayed::from_task(key(&n, i), kernels::READ_PARQUET, encode(&spec), vec![])
                    })
                    .collect())
            }
            Source::Csv { columns, token, .. } => {
                let needed = plan::needed_columns(&self.source_schema, &self.steps)?;
                let projection: Vec<usize> =
                    columns.iter().enumerate().filter(|(_, (n, _))| needed.contains(n)).map(|(i, _)| i).collect();
                let read_name = name("read-csv", &tok(&[ser(token), ser(&self.steps), ser(&projection)]));
                Ok(self.csv_tasks(projection, self.steps.clone(), |global, spec, args| {
                    Delayed::from_task(key(&read_name, global), kernels::READ_CSV, encode(&spec), args)
                }))
            }
        }
    }

    /// One task per block of a CSV source, made by `task` from the
    /// partition number and its read spec; a file split into several
    /// blocks has a scan task that every block's task reads.
    fn csv_tasks(
        &self,
        projection: Vec<usize>,
        steps: Vec<Step>,
        task: impl Fn(usize, ReadSpec, Vec<ArgPart>) -> Delayed<TableValue>,
    ) -> Vec<Delayed<TableValue>> {
        let Source::Csv { files, columns, options, token } = self.source.as_ref() else { return Vec::new() };
        let scan_name = name("csv-scan", token);
        let blocksize = options.blocksize.unwrap_or(u64::MAX);
        let columns: Vec<Column> = columns.iter().map(|(n, t)| Column::new(n, t.clone())).collect();
        let mut out = Vec::with_capacity(self.npartitions);
        for (fi, f) in files.iter().enumerate() {
            let scan = (f.parts > 1).then(|| {
                let p = ScanParams {
                    path: f.path.clone(),
                    size: f.size,
                    blocksize,
                    parts: f.parts,
                    storage: options.storage.clone(),
                };
                Delayed::<Value>::from_task(key(&scan_name, fi), kernels::CSV_SCAN, encode(&p), vec![])
            });
            for part in 0..f.parts {
                let global = out.len();
                let spec = ReadSpec {
                    file: f.clone(),
                    part,
                    global_part: global,
                    blocksize,
                    columns: columns.clone(),
                    projection: projection.clone(),
                    options: options.clone(),
                    steps: steps.clone(),
                };
                out.push(task(global, spec, scan.iter().map(ArgPart::of).collect()));
            }
        }
        out
    }

    /// The partial states of a count over one string column read straight
    /// from CSV (`value_counts`, `groupby(key).size()`): when the key is a
    /// source column the steps pass through unchanged and every aggregation
    /// counts rows (or the key's values), each block's task counts the
    /// values from the parsed bytes instead of building the column first.
    fn fused_count_partials(&self, spec: &AggSpec, pn: &Arc<str>) -> Option<Vec<Delayed<TableValue>>> {
        let Source::Csv { columns, .. } = self.source.as_ref() else { return None };
        let [key_name] = spec.keys.as_slice() else { return None };
        let counts_only =
            spec.aggs.iter().all(|a| a.func == AggFunc::Size || (a.func == AggFunc::Count && a.column == *key_name));
        if !counts_only || spec.aggs.is_empty() {
            return None;
        }
        let source = plan::source_column(&self.steps, key_name)?;
        let column = columns.iter().position(|(n, t)| *n == source && *t == DataType::Utf8)?;
        // The source column must be one the frame exposes (`usecols`).
        self.source_schema.field_with_name(&source).ok()?;
        let count = csv::CountSpec {
            column,
            key: key_name.clone(),
            counts: (0..spec.aggs.len()).map(|i| format!("_n{i}")).collect(),
        };
        Some(self.csv_tasks(vec![column], Vec::new(), |global, read, args| {
            let p = kernels::ReadCountParams { read, count: count.clone() };
            Delayed::from_task(key(pn, global), kernels::READ_CSV_COUNT, encode(&p), args)
        }))
    }

    /// A token naming this frame's whole plan.
    pub(crate) fn plan_token(&self) -> Result<String> {
        let keys: Vec<String> = self.partitions()?.iter().map(|p| p.key().to_string()).collect();
        Ok(token(keys.join(",").as_bytes()))
    }

    // ------------------------------------------------------------ columns

    /// A column as a series.
    pub fn col(&self, name: &str) -> Series {
        Series { frame: self.clone(), expr: col(name), name: name.to_string() }
    }

    /// Keeps the rows where `mask` is true: `df[df.state == "AK"]`.
    pub fn filter(&self, mask: impl Into<Expr>) -> Result<DataFrame> {
        self.with_step(Step::Filter(mask.into()))
    }

    /// Keeps these columns (and the index).
    pub fn select(&self, columns: &[&str]) -> Result<DataFrame> {
        let mut cols: Vec<String> = self.index.clone();
        cols.extend(columns.iter().map(|c| c.to_string()));
        self.with_step(Step::Select(cols))
    }

    /// Adds or replaces a column.
    pub fn assign(&self, name: &str, value: impl Into<Expr>) -> Result<DataFrame> {
        self.with_step(Step::Assign(vec![(name.to_string(), value.into())]))
    }

    pub fn rename(&self, pairs: &[(&str, &str)]) -> Result<DataFrame> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let mut out = self.with_step(Step::Rename(pairs.clone()))?;
        for i in &mut out.index {
            if let Some((_, to)) = pairs.iter().find(|(from, _)| from == i) {
                *i = to.clone();
            }
        }
        Ok(out)
    }

    /// Casts columns: `astype({"a": "float64"})`.
    pub fn astype(&self, casts: &[(&str, &str)]) -> Result<DataFrame> {
        let cols =
            casts.iter().map(|(c, t)| Ok((c.to_string(), col(c).cast(parse_dtype(t)?)))).collect::<Result<Vec<_>>>()?;
        self.with_step(Step::Assign(cols))
    }

    /// Drops rows with a missing value in any column.
    pub fn dropna(&self) -> Result<DataFrame> {
        self.with_step(Step::DropNa { subset: None, all: false })
    }

    /// Drops rows with a missing value in any of `subset`.
    pub fn dropna_subset(&self, subset: &[&str]) -> Result<DataFrame> {
        self.with_step(Step::DropNa { subset: Some(subset.iter().map(|c| c.to_string()).collect()), all: false })
    }

    /// Fills missing values of each named column.
    pub fn fillna(&self, values: &[(&str, Lit)]) -> Result<DataFrame> {
        self.with_step(Step::FillNa(values.iter().map(|(c, v)| (c.to_string(), v.clone())).collect()))
    }

    /// Row `i` of every partition (Dask's `loc` with the default index).
    pub fn loc(&self, i: usize) -> Result<DataFrame> {
        if !self.index.is_empty() {
            return Err(FrameError::Schema(format!(
                "loc by position needs the default index; this frame is indexed by {:?}, filter on it instead",
                self.index
            )));
        }
        self.with_step(Step::Slice { offset: i, len: Some(1) })
    }

    // ------------------------------------------------------------ computing

    /// Computes all partitions and concatenates them.
    pub fn compute(&self) -> Result<Table> {
        self.compute_with(&Client::current()?)
    }

    pub fn compute_with(&self, client: &Client) -> Result<Table> {
        let parts = self.partitions()?;
        let refs: Vec<&Delayed<TableValue>> = parts.iter().collect();
        let batches: Vec<RecordBatch> = client
            .compute_many(&refs)
            .iter()
            .map(|f| f.result().map(|t| t.batch().clone()))
            .collect::<rask::Result<_>>()?;
        let batch = if batches.is_empty() {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            arrow::compute::concat_batches(&self.schema, &batches)?
        };
        Ok(Table::new(batch, self.index.clone()))
    }

    /// Writes one file per partition: `pattern` with `*` replaced by the
    /// partition number, or `dir/part.N.ext` when it has no `*`.
    fn write_parts(&self, pattern: &str, ext: &str, op: &str, storage: &StorageOptions) -> Result<Vec<String>> {
        let paths: Vec<String> = (0..self.npartitions)
            .map(|i| {
                if pattern.contains('*') {
                    pattern.replace('*', &i.to_string())
                } else {
                    format!("{}/part.{i}.{ext}", pattern.trim_end_matches('/'))
                }
            })
            .collect();
        if !pattern.contains('*') {
            rask_storage::create_dir_all(pattern)?;
        }
        let t = tok(&[ser(&self.plan_token()?), ser(&paths), ser(op)]);
        let n = name("write", &t);
        let writes: Vec<Delayed<i64>> = self
            .partitions()?
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (p, path))| {
                let params = kernels::WriteParams { path: path.clone(), storage: storage.clone() };
                Delayed::from_task(key(&n, i), op, encode(&params), vec![ArgPart::of(p)])
            })
            .collect();
        let refs: Vec<&Delayed<i64>> = writes.iter().collect();
        for f in Client::current()?.compute_many(&refs) {
            f.result()?;
        }
        Ok(paths)
    }

    /// Writes the partitions as Parquet files; returns their paths.
    pub fn to_parquet(&self, dir: &str) -> Result<Vec<String>> {
        self.to_parquet_with(dir, &StorageOptions::default())
    }

    /// [`DataFrame::to_parquet`] with per-call S3 settings.
    pub fn to_parquet_with(&self, dir: &str, storage: &StorageOptions) -> Result<Vec<String>> {
        self.write_parts(dir, "parquet", kernels::WRITE_PARQUET, storage)
    }

    /// Writes the partitions as CSV files with a header; returns their paths.
    pub fn to_csv(&self, pattern: &str) -> Result<Vec<String>> {
        self.to_csv_with(pattern, &StorageOptions::default())
    }

    /// [`DataFrame::to_csv`] with per-call S3 settings.
    pub fn to_csv_with(&self, pattern: &str, storage: &StorageOptions) -> Result<Vec<String>> {
        self.write_parts(pattern, "csv", kernels::WRITE_CSV, storage)
    }

    /// The first `n` rows, reading only the first partition (as Dask does).
    pub fn head(&self, n: usize) -> Result<Table> {
        self.edge_rows(n, true)
    }

    /// The last `n` rows, from the last partition.
    pub fn tail(&self, n: usize) -> Result<Table> {
        self.edge_rows(n, false)
    }

    fn edge_rows(&self, n: usize, head: bool) -> Result<Table> {
        let parts = self.partitions()?;
        let part = if head { parts.first() } else { parts.last() };
        let Some(part) = part else { return Ok(Table::new(RecordBatch::new_empty(self.schema.clone()), vec![])) };
        let batch = part.compute()?.batch().clone();
        let rows = batch.num_rows();
        let b = if head { batch.slice(0, n.min(rows)) } else { batch.slice(rows.saturating_sub(n), n.min(rows)) };
        Ok(Table::new(b, self.index.clone()))
    }

    /// The number of rows (computed, like `len(df)`).
    pub fn len(&self) -> Result<usize> {
        let counted = self.with_step(Step::Select(Vec::new()))?;
        let n = name("len", &counted.plan_token()?);
        let counts: Vec<Delayed<i64>> = counted
            .partitions()?
            .iter()
            .enumerate()
            .map(|(i, p)| Delayed::from_task(key(&n, i), kernels::NROWS, Params::default(), vec![ArgPart::of(p)]))
            .collect();
        let total = rask::sum(&counts).compute()?;
        Ok(usize::try_from(total).unwrap_or(0))
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Keeps the partitions in cluster memory; later graphs start from them.
    pub fn persist(&self) -> Result<DataFrame> {
        let client = Client::current()?;
        let parts: Vec<Delayed<TableValue>> = self.partitions()?.iter().map(|p| client.persist(p)).collect();
        let t = self.plan_token()?;
        Ok(DataFrame::from_parts(parts, self.schema.clone(), self.index.clone(), t))
    }

    // ------------------------------------------------------------ reductions

    /// A tree of `op` over `parts`, `SPLIT_EVERY` at a time, ending in `last`.
    pub(crate) fn tree<T>(
        parts: Vec<Delayed<T>>,
        prefix: &str,
        t: &str,
        combine: (&str, Params),
        last: (&str, Params),
    ) -> Delayed<T> {
        let mut level = parts;
        let mut depth = 0u32;
        let n = name(prefix, t);
        while level.len() > SPLIT_EVERY {
            let next: Vec<Delayed<T>> = level
                .chunks(SPLIT_EVERY)
                .enumerate()
                .map(|(i, group)| {
                    let k = Key::chunk(n.clone(), &[depth, i as u32]);
                    let args = vec![ArgPart::list(group.iter().map(ArgPart::of).collect())];
                    Delayed::from_task(k, combine.0, combine.1.clone(), args)
                })
                .collect();
            level = next;
            depth += 1;
        }
        let args = vec![ArgPart::list(level.iter().map(ArgPart::of).collect())];
        Delayed::from_task(Key::new(format!("{n}-final")), last.0, last.1, args)
    }

    /// Runs an aggregation: partial per partition, tree combine, finalize.
    fn aggregate(&self, spec: AggSpec, then: Vec<Post>, index: Vec<String>) -> Result<DataFrame> {
        self.aggregate_split(spec, then, index, 1)
    }

    /// Runs an aggregation into `split_out` partitions: with more than one,
    /// each partial state table is hash-split on the keys and bucket `b` of
    /// every partition is combined into output partition `b` (a shuffle),
    /// so no single task holds every group.
    fn aggregate_split(
        &self,
        spec: AggSpec,
        then: Vec<Post>,
        index: Vec<String>,
        split_out: usize,
    ) -> Result<DataFrame> {
        let out_schema = Arc::new(spec.output_schema(&self.schema)?);
        // Readers parse only the columns the aggregation reads.
        let mut used: Vec<String> = spec.keys.clone();
        used.extend(spec.aggs.iter().map(|a| a.column.clone()));
        let narrowed = self.narrowed_to(&used)?;
        let this = narrowed.as_ref().unwrap_or(self);
        this.aggregate_narrowed(spec, then, index, split_out, out_schema)
    }

    /// The frame reading only `columns`, when its source is a file reader
    /// that would otherwise parse more; `None` when nothing would be saved.
    fn narrowed_to(&self, columns: &[String]) -> Result<Option<DataFrame>> {
        if matches!(self.source.as_ref(), Source::Parts { .. }) {
            return Ok(None);
        }
        let keep: Vec<&str> =
            self.schema.fields().iter().map(|f| f.name().as_str()).filter(|n| columns.iter().any(|c| c == n)).collect();
        if keep.len() == self.schema.fields().len() {
            return Ok(None);
        }
        Ok(Some(self.select_plain(&keep)?))
    }

    fn aggregate_narrowed(
        &self,
        spec: AggSpec,
        then: Vec<Post>,
        index: Vec<String>,
        split_out: usize,
        out_schema: SchemaRef,
    ) -> Result<DataFrame> {
        let parts = self.partitions()?;
        let t = tok(&[ser(&self.plan_token()?), ser(&spec), ser(&format!("{then:?}")), ser(&split_out)]);
        let pn = name("agg-partial", &t);
        let partials: Vec<Delayed<TableValue>> = match self.fused_count_partials(&spec, &pn) {
            Some(fused) => fused,
            None => parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Delayed::from_task(key(&pn, i), kernels::AGG_PARTIAL, encode(&spec), vec![ArgPart::of(p)])
                })
                .collect(),
        };
        let fields = out_schema.fields().iter().map(|f| Column::new(f.name(), f.data_type().clone())).collect();
        let fin = FinalParams { spec: spec.clone(), fields, then, bucket: None };
        if split_out <= 1 || spec.keys.is_empty() {
            let result = Self::tree(
                partials,
                "agg",
                &t,
                (kernels::AGG_COMBINE, encode(&spec)),
                (kernels::AGG_FINAL, encode(&fin)),
            );
            return Ok(DataFrame::from_parts(vec![result], out_schema, index, t));
        }
        let sn = name("agg-split", &t);
        let split = encode(&SplitParams { on: spec.keys.clone(), buckets: split_out });
        let pieces: Vec<Delayed<Value>> = partials
            .iter()
            .enumerate()
            .map(|(i, p)| Delayed::from_task(key(&sn, i), kernels::HASH_SPLIT, split.clone(), vec![ArgPart::of(p)]))
            .collect();
        let bn = name("agg-bucket", &t);
        let outputs = (0..split_out)
            .map(|b| {
                let p = FinalParams { bucket: Some(b), ..fin.clone() };
                let args = vec![ArgPart::list(pieces.iter().map(ArgPart::of).collect())];
                Delayed::from_task(key(&bn, b), kernels::AGG_FINAL, encode(&p), args)
            })
            .collect();
        Ok(DataFrame::from_parts(outputs, out_schema, index, t))
    }

    /// A whole-frame aggregation: one row, one column per `(column, func)`.
    pub fn agg(&self, aggs: &[(&str, &str)]) -> Result<DataFrame> {
        let aggs = aggs
            .iter()
            .map(|(c, f)| {
                let func = AggFunc::parse(f)?;
                Ok(Agg { column: c.to_string(), func, name: format!("{c}_{}", func.name()) })
            })
            .collect::<Result<Vec<_>>>()?;
        self.aggregate(AggSpec { keys: vec![], aggs, ddof: 1, sort: false }, vec![], vec![])
    }

    /// pandas' `describe()`: count, mean, std, min, quartiles and max of
    /// every numeric column, indexed by statistic. Counts, means and
    /// spreads come from the tree aggregation; quartiles are exact (linear
    /// interpolation, as pandas), from the sorted values of each column.
    pub fn describe(&self) -> Result<DataFrame> {
        let numeric: Vec<String> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.index.contains(f.name()) && is_numeric(f.data_type()))
            .map(|f| f.name().clone())
            .collect();
        if numeric.is_empty() {
            return Err(FrameError::Schema("describe needs at least one numeric column".into()));
        }
        let cols: Vec<&str> = numeric.iter().map(String::as_str).collect();
        let values = self.select_plain(&cols)?;
        let parts = values.partitions()?;
        let t = tok(&[ser(&values.plan_token()?), ser("describe")]);
        let n = name("describe", &t);
        let args = vec![ArgPart::list(parts.iter().map(ArgPart::of).collect())];
        let result = Delayed::from_task(Key::new(n.to_string()), kernels::DESCRIBE, encode(&numeric), args);
        let mut fields = vec![arrow::datatypes::Field::new("statistic", DataType::Utf8, false)];
        fields.extend(numeric.iter().map(|c| arrow::datatypes::Field::new(c, DataType::Float64, true)));
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        Ok(DataFrame::from_parts(vec![result], schema, vec!["statistic".into()], t))
    }

    /// Groups rows by key columns.
    pub fn groupby(&self, keys: &[&str]) -> GroupBy {
        GroupBy { frame: self.clone(), keys: keys.iter().map(|k| k.to_string()).collect(), ddof: 1, split_out: 1 }
    }

    /// Rows with distinct values in `subset` (every column when empty),
    /// first appearance kept. The result has one partition.
    pub fn drop_duplicates(&self, subset: &[&str]) -> Result<DataFrame> {
        let cols: Vec<String> = subset.iter().map(|c| c.to_string()).collect();
        for c in &cols {
            self.schema.field_with_name(c).map_err(|_| FrameError::Schema(format!("no column {c:?}")))?;
        }
        let t = tok(&[ser(&self.plan_token()?), ser(&cols)]);
        let p = encode(&cols);
        let result = Self::tree(
            self.partitions()?,
            "drop-duplicates",
            &t,
            (kernels::DISTINCT, p.clone()),
            (kernels::DISTINCT, p),
        );
        Ok(DataFrame::from_parts(vec![result], self.schema.clone(), self.index.clone(), t))
    }

    /// Sorts by columns into one partition: each partition is sorted, then
    /// merged.
    pub fn sort_values(&self, by: &[&str], ascending: bool) -> Result<DataFrame> {
        let by: Vec<String> = by.iter().map(|c| c.to_string()).collect();
        for c in &by {
            self.schema.field_with_name(c).map_err(|_| FrameError::Schema(format!("no column {c:?}")))?;
        }
        let sort = SortParams { ascending: vec![ascending; by.len()], by };
        let p = encode(&sort);
        let t = tok(&[ser(&self.plan_token()?), p.0.to_vec()]);
        let parts = self.partitions()?;
        if parts.len() <= 1 {
            let result = Self::tree(parts, "sort", &t, (kernels::SORT, p.clone()), (kernels::SORT, p));
            return Ok(DataFrame::from_parts(vec![result], self.schema.clone(), self.index.clone(), t));
        }
        // Range partitioning, as Dask's sort_values: sample each partition,
        // choose splitters at the quantiles, split every partition by key
        // range, then sort each bucket. Output partition i holds keys
        // ordered before partition i+1's; ties keep the input order.
        let n = parts.len();
        let stage = |bucket: usize| encode(&RangeSortParams { sort: sort.clone(), parts: n, n: bucket });
        let samples: Vec<Delayed<Value>> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                Delayed::from_task(
                    key(&name("sort-sample", &t), i),
                    kernels::SORT_SAMPLE,
                    stage(SAMPLES_PER_PARTITION),
                    vec![ArgPart::of(part)],
                )
            })
            .collect();
        let splitters: Delayed<Value> = Delayed::from_task(
            key(&name("sort-splitters", &t), 0),
            kernels::SORT_SPLITTERS,
            stage(0),
            vec![ArgPart::list(samples.iter().map(ArgPart::of).collect())],
        );
        let splits: Vec<Delayed<Value>> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                Delayed::from_task(
                    key(&name("sort-split", &t), i),
                    kernels::RANGE_SPLIT,
                    stage(0),
                    vec![ArgPart::of(part), ArgPart::of(&splitters)],
                )
            })
            .collect();
        let outputs = (0..n)
            .map(|b| {
                let args = vec![ArgPart::list(splits.iter().map(ArgPart::of).collect())];
                Delayed::from_task(key(&name("sort", &t), b), kernels::SORT_BUCKET, stage(b), args)
            })
            .collect();
        Ok(DataFrame::from_parts(outputs, self.schema.clone(), self.index.clone(), t))
    }

    fn top(&self, column: &str, n: usize, largest: bool) -> Result<DataFrame> {
        let t = self.schema.field_with_name(column).map_err(|_| FrameError::Schema(format!("no column {column:?}")))?;
        if !is_numeric(t.data_type()) && !matches!(t.data_type(), DataType::Utf8 | DataType::Timestamp(..)) {
            return Err(FrameError::Schema(format!("cannot order column {column:?}")));
        }
        let p = encode(&TopKParams { column: column.to_string(), n, largest });
        let t = tok(&[ser(&self.plan_token()?), p.0.to_vec()]);
        let result = Self::tree(self.partitions()?, "topk", &t, (kernels::TOPK, p.clone()), (kernels::TOPK, p));
        Ok(DataFrame::from_parts(vec![result], self.schema.clone(), self.index.clone(), t))
    }

    /// The `n` rows with the largest values of `column`.
    pub fn nlargest(&self, n: usize, column: &str) -> Result<DataFrame> {
        self.top(column, n, true)
    }

    pub fn nsmallest(&self, n: usize, column: &str) -> Result<DataFrame> {
        self.top(column, n, false)
    }

    /// Splits rows at random into frames with the given fractions, like
    /// Dask's `random_split`. Each row's draw depends on the seed, its
    /// partition and its position, so the pieces are disjoint and cover
    /// the frame.
    pub fn random_split(&self, fractions: &[f64], seed: u64) -> Result<Vec<DataFrame>> {
        let total: f64 = fractions.iter().sum();
        if fractions.is_empty() || fractions.iter().any(|f| f.is_nan() || *f < 0.0) || total <= 0.0 {
            return Err(FrameError::Schema(format!("random_split needs non-negative fractions, got {fractions:?}")));
        }
        let mut lo = 0.0;
        let mut out = Vec::with_capacity(fractions.len());
        for (i, f) in fractions.iter().enumerate() {
            let hi = if i + 1 == fractions.len() { 1.0 + f64::EPSILON } else { lo + f / total };
            out.push(self.with_step(Step::Sample { seed, lo, hi })?);
            lo = hi;
        }
        Ok(out)
    }
}

impl DataFrame {
    fn columns_of(schema: &SchemaRef) -> Vec<Column> {
        schema.fields().iter().map(|f| Column::new(f.name(), f.data_type().clone())).collect()
    }

    /// Joins with `other` on key columns, like `pandas.merge`. A right side
    /// of one partition is broadcast for inner and left joins; otherwise
    /// both sides are shuffled into buckets by key hash.
    pub fn merge(&self, other: &DataFrame, on: &[&str], how: How) -> Result<DataFrame> {
        let spec = JoinSpec { on: on.iter().map(|k| k.to_string()).collect(), how };
        let schema = Arc::new(crate::join::output_schema(&self.schema, &other.schema, &spec)?);
        let (left, right) = (self.partitions()?, other.partitions()?);
        let t = tok(&[ser(&self.plan_token()?), ser(&other.plan_token()?), ser(&spec)]);
        let n = name("merge", &t);
        let lf = Self::columns_of(&self.schema);
        let rf = Self::columns_of(&other.schema);
        let broadcast = right.len() == 1 && matches!(how, How::Inner | How::Left);
        let parts: Vec<Delayed<TableValue>> = if broadcast {
            left.iter()
                .enumerate()
                .map(|(i, l)| {
                    let p = JoinParams {
                        spec: spec.clone(),
                        bucket: None,
                        left_fields: lf.clone(),
                        right_fields: rf.clone(),
                    };
                    let whole = ArgPart::list(right.iter().map(ArgPart::of).collect());
                    let args = vec![ArgPart::list(vec![ArgPart::of(l)]), whole];
                    Delayed::from_task(key(&n, i), kernels::JOIN, encode(&p), args)
                })
                .collect()
        } else {
            let buckets = left.len().max(right.len()).max(1);
            let split = |side: &[Delayed<TableValue>], label: &str| -> Vec<Delayed<Value>> {
                let sn = name(&format!("merge-split-{label}"), &t);
                let p = encode(&SplitParams { on: spec.on.clone(), buckets });
                side.iter()
                    .enumerate()
                    .map(|(i, part)| {
                        Delayed::from_task(key(&sn, i), kernels::HASH_SPLIT, p.clone(), vec![ArgPart::of(part)])
                    })
                    .collect()
            };
            let (ls, rs) = (split(&left, "left"), split(&right, "right"));
            (0..buckets)
                .map(|b| {
                    let p = JoinParams {
                        spec: spec.clone(),
                        bucket: Some(b),
                        left_fields: lf.clone(),
                        right_fields: rf.clone(),
                    };
                    let args = vec![
                        ArgPart::list(ls.iter().map(ArgPart::of).collect()),
                        ArgPart::list(rs.iter().map(ArgPart::of).collect()),
                    ];
                    Delayed::from_task(key(&n, b), kernels::JOIN, encode(&p), args)
                })
                .collect()
        };
        Ok(DataFrame::from_parts(parts, schema, Vec::new(), t))
    }
}

impl fmt::Display for DataFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.schema.fields().iter().map(|x| x.name().clone()).collect();
        let types: Vec<String> = self.schema.fields().iter().map(|x| dtype_name(x.data_type())).collect();
        let widths: Vec<usize> = names.iter().zip(&types).map(|(n, t)| n.len().max(t.len())).collect();
        let label = format!("npartitions={}", self.npartitions);
        writeln!(f, "rask DataFrame Structure:")?;
        write!(f, "{:w$}", "", w = label.len())?;
        for (n, w) in names.iter().zip(&widths) {
            write!(f, "  {n:>w$}")?;
        }
        writeln!(f)?;
        write!(f, "{label}")?;
        for (t, w) in types.iter().zip(&widths) {
            write!(f, "  {t:>w$}")?;
        }
        writeln!(f)?;
        if !self.index.is_empty() {
            writeln!(f, "index: {}", self.index.join(", "))?;
        }
        write!(f, "{} partitions, {} steps per partition", self.npartitions, self.steps.len())
    }
}

/// One column of a frame, or an expression over its columns.
#[derive(Clone, Debug)]
pub struct Series {
    frame: DataFrame,
    expr: Expr,
    name: String,
}

impl From<Series> for Expr {
    fn from(s: Series) -> Expr {
        s.expr
    }
}

impl From<&Series> for Expr {
    fn from(s: &Series) -> Expr {
        s.expr.clone()
    }
}

macro_rules! series_binops {
    ($($name:ident),* $(,)?) => {$(
        pub fn $name(&self, other: impl Into<Expr>) -> Series {
            self.map(|e| e.$name(other))
        }
    )*};
}

impl Series {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// A series computed by `expr` over `frame`'s columns.
    pub fn new(frame: &DataFrame, expr: Expr, name: &str) -> Result<Series> {
        expr.data_type(&frame.schema)?;
        Ok(Series { frame: frame.clone(), expr, name: name.to_string() })
    }

    /// The frame the series' expression reads.
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    fn map(&self, f: impl FnOnce(Expr) -> Expr) -> Series {
        Series { frame: self.frame.clone(), expr: f(self.expr.clone()), name: self.name.clone() }
    }

    series_binops!(eq, ne, lt, le, gt, ge, and, or, floordiv);

    #[allow(clippy::should_implement_trait)]
    pub fn not(&self) -> Series {
        self.map(Expr::not)
    }

    pub fn is_null(&self) -> Series {
        self.map(Expr::is_null)
    }

    pub fn not_null(&self) -> Series {
        self.map(Expr::not_null)
    }

    pub fn isin<L: Into<Lit>>(&self, values: impl IntoIterator<Item = L>) -> Series {
        self.map(|e| e.isin(values))
    }

    pub fn between(&self, lo: impl Into<Lit>, hi: impl Into<Lit>) -> Series {
        self.map(|e| e.between(lo, hi))
    }

    /// `Series.str.<op>`.
    pub fn str(&self, op: crate::expr::StrOp) -> Series {
        self.map(|e| e.str(op))
    }

    /// `Series.dt.<part>`.
    pub fn dt(&self, part: crate::expr::DtPart) -> Series {
        self.map(|e| e.dt(part))
    }

    pub fn astype(&self, dtype: &str) -> Result<Series> {
        let t = parse_dtype(dtype)?;
        Ok(self.map(|e| e.cast(t)))
    }

    pub fn rename(&self, name: &str) -> Series {
        Series { name: name.to_string(), ..self.clone() }
    }

    /// The series as a one-column frame (plus the index).
    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut cols = self.frame.index.clone();
        cols.push(self.name.clone());
        self.frame.with_step(Step::Assign(vec![(self.name.clone(), self.expr.clone())]))?.with_step(Step::Select(cols))
    }

    pub fn dtype(&self) -> Result<String> {
        Ok(dtype_name(&self.expr.data_type(&self.frame.schema)?))
    }

    pub fn npartitions(&self) -> usize {
        self.frame.npartitions
    }

    pub fn compute(&self) -> Result<Table> {
        self.to_frame()?.compute()
    }

    pub fn head(&self, n: usize) -> Result<Table> {
        self.to_frame()?.head(n)
    }

    fn reduce(&self, func: AggFunc, as_int: bool) -> Result<Delayed<Value>> {
        let frame = self.to_frame()?;
        let spec = AggSpec {
            keys: vec![],
            aggs: vec![Agg { column: self.name.clone(), func, name: self.name.clone() }],
            ddof: 1,
            sort: false,
        };
        let result = frame.aggregate(spec, vec![], vec![])?;
        let parts = result.partitions()?;
        let Some(p) = parts.first() else { return Err(FrameError::Compute("aggregation made no result".into())) };
        let k = Key::new(format!("scalar-{}", p.key()));
        Ok(Delayed::from_task(k, kernels::SCALAR, encode(&as_int), vec![ArgPart::of(p)]))
    }

    pub fn sum(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Sum, false)?.cast())
    }
    pub fn mean(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Mean, false)?.cast())
    }
    pub fn min(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Min, false)?.cast())
    }
    pub fn max(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Max, false)?.cast())
    }
    pub fn std(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Std, false)?.cast())
    }
    pub fn var(&self) -> Result<Delayed<f64>> {
        Ok(self.reduce(AggFunc::Var, false)?.cast())
    }
    /// Non-missing values.
    pub fn count(&self) -> Result<Delayed<i64>> {
        Ok(self.reduce(AggFunc::Count, true)?.cast())
    }

    /// Distinct values in order of first appearance (missing kept once).
    pub fn unique(&self) -> Result<Series> {
        let frame = self.to_frame()?.select_plain(&[self.name.as_str()])?;
        let deduped = frame.drop_duplicates(&[])?;
        Ok(deduped.col(&self.name))
    }

    /// The number of distinct non-missing values.
    pub fn nunique(&self) -> Result<Delayed<i64>> {
        self.unique()?.count()
    }

    /// Counts of each distinct value, largest first (ties by value), as a
    /// series named `count` indexed by the values.
    pub fn value_counts(&self) -> Result<Series> {
        let frame = self.to_frame()?.select_plain(&[self.name.as_str()])?;
        let spec = AggSpec {
            keys: vec![self.name.clone()],
            aggs: vec![Agg { column: self.name.clone(), func: AggFunc::Size, name: "count".into() }],
            ddof: 1,
            sort: false,
        };
        let post = Post::Sort { by: vec!["count".into(), self.name.clone()], ascending: vec![false, true] };
        Ok(frame.aggregate(spec, vec![post], vec![self.name.clone()])?.col("count"))
    }

    pub fn nlargest(&self, n: usize) -> Result<Series> {
        Ok(self.to_frame()?.nlargest(n, &self.name)?.col(&self.name))
    }

    pub fn nsmallest(&self, n: usize) -> Result<Series> {
        Ok(self.to_frame()?.nsmallest(n, &self.name)?.col(&self.name))
    }

    pub fn dropna(&self) -> Result<Series> {
        Ok(self.to_frame()?.dropna_subset(&[self.name.as_str()])?.col(&self.name))
    }

    pub fn fillna(&self, value: impl Into<Lit>) -> Result<Series> {
        Ok(self.to_frame()?.fillna(&[(self.name.as_str(), value.into())])?.col(&self.name))
    }

    pub fn len(&self) -> Result<usize> {
        self.frame.len()
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl DataFrame {
    /// Keeps exactly these columns, dropping the index.
    fn select_plain(&self, columns: &[&str]) -> Result<DataFrame> {
        let mut out = self.with_step(Step::Select(columns.iter().map(|c| c.to_string()).collect()))?;
        out.index.clear();
        Ok(out)
    }
}

macro_rules! series_arith {
    ($($trait:ident, $method:ident);* $(;)?) => {$(
        impl<T: Into<Expr>> std::ops::$trait<T> for Series {
            type Output = Series;
            fn $method(self, rhs: T) -> Series {
                let rhs = rhs.into();
                self.map(|e| std::ops::$trait::$method(e, rhs))
            }
        }
        impl<T: Into<Expr>> std::ops::$trait<T> for &Series {
            type Output = Series;
            fn $method(self, rhs: T) -> Series {
                let rhs = rhs.into();
                self.map(|e| std::ops::$trait::$method(e, rhs))
            }
        }
    )*};
}
series_arith!(Add, add; Sub, sub; Mul, mul; Div, div; Rem, rem);

impl std::ops::BitAnd for Series {
    type Output = Series;
    fn bitand(self, rhs: Series) -> Series {
        self.and(rhs)
    }
}

impl std::ops::BitOr for Series {
    type Output = Series;
    fn bitor(self, rhs: Series) -> Series {
        self.or(rhs)
    }
}

impl std::ops::Not for Series {
    type Output = Series;
    fn not(self) -> Series {
        Series::not(&self)
    }
}

/// `df.groupby(keys)`: aggregations per group, sorted by the keys, with the
/// keys as the result's index. Rows with a missing key are dropped, as
/// pandas does by default.
#[derive(Clone, Debug)]
pub struct GroupBy {
    frame: DataFrame,
    keys: Vec<String>,
    ddof: u32,
    split_out: usize,
}

impl GroupBy {
    /// Spreads the result over `n` partitions by a shuffle on the keys, for
    /// group counts too large for one task (Dask's `split_out`). Each
    /// output partition is sorted by the keys; the partitions are not.
    pub fn split_out(mut self, n: usize) -> Self {
        self.split_out = n.max(1);
        self
    }

    /// Delta degrees of freedom for `var` and `std` (pandas' default is 1).
    pub fn ddof(mut self, ddof: u32) -> Self {
        self.ddof = ddof;
        self
    }

    /// Aggregations by column: `agg(&[("births", "mean"), ("births", "max")])`.
    /// A column aggregated once keeps its name; otherwise results are named
    /// `column_func`.
    pub fn agg(&self, aggs: &[(&str, &str)]) -> Result<DataFrame> {
        let aggs = aggs
            .iter()
            .map(|(c, f)| {
                let func = AggFunc::parse(f)?;
                let once = aggs.iter().filter(|(x, _)| x == c).count() == 1;
                let name = if once { c.to_string() } else { format!("{c}_{}", func.name()) };
                Ok(Agg { column: c.to_string(), func, name })
            })
            .collect::<Result<Vec<_>>>()?;
        self.run(aggs)
    }

    fn run(&self, aggs: Vec<Agg>) -> Result<DataFrame> {
        let spec = AggSpec { keys: self.keys.clone(), aggs, ddof: self.ddof, sort: true };
        self.frame.aggregate_split(spec, vec![], self.keys.clone(), self.split_out)
    }

    /// `func` over every column it applies to (numeric ones for sum, mean,
    /// var and std, like pandas' `numeric_only=True`).
    fn each(&self, func: AggFunc) -> Result<DataFrame> {
        let numeric = matches!(func, AggFunc::Sum | AggFunc::Mean | AggFunc::Var | AggFunc::Std);
        let aggs = self
            .frame
            .schema
            .fields()
            .iter()
            .filter(|f| !self.keys.contains(f.name()) && !self.frame.index.contains(f.name()))
            .filter(|f| !numeric || is_numeric(f.data_type()))
            .map(|f| Agg { column: f.name().clone(), func, name: f.name().clone() })
            .collect();
        self.run(aggs)
    }

    pub fn mean(&self) -> Result<DataFrame> {
        self.each(AggFunc::Mean)
    }
    pub fn sum(&self) -> Result<DataFrame> {
        self.each(AggFunc::Sum)
    }
    pub fn count(&self) -> Result<DataFrame> {
        self.each(AggFunc::Count)
    }
    pub fn min(&self) -> Result<DataFrame> {
        self.each(AggFunc::Min)
    }
    pub fn max(&self) -> Result<DataFrame> {
        self.each(AggFunc::Max)
    }
    pub fn var(&self) -> Result<DataFrame> {
        self.each(AggFunc::Var)
    }
    pub fn std(&self) -> Result<DataFrame> {
        self.each(AggFunc::Std)
    }

    /// Rows per group, as a series named `size`.
    pub fn size(&self) -> Result<Series> {
        let Some(first) = self.keys.first() else {
            return Err(FrameError::Schema("groupby needs at least one key".into()));
        };
        let aggs = vec![Agg { column: first.clone(), func: AggFunc::Size, name: "size".into() }];
        Ok(self.run(aggs)?.col("size"))
    }

    /// Distinct non-missing values of `column` per group.
    pub fn nunique(&self, column: &str) -> Result<Series> {
        let mut cols: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        cols.push(column);
        let pairs = self.frame.select_plain(&cols)?.dropna_subset(&[column])?.drop_duplicates(&[])?;
        let aggs = vec![Agg { column: column.to_string(), func: AggFunc::Count, name: column.to_string() }];
        let spec = AggSpec { keys: self.keys.clone(), aggs, ddof: 1, sort: true };
        Ok(pairs.aggregate(spec, vec![], self.keys.clone())?.col(column))
    }
}
