//! Several server nodes on one PostgreSQL: two complete servers in this
//! process, each with its own connection pool, HTTP listener and background
//! workers (result callbacks, code deliveries, timers), sharing only the
//! database and the master key — as two machines behind a load balancer
//! would. PostgreSQL is a throwaway cluster these tests start themselves.
//!
//! What must hold: whatever node a request reaches, it sees what the other
//! node did; every timer and every job fires once across nodes; concurrent
//! decisions on two nodes have one outcome; and a database restart in the
//! middle of a run costs failed requests during the outage (HTTP 503) and
//! nothing that was acknowledged.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "../../server/tests/support/postgres.rs"]
mod postgres;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use countersign_core::client::ClientError;
use countersign_core::protocol::wire::{ChallengeOutcome, ErrorCode};
use countersign_core::protocol::{Decision, DenyReason};
use countersign_server::storage::AuditFilter;
use postgres::Cluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// Two nodes on the database at `url`. Node A starts first and creates the
/// master key; B reads the same file (in production: the same key,
/// distributed to every node).
struct Nodes {
    a: TestServer,
    b: TestServer,
    _key_dir: tempfile::TempDir,
}

impl Nodes {
    async fn start(url: &str) -> Nodes {
        let key_dir = tempfile::tempdir().unwrap();
        let key = key_dir.path().join("master.key");
        let node = |url: String, key: std::path::PathBuf| async move {
            TestServer::start_with(move |c| {
                c.database.url = url;
                c.database.max_connections = 4;
                c.secrets.master_key_file = key;
                c.codes.delivery_poll_interval_ms = 20;
            })
            .await
        };
        let a = node(url.to_owned(), key.clone()).await;
        let b = node(url.to_owned(), key).await;
        Nodes { a, b, _key_dir: key_dir }
    }

    /// Moves both nodes' clocks on (each node has its own, as machines do).
    fn advance_secs(&self, secs: i64) {
        self.a.clock.advance_secs(secs);
        self.b.clock.advance_secs(secs);
    }
}

/// A Luhn-valid 15-digit card number, different for each `i`.
fn card_number(i: u32) -> String {
    let body = format!("37{:012}", 100_000 + i);
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(k, c)| {
            let d = c.to_digit(10).unwrap();
            if k % 2 == 0 { (d * 2) % 10 + d * 2 / 10 } else { d }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Long enough for every worker on both nodes (polling every 20 ms) to
/// have had many chances to do a job twice.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn ended_lines(node: &TestServer, acs: &str) -> usize {
    let filter = AuditFilter { acs_trans_id: Some(acs.into()), limit: 100, ..AuditFilter::default() };
    node.app.storage.audit_events(&filter).await.unwrap().iter().filter(|r| r.event.kind == "challenge.ended").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_started_on_one_node_is_decided_on_the_other() {
    let nodes = Nodes::start(&cluster().create_database()).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, phone) = a.card_with_phone(PAN).await;
    let acs = a.challenge(&shop, PAN, &receiver.url).await;

    // The phone talks to node B: it sees the purchase node A took, and its
    // approval lands there.
    let phone_on_b = phone.reconnect(&b.base);
    let pending = phone_on_b.call(|c| c.pending_challenges()).await.unwrap().challenges;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].card.card_id, card);
    let view = pending[0].clone();
    let receipt = phone_on_b.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);

    // Node A, where the purchase began, reports the result at once.
    let on_a = a.status(&shop, &acs).await;
    assert_eq!((on_a["transStatus"].as_str(), on_a["challenge"]["state"].as_str()), (Some("Y"), Some("approved")));
    assert_eq!(b.status(&shop, &acs).await["authenticationValue"], on_a["authenticationValue"]);

    // Both nodes run a result worker; the requestor hears once. The push
    // went out once, from the node that took the AReq.
    receiver.wait_for(1).await;
    settle().await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(a.pushes(&phone.device_id()).await.len(), 1);
    assert_eq!(ended_lines(a, &acs).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timer_and_job_fires_once_across_nodes() {
    let nodes = Nodes::start(&cluster().create_database()).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let node = |i: u32| if i.is_multiple_of(2) { a } else { b };

    // Push challenges on cards with a phone, and one-time codes (sent at
    // once) on cards without one, half taken by each node.
    let mut purchases = Vec::new();
    for i in 0..6 {
        let pan = card_number(i);
        node(i).card_with_phone(&pan).await;
        purchases.push(node(i).challenge(&shop, &pan, &receiver.url).await);
    }
    for i in 6..10 {
        let pan = card_number(i);
        let card = json!({ "acctNumber": pan, "email": format!("holder-{i}@example.jp"), "language": "sv" });
        let (status, body) = node(i).admin(Method::POST, "/v1/admin/cards", Some(card)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        purchases.push(node(i + 1).challenge(&shop, &pan, &receiver.url).await);
    }

    // Both nodes' delivery workers poll the same queue: each code is sent
    // once.
    eventually("four codes sent", || async { a.messages().await.len() >= 4 }).await;
    settle().await;
    let recipients: Vec<String> =
        a.messages().await.iter().map(|m| m["recipient"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recipients.len(), 4, "{recipients:?}");
    assert_eq!(recipients.iter().collect::<BTreeSet<_>>().len(), 4, "{recipients:?}");

    // Past every timer (an unanswered push falls back to a code, which
    // moves the expiry on; then the window and expiry timers): both nodes'
    // sweepers race at each, and each challenge ends once, with one result
    // for the requestor.
    let mut open = purchases.clone();
    for _ in 0..10 {
        nodes.advance_secs(3600);
        settle().await;
        let mut still = Vec::new();
        for acs in open {
            if a.challenge_state(&shop, &acs).await == "pending" {
                still.push(acs);
            }
        }
        open = still;
        if open.is_empty() {
            break;
        }
    }
    assert!(open.is_empty(), "still pending: {open:?}");
    let fallback_codes = a.messages().await.iter().filter(|m| m["recipient"] == "taro@example.jp").count();
    assert!(fallback_codes <= 6, "a fallback code was sent twice: {fallback_codes}");
    receiver.wait_for(purchases.len()).await;
    settle().await;
    let results: Vec<Value> = receiver.bodies();
    assert_eq!(results.len(), purchases.len());
    let heard: BTreeSet<&str> = results.iter().map(|r| r["acsTransID"].as_str().unwrap()).collect();
    assert_eq!(heard, purchases.iter().map(String::as_str).collect());
    for acs in &purchases {
        assert_eq!(ended_lines(b, acs).await, 1, "{acs} ended more than once");
        assert_eq!(b.status(&shop, acs).await["transStatus"], "N");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_on_two_nodes_have_one_outcome() {
    let nodes = Nodes::start(&cluster().create_database()).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let mut winners = BTreeMap::new();
    for round in 0..4 {
        // One card, two phones: one answers through node A, one through B.
        let pan = card_number(round);
        let (card, approver) = a.card_with_phone(&pan).await;
        let denier = a.phone();
        denier.enrol(&a.enrolment_code(&card).await).await;
        let denier = denier.reconnect(&b.base);
        let acs = a.challenge(&shop, &pan, &receiver.url).await;
        let view = approver.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
        let same = denier.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
        assert_eq!(view.challenge_id, same.challenge_id);

        let approve = approver.call(move |c| c.decide(&view, Decision::Approve, None));
        let deny = denier.call(move |c| c.decide(&same, Decision::Deny(DenyReason::NotMe), None));
        let (approved, denied) = tokio::join!(approve, deny);
        let state = a.challenge_state(&shop, &acs).await;
        match (approved, denied) {
            (Ok(r), Err(ClientError::AlreadyDecided)) => {
                assert_eq!((r.outcome, state.as_str()), (ChallengeOutcome::Approved, "approved"));
            }
            (Err(ClientError::AlreadyDecided), Ok(r)) => {
                assert_eq!((r.outcome, state.as_str()), (ChallengeOutcome::Denied, "denied"));
            }
            other => panic!("not exactly one outcome: {other:?}"),
        }
        *winners.entry(state).or_insert(0) += 1;
        assert_eq!(ended_lines(b, &acs).await, 1);
    }
    receiver.wait_for(4).await;
    settle().await;
    assert_eq!(receiver.bodies().len(), 4, "one result per purchase; winners {winners:?}");
}

/// What one AReq sent during the outage test got back.
#[derive(Debug)]
struct Sent {
    status: StatusCode,
    body: Value,
}

/// The database is stopped under two running nodes and started again.
/// Meanwhile a requestor keeps sending AReqs to both. Every request gets an
/// answer — a result or a 503 — and every result acknowledged is still
/// there afterwards; the nodes reconnect by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_nothing_acknowledged() {
    let own = Cluster::start();
    let nodes = Nodes::start(&own.create_database()).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = a.card_with_phone(PAN).await;
    let taken_before = a.challenge(&shop, PAN, &receiver.url).await;
    a.create_card(OTHER_PAN).await;

    // A requestor sending purchases to both nodes, all through the outage.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (running, shop, http) = (running.clone(), shop.clone(), reqwest::Client::new());
        let bases = [a.base.clone(), b.base.clone()];
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0.. {
                if !running.load(Ordering::Relaxed) {
                    break;
                }
                let areq = areq("shop-1", OTHER_PAN, 2_500, "http://127.0.0.1:9/notify");
                let req = http
                    .post(format!("{}/v1/authentications", bases[i % 2]))
                    .bearer_auth(&shop.api_key)
                    .timeout(Duration::from_secs(20))
                    .json(&areq);
                let resp = req.send().await.expect("every request is answered");
                let status = resp.status();
                sent.push(Sent { status, body: resp.json().await.unwrap_or(Value::Null) });
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    own.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in [a, b] {
        let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(node.http.get(node.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
        let (status, body) = node.admin(Method::GET, "/v1/admin/messages", None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
    }
    let phone_on_b = phone.reconnect(&b.base);
    match phone_on_b.call(|c| c.pending_challenges()).await {
        Err(ClientError::ServerRefused { status: 503, code: ErrorCode::Unavailable, .. }) => {}
        other => panic!("the device API during the outage: {other:?}"),
    }
    let status = a.http.get(a.url(&format!("/v1/authentications/{taken_before}"))).bearer_auth(&shop.api_key);
    let (status, erro) = send(status).await;
    assert_eq!((status, erro["messageType"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("Erro")));

    own.restart();
    for node in [a, b] {
        eventually("the node reconnected", || async {
            node.http.get(node.url("/readyz")).send().await.unwrap().status() == StatusCode::OK
        })
        .await;
    }
    eprintln!("outage to both nodes ready again: {:?}", down.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    let sent = traffic.await.unwrap();

    // Answers were results or 503s, never anything else; and each result
    // acknowledged is there to be read, from the other node too.
    let refused = sent.iter().filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE).count();
    let acknowledged: Vec<&Sent> = sent.iter().filter(|s| s.status == StatusCode::OK).collect();
    assert_eq!(refused + acknowledged.len(), sent.len(), "{sent:?}");
    assert!(refused > 0, "some requests met the outage");
    assert!(acknowledged.len() > 2, "requests succeeded before and after it: {sent:?}");
    for (i, ack) in acknowledged.iter().enumerate() {
        let acs = ack.body["acsTransID"].as_str().unwrap();
        let node = if i % 2 == 0 { b } else { a };
        assert_eq!(node.status(&shop, acs).await["transStatus"], ack.body["transStatus"]);
    }

    // The purchase taken before the outage is answered after it, once.
    let view = phone_on_b.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    let receipt = phone_on_b.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    assert_eq!(a.status(&shop, &taken_before).await["transStatus"], "Y");
    receiver.wait_for(1).await;
    settle().await;
    assert_eq!(receiver.bodies().len(), 1);
}
