//! Driving load: closed loop (each client sends its next request when the
//! last one answered) to find the most a scenario sustains, and open loop
//! at a fixed rate (requests start on a schedule whatever the answers) for
//! latency at a given load.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tokio::sync::Semaphore;

use crate::server::{ProcStats, Watched};

/// One run's result.
pub struct Outcome {
    pub name: String,
    pub count: u64,
    pub elapsed: Duration,
    /// Latency of each operation, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// CPU seconds the server process used during the run.
    pub server_cpu_secs: f64,
    /// CPU seconds this (client) process used during the run.
    pub client_cpu_secs: f64,
    /// CPU seconds the database's own processes used (PostgreSQL here).
    pub database_cpu_secs: Option<f64>,
    /// Bytes the server and the database's own processes sent to storage
    /// (unknown when the database's processes are another user's).
    pub written_bytes: Option<f64>,
    /// The rate asked for, in an open-loop run.
    pub target_rate: Option<f64>,
    /// In an open-loop run, how late requests left (the clients' own
    /// delay, included in their latency), microseconds, sorted.
    pub lags_us: Vec<u64>,
    /// P-256 signatures the server verifies per operation (set by the
    /// scenario: the protocol fixes it).
    pub verifications_per_op: u32,
    /// In a run whose operations each make the server send an RReq it
    /// does not wait for: how long after the run the last one came.
    pub results_after_ms: Option<f64>,
}

impl Outcome {
    /// The same outcome, the server having verified `n` signatures in each
    /// operation.
    pub fn verifying(self, n: u32) -> Self {
        Self { verifications_per_op: n, ..self }
    }

    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    /// In an open-loop run, the clients' own lag at percentile `p`.
    pub fn lag_percentile_ms(&self, p: f64) -> Option<f64> {
        (!self.lags_us.is_empty()).then(|| percentile_ms(&self.lags_us, p))
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }

    /// Server CPU per operation, microseconds.
    pub fn server_cpu_us_per_op(&self) -> f64 {
        self.server_cpu_secs * 1e6 / self.count.max(1) as f64
    }

    /// The database processes' CPU per operation, microseconds.
    pub fn database_cpu_us_per_op(&self) -> Option<f64> {
        self.database_cpu_secs.map(|secs| secs * 1e6 / self.count.max(1) as f64)
    }

    /// Bytes sent to storage per operation, KiB (server and database).
    pub fn written_kib_per_op(&self) -> Option<f64> {
        self.written_bytes.map(|bytes| bytes / 1024.0 / self.count.max(1) as f64)
    }

    /// Cores the server kept busy on average.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu_secs / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

/// The processes' CPU clocks and bytes written, read before and after a run.
struct Mark {
    server: f64,
    client: f64,
    database: Option<f64>,
    written: Option<f64>,
}

impl Mark {
    fn now(watched: Watched) -> Result<Self> {
        let usage = watched.usage()?;
        Ok(Self {
            server: ProcStats::cpu_secs(watched.server)?,
            client: ProcStats::cpu_secs(std::process::id())?,
            database: usage.database_cpu_secs,
            written: usage.written_bytes,
        })
    }
}

/// Runs `op(worker, i)` from each worker's own task, one at a time, until
/// `secs` pass or `max` operations were started; any error stops the run.
pub async fn closed_loop<S, F, Fut>(
    name: &str,
    watched: Watched,
    workers: Vec<S>,
    secs: f64,
    max: u64,
    op: F,
) -> Result<Outcome>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let mark = Mark::now(watched)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for state in workers {
        let (op, issued, state) = (op.clone(), issued.clone(), Arc::new(state));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let t = Instant::now();
                op(state.clone(), i).await?;
                latencies.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await??);
    }
    finish(name, watched, started, mark, latencies_us, None)
}

/// Starts `op(state, i)` at `rate` per second for `secs` (or `max`
/// operations), whatever the answers, with at most `in_flight` running.
/// Latency counts from when a request was due, not when it left, so a
/// server that falls behind is charged for the wait it causes.
pub async fn fixed_rate<S, F, Fut>(
    name: &str,
    watched: Watched,
    state: S,
    rate: f64,
    secs: f64,
    max: u64,
    op: F,
) -> Result<Outcome>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (op, state) = (Arc::new(op), Arc::new(state));
    let in_flight = Arc::new(Semaphore::new(4096));
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let count = ((rate * secs) as u64).clamp(1, max.max(1));
    let mark = Mark::now(watched)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count as usize);
    for i in 0..count {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (op, state) = (op.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let lag = due.elapsed().as_micros() as u64;
            op(state, i).await?;
            drop(permit);
            Ok::<_, anyhow::Error>((due.elapsed().as_micros() as u64, lag))
        }));
    }
    let (mut latencies_us, mut lags_us) = (Vec::with_capacity(tasks.len()), Vec::with_capacity(tasks.len()));
    for task in tasks {
        let (latency, lag) = task.await??;
        latencies_us.push(latency);
        lags_us.push(lag);
    }
    lags_us.sort_unstable();
    let mut outcome = finish(name, watched, started, mark, latencies_us, Some(rate))?;
    outcome.lags_us = lags_us;
    Ok(outcome)
}

fn finish(
    name: &str,
    watched: Watched,
    started: Instant,
    start: Mark,
    mut latencies_us: Vec<u64>,
    target_rate: Option<f64>,
) -> Result<Outcome> {
    let elapsed = started.elapsed();
    let end = Mark::now(watched)?;
    latencies_us.sort_unstable();
    ensure!(!latencies_us.is_empty(), "{name}: no operation finished");
    Ok(Outcome {
        name: name.to_owned(),
        count: latencies_us.len() as u64,
        elapsed,
        latencies_us,
        server_cpu_secs: end.server - start.server,
        client_cpu_secs: end.client - start.client,
        database_cpu_secs: end.database.zip(start.database).map(|(end, start)| end - start),
        written_bytes: end.written.zip(start.written).map(|(end, start)| end - start),
        target_rate,
        lags_us: Vec::new(),
        verifications_per_op: 0,
        results_after_ms: None,
    })
}
