//! The results as a table and as JSON.

use serde_json::{Value, json};

use crate::ceilings::Ceilings;
use crate::load::Outcome;
use crate::{Args, Backend};

/// What the run was asked to do, as reported.
pub struct Settings {
    smoke: bool,
    backend: &'static str,
    concurrency: usize,
    secs: f64,
    connections: Option<usize>,
    data_dir: String,
}

impl Settings {
    pub fn of(args: &Args) -> Self {
        let backend = match args.backend {
            Backend::Sqlite => "sqlite (WAL, synchronous=NORMAL)",
            Backend::Postgres => "postgresql",
        };
        Self {
            smoke: args.smoke,
            backend,
            concurrency: args.concurrency,
            secs: args.secs,
            connections: args.connections,
            data_dir: args
                .data_dir
                .as_ref()
                .map_or("the system's temporary directory".into(), |d| d.display().to_string()),
        }
    }
}

/// Scenarios 1 and 2 at one database size.
pub struct Growth {
    pub stored: u64,
    pub grow_secs: f64,
    pub runs: Vec<Outcome>,
}

pub struct Report {
    pub args: Settings,
    pub ceilings: Ceilings,
    pub runs: Vec<Outcome>,
    pub growth: Vec<Growth>,
    pub peak_rss_kb: u64,
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Report {
    pub fn print(&self) {
        let s = &self.args;
        println!(
            "countersign-bench{} — server in its own process on loopback, {}, {} closed-loop clients, {} cores, data in {}",
            if s.smoke { " --smoke" } else { "" },
            s.backend,
            s.concurrency,
            cores(),
            s.data_dir
        );
        println!(
            "{:<34} {:>8} {:>9} {:>8} {:>8} {:>8} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "run",
            "count",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "srv µs/op",
            "srv cpu",
            "cli cpu",
            "db µs/op",
            "KiB/op",
            "÷ commit",
            "÷ verify"
        );
        let growth_runs = self.growth.iter().flat_map(|g| g.runs.iter());
        for o in self.runs.iter().chain(growth_runs) {
            let database = o.database_cpu_us_per_op().map_or("—".to_owned(), |us| format!("{us:.0}"));
            let written = o.written_kib_per_op().map_or("—".to_owned(), |kib| format!("{kib:.1}"));
            let verify = self.ceilings.verify_ratio(o).map_or("—".to_owned(), |r| format!("{r:.3}"));
            println!(
                "{:<34} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>10.0} {:>8.2} {:>9.2} {:>9} {:>9} {:>9.3} {:>9}",
                o.name,
                o.count,
                o.per_sec(),
                o.percentile_ms(50.0),
                o.percentile_ms(99.0),
                o.max_ms(),
                o.server_cpu_us_per_op(),
                o.server_cores(),
                o.client_cpu_secs / o.elapsed.as_secs_f64().max(1e-9),
                database,
                written,
                self.ceilings.commit_ratio(o),
                verify,
            );
        }
        let growth_runs = self.growth.iter().flat_map(|g| g.runs.iter());
        for o in self.runs.iter().chain(growth_runs).filter(|o| o.target_rate.is_some()) {
            println!(
                "  {}: requests left late by p50 {:.2} ms, p99 {:.2} ms (clients' own delay, counted in the latency)",
                o.name,
                o.lag_percentile_ms(50.0).unwrap_or(0.0),
                o.lag_percentile_ms(99.0).unwrap_or(0.0)
            );
        }
        for (o, after) in self.runs.iter().filter_map(|o| Some((o, o.results_after_ms?))) {
            println!("  {}: the last of its RReqs reached the requestor {after:.0} ms after the run", o.name);
        }
        for g in &self.growth {
            println!("  stored {:>8}: added in {:.1} s; p99 ÷ the empty database's:", g.stored, g.grow_secs);
            for (o, ratio) in self.p99_against_empty(g) {
                println!("    {:<40} {ratio:.2}×", o.name);
            }
        }
        println!(
            "srv µs/op: the server process's CPU time per operation; srv/cli cpu: cores the server / the clients kept busy; \
             db µs/op: PostgreSQL's processes' CPU time per operation (SQLite's is in the server's); \
             KiB/op: what the server and the database's processes sent to storage per operation; \
             ÷ commit: ops/s over the SQLite commit ceiling; ÷ verify: the server's P-256 verifications/s over the \
             verify ceiling (the cores they alone keep busy)"
        );
        println!(
            "ceilings (one thread): ring P-256 verify {:.0}/s, SQLite single-row commit {:.0}/s",
            self.ceilings.verify_per_sec, self.ceilings.commit_per_sec
        );
        println!("peak RSS of the server process (VmHWM): {:.1} MB", self.peak_rss_kb as f64 / 1024.0);
    }

    /// Each run at this size with its p99 over the same run's on the empty
    /// database (growth runs are named after it, " @size" added).
    pub fn p99_against_empty<'a>(&'a self, g: &'a Growth) -> impl Iterator<Item = (&'a Outcome, f64)> + 'a {
        g.runs.iter().filter_map(move |o| {
            let base_name = o.name.strip_suffix(&format!(" @{}", g.stored))?;
            let base = self.runs.iter().find(|b| b.name == base_name)?;
            Some((o, o.percentile_ms(99.0) / base.percentile_ms(99.0).max(1e-9)))
        })
    }

    pub fn json(&self) -> Value {
        let s = &self.args;
        let run = |o: &Outcome| {
            json!({
                "verificationsPerOp": o.verifications_per_op,
                "perSecOverCommitCeiling": self.ceilings.commit_ratio(o),
                "verificationsOverVerifyCeiling": self.ceilings.verify_ratio(o),
                "name": o.name,
                "count": o.count,
                "seconds": o.elapsed.as_secs_f64(),
                "perSec": o.per_sec(),
                "targetRate": o.target_rate,
                "clientLagP99Ms": o.lag_percentile_ms(99.0),
                "resultsAfterMs": o.results_after_ms,
                "p50Ms": o.percentile_ms(50.0),
                "p99Ms": o.percentile_ms(99.0),
                "maxMs": o.max_ms(),
                "serverCpuUsPerOp": o.server_cpu_us_per_op(),
                "serverCores": o.server_cores(),
                "databaseCpuUsPerOp": o.database_cpu_us_per_op(),
                "writtenKibPerOp": o.written_kib_per_op(),
                "clientCores": o.client_cpu_secs / o.elapsed.as_secs_f64().max(1e-9),
            })
        };
        json!({
            "smoke": s.smoke,
            "backend": s.backend,
            "concurrency": s.concurrency,
            "secondsPerRun": s.secs,
            "databaseConnections": s.connections,
            "dataDir": s.data_dir,
            "cores": cores(),
            "serverInProcess": false,
            "serverPeakRssKb": self.peak_rss_kb,
            "ceilings": {
                "p256VerifyPerSec": self.ceilings.verify_per_sec,
                "sqliteCommitPerSec": self.ceilings.commit_per_sec,
                "threads": 1,
            },
            "runs": self.runs.iter().map(run).collect::<Vec<_>>(),
            "growth": self.growth.iter().map(|g| json!({
                "storedAuthentications": g.stored,
                "growSeconds": g.grow_secs,
                "runs": g.runs.iter().map(run).collect::<Vec<_>>(),
                "p99AgainstEmpty": self.p99_against_empty(g)
                    .map(|(o, ratio)| json!({ "name": o.name, "ratio": ratio }))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}
