//! The four scenarios, each a closed-loop run (and scenario 1 also at a
//! fixed rate), over real HTTP against the server process.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use countersign_core::protocol::wire::{
    ChallengeOutcome, DecisionKind, DecisionReceipt, DecisionRequest, PendingChallenges,
};
use countersign_core::protocol::{Decision, DecisionMessage, SoftwareKey};
use countersign_server::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::client::{Bench, Device, six_digits};
use crate::load::{Outcome, closed_loop, fixed_rate};
use crate::server::Watched;

/// The velocity rule's default: a card may authenticate 10 times in 24 h.
pub const PER_CARD: u64 = 10;

/// Cards for frictionless purchases, each used at most [`PER_CARD`] times
/// over the whole run so the default risk rules answer Y every time.
pub struct CardPool {
    pans: Vec<String>,
    used: AtomicU64,
}

impl CardPool {
    pub fn new(pans: Vec<String>) -> Self {
        Self { pans, used: AtomicU64::new(0) }
    }

    /// Purchases left before a card would pass the velocity limit.
    pub fn left(&self) -> u64 {
        (self.pans.len() as u64 * PER_CARD).saturating_sub(self.used.load(Ordering::Relaxed))
    }

    fn next(&self) -> &str {
        let i = self.used.fetch_add(1, Ordering::Relaxed);
        &self.pans[(i % self.pans.len() as u64) as usize]
    }
}

/// The floor under every scenario: `GET /healthz` (no database, no
/// crypto) from the same clients over the same loopback connections — what
/// HTTP alone costs both processes here.
pub async fn http_floor(
    bench: &Arc<Bench>,
    watched: Watched,
    concurrency: usize,
    secs: f64,
    max: u64,
) -> Result<Outcome> {
    let workers: Vec<_> = (0..concurrency).map(|_| bench.clone()).collect();
    closed_loop("0 HTTP floor: GET /healthz", watched, workers, secs, max, |bench, _| async move {
        let resp = bench.http.get(format!("{}/healthz", bench.base)).send().await?;
        ensure!(resp.status() == reqwest::StatusCode::OK, "/healthz answered {}", resp.status());
        resp.bytes().await?;
        Ok(())
    })
    .await
}

/// Scenario 1's operation: 10.00 EUR, under the challenge threshold: Y.
async fn frictionless_op(bench: &Bench, cards: &CardPool) -> Result<()> {
    let ares = bench.areq(cards.next(), 1_000).await?;
    ensure!(ares["transStatus"] == "Y", "expected a frictionless Y: {ares}");
    Ok(())
}

pub async fn frictionless(
    bench: &Arc<Bench>,
    cards: &Arc<CardPool>,
    watched: Watched,
    name: &str,
    concurrency: usize,
    secs: f64,
    max: u64,
) -> Result<Outcome> {
    let workers: Vec<_> = (0..concurrency).map(|_| (bench.clone(), cards.clone())).collect();
    let max = max.min(cards.left());
    ensure!(max > 0, "{name}: every card reached the velocity limit; raise --cards");
    closed_loop(name, watched, workers, secs, max, |w, _| async move { frictionless_op(&w.0, &w.1).await }).await
}

pub async fn frictionless_at_rate(
    bench: &Arc<Bench>,
    cards: &Arc<CardPool>,
    watched: Watched,
    name: &str,
    rate: f64,
    secs: f64,
    max: u64,
) -> Result<Outcome> {
    let max = max.min(cards.left());
    ensure!(max > 0, "{name}: every card reached the velocity limit; raise --cards");
    fixed_rate(name, watched, (bench.clone(), cards.clone()), rate, secs, max, |w, _| async move {
        frictionless_op(&w.0, &w.1).await
    })
    .await
}

/// Scenario 1's fixed-rate runs, each a rate and a name: first at
/// `rate_share` of the closed-loop rate just measured (the one the growth
/// runs keep), then at each other share in `sweep`. The sweep's names say
/// their share too: their rates differ between repetitions, and the
/// medians group runs by name without them.
pub fn fixed_rates(closed_loop: f64, rate_share: f64, sweep: &[f64]) -> Vec<(f64, String)> {
    let at = |share: f64| (closed_loop * share).max(1.0);
    let rate = at(rate_share);
    let mut named = vec![(rate, format!("1 frictionless at {rate:.0}/s"))];
    for &share in sweep.iter().filter(|&&share| share != rate_share) {
        let rate = at(share);
        named.push((rate, format!("1 frictionless at {rate:.0}/s ({:.0} %)", share * 100.0)));
    }
    named
}

/// One card and one enrolled phone per client (a phone answers one
/// purchase at a time).
pub async fn push_workers(bench: &Arc<Bench>, concurrency: usize) -> Result<Vec<(Arc<Bench>, String, Device)>> {
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (pan, card_id) = bench.card(None).await?;
        let key = SoftwareKey::generate();
        let enrolled = bench.enrol(&key, &bench.enrolment_code(&card_id).await?).await?;
        workers.push((bench.clone(), pan, Device { id: enrolled.device_id, key }));
    }
    Ok(workers)
}

/// How long a round trip waits for its RReq before the run fails.
const RREQ_WITHIN: Duration = Duration::from_secs(30);

pub async fn push_round_trip(
    workers: Vec<(Arc<Bench>, String, Device)>,
    watched: Watched,
    name: &str,
    secs: f64,
    max: u64,
) -> Result<Outcome> {
    closed_loop(name, watched, workers, secs, max, |w, _| async move {
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

        // The final result as a 3DS server gets it: the RReq the server
        // sends to the notificationURL (so the round trip also waits for
        // the result callback worker, which must keep up).
        let rreq = bench.results.wait(&acs, RREQ_WITHIN).await?;
        ensure!(rreq["transStatus"] == "Y", "final result not Y: {rreq}");
        Ok(())
    })
    .await
    // The two signed device requests, and the decision's own signature.
    .map(|o| o.verifying(3))
}

pub async fn code_verification(
    bench: &Arc<Bench>,
    watched: Watched,
    concurrency: usize,
    secs: f64,
    max: u64,
    codes: usize,
) -> Result<Outcome> {
    // Preload (untimed): cards with an email and no device, one purchase
    // each that falls back to a code, and the codes from the outbox.
    let mut purchases = Vec::new();
    for i in 0..codes {
        let email = format!("holder{i}@bench.example");
        let (pan, _) = bench.card(Some(email.clone())).await?;
        let ares = bench.areq(&pan, 6_000).await?;
        ensure!(ares["transStatus"] == "C", "expected a challenge: {ares}");
        purchases.push((email, ares["acsTransID"].as_str().context("acsTransID")?.to_owned()));
    }
    let mut found: HashMap<String, String> = HashMap::new();
    let wait_until = Instant::now() + Duration::from_secs(60);
    while found.len() < purchases.len() {
        ensure!(Instant::now() < wait_until, "only {} of {} codes reached the outbox", found.len(), purchases.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        for m in bench.admin.storage.outbox_messages((codes * 2 + 10) as u32).await? {
            if let Some(code) = six_digits(&m.body) {
                found.entry(m.recipient).or_insert(code);
            }
        }
    }
    let work: Vec<(String, String)> = purchases.into_iter().map(|(email, acs)| (acs, found[&email].clone())).collect();
    let work = Arc::new(work);
    let workers: Vec<_> = (0..concurrency).map(|_| (bench.clone(), work.clone())).collect();
    let max = max.min(work.len() as u64);
    let received_before = bench.results.received();
    let mut outcome = closed_loop("3 one-time-code verification", watched, workers, secs, max, |w, i| async move {
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
    .await?;
    // Each verification ended a purchase, whose RReq the server sends
    // meanwhile: wait (untimed) for the last, so that no run after this
    // one pays for them, and say how far behind they were.
    let ended = Instant::now();
    let last = bench.results.all_received(received_before + outcome.count, RREQ_WITHIN).await?;
    outcome.results_after_ms = Some(last.saturating_duration_since(ended).as_secs_f64() * 1000.0);
    Ok(outcome)
}

pub async fn enrolment(
    bench: &Arc<Bench>,
    watched: Watched,
    concurrency: usize,
    secs: f64,
    max: u64,
    enrolments: usize,
) -> Result<Outcome> {
    // Preload (untimed): a card, an enrolment code and a key for each.
    let mut work = Vec::new();
    for _ in 0..enrolments {
        let (_, card_id) = bench.card(None).await?;
        work.push((bench.enrolment_code(&card_id).await?, SoftwareKey::generate()));
    }
    let work = Arc::new(work);
    let workers: Vec<_> = (0..concurrency).map(|_| (bench.clone(), work.clone())).collect();
    let max = max.min(work.len() as u64);
    closed_loop("4 enrolment", watched, workers, secs, max, |w, i| async move {
        let (bench, work) = &*w;
        let (code, key) = &work[i as usize];
        let enrolled = bench.enrol(key, code).await?;
        ensure!(!enrolled.device_id.is_empty(), "no device id");
        Ok(())
    })
    .await
    // The proof that the phone holds the key it enrols.
    .map(|o| o.verifying(1))
}
