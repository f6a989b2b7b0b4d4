//! `countersign-bench`: starts a Countersign server in this process on
//! loopback (SQLite in a temporary directory), preloads requestor, cards,
//! devices and contacts through the admin flows, then drives four scenarios
//! over real HTTP with concurrent async clients, each bounded in time and
//! count:
//!
//! 1. frictionless AReq → ARes;
//! 2. the push round trip: AReq → device fetches → signed decision → result;
//! 3. one-time-code verification (codes read from the development outbox);
//! 4. device enrolment.
//!
//! In the same run it measures two ceilings on one thread — raw `ring`
//! P-256 verifications per second and raw SQLite single-row commits per
//! second (the server's own pragmas) — and prints each scenario's
//! throughput against them. Server and clients share the process and its
//! cores, so the peak RSS printed (`VmHWM`) is an upper bound for the
//! server's, and client work (signing, JSON) competes with the server's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use countersign_core::protocol::wire::{
    ChallengeOutcome, DecisionKind, DecisionReceipt, DecisionRequest, EnrolmentRequest, EnrolmentResponse,
    PendingChallenges,
};
use countersign_core::protocol::{
    Decision, DecisionMessage, EnrolmentMessage, Platform, PublicKey, RequestAuth, SoftwareKey,
};
use countersign_server::clock::{Clock, SystemClock};
use countersign_server::config::Config;
use countersign_server::flows::admin::{self, CreatedRequestor, NewCardRequest, NewRequestorRequest};
use countersign_server::{App, RunningServer};
use countersign_tests::areq;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Countersign load benchmark (in-process server on loopback, SQLite)")]
struct Args {
    /// A few seconds in all, tiny counts: proves the tool works (CI).
    #[arg(long)]
    smoke: bool,
    /// Seconds each scenario may run at most.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Most requests (round trips) per scenario.
    #[arg(long, default_value_t = 200_000)]
    max_count: u64,
    /// Pending one-time codes preloaded for scenario 3.
    #[arg(long, default_value_t = 2_000)]
    codes: usize,
    /// Enrolment codes preloaded for scenario 4.
    #[arg(long, default_value_t = 2_000)]
    enrolments: usize,
    /// Seconds each ceiling is measured for.
    #[arg(long, default_value_t = 2.0)]
    ceiling_secs: f64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    fn effective(mut self) -> Self {
        if self.smoke {
            self.secs = self.secs.min(0.5);
            self.concurrency = self.concurrency.min(4);
            self.max_count = self.max_count.min(40);
            self.codes = self.codes.min(8);
            self.enrolments = self.enrolments.min(8);
            self.ceiling_secs = self.ceiling_secs.min(0.2);
        }
        self
    }
}

/// One scenario's result.
struct Outcome {
    name: &'static str,
    count: u64,
    elapsed: Duration,
    /// Latency of each operation, microseconds, sorted.
    latencies_us: Vec<u64>,
    /// P-256 verifications the server does per operation.
    verifies_per_op: u64,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// The server under test and what the clients need to reach it.
struct Bench {
    app: App,
    base: String,
    http: reqwest::Client,
    requestor: CreatedRequestor,
    notify_url: String,
    pans: AtomicU64,
    _dir: tempfile::TempDir,
}

#[tokio::main]
async fn main() {
    let args = Args::parse().effective();
    match run(&args).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("countersign-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let (bench, server) = start_server().await?;
    let bench = Arc::new(bench);

    let verify_per_sec = tokio::task::spawn_blocking({
        let secs = args.ceiling_secs;
        move || verify_ceiling(secs)
    })
    .await??;
    let commits_per_sec = tokio::task::spawn_blocking({
        let secs = args.ceiling_secs;
        move || sqlite_ceiling(secs)
    })
    .await??;

    let mut outcomes = Vec::new();
    outcomes.push(frictionless(&bench, args).await.context("scenario 1, frictionless")?);
    outcomes.push(push_round_trip(&bench, args).await.context("scenario 2, push round trip")?);
    outcomes.push(code_verification(&bench, args).await.context("scenario 3, one-time-code verification")?);
    outcomes.push(enrolment(&bench, args).await.context("scenario 4, enrolment")?);

    let peak_rss_kb = proc_status_kb("VmHWM")?;
    server.stop().await;

    print_table(args, &outcomes, verify_per_sec, commits_per_sec, peak_rss_kb);
    if let Some(path) = &args.json {
        let report = json_report(args, &outcomes, verify_per_sec, commits_per_sec, peak_rss_kb);
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------
// The server

async fn start_server() -> Result<(Bench, RunningServer)> {
    let dir = tempfile::tempdir()?;
    let mut c = Config::default();
    c.database.url = format!("sqlite://{}", dir.path().join("countersign.db").display());
    c.secrets.master_key_file = dir.path().join("master.key");
    // The same card authenticates thousands of times here: lift the
    // velocity rule so the risk engine's answer stays the same.
    c.risk.velocity.max_authentications = u32::MAX;
    c.risk.low_value.enabled = false;
    // The clients never post a CReq.
    c.window.creq_timeout_secs = 0;
    c.codes.delivery_poll_interval_ms = 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    c.server.public_url = Some(base.clone());
    let app = App::open(c, Arc::new(SystemClock))?;
    let server = countersign_server::start(app.clone(), listener)?;

    // The requestor's result endpoint: answers every RReq at once.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let notify_url = format!("http://{}/notify", receiver.local_addr()?);
    let router = axum::Router::new().route("/notify", axum::routing::post(|| async { axum::http::StatusCode::OK }));
    tokio::spawn(async move { axum::serve(receiver, router).await });

    let requestor = admin::create_requestor(
        &app,
        NewRequestorRequest { id: "bench-shop".into(), name: "Bench shop".into() },
        "bench",
    )
    .await
    .map_err(|e| anyhow!("creating the requestor: {e:?}"))?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let bench = Bench { app, base, http, requestor, notify_url, pans: AtomicU64::new(0), _dir: dir };
    Ok((bench, server))
}

impl Bench {
    /// A new Luhn-valid card number, different each call.
    fn next_pan(&self) -> String {
        let n = self.pans.fetch_add(1, Ordering::Relaxed);
        luhn_complete(&format!("37{n:012}"))
    }

    async fn card(&self, email: Option<String>) -> Result<(String, String)> {
        let pan = self.next_pan();
        let req = NewCardRequest { acct_number: pan.clone(), language: Some("en".into()), email, phone: None };
        let card = admin::create_card(&self.app, req, "bench").await.map_err(|e| anyhow!("creating a card: {e:?}"))?;
        Ok((pan, card.card_id))
    }

    async fn enrolment_code(&self, card_id: &str) -> Result<String> {
        let code = admin::create_enrolment_code(&self.app, card_id, "bench")
            .await
            .map_err(|e| anyhow!("creating an enrolment code: {e:?}"))?;
        Ok(code.code)
    }

    async fn areq(&self, pan: &str, amount_minor: u64) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/v1/authentications", self.base))
            .bearer_auth(&self.requestor.api_key)
            .json(&areq(&self.requestor.id, pan, amount_minor, &self.notify_url))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(status == reqwest::StatusCode::OK, "AReq answered {status}: {body}");
        Ok(body)
    }

    async fn enrol(&self, key: &SoftwareKey, code: &str) -> Result<EnrolmentResponse> {
        let code = EnrolmentMessage::normalize_code(code);
        let signed_at = SystemClock.now_ms();
        let public_key = key.public_key();
        let message = EnrolmentMessage {
            code: code.clone(),
            public_key: public_key.clone(),
            platform: Platform::Ios,
            signed_at_ms: signed_at,
        };
        let request = EnrolmentRequest {
            code,
            public_key,
            platform: Platform::Ios,
            push_token: Some("bench-push-token".into()),
            notifications_enabled: true,
            display_name: "Bench phone".into(),
            signed_at,
            proof: key.sign(&message.signed_bytes()),
        };
        let resp = self.http.post(format!("{}/v1/device/enrolments", self.base)).json(&request).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(
            status == reqwest::StatusCode::CREATED || status == reqwest::StatusCode::OK,
            "enrolment answered {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }

    /// A device API call signed the way the app signs it.
    async fn signed(&self, device: &Device, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<String> {
        let mut auth = RequestAuth {
            device_id: device.id.clone(),
            timestamp_ms: SystemClock.now_ms(),
            nonce: uuid::Uuid::new_v4().into_bytes().to_vec(),
            signature: vec![],
        };
        auth.signature = device.key.sign(&auth.message(method.as_str(), path, &body).signed_bytes());
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).body(body);
        for (name, value) in auth.to_headers() {
            req = req.header(name, value);
        }
        let resp = req.header("content-type", "application/json").send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "{method} {path} answered {status}: {text}");
        Ok(text)
    }
}

struct Device {
    id: String,
    key: SoftwareKey,
}

/// Appends the Luhn check digit.
fn luhn_complete(digits: &str) -> String {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// The first run of exactly six digits in `text`.
fn six_digits(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 6 {
                return Some(text[start..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Driving load

/// Runs `op(worker, i)` from `workers` concurrent tasks until `deadline`
/// passes or `max` operations were started; any error stops the run.
async fn drive<S, F, Fut>(
    name: &'static str,
    workers: Vec<S>,
    secs: f64,
    max: u64,
    verifies_per_op: u64,
    op: F,
) -> Result<Outcome>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
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
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    ensure!(!latencies_us.is_empty(), "{name}: no operation finished");
    Ok(Outcome { name, count: latencies_us.len() as u64, elapsed, latencies_us, verifies_per_op })
}

async fn frictionless(bench: &Arc<Bench>, args: &Args) -> Result<Outcome> {
    let mut pans = Vec::new();
    for _ in 0..args.concurrency {
        pans.push(bench.card(None).await?.0);
    }
    let workers: Vec<_> = pans.into_iter().map(|pan| (bench.clone(), pan)).collect();
    drive("frictionless AReq→ARes", workers, args.secs, args.max_count, 0, |w, _| async move {
        let (bench, pan) = &*w;
        // 10.00 EUR: under the challenge threshold.
        let ares = bench.areq(pan, 1_000).await?;
        ensure!(ares["transStatus"] == "Y", "expected a frictionless Y: {ares}");
        Ok(())
    })
    .await
}

async fn push_round_trip(bench: &Arc<Bench>, args: &Args) -> Result<Outcome> {
    // One card and one enrolled phone per client (a phone answers one
    // purchase at a time).
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (pan, card_id) = bench.card(None).await?;
        let key = SoftwareKey::generate();
        let enrolled = bench.enrol(&key, &bench.enrolment_code(&card_id).await?).await?;
        workers.push((bench.clone(), pan, Device { id: enrolled.device_id, key }));
    }
    drive("push round trip", workers, args.secs, args.max_count, 3, |w, _| async move {
        let (bench, pan, device) = &*w;
        // 60.00 EUR: above the threshold, under number matching.
        let ares = bench.areq(pan, 6_000).await?;
        ensure!(ares["transStatus"] == "C", "expected a challenge: {ares}");
        let acs = ares["acsTransID"].as_str().context("acsTransID")?.to_owned();

        let pending: PendingChallenges =
            serde_json::from_str(&bench.signed(device, reqwest::Method::GET, "/v1/device/challenges", vec![]).await?)?;
        ensure!(pending.challenges.len() == 1, "expected one pending challenge, got {}", pending.challenges.len());
        let view = &pending.challenges[0];
        ensure!(view.number_choices.is_none(), "60.00 EUR should not ask for number matching");

        let signed_at = SystemClock.now_ms();
        let message = DecisionMessage {
            challenge_id: view.challenge_id.clone(),
            challenge_nonce: view.nonce.clone(),
            decision: Decision::Approve,
            terms: view.terms.clone(),
            device_id: device.id.clone(),
            signed_at_ms: signed_at,
            number_match: None,
        };
        let request = DecisionRequest {
            challenge_id: view.challenge_id.clone(),
            decision: DecisionKind::Approve,
            deny_reason: None,
            terms: view.terms.clone(),
            signed_at,
            number_match: None,
            signature: device.key.sign(&message.signed_bytes()),
        };
        let path = format!("/v1/device/challenges/{}/decision", view.challenge_id);
        let receipt: DecisionReceipt = serde_json::from_str(
            &bench.signed(device, reqwest::Method::POST, &path, serde_json::to_vec(&request)?).await?,
        )?;
        ensure!(receipt.outcome == ChallengeOutcome::Approved, "decision not approved: {:?}", receipt.outcome);

        let resp = bench
            .http
            .get(format!("{}/v1/authentications/{acs}", bench.base))
            .bearer_auth(&bench.requestor.api_key)
            .send()
            .await?;
        let result: Value = resp.json().await?;
        ensure!(result["transStatus"] == "Y", "final result not Y: {result}");
        Ok(())
    })
    .await
}

async fn code_verification(bench: &Arc<Bench>, args: &Args) -> Result<Outcome> {
    // Preload (untimed): cards with an email and no device, one purchase
    // each that falls back to a code, and the codes from the outbox.
    let mut purchases = Vec::new();
    for i in 0..args.codes {
        let email = format!("holder{i}@bench.example");
        let (pan, _) = bench.card(Some(email.clone())).await?;
        let ares = bench.areq(&pan, 6_000).await?;
        ensure!(ares["transStatus"] == "C", "expected a challenge: {ares}");
        purchases.push((email, ares["acsTransID"].as_str().context("acsTransID")?.to_owned()));
    }
    let mut codes: HashMap<String, String> = HashMap::new();
    let wait_until = Instant::now() + Duration::from_secs(60);
    while codes.len() < purchases.len() {
        ensure!(Instant::now() < wait_until, "only {} of {} codes reached the outbox", codes.len(), purchases.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let messages = bench.app.storage.outbox_messages((args.codes * 2 + 10) as u32).await?;
        for m in messages {
            if let Some(code) = six_digits(&m.body) {
                codes.entry(m.recipient).or_insert(code);
            }
        }
    }
    let work: Vec<(String, String)> = purchases.into_iter().map(|(email, acs)| (acs, codes[&email].clone())).collect();
    let work = Arc::new(work);
    let workers: Vec<_> = (0..args.concurrency).map(|_| (bench.clone(), work.clone())).collect();
    let max = args.max_count.min(work.len() as u64);
    drive("one-time-code verification", workers, args.secs, max, 0, |w, i| async move {
        let (bench, work) = &*w;
        let (acs, code) = &work[i as usize];
        let resp = bench
            .http
            .post(format!("{}/v1/window/{acs}/code/verify", bench.base))
            .json(&json!({ "code": code }))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(status == reqwest::StatusCode::OK && body["transStatus"] == "Y", "verify answered {status}: {body}");
        Ok(())
    })
    .await
}

async fn enrolment(bench: &Arc<Bench>, args: &Args) -> Result<Outcome> {
    // Preload (untimed): a card, an enrolment code and a key for each.
    let mut work = Vec::new();
    for _ in 0..args.enrolments {
        let (_, card_id) = bench.card(None).await?;
        work.push((bench.enrolment_code(&card_id).await?, SoftwareKey::generate()));
    }
    let work = Arc::new(work);
    let workers: Vec<_> = (0..args.concurrency).map(|_| (bench.clone(), work.clone())).collect();
    let max = args.max_count.min(work.len() as u64);
    drive("enrolment", workers, args.secs, max, 1, |w, i| async move {
        let (bench, work) = &*w;
        let (code, key) = &work[i as usize];
        let enrolled = bench.enrol(key, code).await?;
        ensure!(!enrolled.device_id.is_empty(), "no device id");
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// Ceilings, on one thread

/// Raw `ring` P-256 ECDSA (SHA-256) verifications per second.
fn verify_ceiling(secs: f64) -> Result<f64> {
    let key = SoftwareKey::generate();
    let public = PublicKey::from_sec1(&key.public_key())?;
    let message = b"countersign bench: a message about the size of a decision".repeat(4);
    let signature = key.sign(&message);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs || n == 0 {
        for _ in 0..50 {
            public.verify(&message, &signature)?;
        }
        n += 50;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Raw SQLite single-row commits per second, with the server's pragmas
/// (WAL, `synchronous=NORMAL`), in a file of its own.
fn sqlite_ceiling(secs: f64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("ceiling.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, v BLOB NOT NULL)")?;
    let blob = [7u8; 64];
    let started = Instant::now();
    let mut n = 0i64;
    while started.elapsed().as_secs_f64() < secs || n == 0 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute("INSERT INTO t (at, v) VALUES (?1, ?2)", rusqlite::params![n, &blob[..]])?;
        conn.execute_batch("COMMIT")?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A `kB` field of `/proc/self/status` (Linux).
fn proc_status_kb(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return kb.parse().with_context(|| format!("{field}: {kb}"));
        }
    }
    bail!("{field} not in /proc/self/status")
}

// ---------------------------------------------------------------------------
// Output

fn print_table(args: &Args, outcomes: &[Outcome], verify: f64, commits: f64, peak_rss_kb: u64) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "countersign-bench{} — in-process server on loopback, SQLite (WAL, synchronous=NORMAL), {} concurrent clients, {} cores",
        if args.smoke { " --smoke" } else { "" },
        args.concurrency,
        cores
    );
    println!(
        "{:<28} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "scenario", "count", "ops/s", "p50 ms", "p99 ms", "max ms", "/verify", "/commit", "verify CPU"
    );
    for o in outcomes {
        println!(
            "{:<28} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.3} {:>8.3} {:>9.1}%",
            o.name,
            o.count,
            o.per_sec(),
            o.percentile_ms(50.0),
            o.percentile_ms(99.0),
            o.max_ms(),
            o.per_sec() / verify,
            o.per_sec() / commits,
            verify_cpu_share(o, verify, cores) * 100.0
        );
    }
    println!("ceilings (one thread): ring P-256 verify {verify:.0}/s, SQLite single-row commit {commits:.0}/s");
    println!(
        "/verify, /commit: ops/s over each ceiling; verify CPU: share of all {cores} cores the server's P-256 verifications take"
    );
    println!("peak RSS of the whole process (server + clients, VmHWM): {:.1} MB", peak_rss_kb as f64 / 1024.0);
}

/// The share of all cores the server's signature verifications take at
/// the measured rate (the clients' signing is not counted).
fn verify_cpu_share(o: &Outcome, verify: f64, cores: usize) -> f64 {
    o.per_sec() * o.verifies_per_op as f64 / (verify * cores as f64)
}

fn json_report(args: &Args, outcomes: &[Outcome], verify: f64, commits: f64, peak_rss_kb: u64) -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    json!({
        "smoke": args.smoke,
        "concurrency": args.concurrency,
        "secondsPerScenario": args.secs,
        "cores": cores,
        "storage": "sqlite (WAL, synchronous=NORMAL)",
        "serverInProcess": true,
        "peakRssKb": peak_rss_kb,
        "peakRssNote": "VmHWM of the benchmark process, which runs the server and the clients",
        "ceilings": { "p256VerifyPerSec": verify, "sqliteCommitPerSec": commits, "threads": 1 },
        "scenarios": outcomes.iter().map(|o| json!({
            "name": o.name,
            "count": o.count,
            "seconds": o.elapsed.as_secs_f64(),
            "perSec": o.per_sec(),
            "p50Ms": o.percentile_ms(50.0),
            "p99Ms": o.percentile_ms(99.0),
            "maxMs": o.max_ms(),
            "serverVerifiesPerOp": o.verifies_per_op,
            "ratioToVerifyCeiling": o.per_sec() / verify,
            "ratioToCommitCeiling": o.per_sec() / commits,
            "serverVerifyCpuShare": verify_cpu_share(o, verify, cores),
        })).collect::<Vec<_>>(),
    })
}
