//! Moving a big value between two worker processes: a `rask scheduler` and
//! `rask worker` processes on loopback. One worker computes and keeps a
//! 1 GiB array; a second joins; the first is retired through the
//! scheduler's `POST /api/v1/retire_workers`, which returns once the array
//! has been copied to the second worker over the worker data service and
//! the first has left. Each round retires the worker that received the
//! array in the previous round, so every copy lands in a fresh process, as
//! a transfer to a newly joined worker does. `bench/dask_transfer.py` does
//! the same with dask.distributed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rask::Client;
use rask_array::{Array, Chunks};
use rask_core::ArrayValue;
use serde_json::json;

use super::{Child, spawn_rask, spawn_rask_lines};

pub fn transfer_between_workers(mib: usize, repeat: usize) -> anyhow::Result<()> {
    let (_scheduler, lines) = spawn_rask_lines(
        &["scheduler", "--host", "127.0.0.1", "--port", "0", "--http-port", "0"],
        &["rask scheduler at", "dashboard at"],
    )?;
    let address = last_word(&lines[0]).to_string();
    let http = last_word(&lines[1]).trim_end_matches("/status").to_string();
    let client = Client::connect(&address)?;

    let n = mib * (1 << 20) / 8;
    let array = Array::random_uniform(&[n], 7, Chunks::Uniform(vec![n]))?;
    let mut holder = start_worker(&address, 0, 1)?;
    let persisted = client.persist(&array.to_delayed()[0]);
    // Wait until it is in memory on the first worker.
    let expected = checksum(&client.compute(&persisted).result()?)?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let http_client: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    for round in 1..=repeat {
        let receiver = start_worker(&address, round, 1)?;
        let body = json!({ "workers": [holder.1.clone()] }).to_string();
        let start = Instant::now();
        let answer = rt.block_on(async {
            let request = hyper::Request::post(format!("{http}/api/v1/retire_workers"))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let response = tokio::time::timeout(Duration::from_secs(600), http_client.request(request)).await??;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status.is_success(), "retire_workers: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
            Ok::<_, anyhow::Error>(bytes)
        })?;
        let secs = start.elapsed().as_secs_f64();
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        anyhow::ensure!(answer.as_object().is_some_and(|m| m.len() == 1), "retired {answer}, expected one worker");
        drop(holder);
        holder = receiver;
        let bytes = n * 8;
        println!(
            "{}",
            json!({"bench": "transfer-workers", "engine": "rask-distributed", "round": round, "bytes": bytes,
                   "seconds": secs, "gb_per_second": bytes as f64 / secs / 1e9})
        );
    }
    // Nothing was lost or changed on the way.
    let got = checksum(&client.compute(&persisted).result()?)?;
    anyhow::ensure!(got == expected, "the array changed in transit: checksum {got:?}, expected {expected:?}");
    drop(holder);
    Ok(())
}

/// Starts worker `bench-<i>` (no memory limit) and returns it once it has
/// registered, with its name.
pub fn start_worker(address: &str, i: usize, nthreads: usize) -> anyhow::Result<(Child, String)> {
    let name = format!("bench-{i}");
    let nthreads = nthreads.to_string();
    let args = [
        "worker",
        address,
        "--nthreads",
        &nthreads,
        "--name",
        &name,
        "--memory-limit",
        "0",
        "--listen-host",
        "127.0.0.1",
        "--contact-host",
        "127.0.0.1",
    ];
    Ok((spawn_rask(&args, "rask worker")?.0, name))
}

fn last_word(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or_default()
}

/// Length and the sum of the bit patterns: any changed, lost or moved
/// element changes it.
fn checksum(value: &ArrayValue) -> anyhow::Result<(usize, u64)> {
    match value {
        ArrayValue::F64(a) => Ok((
            a.len(),
            a.iter().enumerate().fold(0u64, |s, (i, x)| s.wrapping_add(x.to_bits().rotate_left(i as u32 % 64))),
        )),
        other => anyhow::bail!("expected float64, got {:?}", other.dtype()),
    }
}
