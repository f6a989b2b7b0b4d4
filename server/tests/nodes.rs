//! Several server nodes on one PostgreSQL: two `countersign` processes
//! (the binary cargo built; each with its own connection pool, listener,
//! workers and timers) sharing only the database and the master key, as two
//! machines behind a load balancer would. PostgreSQL is a throwaway
//! cluster these tests start themselves.
//!
//! What must hold: whatever node a request reaches, it sees what the other
//! node did, and a challenge window waiting on one node hears at once of a
//! decision taken on the other; every timer and job fires once across
//! nodes; concurrent decisions on two nodes have one outcome; and a
//! database restart in the middle of a run costs failed requests during
//! the outage (HTTP 503) and nothing that was acknowledged.

#[allow(dead_code)]
#[path = "../../tests/tests/e2e/support.rs"]
mod e2e;
mod support {
    pub mod process;
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use countersign_core::client::{ClientError, SystemClock};
use countersign_core::protocol::wire::{ChallengeOutcome, ErrorCode};
use countersign_core::protocol::{Decision, DenyReason};
use e2e::postgres::Cluster;
use e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::process::{self, ServerProcess, Settings};

/// A node: its process, and the API it serves.
struct Node {
    api: ServerApi,
    _process: ServerProcess,
}

impl std::ops::Deref for Node {
    type Target = ServerApi;
    fn deref(&self) -> &ServerApi {
        &self.api
    }
}

struct Nodes {
    a: Node,
    b: Node,
    _dir: tempfile::TempDir,
}

impl Nodes {
    /// Two nodes on the database at `url`, with the same settings: quick
    /// workers, no window timers, and `extra` over those.
    async fn start(url: &str, extra: &[(&'static str, &str)]) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let mut settings: Settings = vec![
            ("database.url", url.to_owned()),
            ("database.max_connections", "4".into()),
            ("secrets.master_key_file", dir.path().join("master.key").display().to_string()),
            ("challenge.sweep_interval_ms", "50".into()),
            ("callbacks.poll_interval_ms", "20".into()),
            ("codes.delivery_poll_interval_ms", "20".into()),
            ("window.creq_timeout_secs", "0".into()),
        ];
        for (key, value) in extra {
            settings.retain(|(k, _)| k != key);
            settings.push((key, value.to_string()));
        }
        // The operator the test acts as. This first run also creates the
        // schema and the master key, which both nodes then share (in
        // production: one key, given to every node).
        let out = process::run(dir.path(), &settings, &["operator", "create", "--name", "test", "--role", "admin"]);
        let admin_key = out.lines().find_map(|l| l.strip_prefix("api key:")).expect("an api key").trim().to_owned();
        let (a, b) = tokio::join!(
            ServerProcess::start(dir.path(), "node-a", &settings),
            ServerProcess::start(dir.path(), "node-b", &settings)
        );
        let node = |process: ServerProcess| Node {
            api: ServerApi::new(process.base.clone(), admin_key.clone(), Arc::new(SystemClock)),
            _process: process,
        };
        Nodes { a: node(a), b: node(b), _dir: dir }
    }
}

/// A Luhn-valid 15-digit card number, different for each `i`.
fn card_number(i: u32) -> String {
    let body = format!("37{:012}", 100_000 + i);
    let check = countersign_server::emv::luhn_check_digit(&body).expect("digits");
    format!("{body}{check}")
}

/// Long enough for every worker on both nodes (polling every 20–50 ms) to
/// have had many chances to do a job twice.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// How many times the audit says the purchase's challenge ended.
async fn endings(node: &ServerApi, acs: &str) -> usize {
    let (status, lines) = node.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={acs}"), None).await;
    assert_eq!(status, StatusCode::OK, "{lines}");
    lines["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "challenge.ended").count()
}

/// Opens the challenge window for the purchase `ares` answered; returns
/// the page.
async fn open_window(node: &ServerApi, ares: &Value) -> String {
    let resp = node.http.post(node.url("/challenge")).form(&[("creq", creq(ares, "05"))]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

/// A purchase taken on node A, its window opened there, the phone
/// answering through node B: A's waiting window completes, with the
/// result, the requestor told once and the push sent once. Five rounds;
/// prints how soon after the decision the window on the other node heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_taken_on_one_node_is_decided_on_the_other_and_its_window_completes() {
    let nodes = Nodes::start(&cluster().create_database(), &[]).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, phone) = a.card_with_phone(PAN).await;
    let phone_on_b = phone.reconnect(&b.base);
    let mut purchases = Vec::new();
    let mut heard_after = Vec::new();
    for _ in 0..5 {
        let (status, ares) = a.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
        assert_eq!((status, ares["transStatus"].as_str()), (StatusCode::OK, Some("C")), "{ares}");
        let acs = ares["acsTransID"].as_str().unwrap().to_owned();
        let page = open_window(a, &ares).await;
        assert!(page.contains("data-screen=\"waiting\""), "{page}");

        // The window's long-poll waits on node A while the phone, talking
        // to node B, approves.
        let window = async {
            let answer = a.poll_window(&page, "waiting").await;
            (answer, Instant::now())
        };
        let decision = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let pending = phone_on_b.call(|c| c.pending_challenges()).await.unwrap().challenges;
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].card.card_id, card);
            let view = pending[0].clone();
            let receipt = phone_on_b.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
            assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
            Instant::now()
        };
        let (((status, answer), answered), decided) = tokio::join!(window, decision);
        assert_eq!((status, answer["screen"].as_str()), (StatusCode::OK, Some("success")), "{answer}");
        let after = answered.saturating_duration_since(decided);
        assert!(after < Duration::from_secs(5), "the window heard only {after:?} after the decision");
        heard_after.push(after);

        // Node A, where the purchase began, reports the result; B agrees.
        let on_a = a.status(&shop, &acs).await;
        assert_eq!((on_a["transStatus"].as_str(), on_a["challenge"]["state"].as_str()), (Some("Y"), Some("approved")));
        assert_eq!(b.status(&shop, &acs).await["authenticationValue"], on_a["authenticationValue"]);
        purchases.push(acs);
    }
    heard_after.sort();
    eprintln!(
        "window on node A completed after the decision on node B: median {:?}, all {heard_after:?}",
        heard_after[2]
    );

    // Both nodes run a result worker; the requestor hears once per
    // purchase. Each push went out once, from the node that took the AReq.
    receiver.wait_for(purchases.len()).await;
    settle().await;
    // Each purchase heard once; the order is the workers' (both poll).
    let mut heard: Vec<String> =
        receiver.bodies().iter().map(|r| r["acsTransID"].as_str().unwrap().to_owned()).collect();
    heard.sort();
    purchases.sort();
    assert_eq!(heard, purchases);
    assert_eq!(a.pushes(&phone.device_id()).await.len(), purchases.len());
    for acs in &purchases {
        assert_eq!(endings(b, acs).await, 1, "{acs}");
    }
}

/// Every timer with both nodes' sweepers racing at it, and both nodes'
/// workers at every job: pushes unanswered fall back to codes, windows
/// never opened time out, codes expire. Each challenge ends once, each
/// code is sent once, each requestor hears once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timer_and_job_fires_once_across_nodes() {
    let timers = [
        ("codes.push_timeout_secs", "1"),
        ("window.creq_timeout_secs", "3"),
        ("window.inactivity_secs", "0"),
        // Two seconds after the CReq timer: a loaded machine's sweepers
        // still end cards 0–3 by that timer first.
        ("codes.validity_secs", "5"),
        ("challenge.expiry_secs", "5"),
    ];
    let nodes = Nodes::start(&cluster().create_database(), &timers).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let shop = a.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let node = |i: u32| if i.is_multiple_of(2) { a } else { b };

    // Cards 0–7 with a phone, 8–11 without; each its own email address.
    for i in 0..12 {
        let body = json!({ "acctNumber": card_number(i), "email": format!("holder-{i}@example.jp"), "language": "sv" });
        let (status, card) = node(i).admin(Method::POST, "/v1/admin/cards", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        if i < 8 {
            node(i).phone().enrol(&node(i).enrolment_code(card["cardId"].as_str().unwrap()).await).await;
        }
    }
    // Purchases taken by alternate nodes. Cards 0–3: the push goes
    // unanswered (a code follows after 1 s) and no CReq comes (the purchase
    // ends after 3 s, challengeCancel 05). Cards 4–7: the same push, but
    // the window opened (on the other node), so the code's expiry ends it
    // (04). Cards 8–11: a code at once, the window opened, expiry (04).
    let mut cancel_by_purchase = BTreeMap::new();
    for i in 0..12 {
        let (status, ares) = node(i).areq(&shop, &areq("shop-1", &card_number(i), 6_000, &receiver.url)).await;
        assert_eq!((status, ares["transStatus"].as_str()), (StatusCode::OK, Some("C")), "{ares}");
        if i >= 4 {
            open_window(node(i + 1), &ares).await;
        }
        cancel_by_purchase.insert(ares["acsTransID"].as_str().unwrap().to_owned(), if i < 4 { "05" } else { "04" });
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    for acs in cancel_by_purchase.keys() {
        while a.challenge_state(&shop, acs).await == "pending" {
            assert!(Instant::now() < deadline, "{acs} still pending");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    receiver.wait_for(cancel_by_purchase.len()).await;
    settle().await;

    // One result per purchase, saying which timer ended it.
    let results = receiver.bodies();
    assert_eq!(results.len(), cancel_by_purchase.len(), "{results:?}");
    let heard: BTreeMap<String, String> = results
        .iter()
        .map(|r| (r["acsTransID"].as_str().unwrap().to_owned(), r["challengeCancel"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeMap<String, String> =
        cancel_by_purchase.iter().map(|(acs, cancel)| (acs.clone(), cancel.to_string())).collect();
    assert_eq!(heard, expected);
    for acs in cancel_by_purchase.keys() {
        assert_eq!(endings(b, acs).await, 1, "{acs} ended more than once");
        assert_eq!(b.status(&shop, acs).await["transStatus"], "N");
    }
    // One code to each cardholder: the fallbacks (0–7) and the codes sent
    // at once (8–11), whichever node's worker sent it.
    let recipients: Vec<String> =
        a.messages().await.iter().map(|m| m["recipient"].as_str().unwrap().to_owned()).collect();
    let distinct: BTreeSet<&String> = recipients.iter().collect();
    assert_eq!((recipients.len(), distinct.len()), (12, 12), "{recipients:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_on_two_nodes_have_one_outcome() {
    let nodes = Nodes::start(&cluster().create_database(), &[]).await;
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
        assert_eq!(endings(b, &acs).await, 1);
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
    let nodes = Nodes::start(&own.create_database(), &[]).await;
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
