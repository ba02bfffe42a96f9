//! `rask-test-client`: the client program of a DaskJob in the end-to-end
//! tests. It connects to the scheduler named by `RASK_SCHEDULER_ADDRESS`
//! (as the operator sets it in the runner pod), computes a sum with the
//! test ops, prints it, and exits 0 only when it is right.
//!
//! Usage: rask-test-client [N]   (N tasks of 50 ms; default 20)

use std::time::Duration;

use rask::{Client, Delayed};
use rask_tests::ops::{slow_inc, total};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::var("RASK_SCHEDULER_ADDRESS").map_err(|_| "RASK_SCHEDULER_ADDRESS is not set")?;
    let n: i64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let client = Client::connect(&address)?;
    let xs: Vec<Delayed<i64>> = (0..n).map(|i| slow_inc::delayed(i, 50)).collect();
    let got = client.compute(&total::delayed(xs)).result_timeout(Duration::from_secs(120))?;
    let want: i64 = (0..n).map(|i| i + 1).sum();
    println!("rask-test-client: total = {got} (expected {want})");
    if got != want {
        return Err(format!("wrong total {got}, expected {want}").into());
    }
    Ok(())
}
