//! `countersign-bench`: starts a Countersign server in a child process on
//! loopback (SQLite in a temporary directory, or PostgreSQL), preloads
//! requestor, cards, devices and contacts, then drives the main flows over
//! real HTTP with concurrent async clients from this process, each run
//! bounded in time and count:
//!
//! 0. `GET /healthz`: the floor HTTP alone sets;
//! 1. frictionless AReq → ARes, at full load and at a fixed rate;
//! 2. the push round trip: AReq → device fetches → signed decision → result;
//! 3. one-time-code verification (codes read from the development outbox);
//! 4. device enrolment;
//!
//! then scenarios 1 and 2 again with growing numbers of stored
//! authentications. In the same run it measures two ceilings on one thread
//! — raw `ring` P-256 verifications and raw SQLite single-row commits per
//! second — and reports the server process's own CPU time and peak RSS.
//! `--repeat` does it all again on fresh databases and reports medians.

mod ceilings;
mod client;
mod growth;
mod load;
mod medians;
#[path = "../../server/tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;
mod report;
mod results;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use countersign_server::App;
use countersign_server::clock::{Clock, SystemClock};

use crate::client::Bench;
use crate::growth::Store;
use crate::load::Outcome;
use crate::report::{Growth, Report};
use crate::scenarios::CardPool;
use crate::server::{ProcStats, ServerProcess, Watched};

const FRICTIONLESS: &str = "1 frictionless AReq→ARes";
const PUSH: &str = "2 push round trip";

/// Untimed purchases per client after each growth step (see `run`).
const WARM_UP_PER_CLIENT: u64 = 8;

#[derive(Parser, Debug)]
#[command(about = "Countersign load benchmark (server in a child process on loopback; SQLite or PostgreSQL)")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// A few seconds in all, tiny counts: proves the tool works (CI).
    #[arg(long)]
    smoke: bool,
    /// The database behind the server.
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// With `--backend postgres`: an empty database to use instead of a
    /// throwaway cluster the benchmark starts itself.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Seconds each run may take at most.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Concurrent clients in closed-loop runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Most requests (round trips) per run.
    #[arg(long, default_value_t = 200_000)]
    max_count: u64,
    /// Cards for frictionless purchases (each is used at most 10 times, the
    /// velocity rule's default limit, so this bounds scenario 1's count).
    #[arg(long, default_value_t = 20_000)]
    cards: usize,
    /// The fixed rate of scenario 1's open-loop run, as a share of the
    /// closed-loop rate just measured.
    #[arg(long, default_value_t = 0.5)]
    rate_share: f64,
    /// Runs everything this many times, each on a fresh database and
    /// server, then prints each run's median and range over them (the
    /// figures in docs/benchmarks.md are medians of three).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// More fixed-rate runs of scenario 1, at these shares of its
    /// closed-loop rate (comma-separated, e.g. `0.25,0.75,0.9`): p99
    /// against load. The growth runs keep `--rate-share`.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<f64>,
    /// Pending one-time codes preloaded for scenario 3.
    #[arg(long, default_value_t = 10_000)]
    codes: usize,
    /// Enrolment codes preloaded for scenario 4.
    #[arg(long, default_value_t = 10_000)]
    enrolments: usize,
    /// Stored authentications to repeat scenarios 1 and 2 at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    growth: Vec<u64>,
    /// Seconds each ceiling is measured for.
    #[arg(long, default_value_t = 2.0)]
    ceiling_secs: f64,
    /// The server's `database.max_connections` (default: the server's own
    /// default).
    #[arg(long)]
    connections: Option<usize>,
    /// Only these scenarios (comma-separated; default: all four). The
    /// growth runs repeat those of 1 and 2 that are chosen.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Where the run's directory (the SQLite database, the server's log) is
    /// made: default the system's temporary directory. A directory on
    /// tmpfs (`/dev/shm`) takes the disk out of the figures.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Frictionless,
    Push,
    Codes,
    Enrolment,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the server under test (the benchmark starts this itself).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        connections: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Args {
    fn effective(mut self) -> Self {
        if self.smoke {
            self.secs = self.secs.min(0.5);
            self.concurrency = self.concurrency.min(4);
            self.max_count = self.max_count.min(40);
            self.cards = self.cards.min(64);
            self.codes = self.codes.min(8);
            self.enrolments = self.enrolments.min(8);
            self.growth = vec![200];
            self.ceiling_secs = self.ceiling_secs.min(0.2);
        }
        self
    }

    fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }
}

fn main() {
    let args = Args::parse().effective();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let result = match &args.command {
        Some(Command::Serve { dir, database_url, connections }) => {
            runtime.block_on(server::serve(dir, database_url, *connections))
        }
        None => runtime.block_on(bench(&args)),
    };
    if let Err(e) = result {
        eprintln!("countersign-bench: {e:#}");
        std::process::exit(1);
    }
}

/// A PostgreSQL cluster on this machine (the throwaway one, or one named
/// by `--postgres-url` whose postmaster has its port on its command line):
/// its postmaster, whose processes' CPU each run then reports.
fn postmaster(store: &Store) -> Result<Option<u32>> {
    let Store::Postgres(url) = store else { return Ok(None) };
    let config: tokio_postgres::Config = url.parse().context("the PostgreSQL URL")?;
    match config.get_ports() {
        [port] => server::postmaster_on(*port),
        _ => Ok(None),
    }
}

/// The benchmark, `--repeat` times; each repetition's table, then (for
/// more than one) the medians; the JSON file holds it all.
async fn bench(args: &Args) -> Result<()> {
    let started = Instant::now();
    ensure!(
        args.repeat == 1 || args.postgres_url.is_none(),
        "--repeat needs an empty database each time: not with --postgres-url"
    );
    let mut reports = Vec::new();
    for i in 1..=args.repeat {
        if args.repeat > 1 {
            eprintln!("repetition {i} of {}…", args.repeat);
        }
        let report = run(args).await?;
        report.print();
        reports.push(report);
    }
    let json = match reports.as_slice() {
        [one] => one.json(),
        all => {
            let medians = medians::medians(all);
            medians::print(&medians, all.len());
            medians::json(all, &medians)
        }
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One repetition: a fresh database and server, every run chosen.
async fn run(args: &Args) -> Result<Report> {
    let dir = match &args.data_dir {
        Some(parent) => tempfile::tempdir_in(parent).with_context(|| format!("a directory in {}", parent.display()))?,
        None => tempfile::tempdir()?,
    };
    // Kept alive until the end: dropping it stops the cluster.
    let mut _cluster = None;
    let (database_url, store) = match (args.backend, &args.postgres_url) {
        (Backend::Sqlite, _) => {
            let path = dir.path().join("countersign.db");
            (format!("sqlite://{}", path.display()), Store::Sqlite(path))
        }
        (Backend::Postgres, Some(url)) => (url.clone(), Store::Postgres(url.clone())),
        (Backend::Postgres, None) => {
            let cluster = tokio::task::spawn_blocking(postgres::Cluster::start).await?;
            let url = cluster.create_database();
            _cluster = Some(cluster);
            (url.clone(), Store::Postgres(url))
        }
    };

    // This process opens the database first (applying migrations) for the
    // preloads; the server process then serves it.
    let admin = App::open(server::config(dir.path(), &database_url), Arc::new(SystemClock))?;
    let server = ServerProcess::start(dir.path(), &database_url, args.connections)?;
    let watched = Watched { server: server.pid(), postmaster: postmaster(&store)? };
    let bench = Arc::new(Bench::new(admin, server.base.clone()).await?);

    let ceilings = ceilings::measure(args.ceiling_secs, dir.path()).await?;

    eprintln!("preloading {} cards…", args.cards);
    let cards = Arc::new(CardPool::new(bench.cards(args.cards).await?));
    let push_workers = || scenarios::push_workers(&bench, args.concurrency);

    let (c, secs, max) = (args.concurrency, args.secs, args.max_count);
    let mut runs: Vec<Outcome> = Vec::new();
    // Scenario 1's fixed rate, kept for the growth runs: at one rate, p99
    // against size says what the size costs; closed-loop p99 follows the
    // throughput (32 clients wait 32 / throughput on average).
    let mut fixed = None;
    eprintln!("0 HTTP floor…");
    runs.push(scenarios::http_floor(&bench, watched, c, secs, max).await?);
    if args.runs(Scenario::Frictionless) {
        eprintln!("1 frictionless…");
        let max_rate = scenarios::frictionless(&bench, &cards, watched, FRICTIONLESS, c, secs, max).await?;
        let named = scenarios::fixed_rates(max_rate.per_sec(), args.rate_share, &args.sweep);
        fixed = Some(named[0].0);
        runs.push(max_rate);
        for (rate, name) in named {
            runs.push(scenarios::frictionless_at_rate(&bench, &cards, watched, &name, rate, secs, max).await?);
        }
    }
    if args.runs(Scenario::Push) {
        eprintln!("2 push round trip…");
        runs.push(scenarios::push_round_trip(push_workers().await?, watched, PUSH, secs, max).await?);
    }
    if args.runs(Scenario::Codes) {
        eprintln!("3 one-time-code verification…");
        runs.push(scenarios::code_verification(&bench, watched, c, secs, max, args.codes).await?);
    }
    if args.runs(Scenario::Enrolment) {
        eprintln!("4 enrolment…");
        runs.push(scenarios::enrolment(&bench, watched, c, secs, max, args.enrolments).await?);
    }

    let mut growth = Vec::new();
    let mut stored = 0;
    let grows = args.runs(Scenario::Frictionless) || args.runs(Scenario::Push);
    for &size in args.growth.iter().filter(|_| grows) {
        eprintln!("growing to {size} stored authentications…");
        let t = Instant::now();
        store.grow(stored, size, &bench.requestor.id, SystemClock.now_ms()).await?;
        let grow_secs = t.elapsed().as_secs_f64();
        stored = stored.max(size);
        // The rows went in through a connection of the benchmark's own, so
        // the server's caches start cold and the kernel is still writing the
        // load out: the first requests after it all waited ~0.4 s, whatever
        // the size. A server that grew by serving never sees that; a few
        // untimed rounds absorb it.
        scenarios::frictionless(&bench, &cards, watched, "warm-up", c, secs, WARM_UP_PER_CLIENT * c as u64).await?;
        let mut at_size = Vec::new();
        if args.runs(Scenario::Frictionless) {
            let name = format!("{FRICTIONLESS} @{size}");
            at_size.push(scenarios::frictionless(&bench, &cards, watched, &name, c, secs, max).await?);
        }
        if let Some(rate) = fixed {
            let name = format!("1 frictionless at {rate:.0}/s @{size}");
            at_size.push(scenarios::frictionless_at_rate(&bench, &cards, watched, &name, rate, secs, max).await?);
        }
        if args.runs(Scenario::Push) {
            let name = format!("{PUSH} @{size}");
            at_size.push(scenarios::push_round_trip(push_workers().await?, watched, &name, secs, max).await?);
        }
        growth.push(Growth { stored: size, grow_secs, runs: at_size });
    }

    let peak_rss_kb = ProcStats::status_kb(watched.server, "VmHWM")?;
    server.stop().context("stopping the server process")?;
    Ok(Report { args: report::Settings::of(args), ceilings, runs, growth, peak_rss_kb })
}
