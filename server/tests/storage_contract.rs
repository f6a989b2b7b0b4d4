//! The storage contract: what every backend must do, written once against
//! `Arc<dyn Storage>` and run against each backend — SQLite on a temporary
//! file, PostgreSQL on a throwaway cluster this suite starts itself (one
//! cluster per run, one fresh database per test).
//!
//! Each test is an `async fn(Db)` below; `contract!` at the end makes one
//! `#[tokio::test]` per backend of each (`on_sqlite::…`, `on_postgres::…`).
//! The concurrency tests race real tasks on a multi-threaded runtime over a
//! pool of connections, as several server nodes would.

mod support {
    pub mod postgres;
}

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use countersign_server::storage::postgres::PostgresStorage;
use countersign_server::storage::sqlite::{SqliteStorage, Synchronous};
use countersign_server::storage::*;
use serde_json::json;
use support::postgres::Cluster;
use tokio::sync::Barrier;

const NOW: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const SHOP: &str = "shop-1";

/// A backend under test, with whatever keeps its database alive.
struct Db {
    s: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(&dir.path().join("contract.db"), 4, Synchronous::Normal, NOW).unwrap();
    Db { s: Arc::new(s), _dir: Some(dir) }
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

fn postgres_db() -> Db {
    let s = PostgresStorage::open(&cluster().create_database(), None, 8, NOW).unwrap();
    Db { s: Arc::new(s), _dir: None }
}

// ---- records -------------------------------------------------------------

fn audit(kind: &str) -> AuditEvent {
    AuditEvent::new(NOW, kind, "system".into(), "ok")
}

fn requestor(id: &str) -> Requestor {
    Requestor {
        id: id.into(),
        name: format!("{id} shop"),
        callback_secret: StoredSecret::Sealed(format!("sealed-{id}").into_bytes()),
        previous_callback_secret: None,
        previous_key_expires_at: None,
        created_at: NOW,
    }
}

fn operator(id: &str, role: OperatorRole) -> Operator {
    Operator { id: id.into(), name: format!("{id} name"), role, created_at: NOW, revoked_at: None }
}

fn new_card(id: &str) -> NewCard {
    NewCard {
        card: Card {
            id: id.into(),
            pan_last4: "0005".into(),
            language: Some("ja".into()),
            email: Some(format!("{id}@example.jp")),
            phone: Some("+46701234567".into()),
            blocked_at: None,
            failed_code_attempts: 0,
            created_at: NOW,
        },
        pan_hash: format!("pan-hash-{id}").into_bytes(),
    }
}

fn device(id: &str, key: &str) -> Device {
    Device {
        id: id.into(),
        public_key: key.as_bytes().to_vec(),
        platform: "ios".into(),
        display_name: format!("{id}'s phone"),
        push_token: Some(format!("token-{id}")),
        notifications_enabled: true,
        push_unreachable: false,
        revoked_at: None,
        created_at: NOW,
    }
}

fn authentication(acs: &str, card: Option<&str>, created_at: i64) -> Authentication {
    Authentication {
        acs_trans_id: acs.into(),
        ds_trans_id: format!("ds-{acs}"),
        requestor_id: SHOP.into(),
        card_id: card.map(str::to_owned),
        message_version: "2.2.0".into(),
        message_category: "01".into(),
        amount_minor: 6_000,
        currency: 978,
        exponent: 2,
        merchant_name: "Nordic Outdoor AB".into(),
        merchant_id: "MID-000451".into(),
        notification_url: "http://127.0.0.1:9/notify".into(),
        trans_status: "C".into(),
        trans_status_reason: None,
        reasons: vec!["amount_above_threshold".into(), "new_merchant".into()],
        low_value_exempt: false,
        authentication_value: None,
        eci: None,
        challenge_id: None,
        browser_language: Some("sv-SE".into()),
        browser_tz: Some(-60),
        created_at,
        updated_at: created_at,
    }
}

fn pending_challenge(id: &str, acs: &str, card: &str, created_at: i64) -> Challenge {
    Challenge {
        id: id.into(),
        acs_trans_id: acs.into(),
        card_id: card.into(),
        nonce: vec![7; 32],
        state: ChallengeState::Pending,
        number_match: None,
        number_choices: None,
        created_at,
        expires_at: created_at + 5 * MINUTE,
        decided_at: None,
        decided_by_device: None,
        outcome_reason: None,
        push_deadline: None,
        fallback_reason: None,
    }
}

/// The requestor every purchase belongs to, and `cards`.
async fn shop_with_cards(s: &dyn Storage, cards: &[&str]) {
    s.create_requestor(&requestor(SHOP), b"key-shop").await.unwrap();
    for card in cards {
        s.create_card(&new_card(card)).await.unwrap();
    }
}

/// Records a purchase on `card` that needs a challenge; returns the challenge.
async fn purchase(s: &dyn Storage, n: &str, card: &str, created_at: i64) -> Challenge {
    purchase_with(s, n, card, created_at, |_| {}).await
}

async fn purchase_with(
    s: &dyn Storage,
    n: &str,
    card: &str,
    created_at: i64,
    tweak: impl FnOnce(&mut Challenge),
) -> Challenge {
    let acs = format!("acs-{n}");
    let mut challenge = pending_challenge(&format!("ch-{n}"), &acs, card, created_at);
    tweak(&mut challenge);
    let mut a = authentication(&acs, Some(card), created_at);
    a.challenge_id = Some(challenge.id.clone());
    let mut audit = audit("authentication.created");
    audit.acs_trans_id = Some(acs);
    s.record_authentication(&NewAuthentication { authentication: a, challenge: Some(challenge.clone()), audit })
        .await
        .unwrap();
    challenge
}

fn ending(ch: &Challenge, state: ChallengeState, reason: &str, at: i64) -> ChallengeEnd {
    let approved = state == ChallengeState::Approved;
    let mut audit = AuditEvent::new(at, "challenge.ended", "system".into(), reason);
    audit.acs_trans_id = Some(ch.acs_trans_id.clone());
    audit.challenge_id = Some(ch.id.clone());
    ChallengeEnd {
        challenge_id: ch.id.clone(),
        state,
        outcome_reason: reason.into(),
        decided_by_device: approved.then(|| "dev-1".to_owned()),
        at,
        trans_status: if approved { "Y" } else { "N" }.into(),
        trans_status_reason: (!approved).then(|| "01".to_owned()),
        authentication_value: approved.then(|| "AAECAwQFBgcICQoLDA0ODxAREhM=".to_owned()),
        eci: approved.then(|| "05".to_owned()),
        callback: Some(NewCallback {
            acs_trans_id: ch.acs_trans_id.clone(),
            requestor_id: SHOP.into(),
            url: "http://127.0.0.1:9/notify".into(),
            body: json!({ "acsTransID": ch.acs_trans_id, "reason": reason }).to_string(),
        }),
        code_verified: false,
        audit,
    }
}

fn delivery(channel: ContactChannel, state: DeliveryState) -> NewDelivery {
    let masked = match channel {
        ContactChannel::Email => "t•••@example.jp",
        ContactChannel::Sms => "•••34567",
    };
    NewDelivery { channel, destination_masked: masked.into(), state }
}

fn new_code(ch: &Challenge, at: i64, deliveries: Vec<NewDelivery>) -> NewCode {
    let mut audit = AuditEvent::new(at, "code.issued", "system".into(), "no_device");
    audit.challenge_id = Some(ch.id.clone());
    NewCode {
        code: OneTimeCode {
            challenge_id: ch.id.clone(),
            salt: vec![1; 16],
            code_hash: vec![2; 32],
            created_at: at,
            expires_at: at + 10 * MINUTE,
            resends: 0,
            last_sent_at: at,
            used_at: None,
        },
        fallback_reason: "push_timeout".into(),
        challenge_expires_at: at + 10 * MINUTE,
        deliveries,
        audit,
    }
}

async fn audit_where(s: &dyn Storage, filter: AuditFilter) -> Vec<AuditEvent> {
    s.audit_events(&filter).await.unwrap().into_iter().map(|r| r.event).collect()
}

async fn audit_of(s: &dyn Storage, acs: &str) -> Vec<AuditEvent> {
    audit_where(s, AuditFilter { acs_trans_id: Some(acs.into()), limit: 1000, ..AuditFilter::default() }).await
}

async fn all_audit(s: &dyn Storage) -> Vec<AuditEvent> {
    audit_where(s, AuditFilter { limit: 10_000, ..AuditFilter::default() }).await
}

fn kinds(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Opens the pool's connections ahead of a race, so the racers meet at the
/// database instead of arriving one by one as connections are made.
async fn warm(s: &Arc<dyn Storage>) {
    let s = s.clone();
    race(8, move |_| {
        let s = s.clone();
        async move { s.ping().await.unwrap() }
    })
    .await;
}

/// Runs `n` copies of `f` at once (released together by a barrier);
/// returns their results in task order.
async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, work) = (barrier.clone(), f(i));
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("a racing task panicked"));
    }
    out
}

fn conflict_name<T: std::fmt::Debug>(r: StorageResult<T>) -> &'static str {
    match r {
        Err(StorageError::Conflict(what)) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---- the contract ----------------------------------------------------------

async fn ping_answers(db: Db) {
    db.s.ping().await.unwrap();
}

async fn requestors_are_found_by_id_and_by_key(db: Db) {
    let s = &*db.s;
    let r = requestor("shop-a");
    s.create_requestor(&r, b"hash-a").await.unwrap();
    assert_eq!(s.requestor("shop-a").await.unwrap(), Some(r.clone()));
    assert_eq!(s.requestor_by_key(b"hash-a", NOW).await.unwrap(), Some(r.clone()));
    assert_eq!(s.requestor("shop-b").await.unwrap(), None);
    assert_eq!(s.requestor_by_key(b"hash-b", NOW).await.unwrap(), None);
    // The same id, or the same key, twice.
    assert_eq!(conflict_name(s.create_requestor(&requestor("shop-a"), b"hash-other").await), "requestor");
    assert_eq!(conflict_name(s.create_requestor(&requestor("shop-b"), b"hash-a").await), "requestor");
    assert_eq!(s.requestor("shop-b").await.unwrap(), None);
    let mut legacy = requestor("shop-0");
    legacy.callback_secret = StoredSecret::Legacy("clear".into());
    s.create_requestor(&legacy, b"hash-0").await.unwrap();
    let ids: Vec<String> = s.requestors().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["shop-0", "shop-a"]);
    assert_eq!(s.requestor("shop-0").await.unwrap(), Some(legacy));
}

async fn a_rotated_key_overlaps_until_its_time_or_revocation(db: Db) {
    let s = &*db.s;
    s.create_requestor(&requestor("shop-a"), b"key-1").await.unwrap();
    s.create_requestor(&requestor("shop-b"), b"key-b").await.unwrap();
    let until = NOW + MINUTE;
    assert!(
        s.rotate_requestor_credential("shop-a", Credential::ApiKey, b"key-2", until, &audit("rotated")).await.unwrap()
    );
    let found = |key: &'static [u8], at: i64| async move { s.requestor_by_key(key, at).await.unwrap().map(|r| r.id) };
    assert_eq!(found(b"key-2", NOW).await.as_deref(), Some("shop-a"));
    assert_eq!(found(b"key-1", until - 1).await.as_deref(), Some("shop-a"), "the old key in its overlap");
    assert_eq!(found(b"key-1", until).await, None, "the old key after it");
    assert_eq!(s.requestor("shop-a").await.unwrap().unwrap().previous_key_expires_at, Some(until));
    // Rotating again drops the older key at once.
    assert!(
        s.rotate_requestor_credential("shop-a", Credential::ApiKey, b"key-3", until, &audit("rotated")).await.unwrap()
    );
    assert_eq!(found(b"key-1", NOW).await, None);
    assert_eq!(found(b"key-2", NOW).await.as_deref(), Some("shop-a"));
    assert!(s.drop_previous_credential("shop-a", Credential::ApiKey, &audit("revoked")).await.unwrap());
    assert!(!s.drop_previous_credential("shop-a", Credential::ApiKey, &audit("revoked")).await.unwrap());
    assert_eq!(found(b"key-2", NOW).await, None);
    assert_eq!(found(b"key-3", NOW).await.as_deref(), Some("shop-a"));
    assert_eq!(found(b"key-b", NOW).await.as_deref(), Some("shop-b"), "other requestors are untouched");
    assert!(
        !s.rotate_requestor_credential("shop-x", Credential::ApiKey, b"key-4", until, &audit("rotated")).await.unwrap()
    );
    assert_eq!(kinds(&all_audit(s).await), ["rotated", "rotated", "revoked"], "audited when something changed");
}

async fn a_rotated_callback_secret_keeps_the_previous_one_for_the_overlap(db: Db) {
    let s = &*db.s;
    let mut legacy = requestor("shop-a");
    legacy.callback_secret = StoredSecret::Legacy("clear".into());
    s.create_requestor(&legacy, b"key-1").await.unwrap();
    assert!(!s.seal_legacy_callback_secret("shop-a", "other", b"sealed-0").await.unwrap(), "only the secret it saw");
    assert!(s.seal_legacy_callback_secret("shop-a", "clear", b"sealed-1").await.unwrap());
    assert!(!s.seal_legacy_callback_secret("shop-a", "clear", b"sealed-x").await.unwrap(), "once");
    let r = s.requestor("shop-a").await.unwrap().unwrap();
    assert_eq!((r.callback_secret, r.previous_callback_secret), (StoredSecret::Sealed(b"sealed-1".to_vec()), None));
    let until = NOW + MINUTE;
    let rotate = |value: &'static [u8]| async move {
        s.rotate_requestor_credential("shop-a", Credential::CallbackSecret, value, until, &audit("rotated"))
            .await
            .unwrap()
    };
    assert!(rotate(b"sealed-2").await);
    let r = s.requestor("shop-a").await.unwrap().unwrap();
    assert_eq!(r.callback_secret, StoredSecret::Sealed(b"sealed-2".to_vec()));
    assert_eq!(r.previous_callback_secret, Some(PreviousSecret { sealed: b"sealed-1".to_vec(), until }));
    assert_eq!(r.previous_key_expires_at, None, "the API key did not move");
    assert_eq!(s.requestor_by_key(b"key-1", NOW).await.unwrap().map(|r| r.id).as_deref(), Some("shop-a"));
    assert!(s.drop_previous_credential("shop-a", Credential::CallbackSecret, &audit("revoked")).await.unwrap());
    assert_eq!(s.requestor("shop-a").await.unwrap().unwrap().previous_callback_secret, None);
}

async fn operators_are_found_by_key_with_their_role(db: Db) {
    let s = &*db.s;
    let admin = operator("op-1", OperatorRole::Admin);
    let support = operator("op-2", OperatorRole::Support);
    s.create_operator(&admin, b"op-key-1").await.unwrap();
    s.create_operator(&support, b"op-key-2").await.unwrap();
    assert_eq!(s.operator_by_key(b"op-key-1").await.unwrap(), Some(admin.clone()));
    assert_eq!(s.operator_by_key(b"op-key-2").await.unwrap(), Some(support.clone()));
    assert_eq!(s.operator_by_key(b"op-key-3").await.unwrap(), None);
    assert_eq!(conflict_name(s.create_operator(&operator("op-3", OperatorRole::Admin), b"op-key-1").await), "operator");

    // A revoked key finds nobody; the operator stays listed, revoked.
    assert!(s.revoke_operator("op-2", NOW + 1, &audit("operator.revoked")).await.unwrap());
    assert!(!s.revoke_operator("op-2", NOW + 2, &audit("operator.revoked")).await.unwrap());
    assert!(!s.revoke_operator("op-9", NOW + 2, &audit("operator.revoked")).await.unwrap());
    assert_eq!(s.operator_by_key(b"op-key-2").await.unwrap(), None);
    assert_eq!(s.operator_by_key(b"op-key-1").await.unwrap(), Some(admin.clone()));
    let revoked = Operator { revoked_at: Some(NOW + 1), ..support };
    assert_eq!(s.operators().await.unwrap(), [admin, revoked]);
    assert_eq!(kinds(&all_audit(s).await), ["operator.revoked"]);
}

async fn cards_are_found_by_id_and_card_number_hash(db: Db) {
    let s = &*db.s;
    let mut card = new_card("card-1");
    card.card.phone = None;
    card.card.language = None;
    s.create_card(&card).await.unwrap();
    assert_eq!(s.card("card-1").await.unwrap(), Some(card.card.clone()));
    assert_eq!(s.card_by_pan_hash(b"pan-hash-card-1").await.unwrap(), Some(card.card.clone()));
    assert_eq!(s.card("card-2").await.unwrap(), None);
    assert_eq!(s.card_by_pan_hash(b"pan-hash-card-2").await.unwrap(), None);
    let mut same_number = new_card("card-2");
    same_number.pan_hash = card.pan_hash.clone();
    assert_eq!(conflict_name(s.create_card(&same_number).await), "card");
    assert_eq!(conflict_name(s.create_card(&new_card("card-1")).await), "card");
}

async fn card_activity_sums_the_cards_history(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    let record = |acs: &str, card: &str, at: i64, status: &str, low_value: bool, currency: u16, amount: u64| {
        let mut a = authentication(acs, Some(card), at);
        a.trans_status = status.into();
        a.low_value_exempt = low_value;
        a.currency = currency;
        a.amount_minor = amount;
        NewAuthentication { authentication: a, challenge: None, audit: audit("authentication.created") }
    };
    s.record_authentication(&record("a1", "card-1", NOW + 100, "Y", true, 978, 1_000)).await.unwrap();
    // A challenge approved at +250 starts the low-value count again.
    let ch = purchase(s, "a2", "card-1", NOW + 200).await;
    assert!(s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + 250)).await.unwrap());
    s.record_authentication(&record("a3", "card-1", NOW + 300, "Y", true, 978, 700)).await.unwrap();
    s.record_authentication(&record("a4", "card-1", NOW + 400, "Y", true, 840, 300)).await.unwrap();
    s.record_authentication(&record("a5", "card-1", NOW + 500, "N", false, 978, 9_999)).await.unwrap();
    s.record_authentication(&record("b1", "card-2", NOW + 500, "Y", true, 978, 50)).await.unwrap();

    let activity = s.card_activity("card-1", &history(978, NOW + 300)).await.unwrap();
    assert_eq!(
        activity,
        CardActivity { authenticated: 4, recent: 3, low_value_count: 1, low_value_sum: 700 },
        "a1, a2 (after its approval), a3 and a4 are Y; a3–a5 are recent; only a3 is low-value in EUR since +250"
    );
    assert_eq!(s.card_activity("card-1", &history(840, NOW)).await.unwrap().low_value_sum, 300);
    assert_eq!(s.card_activity("card-9", &history(978, NOW)).await.unwrap(), CardActivity::default());
}

/// Counts with no limit that matters.
fn history(currency: u16, recent_since: i64) -> HistoryQuery {
    HistoryQuery { currency, recent_since, authenticated_up_to: u32::MAX, recent_up_to: u32::MAX }
}

async fn card_activity_counts_stop_at_their_limits(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    for i in 0..6 {
        let mut a = authentication(&format!("a{i}"), Some("card-1"), NOW + i);
        a.trans_status = "Y".into();
        let audit = audit("authentication.created");
        s.record_authentication(&NewAuthentication { authentication: a, challenge: None, audit }).await.unwrap();
    }
    let limited = HistoryQuery { authenticated_up_to: 2, recent_up_to: 4, ..history(978, NOW + 1) };
    let activity = s.card_activity("card-1", &limited).await.unwrap();
    assert_eq!((activity.authenticated, activity.recent), (2, 4), "six Y, five recent: each stops at its limit");
    let unlimited = s.card_activity("card-1", &history(978, NOW + 1)).await.unwrap();
    assert_eq!((unlimited.authenticated, unlimited.recent), (6, 5));
    let none = HistoryQuery { authenticated_up_to: 0, recent_up_to: 0, ..limited };
    let activity = s.card_activity("card-1", &none).await.unwrap();
    assert_eq!((activity.authenticated, activity.recent), (0, 0));
}

async fn a_purchase_reads_card_history_and_devices_at_once(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    // Enrolled at the same moment, and not in the order of their ids.
    for (lookup, dev) in [("A", "dev-3"), ("B", "dev-2"), ("C", "dev-1")] {
        s.create_enrolment_code(&enrolment_code(lookup, "card-1", 5)).await.unwrap();
        s.complete_enrolment(lookup, &device(dev, &format!("key-{dev}")), NOW, &audit("device.enrolled"))
            .await
            .unwrap();
    }
    s.revoke_device("dev-2", NOW + 1, &audit("device.revoked")).await.unwrap();
    let mut a = authentication("a1", Some("card-1"), NOW + 100);
    (a.trans_status, a.low_value_exempt, a.amount_minor) = ("Y".into(), true, 900);
    let audit_line = audit("authentication.created");
    s.record_authentication(&NewAuthentication { authentication: a, challenge: None, audit: audit_line })
        .await
        .unwrap();

    let query = history(978, NOW);
    let found = s.card_for_purchase(b"pan-hash-card-1", &query).await.unwrap().expect("card-1");
    assert_eq!(found.card, s.card("card-1").await.unwrap().unwrap());
    assert_eq!(found.activity, s.card_activity("card-1", &query).await.unwrap());
    assert_eq!(found.activity.low_value_sum, 900);
    assert_eq!(found.devices, s.card_devices("card-1").await.unwrap());
    let ids = found.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>();
    assert_eq!(ids, ["dev-1", "dev-3"], "in enrolment order (a tie by id), not the revoked one");

    let bare = s.card_for_purchase(b"pan-hash-card-2", &query).await.unwrap().expect("card-2");
    assert_eq!((bare.activity, bare.devices.len()), (CardActivity::default(), 0));
    assert_eq!(s.card_for_purchase(b"pan-hash-card-9", &query).await.unwrap(), None);
}

/// Writes that fail (here: a reused threeDSServerTransID) change nothing
/// and leave the writes racing them whole, however they are committed.
async fn failing_writes_among_many_leave_the_others_whole(db: Db) {
    let s = db.s.clone();
    shop_with_cards(&*s, &["card-1"]).await;
    let record = |i: usize, ds: String| {
        let mut a = authentication(&format!("acs-{i}"), Some("card-1"), NOW + i as i64);
        a.ds_trans_id = ds;
        let mut audit = audit("authentication.created");
        audit.acs_trans_id = Some(a.acs_trans_id.clone());
        NewAuthentication { authentication: a, challenge: None, audit }
    };
    // Every third purchase reuses the id of the one before it.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (s, new) = (s.clone(), record(i, format!("ds-{}", if i % 3 == 2 { i - 1 } else { i })));
            tokio::spawn(async move { (i, s.record_authentication(&new).await) })
        })
        .collect();
    let mut stored = BTreeSet::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(()) => assert!(stored.insert(i)),
            Err(StorageError::Conflict(_)) => {}
            Err(e) => panic!("purchase {i}: {e}"),
        }
    }
    assert_eq!(stored.len(), 40, "one of each pair that shares an id, and every other purchase");
    for i in 0..60 {
        let a = s.authentication(&format!("acs-{i}")).await.unwrap();
        assert_eq!(a.is_some(), stored.contains(&i), "purchase {i} stored iff it was answered Ok");
    }
    let audited = s.audit_events(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.unwrap();
    let audited: BTreeSet<String> = audited.into_iter().filter_map(|r| r.event.acs_trans_id).collect();
    let expected: BTreeSet<String> = stored.iter().map(|i| format!("acs-{i}")).collect();
    assert_eq!(audited, expected, "a refused purchase leaves no audit line either");
}

fn enrolment_code(lookup: &str, card: &str, attempts: u32) -> EnrolmentCode {
    EnrolmentCode {
        lookup: lookup.into(),
        secret_hash: format!("secret-{lookup}").into_bytes(),
        card_id: card.into(),
        created_at: NOW,
        expires_at: NOW + 24 * 60 * MINUTE,
        attempts_left: attempts,
        used_at: None,
    }
}

async fn enrolment_codes_run_out_of_attempts(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let code = enrolment_code("ABCD", "card-1", 2);
    s.create_enrolment_code(&code).await.unwrap();
    assert_eq!(s.enrolment_code("ABCD").await.unwrap(), Some(code.clone()));
    assert_eq!(s.enrolment_code("WXYZ").await.unwrap(), None);
    assert_eq!(s.spend_enrolment_attempt("ABCD").await.unwrap(), Some(1));
    assert_eq!(s.spend_enrolment_attempt("ABCD").await.unwrap(), Some(0));
    assert_eq!(s.spend_enrolment_attempt("ABCD").await.unwrap(), None);
    assert_eq!(s.spend_enrolment_attempt("WXYZ").await.unwrap(), None);
    assert_eq!(s.enrolment_code("ABCD").await.unwrap().unwrap().attempts_left, 0);
    assert_eq!(conflict_name(s.create_enrolment_code(&code).await), "enrolment code");
    // A code is refused once used, too.
    s.create_enrolment_code(&enrolment_code("EFGH", "card-1", 5)).await.unwrap();
    s.complete_enrolment("EFGH", &device("dev-1", "key-1"), NOW, &audit("device.enrolled")).await.unwrap();
    assert_eq!(s.spend_enrolment_attempt("EFGH").await.unwrap(), None);
}

async fn enrolment_creates_a_device_or_reuses_its_key(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2", "card-3"]).await;
    for (lookup, card) in [("C1", "card-1"), ("C2", "card-2"), ("C3", "card-3")] {
        s.create_enrolment_code(&enrolment_code(lookup, card, 5)).await.unwrap();
    }
    let phone = device("dev-1", "key-1");
    let stored = s.complete_enrolment("C1", &phone, NOW, &audit("device.enrolled")).await.unwrap();
    assert_eq!(stored, phone);
    assert_eq!(s.device("dev-1").await.unwrap(), Some(phone.clone()));
    assert_eq!(s.enrolment_code("C1").await.unwrap().unwrap().used_at, Some(NOW));
    assert_eq!(s.device_cards("dev-1").await.unwrap().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["card-1"]);
    let line = all_audit(s).await.into_iter().find(|e| e.kind == "device.enrolled").unwrap();
    assert_eq!((line.device_id.as_deref(), line.card_id.as_deref()), (Some("dev-1"), Some("card-1")));
    assert_eq!(
        conflict_name(s.complete_enrolment("C1", &device("dev-9", "key-9"), NOW + 2, &audit("x")).await),
        "enrolment code"
    );

    // The same key with a second card's code: the device it already is,
    // with the new push settings, and reachable again.
    s.mark_push_unreachable("dev-1", NOW + 3).await.unwrap();
    let mut again = device("dev-2", "key-1");
    again.push_token = Some("token-new".into());
    again.notifications_enabled = false;
    again.display_name = "Renamed".into();
    let stored = s.complete_enrolment("C2", &again, NOW + 4, &audit("device.enrolled")).await.unwrap();
    let expected = Device {
        push_token: Some("token-new".into()),
        notifications_enabled: false,
        display_name: "Renamed".into(),
        ..phone.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(s.device("dev-1").await.unwrap(), Some(expected));
    assert_eq!(s.device("dev-2").await.unwrap(), None);
    let cards: Vec<String> = s.device_cards("dev-1").await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(cards, ["card-1", "card-2"]);

    // A revoked key cannot come back, and the code is not spent trying.
    s.revoke_device("dev-1", NOW + 5, &audit("device.revoked")).await.unwrap();
    assert_eq!(
        conflict_name(s.complete_enrolment("C3", &device("dev-3", "key-1"), NOW + 6, &audit("x")).await),
        "revoked device key"
    );
    assert_eq!(s.enrolment_code("C3").await.unwrap().unwrap().used_at, None);

    // Expired, or out of attempts: refused.
    let mut expired = enrolment_code("C4", "card-3", 5);
    expired.expires_at = NOW + 7;
    s.create_enrolment_code(&expired).await.unwrap();
    assert_eq!(
        conflict_name(s.complete_enrolment("C4", &device("dev-4", "key-4"), NOW + 7, &audit("x")).await),
        "enrolment code"
    );
    s.create_enrolment_code(&enrolment_code("C5", "card-3", 0)).await.unwrap();
    assert_eq!(
        conflict_name(s.complete_enrolment("C5", &device("dev-5", "key-5"), NOW + 8, &audit("x")).await),
        "enrolment code"
    );
    assert_eq!(s.device("dev-4").await.unwrap(), None);
}

async fn one_enrolment_code_enrols_once_however_many_try(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    db.s.create_enrolment_code(&enrolment_code("ONCE", "card-1", 5)).await.unwrap();
    warm(&db.s).await;
    let s = db.s.clone();
    let results = race(10, |i| {
        let s = s.clone();
        async move {
            s.complete_enrolment("ONCE", &device(&format!("dev-{i}"), &format!("key-{i}")), NOW, &audit("x")).await
        }
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.into_iter().filter(|r| r.is_err()).all(|r| conflict_name(r) == "enrolment code"));
    assert_eq!(db.s.card_devices("card-1").await.unwrap().len(), 1);
}

async fn one_key_enrolled_twice_at_once_is_one_device(db: Db) {
    shop_with_cards(&*db.s, &["card-1", "card-2"]).await;
    db.s.create_enrolment_code(&enrolment_code("K1", "card-1", 5)).await.unwrap();
    db.s.create_enrolment_code(&enrolment_code("K2", "card-2", 5)).await.unwrap();
    warm(&db.s).await;
    let s = db.s.clone();
    let results = race(2, |i| {
        let s = s.clone();
        async move {
            let lookup = format!("K{}", i + 1);
            s.complete_enrolment(&lookup, &device(&format!("dev-{i}"), "shared-key"), NOW, &audit("x")).await
        }
    })
    .await;
    let ids: BTreeSet<String> = results.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids.len(), 1, "both enrolments found one device: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(db.s.device_cards(&id).await.unwrap().len(), 2);
}

async fn enrolled(s: &dyn Storage, device: &str, card: &str) -> bool {
    s.device_cards(device).await.unwrap().iter().any(|c| c.id == card)
}

async fn devices_enrolments_and_push_settings(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    let enrolments = [("A", "card-1", "dev-1"), ("B", "card-2", "dev-1"), ("C", "card-1", "dev-2")];
    for (at, (lookup, card, dev)) in enrolments.into_iter().enumerate() {
        s.create_enrolment_code(&enrolment_code(lookup, card, 5)).await.unwrap();
        let key = format!("key-{dev}");
        s.complete_enrolment(lookup, &device(dev, &key), NOW + at as i64, &audit("device.enrolled")).await.unwrap();
    }
    assert!(enrolled(s, "dev-1", "card-2").await);
    assert!(!enrolled(s, "dev-2", "card-2").await);
    let on_card: Vec<String> = s.card_devices("card-1").await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(on_card, ["dev-1", "dev-2"]);

    s.mark_push_unreachable("dev-2", NOW + 1).await.unwrap();
    assert!(s.device("dev-2").await.unwrap().unwrap().push_unreachable);
    s.set_push_settings("dev-2", None, false, NOW + 2).await.unwrap();
    let d = s.device("dev-2").await.unwrap().unwrap();
    assert_eq!((d.push_token, d.notifications_enabled, d.push_unreachable), (None, false, false));
    s.set_push_settings("dev-2", Some("token-3"), true, NOW + 3).await.unwrap();
    assert!(s.device("dev-2").await.unwrap().unwrap().pushable());

    let before = all_audit(s).await.len();
    assert!(s.unenrol_card("dev-1", "card-2", &audit("device.unenrolled")).await.unwrap());
    assert!(!s.unenrol_card("dev-1", "card-2", &audit("device.unenrolled")).await.unwrap());
    assert_eq!(all_audit(s).await.len(), before + 1, "only a real unenrolment is audited");
    assert!(!enrolled(s, "dev-1", "card-2").await);

    let before = all_audit(s).await.len();
    assert!(s.revoke_device("dev-2", NOW + 4, &audit("device.revoked")).await.unwrap());
    let lines = all_audit(s).await.split_off(before);
    assert_eq!(lines.iter().map(|e| e.card_id.as_deref()).collect::<Vec<_>>(), [Some("card-1")], "one per card");
    let revoked = s.device("dev-2").await.unwrap().unwrap();
    assert_eq!((revoked.revoked_at, revoked.push_token.as_deref()), (Some(NOW + 4), None));
    assert!(s.device_cards("dev-2").await.unwrap().is_empty());
    assert_eq!(s.card_devices("card-1").await.unwrap().len(), 1);
    assert!(!s.revoke_device("dev-2", NOW + 5, &audit("device.revoked")).await.unwrap());
    assert_eq!(s.device("dev-2").await.unwrap().unwrap().revoked_at, Some(NOW + 4), "revoked once");
    assert!(!s.revoke_device("dev-9", NOW + 5, &audit("device.revoked")).await.unwrap());
    assert_eq!(s.device("dev-9").await.unwrap(), None);
}

async fn nonces_are_refused_again_within_the_window(db: Db) {
    let s = &*db.s;
    let window = 5 * MINUTE;
    assert!(s.remember_nonce("dev-1", b"n1", NOW, NOW - window).await.unwrap());
    assert!(!s.remember_nonce("dev-1", b"n1", NOW + 1, NOW + 1 - window).await.unwrap(), "a replay");
    assert!(s.remember_nonce("dev-2", b"n1", NOW + 1, NOW + 1 - window).await.unwrap(), "another device's");
    // Seen exactly at the window's start: still inside it.
    assert!(!s.remember_nonce("dev-1", b"n1", NOW + window, NOW).await.unwrap());
    // Once the window has passed the nonce is forgotten, then new again.
    assert!(s.remember_nonce("dev-1", b"n1", NOW + window + 1, NOW + 1).await.unwrap());
    assert!(!s.remember_nonce("dev-1", b"n1", NOW + window + 2, NOW + 2).await.unwrap());
}

async fn old_nonces_are_forgotten_in_bulk(db: Db) {
    let s = &*db.s;
    for (i, at) in [NOW, NOW + 1, NOW + 2, NOW + 10].into_iter().enumerate() {
        assert!(s.remember_nonce("dev-1", format!("n{i}").as_bytes(), at, at - MINUTE).await.unwrap());
    }
    assert_eq!(s.forget_nonces(NOW + 2, 1).await.unwrap(), 1, "at most the limit");
    assert_eq!(s.forget_nonces(NOW + 2, 10).await.unwrap(), 1, "only those seen before");
    assert_eq!(s.forget_nonces(NOW + 2, 10).await.unwrap(), 0);
    // The ones kept still make replays.
    assert!(!s.remember_nonce("dev-1", b"n2", NOW + 11, NOW).await.unwrap());
    assert!(!s.remember_nonce("dev-1", b"n3", NOW + 11, NOW).await.unwrap());
    // A forgotten one is new again.
    assert!(s.remember_nonce("dev-1", b"n0", NOW + 11, NOW).await.unwrap());
}

async fn one_nonce_used_at_once_is_accepted_once(db: Db) {
    warm(&db.s).await;
    let s = db.s.clone();
    let accepted = race(20, |_| {
        let s = s.clone();
        async move { s.remember_nonce("dev-1", b"same", NOW, NOW - MINUTE).await.unwrap() }
    })
    .await;
    assert_eq!(accepted.iter().filter(|a| **a).count(), 1);
}

async fn authentications_and_challenges_are_stored_whole(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase_with(s, "1", "card-1", NOW, |c| {
        c.number_match = Some(53);
        c.number_choices = Some(vec![17, 53, 90]);
        c.push_deadline = Some(NOW + MINUTE);
    })
    .await;
    let stored = s.authentication("acs-1").await.unwrap().unwrap();
    let mut expected = authentication("acs-1", Some("card-1"), NOW);
    expected.challenge_id = Some(ch.id.clone());
    assert_eq!(stored, expected);
    assert_eq!(s.challenge(&ch.id).await.unwrap(), Some(ch.clone()));
    assert_eq!(kinds(&audit_of(s, "acs-1").await), ["authentication.created"]);

    // Frictionless: no card known, no challenge; the widest amounts.
    let mut a = authentication("acs-2", None, NOW);
    a.trans_status = "Y".into();
    a.amount_minor = u64::MAX;
    a.exponent = 3;
    a.currency = 999;
    a.reasons = vec![];
    a.browser_language = None;
    a.browser_tz = None;
    a.authentication_value = Some("value".into());
    a.eci = Some("05".into());
    a.low_value_exempt = true;
    s.record_authentication(&NewAuthentication { authentication: a.clone(), challenge: None, audit: audit("x") })
        .await
        .unwrap();
    assert_eq!(s.authentication("acs-2").await.unwrap(), Some(a));
    assert_eq!(s.authentication("acs-3").await.unwrap(), None);
    assert_eq!(s.challenge("ch-3").await.unwrap(), None);
}

async fn a_reused_three_ds_server_trans_id_stores_nothing(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    s.create_requestor(&requestor("shop-2"), b"key-2").await.unwrap();
    purchase(s, "1", "card-1", NOW).await;
    let before = all_audit(s).await.len();
    // Same requestor and threeDSServerTransID, new acsTransID.
    let mut a = authentication("acs-dup", Some("card-1"), NOW);
    a.ds_trans_id = "ds-acs-1".into();
    a.challenge_id = Some("ch-dup".into());
    let dup = NewAuthentication {
        authentication: a.clone(),
        challenge: Some(pending_challenge("ch-dup", "acs-dup", "card-1", NOW)),
        audit: audit("authentication.created"),
    };
    assert_eq!(conflict_name(s.record_authentication(&dup).await), "threeDSServerTransID");
    assert_eq!(s.authentication("acs-dup").await.unwrap(), None);
    assert_eq!(s.challenge("ch-dup").await.unwrap(), None);
    assert_eq!(all_audit(s).await.len(), before);
    // Another requestor may use the same id.
    let mut other = dup.clone();
    other.authentication.requestor_id = "shop-2".into();
    s.record_authentication(&other).await.unwrap();
    assert!(s.challenge("ch-dup").await.unwrap().is_some());
}

async fn pending_challenges_for_a_device_are_its_cards_open_ones(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    s.create_enrolment_code(&enrolment_code("E", "card-1", 5)).await.unwrap();
    s.complete_enrolment("E", &device("dev-1", "key-1"), NOW, &audit("x")).await.unwrap();
    let later = purchase(s, "2", "card-1", NOW + 2).await;
    let first = purchase(s, "1", "card-1", NOW + 1).await;
    let expired = purchase_with(s, "3", "card-1", NOW, |c| c.expires_at = NOW + 10).await;
    let ended = purchase(s, "4", "card-1", NOW).await;
    assert!(s.end_challenge(&ending(&ended, ChallengeState::Denied, "not_me", NOW + 5)).await.unwrap());
    purchase(s, "5", "card-2", NOW).await;
    let pending = s.pending_challenges_for_device("dev-1", NOW + 10).await.unwrap();
    let challenges: Vec<Challenge> = pending.iter().map(|p| p.challenge.clone()).collect();
    assert_eq!(challenges, [first.clone(), later]);
    // Each with what the device is shown of it.
    let shown = &pending[0];
    let mut expected = authentication("acs-1", Some("card-1"), NOW + 1);
    expected.challenge_id = Some(first.id.clone());
    assert_eq!(shown.authentication, expected);
    assert_eq!(shown.card, s.card("card-1").await.unwrap().unwrap());
    assert_eq!(shown.requestor_name.as_deref(), Some("shop-1 shop"));
    assert!(shown.device_enrolled);
    assert!(s.challenge(&expired.id).await.unwrap().unwrap().state == ChallengeState::Pending);
    assert!(s.pending_challenges_for_device("dev-9", NOW).await.unwrap().is_empty());
}

async fn a_challenge_for_a_device_says_whether_it_is_enrolled(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    for (lookup, card, dev) in [("E", "card-1", "dev-1"), ("F", "card-2", "dev-2")] {
        s.create_enrolment_code(&enrolment_code(lookup, card, 5)).await.unwrap();
        s.complete_enrolment(lookup, &device(dev, &format!("key-{dev}")), NOW, &audit("x")).await.unwrap();
    }
    let ch = purchase(s, "1", "card-1", NOW).await;
    assert!(s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + 5)).await.unwrap());

    // Ended or not: the caller decides what a state allows.
    let mine = s.challenge_for_device(&ch.id, "dev-1").await.unwrap().unwrap();
    assert_eq!(mine.challenge, s.challenge(&ch.id).await.unwrap().unwrap());
    assert_eq!(mine.challenge.state, ChallengeState::Approved);
    assert_eq!(mine.authentication, s.authentication("acs-1").await.unwrap().unwrap());
    assert_eq!(mine.card, s.card("card-1").await.unwrap().unwrap());
    assert_eq!(mine.requestor_name.as_deref(), Some("shop-1 shop"));
    assert!(mine.device_enrolled);

    let other = s.challenge_for_device(&ch.id, "dev-2").await.unwrap().unwrap();
    assert!(!other.device_enrolled, "dev-2 is enrolled for card-2 only");
    assert!(!s.challenge_for_device(&ch.id, "dev-9").await.unwrap().unwrap().device_enrolled);
    assert_eq!(s.challenge_for_device("ch-none", "dev-1").await.unwrap(), None);
}

async fn a_challenge_ends_once_with_all_it_causes(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    let end = ending(&ch, ChallengeState::Approved, "approved", NOW + 10);
    assert!(s.end_challenge(&end).await.unwrap());

    let c = s.challenge(&ch.id).await.unwrap().unwrap();
    assert_eq!(c.state, ChallengeState::Approved);
    assert_eq!(
        (c.decided_at, c.decided_by_device.as_deref(), c.outcome_reason.as_deref()),
        (Some(NOW + 10), Some("dev-1"), Some("approved"))
    );
    let a = s.authentication("acs-1").await.unwrap().unwrap();
    assert_eq!(a.trans_status, "Y");
    assert_eq!(a.trans_status_reason, None);
    assert_eq!(a.authentication_value, end.authentication_value);
    assert_eq!(a.eci.as_deref(), Some("05"));
    assert_eq!(a.updated_at, NOW + 10);
    assert_eq!(
        s.callback_status("acs-1").await.unwrap(),
        Some(CallbackStatus { state: "pending".into(), attempts: vec![] })
    );
    assert_eq!(kinds(&audit_of(s, "acs-1").await), ["authentication.created", "challenge.ended"]);

    // A second ending changes nothing at all.
    let late = ending(&ch, ChallengeState::Expired, "expired", NOW + 20);
    assert!(!s.end_challenge(&late).await.unwrap());
    assert_eq!(s.challenge(&ch.id).await.unwrap().unwrap(), c);
    assert_eq!(s.authentication("acs-1").await.unwrap().unwrap(), a);
    assert_eq!(s.claim_callbacks(NOW + 100, NOW + MINUTE, 10).await.unwrap().len(), 1);
    assert_eq!(audit_of(s, "acs-1").await.len(), 2);
    let mut unknown = late.clone();
    unknown.challenge_id = "ch-none".into();
    assert!(!s.end_challenge(&unknown).await.unwrap());
}

async fn twenty_concurrent_endings_have_one_winner(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    let ch = purchase(&*db.s, "1", "card-1", NOW).await;
    let outcomes = [
        (ChallengeState::Approved, "approved"),
        (ChallengeState::Denied, "not_me"),
        (ChallengeState::Expired, "expired"),
        (ChallengeState::Cancelled, "cancelled"),
    ];
    warm(&db.s).await;
    let s = db.s.clone();
    let won = race(20, |i| {
        let (s, (state, reason)) = (s.clone(), outcomes[i % outcomes.len()]);
        let end = ending(&ch, state, reason, NOW + 1 + i as i64);
        async move { s.end_challenge(&end).await.unwrap() }
    })
    .await;
    let winners: Vec<usize> = won.iter().enumerate().filter(|(_, w)| **w).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{won:?}");
    let winner = winners[0];
    let c = db.s.challenge(&ch.id).await.unwrap().unwrap();
    assert_eq!(c.state, outcomes[winner % outcomes.len()].0);
    assert_eq!(c.decided_at, Some(NOW + 1 + winner as i64));
    assert_eq!(db.s.claim_callbacks(NOW + 100, NOW + MINUTE, 100).await.unwrap().len(), 1);
    assert_eq!(kinds(&audit_of(&*db.s, "acs-1").await), ["authentication.created", "challenge.ended"]);
}

/// Waits (bounded) until changes reach this node's watchers: at once in
/// process; with PostgreSQL once its listener (started by the first watch)
/// listens.
async fn until_live(events: &ChallengeEvents) {
    for _ in 0..200 {
        if events.is_live() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the challenge events never went live");
}

/// Long enough for any wake-up to arrive; the waits are shorter than the
/// re-read interval of live events, so `true` means woken.
const WAKE: std::time::Duration = std::time::Duration::from_secs(4);
const NO_WAKE: std::time::Duration = std::time::Duration::from_millis(300);

async fn endings_and_codes_wake_the_challenges_watchers(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let coded = purchase(s, "1", "card-1", NOW).await;
    let ended = purchase(s, "2", "card-1", NOW).await;
    let events = s.challenge_events();
    drop(events.watch());
    until_live(events).await;
    let mut watch = events.watch();

    assert!(s.start_code(&new_code(&coded, NOW, vec![])).await.unwrap());
    assert!(watch.changed(&coded.id, WAKE).await, "a code wakes the watch");
    assert!(s.end_challenge(&ending(&ended, ChallengeState::Approved, "approved", NOW + 1)).await.unwrap());
    assert!(watch.changed(&ended.id, WAKE).await, "an ending wakes the watch");

    // What changed nothing wakes nobody.
    assert!(!s.end_challenge(&ending(&ended, ChallengeState::Expired, "expired", NOW + 2)).await.unwrap());
    assert!(!s.start_code(&new_code(&coded, NOW + 2, vec![])).await.unwrap());
    assert!(!watch.changed(&ended.id, NO_WAKE).await);
    assert!(!watch.changed(&coded.id, NO_WAKE).await);
}

async fn a_verified_code_is_spent_and_clears_the_wrong_ones(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    assert!(s.start_code(&new_code(&ch, NOW, vec![])).await.unwrap());
    s.record_code_failure("card-1", 5, NOW + 1, &audit("code.rejected")).await.unwrap();
    s.record_code_failure("card-1", 5, NOW + 2, &audit("code.rejected")).await.unwrap();
    assert_eq!(s.card("card-1").await.unwrap().unwrap().failed_code_attempts, 2);
    let mut end = ending(&ch, ChallengeState::Approved, "code_verified", NOW + 3);
    end.code_verified = true;
    assert!(s.end_challenge(&end).await.unwrap());
    assert_eq!(s.one_time_code(&ch.id).await.unwrap().unwrap().used_at, Some(NOW + 3));
    assert_eq!(s.card("card-1").await.unwrap().unwrap().failed_code_attempts, 0);
}

async fn a_code_check_reads_the_purchase_its_challenge_card_and_code(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    let before = s.code_check("acs-1").await.unwrap().unwrap();
    assert_eq!(before.authentication, s.authentication("acs-1").await.unwrap().unwrap());
    assert_eq!(before.challenge, ch);
    assert_eq!(before.card, s.card("card-1").await.unwrap().unwrap());
    assert_eq!(before.code, None, "no code issued yet");

    assert!(s.start_code(&new_code(&ch, NOW, vec![])).await.unwrap());
    let after = s.code_check("acs-1").await.unwrap().unwrap();
    assert_eq!(after.code, s.one_time_code(&ch.id).await.unwrap());
    assert!(after.code.is_some());
    assert_eq!(after.challenge.fallback_reason.as_deref(), Some("push_timeout"));

    // Frictionless: no challenge to answer with a code.
    let a = authentication("acs-2", Some("card-1"), NOW);
    s.record_authentication(&NewAuthentication { authentication: a, challenge: None, audit: audit("x") })
        .await
        .unwrap();
    assert_eq!(s.code_check("acs-2").await.unwrap(), None);
    assert_eq!(s.code_check("acs-none").await.unwrap(), None);
}

async fn expired_challenges_are_the_pending_ones_past_expiry(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let late = purchase_with(s, "1", "card-1", NOW, |c| c.expires_at = NOW + 30).await;
    let early = purchase_with(s, "2", "card-1", NOW, |c| c.expires_at = NOW + 10).await;
    purchase_with(s, "3", "card-1", NOW, |c| c.expires_at = NOW + 1_000).await;
    let ended = purchase_with(s, "4", "card-1", NOW, |c| c.expires_at = NOW + 5).await;
    assert!(s.end_challenge(&ending(&ended, ChallengeState::Approved, "approved", NOW + 1)).await.unwrap());
    assert_eq!(s.expired_challenges(NOW + 30, 10).await.unwrap(), [early.clone(), late]);
    assert_eq!(s.expired_challenges(NOW + 30, 1).await.unwrap(), [early]);
    assert!(s.expired_challenges(NOW + 9, 10).await.unwrap().is_empty());
}

async fn the_push_outbox_lists_newest_first(db: Db) {
    let s = &*db.s;
    let payload =
        json!({ "aps": { "alert": { "title-loc-key": "CHALLENGE" }, "mutable-content": 1 }, "n": [1, 2.5, null] });
    s.enqueue_push("dev-1", "ch-1", &payload, NOW).await.unwrap();
    s.enqueue_push("dev-2", "ch-2", &json!({}), NOW + 1).await.unwrap();
    s.enqueue_push("dev-1", "ch-3", &json!({ "k": "v" }), NOW + 2).await.unwrap();
    let all = s.outbox_pushes(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|p| p.challenge_id.as_str()).collect::<Vec<_>>(), ["ch-3", "ch-2", "ch-1"]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let mine = s.outbox_pushes(Some("dev-1"), 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].payload, payload);
    assert_eq!((mine[1].device_id.as_str(), mine[1].created_at), ("dev-1", NOW));
    assert_eq!(s.outbox_pushes(None, 1).await.unwrap().len(), 1);
}

async fn a_purchase_status_reads_the_purchase_its_challenge_and_result_delivery(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let status = |acs: &'static str| async move { s.purchase_status(acs).await.unwrap() };
    let as_stored = |acs: &'static str| async move { s.authentication(acs).await.unwrap().unwrap() };
    assert_eq!(status("acs-9").await, None);

    // Frictionless: no challenge, no callback.
    let frictionless = authentication("acs-f", Some("card-1"), NOW);
    let new =
        NewAuthentication { authentication: frictionless, challenge: None, audit: audit("authentication.created") };
    s.record_authentication(&new).await.unwrap();
    let expected = PurchaseStatus { authentication: as_stored("acs-f").await, challenge: None, result_delivery: None };
    assert_eq!(status("acs-f").await, Some(expected));

    // Challenged: pending, then ended with its callback queued, tried twice.
    let ch = purchase(s, "1", "card-1", NOW).await;
    let pending = status("acs-1").await.unwrap();
    assert_eq!((pending.authentication, pending.challenge), (as_stored("acs-1").await, Some(ch.clone())));
    assert_eq!(pending.result_delivery, None);
    s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + 10)).await.unwrap();
    let ended = status("acs-1").await.unwrap();
    assert_eq!(ended.authentication, as_stored("acs-1").await);
    assert_eq!(ended.challenge, s.challenge(&ch.id).await.unwrap());
    assert_eq!(ended.challenge.unwrap().state, ChallengeState::Approved);
    assert_eq!(ended.result_delivery, Some(CallbackStatus { state: "pending".into(), attempts: vec![] }));

    let job = s.claim_callbacks(NOW + 10, NOW + MINUTE, 10).await.unwrap().remove(0);
    let failed = CallbackAttempt { attempt: 1, at: NOW + 10, http_status: None, error: Some("refused".into()) };
    s.record_callback_attempt(&job, &failed, CallbackNext::RetryAt(NOW + MINUTE)).await.unwrap();
    let job = s.claim_callbacks(NOW + MINUTE, NOW + 2 * MINUTE, 10).await.unwrap().remove(0);
    let sent = CallbackAttempt { attempt: 2, at: NOW + MINUTE, http_status: Some(204), error: None };
    s.record_callback_attempt(&job, &sent, CallbackNext::Delivered).await.unwrap();
    let delivered = status("acs-1").await.unwrap();
    assert_eq!(
        delivered.result_delivery,
        Some(CallbackStatus { state: "delivered".into(), attempts: vec![failed, sent] })
    );
    assert_eq!(delivered.result_delivery, s.callback_status("acs-1").await.unwrap());
    assert_eq!(delivered.challenge, s.challenge(&ch.id).await.unwrap(), "one row per attempt, one purchase");
}

async fn callbacks_are_leased_retried_and_settled(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    let end = ending(&ch, ChallengeState::Approved, "approved", NOW + 10);
    s.end_challenge(&end).await.unwrap();
    assert!(s.claim_callbacks(NOW + 9, NOW + MINUTE, 10).await.unwrap().is_empty(), "not due yet");
    let jobs = s.claim_callbacks(NOW + 10, NOW + MINUTE, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].clone();
    let cb = end.callback.unwrap();
    assert_eq!(
        (job.acs_trans_id.as_str(), job.requestor_id.as_str(), job.url.as_str()),
        ("acs-1", SHOP, cb.url.as_str())
    );
    assert_eq!((job.body.as_str(), job.attempts), (cb.body.as_str(), 0));
    assert!(s.claim_callbacks(NOW + 20, NOW + MINUTE, 10).await.unwrap().is_empty(), "leased");
    // A worker that died: its lease runs out and the job is due again.
    assert_eq!(s.claim_callbacks(NOW + MINUTE, NOW + 2 * MINUTE, 10).await.unwrap(), std::slice::from_ref(&job));

    let failed =
        CallbackAttempt { attempt: 1, at: NOW + MINUTE, http_status: Some(500), error: Some("HTTP 500".into()) };
    s.record_callback_attempt(&job, &failed, CallbackNext::RetryAt(NOW + 3 * MINUTE)).await.unwrap();
    assert_eq!(
        s.callback_status("acs-1").await.unwrap(),
        Some(CallbackStatus { state: "pending".into(), attempts: vec![failed.clone()] })
    );
    assert!(s.claim_callbacks(NOW + 3 * MINUTE - 1, NOW + 4 * MINUTE, 10).await.unwrap().is_empty());
    let retry = s.claim_callbacks(NOW + 3 * MINUTE, NOW + 4 * MINUTE, 10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].attempts, 1);
    let sent = CallbackAttempt { attempt: 2, at: NOW + 3 * MINUTE, http_status: Some(200), error: None };
    s.record_callback_attempt(&retry[0], &sent, CallbackNext::Delivered).await.unwrap();
    assert_eq!(
        s.callback_status("acs-1").await.unwrap(),
        Some(CallbackStatus { state: "delivered".into(), attempts: vec![failed, sent] })
    );
    assert!(s.claim_callbacks(NOW + 100 * MINUTE, NOW + 101 * MINUTE, 10).await.unwrap().is_empty());

    let ch2 = purchase(s, "2", "card-1", NOW).await;
    s.end_challenge(&ending(&ch2, ChallengeState::Denied, "not_me", NOW)).await.unwrap();
    let job2 = s.claim_callbacks(NOW, NOW + MINUTE, 10).await.unwrap().remove(0);
    let refused = CallbackAttempt { attempt: 1, at: NOW, http_status: None, error: Some("could not connect".into()) };
    s.record_callback_attempt(&job2, &refused, CallbackNext::GiveUp).await.unwrap();
    assert_eq!(s.callback_status("acs-2").await.unwrap().unwrap().state, "failed");
    assert!(s.claim_callbacks(NOW + 100 * MINUTE, NOW + 101 * MINUTE, 10).await.unwrap().is_empty());
    assert_eq!(s.callback_status("acs-9").await.unwrap(), None);
}

async fn two_workers_never_claim_the_same_callback(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    for i in 0..30 {
        let ch = purchase(&*db.s, &i.to_string(), "card-1", NOW).await;
        db.s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + i)).await.unwrap();
    }
    warm(&db.s).await;
    let s = db.s.clone();
    let claimed = race(2, |_| {
        let s = s.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let jobs = s.claim_callbacks(NOW + MINUTE, NOW + 10 * MINUTE, 3).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.id));
            }
        }
    })
    .await;
    let all: Vec<i64> = claimed.concat();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a callback was claimed twice");
    assert_eq!(distinct.len(), 30, "every callback was claimed");
}

async fn contacts_and_unblocking_change_one_card(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    assert!(s.set_card_contacts("card-1", Some("new@example.se"), None, &audit("card.contacts")).await.unwrap());
    let card = s.card("card-1").await.unwrap().unwrap();
    assert_eq!((card.email.as_deref(), card.phone.as_deref()), (Some("new@example.se"), None));
    assert_eq!(s.card("card-2").await.unwrap().unwrap(), new_card("card-2").card);
    let before = all_audit(s).await.len();
    assert!(!s.set_card_contacts("card-9", None, None, &audit("card.contacts")).await.unwrap());
    assert!(!s.unblock_card("card-9", &audit("card.unblocked")).await.unwrap());
    assert_eq!(all_audit(s).await.len(), before, "nothing happened, nothing audited");

    for at in 0..3 {
        s.record_code_failure("card-1", 3, NOW + at, &audit("code.rejected")).await.unwrap();
    }
    assert_eq!(s.card("card-1").await.unwrap().unwrap().blocked_at, Some(NOW + 2));
    assert!(s.unblock_card("card-1", &audit("card.unblocked")).await.unwrap());
    let card = s.card("card-1").await.unwrap().unwrap();
    assert_eq!((card.blocked_at, card.failed_code_attempts), (None, 0));
    assert_eq!(kinds(&all_audit(s).await).last(), Some(&"card.unblocked"));
}

async fn a_cards_language_is_set_or_removed(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    assert!(s.set_card_language("card-1", Some("sv"), &audit("card.language_changed")).await.unwrap());
    assert_eq!(s.card("card-1").await.unwrap().unwrap().language.as_deref(), Some("sv"));
    assert!(s.set_card_language("card-1", None, &audit("card.language_changed")).await.unwrap());
    assert_eq!(s.card("card-1").await.unwrap().unwrap().language, None);
    assert_eq!(s.card("card-2").await.unwrap().unwrap(), new_card("card-2").card);
    assert!(!s.set_card_language("card-9", Some("ja"), &audit("card.language_changed")).await.unwrap());
    assert_eq!(kinds(&all_audit(s).await), ["card.language_changed", "card.language_changed"]);
}

/// An import row for the card `new_card(of)` registers, with other fields.
fn import_row(of: &str, language: Option<&str>, email: Option<&str>) -> NewCard {
    let mut row = new_card(&format!("{of}-row-{}", uuid::Uuid::new_v4()));
    row.pan_hash = new_card(of).pan_hash;
    (row.card.language, row.card.email, row.card.phone) = (language.map(Into::into), email.map(Into::into), None);
    row
}

async fn imports_create_update_or_leave_each_card(db: Db) {
    let s = &*db.s;
    s.create_card(&new_card("card-1")).await.unwrap();
    let rows = [
        import_row("card-1", None, None),
        import_row("card-1", Some("sv"), Some("card-1@example.jp")),
        new_card("card-2"),
        import_row("card-2", Some("ja"), None),
    ];
    let done = s.import_cards(&rows, &audit("card.imported")).await.unwrap();
    assert_eq!(
        done,
        [
            CardImported::Unchanged("card-1".into()),
            CardImported::Updated("card-1".into()),
            CardImported::Created("card-2".into()),
            CardImported::Unchanged("card-2".into()),
        ]
    );
    let card = s.card("card-1").await.unwrap().unwrap();
    assert_eq!(
        card,
        Card { language: Some("sv".into()), ..new_card("card-1").card },
        "an empty field keeps the card's"
    );
    assert_eq!(s.card("card-2").await.unwrap().unwrap(), new_card("card-2").card);
    let lines = all_audit(s).await;
    let summary: Vec<_> = lines.iter().map(|e| (e.kind.as_str(), e.card_id.as_deref(), e.detail.clone())).collect();
    assert_eq!(
        summary,
        [
            ("card.updated", Some("card-1"), json!({ "via": "import", "changed": ["language"] })),
            ("card.created", Some("card-2"), json!({ "via": "import", "changed": [] })),
        ]
    );
    assert_eq!(s.import_cards(&rows, &audit("card.imported")).await.unwrap().len(), 4);
    assert_eq!(all_audit(s).await.len(), 2, "importing again changes nothing");
    assert!(s.import_cards(&[], &audit("card.imported")).await.unwrap().is_empty());
}

async fn concurrent_imports_of_the_same_cards_create_each_once(db: Db) {
    shop_with_cards(&*db.s, &[]).await;
    warm(&db.s).await;
    let s = db.s.clone();
    let results = race(4, |_| {
        let s = s.clone();
        async move {
            let rows: Vec<NewCard> = (0..20).map(|i| import_row(&format!("card-{i}"), Some("en"), None)).collect();
            s.import_cards(&rows, &audit("card.imported")).await
        }
    })
    .await;
    let created =
        results.into_iter().flat_map(|r| r.unwrap()).filter(|i| matches!(i, CardImported::Created(_))).count();
    assert_eq!(created, 20, "each card created by one import, found by the others");
    assert_eq!(kinds(&all_audit(&*db.s).await).iter().filter(|k| **k == "card.created").count(), 20);
}

async fn a_challenge_gets_one_code(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase_with(s, "1", "card-1", NOW, |c| c.push_deadline = Some(NOW + MINUTE)).await;
    let new = new_code(
        &ch,
        NOW + 1,
        vec![
            delivery(ContactChannel::Email, DeliveryState::Pending),
            delivery(ContactChannel::Sms, DeliveryState::Restricted),
        ],
    );
    assert!(s.start_code(&new).await.unwrap());
    assert_eq!(s.one_time_code(&ch.id).await.unwrap(), Some(new.code.clone()));
    let c = s.challenge(&ch.id).await.unwrap().unwrap();
    assert_eq!(
        (c.expires_at, c.fallback_reason.as_deref(), c.push_deadline),
        (NOW + 1 + 10 * MINUTE, Some("push_timeout"), None)
    );
    let sent = s.deliveries(&ch.id).await.unwrap();
    let summary: Vec<_> = sent.iter().map(|d| (d.channel, d.state, d.send_round, d.attempts)).collect();
    assert_eq!(
        summary,
        [(ContactChannel::Email, DeliveryState::Pending, 0, 0), (ContactChannel::Sms, DeliveryState::Restricted, 0, 0)]
    );
    assert_eq!(
        (sent[0].destination_masked.as_str(), sent[0].updated_at, &sent[0].last_error),
        ("t•••@example.jp", NOW + 1, &None)
    );
    assert_eq!(kinds(&all_audit(s).await).last(), Some(&"code.issued"));

    // Never a second code, nor one for a challenge that ended.
    assert!(
        !s.start_code(&new_code(&ch, NOW + 2, vec![delivery(ContactChannel::Email, DeliveryState::Pending)]))
            .await
            .unwrap()
    );
    assert_eq!(s.deliveries(&ch.id).await.unwrap().len(), 2);
    assert_eq!(s.one_time_code(&ch.id).await.unwrap().unwrap().created_at, NOW + 1);
    let ended = purchase(s, "2", "card-1", NOW).await;
    s.end_challenge(&ending(&ended, ChallengeState::Denied, "not_me", NOW)).await.unwrap();
    assert!(!s.start_code(&new_code(&ended, NOW, vec![])).await.unwrap());
    assert_eq!(s.one_time_code(&ended.id).await.unwrap(), None);

    // The challenge's expiry only moves later.
    let long = purchase_with(s, "3", "card-1", NOW, |c| c.expires_at = NOW + 60 * MINUTE).await;
    assert!(s.start_code(&new_code(&long, NOW, vec![])).await.unwrap());
    assert_eq!(s.challenge(&long.id).await.unwrap().unwrap().expires_at, NOW + 60 * MINUTE);
}

async fn concurrent_code_starts_make_one_code(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    let ch = purchase(&*db.s, "1", "card-1", NOW).await;
    warm(&db.s).await;
    let s = db.s.clone();
    let started = race(10, |i| {
        let s = s.clone();
        let new = new_code(&ch, NOW + i as i64, vec![delivery(ContactChannel::Email, DeliveryState::Pending)]);
        async move { s.start_code(&new).await.unwrap() }
    })
    .await;
    assert_eq!(started.iter().filter(|s| **s).count(), 1, "{started:?}");
    assert_eq!(db.s.deliveries(&ch.id).await.unwrap().len(), 1);
}

async fn resends_follow_the_count_they_saw(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    s.start_code(&new_code(&ch, NOW, vec![delivery(ContactChannel::Email, DeliveryState::Pending)])).await.unwrap();
    let again = [
        delivery(ContactChannel::Email, DeliveryState::Pending),
        delivery(ContactChannel::Sms, DeliveryState::Pending),
    ];
    assert!(!s.record_resend(&ch.id, 1, NOW + 1, &again, &audit("code.resent")).await.unwrap());
    assert!(s.record_resend(&ch.id, 0, NOW + 2, &again, &audit("code.resent")).await.unwrap());
    let code = s.one_time_code(&ch.id).await.unwrap().unwrap();
    assert_eq!((code.resends, code.last_sent_at), (1, NOW + 2));
    let rounds: Vec<_> = s.deliveries(&ch.id).await.unwrap().iter().map(|d| (d.send_round, d.channel)).collect();
    assert_eq!(rounds, [(0, ContactChannel::Email), (1, ContactChannel::Email), (1, ContactChannel::Sms)]);
    assert!(!s.record_resend(&ch.id, 0, NOW + 3, &again, &audit("code.resent")).await.unwrap(), "already resent");
    assert_eq!(kinds(&all_audit(s).await).iter().filter(|k| **k == "code.resent").count(), 1);
    // A code that was used is never sent again.
    let mut end = ending(&ch, ChallengeState::Approved, "code_verified", NOW + 4);
    end.code_verified = true;
    s.end_challenge(&end).await.unwrap();
    assert!(!s.record_resend(&ch.id, 1, NOW + 5, &again, &audit("code.resent")).await.unwrap());
    assert!(!s.record_resend("ch-none", 0, NOW + 5, &again, &audit("code.resent")).await.unwrap());
}

async fn concurrent_resends_send_once(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    let ch = purchase(&*db.s, "1", "card-1", NOW).await;
    db.s.start_code(&new_code(&ch, NOW, vec![])).await.unwrap();
    warm(&db.s).await;
    let s = db.s.clone();
    let resent = race(10, |_| {
        let (s, id) = (s.clone(), ch.id.clone());
        async move {
            let d = [delivery(ContactChannel::Email, DeliveryState::Pending)];
            s.record_resend(&id, 0, NOW + 1, &d, &audit("code.resent")).await.unwrap()
        }
    })
    .await;
    assert_eq!(resent.iter().filter(|r| **r).count(), 1);
    assert_eq!(db.s.deliveries(&ch.id).await.unwrap().len(), 1);
    assert_eq!(db.s.one_time_code(&ch.id).await.unwrap().unwrap().resends, 1);
}

async fn wrong_codes_block_the_card_at_the_limit(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let failure =
        |at| async move { s.record_code_failure("card-1", 3, NOW + at, &audit("code.rejected")).await.unwrap() };
    assert_eq!(failure(1).await, CodeFailure { failures: 1, blocked_now: false });
    assert_eq!(failure(2).await, CodeFailure { failures: 2, blocked_now: false });
    assert_eq!(s.card("card-1").await.unwrap().unwrap().blocked_at, None);
    assert_eq!(failure(3).await, CodeFailure { failures: 3, blocked_now: true });
    assert_eq!(s.card("card-1").await.unwrap().unwrap().blocked_at, Some(NOW + 3));
    assert_eq!(failure(4).await, CodeFailure { failures: 4, blocked_now: false });
    assert_eq!(s.card("card-1").await.unwrap().unwrap().blocked_at, Some(NOW + 3), "blocked once");
    let lines = all_audit(s).await;
    let last = lines.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), &last.detail),
        ("code.rejected", &json!({ "consecutiveFailures": 4, "blocked": true }))
    );
    assert_eq!(lines.iter().filter(|e| e.kind == "code.rejected").count(), 4);
    assert!(s.record_code_failure("card-9", 3, NOW, &audit("code.rejected")).await.is_err());
}

async fn concurrent_wrong_codes_count_exactly_and_block_once(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    warm(&db.s).await;
    let s = db.s.clone();
    let failures = race(10, |i| {
        let s = s.clone();
        async move { s.record_code_failure("card-1", 5, NOW + i as i64, &audit("code.rejected")).await.unwrap() }
    })
    .await;
    let counts: BTreeSet<u32> = failures.iter().map(|f| f.failures).collect();
    assert_eq!(counts, (1..=10).collect(), "each failure counted once");
    assert_eq!(failures.iter().filter(|f| f.blocked_now).count(), 1);
    let blocker = failures.iter().position(|f| f.blocked_now).unwrap();
    assert_eq!(failures[blocker].failures, 5);
    assert_eq!(db.s.card("card-1").await.unwrap().unwrap().failed_code_attempts, 10);
}

async fn deliveries_are_claimed_sent_retried_or_skipped(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let ch = purchase(s, "1", "card-1", NOW).await;
    s.start_code(&new_code(
        &ch,
        NOW,
        vec![
            delivery(ContactChannel::Email, DeliveryState::Pending),
            delivery(ContactChannel::Sms, DeliveryState::Restricted),
        ],
    ))
    .await
    .unwrap();
    assert!(s.claim_deliveries(NOW - 1, NOW + MINUTE, 10).await.unwrap().is_empty(), "not due yet");
    let claimed = s.claim_deliveries(NOW, NOW + MINUTE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "restricted sends are never claimed");
    let email = claimed[0].clone();
    assert_eq!((email.channel, email.state, email.attempts), (ContactChannel::Email, DeliveryState::Pending, 0));
    assert!(s.claim_deliveries(NOW + 1, NOW + MINUTE, 10).await.unwrap().is_empty(), "leased");

    s.record_delivery_attempt(&email, NOW + 1, "smtp", Some("421 try later"), DeliveryNext::RetryAt(NOW + 5))
        .await
        .unwrap();
    let d = s.deliveries(&ch.id).await.unwrap().remove(0);
    assert_eq!(
        (d.state, d.attempts, d.last_error.as_deref(), d.updated_at),
        (DeliveryState::Pending, 1, Some("421 try later"), NOW + 1)
    );
    assert!(s.claim_deliveries(NOW + 4, NOW + MINUTE, 10).await.unwrap().is_empty());
    let retry = s.claim_deliveries(NOW + 5, NOW + MINUTE, 10).await.unwrap();
    assert_eq!(retry, std::slice::from_ref(&d));
    s.record_delivery_attempt(&retry[0], NOW + 6, "smtp", None, DeliveryNext::Sent).await.unwrap();
    let d = s.deliveries(&ch.id).await.unwrap().remove(0);
    assert_eq!((d.state, d.attempts, d.last_error), (DeliveryState::Sent, 2, None));
    assert!(s.claim_deliveries(NOW + 100 * MINUTE, NOW + 101 * MINUTE, 10).await.unwrap().is_empty());

    // A skipped send was never tried (no attempt); a failed one was.
    let other = purchase(s, "2", "card-1", NOW).await;
    let sends = vec![
        delivery(ContactChannel::Email, DeliveryState::Pending),
        delivery(ContactChannel::Sms, DeliveryState::Pending),
    ];
    s.start_code(&new_code(&other, NOW, sends)).await.unwrap();
    let jobs = s.claim_deliveries(NOW, NOW + MINUTE, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let job = |channel| jobs.iter().find(|j| j.channel == channel).unwrap();
    s.record_delivery_attempt(job(ContactChannel::Email), NOW + 1, "outbox", None, DeliveryNext::Skipped)
        .await
        .unwrap();
    let sms = job(ContactChannel::Sms);
    s.record_delivery_attempt(sms, NOW + 1, "twilio", Some("21211 invalid number"), DeliveryNext::Failed)
        .await
        .unwrap();
    let states: Vec<_> = s.deliveries(&other.id).await.unwrap().iter().map(|d| (d.state, d.attempts)).collect();
    assert_eq!(states, [(DeliveryState::Skipped, 0), (DeliveryState::Failed, 1)]);
    assert!(s.claim_deliveries(NOW + 100 * MINUTE, NOW + 101 * MINUTE, 10).await.unwrap().is_empty());
}

async fn two_workers_never_claim_the_same_delivery(db: Db) {
    shop_with_cards(&*db.s, &["card-1"]).await;
    for i in 0..15 {
        let ch = purchase(&*db.s, &i.to_string(), "card-1", NOW).await;
        let sends = vec![
            delivery(ContactChannel::Email, DeliveryState::Pending),
            delivery(ContactChannel::Sms, DeliveryState::Pending),
        ];
        db.s.start_code(&new_code(&ch, NOW + i, sends)).await.unwrap();
    }
    warm(&db.s).await;
    let s = db.s.clone();
    let claimed = race(2, |_| {
        let s = s.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let jobs = s.claim_deliveries(NOW + MINUTE, NOW + 10 * MINUTE, 4).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.id));
            }
        }
    })
    .await;
    let all: Vec<i64> = claimed.concat();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a delivery was claimed twice");
    assert_eq!(distinct.len(), 30);
}

async fn pushes_past_their_deadline_are_found(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let second = purchase_with(s, "1", "card-1", NOW, |c| c.push_deadline = Some(NOW + 20)).await;
    let first = purchase_with(s, "2", "card-1", NOW, |c| c.push_deadline = Some(NOW + 10)).await;
    purchase_with(s, "3", "card-1", NOW, |c| c.push_deadline = Some(NOW + 1_000)).await;
    purchase(s, "4", "card-1", NOW).await;
    let ended = purchase_with(s, "5", "card-1", NOW, |c| c.push_deadline = Some(NOW)).await;
    s.end_challenge(&ending(&ended, ChallengeState::Approved, "approved", NOW)).await.unwrap();
    assert_eq!(s.challenges_past_push_deadline(NOW + 20, 10).await.unwrap(), [first.clone(), second.clone()]);
    assert_eq!(s.challenges_past_push_deadline(NOW + 20, 1).await.unwrap(), std::slice::from_ref(&first));
    // Falling back to a code takes a challenge off the list.
    s.start_code(&new_code(&first, NOW + 20, vec![])).await.unwrap();
    assert_eq!(s.challenges_past_push_deadline(NOW + 20, 10).await.unwrap(), [second]);
}

async fn the_message_outbox_lists_newest_first(db: Db) {
    let s = &*db.s;
    s.record_outbox_message(ContactChannel::Email, "taro@example.jp", Some("Your code"), "123456", NOW).await.unwrap();
    s.record_outbox_message(ContactChannel::Sms, "+46701234567", None, "654321", NOW + 1).await.unwrap();
    let all = s.outbox_messages(10).await.unwrap();
    assert_eq!(all.len(), 2);
    let (sms, email) = (&all[0], &all[1]);
    assert_eq!(
        (sms.channel, sms.recipient.as_str(), &sms.subject, sms.body.as_str(), sms.created_at),
        (ContactChannel::Sms, "+46701234567", &None, "654321", NOW + 1)
    );
    assert_eq!((email.channel, email.subject.as_deref()), (ContactChannel::Email, Some("Your code")));
    assert!(sms.id > email.id);
    assert_eq!(s.outbox_messages(1).await.unwrap(), std::slice::from_ref(sms));
}

/// Appends `line`: with the purchase it is about, if it is about one (as
/// every such line is: an AReq's, an ending's, a code's).
async fn append_line(s: &dyn Storage, line: AuditEvent) {
    match &line.acs_trans_id {
        Some(acs) => {
            let authentication = authentication(acs, line.card_id.as_deref(), line.at);
            let new = NewAuthentication { authentication, challenge: None, audit: line };
            s.record_authentication(&new).await.unwrap();
        }
        None => s.append_audit(&line).await.unwrap(),
    }
}

async fn audit_lines_are_kept_in_order_and_filtered(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    for (i, (card, acs)) in
        [(Some("card-1"), Some("acs-1")), (Some("card-2"), None), (Some("card-1"), Some("acs-2")), (None, None)]
            .into_iter()
            .enumerate()
    {
        let mut e = AuditEvent::new(NOW + i as i64, &format!("kind.{i}"), format!("operator:op-{i}"), "ok");
        e.card_id = card.map(str::to_owned);
        e.acs_trans_id = acs.map(str::to_owned);
        e.challenge_id = Some(format!("ch-{i}"));
        e.device_id = (i == 0).then(|| "dev-1".to_owned());
        e.detail = json!({ "i": i, "nested": { "list": [true, "ü", 1.5] } });
        append_line(s, e).await;
    }
    let all = all_audit(s).await;
    assert_eq!(kinds(&all), ["kind.0", "kind.1", "kind.2", "kind.3"]);
    assert_eq!(all[0].detail, json!({ "i": 0, "nested": { "list": [true, "ü", 1.5] } }));
    assert_eq!((all[0].actor.as_str(), all[0].device_id.as_deref(), all[0].at), ("operator:op-0", Some("dev-1"), NOW));
    let search = |filter: AuditFilter| async move { kinds(&audit_where(s, filter).await).join(" ") };
    let by_card = |card: &str| AuditFilter { card_id: Some(card.into()), limit: 10, ..AuditFilter::default() };
    assert_eq!(search(by_card("card-1")).await, "kind.0 kind.2");
    assert_eq!(search(AuditFilter { acs_trans_id: Some("acs-2".into()), ..by_card("card-2") }).await, "");
    let acs = AuditFilter { acs_trans_id: Some("acs-2".into()), limit: 10, ..AuditFilter::default() };
    assert_eq!(search(acs).await, "kind.2");
    let every = AuditFilter { limit: 10, ..AuditFilter::default() };
    assert_eq!(search(AuditFilter { device_id: Some("dev-1".into()), ..every.clone() }).await, "kind.0");
    assert_eq!(search(AuditFilter { actor: Some("operator:op-3".into()), ..every.clone() }).await, "kind.3");
    assert_eq!(search(AuditFilter { kind: Some("kind.1".into()), ..every.clone() }).await, "kind.1");
    assert_eq!(
        search(AuditFilter { outcome: Some("ok".into()), ..every.clone() }).await,
        "kind.0 kind.1 kind.2 kind.3"
    );
    assert_eq!(search(AuditFilter { outcome: Some("denied".into()), ..every.clone() }).await, "");
    // A time range: from inclusive, until exclusive.
    assert_eq!(
        search(AuditFilter { from: Some(NOW + 1), until: Some(NOW + 3), ..every.clone() }).await,
        "kind.1 kind.2"
    );
    // Pages: in order, after the last one seen, never more than the limit.
    assert_eq!(search(AuditFilter { limit: 2, ..every.clone() }).await, "kind.0 kind.1");
    assert_eq!(search(AuditFilter { limit: 0, ..every.clone() }).await, "kind.0", "a limit of 0 reads as 1");
    let first = s.audit_events(&AuditFilter { limit: 2, ..every.clone() }).await.unwrap();
    assert!(first[0].id < first[1].id, "ids follow the order appended");
    let after = AuditFilter { after_id: Some(first[1].id), ..every.clone() };
    assert_eq!(search(after.clone()).await, "kind.2 kind.3");
    assert_eq!(search(AuditFilter { card_id: Some("card-1".into()), ..after }).await, "kind.2");
}

/// A search by card finds the lines about it whether or not they are
/// about a purchase (those about one are found through it), in the order
/// appended, and pages across both.
async fn audit_lines_about_a_card_are_found_with_or_without_a_purchase(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    let line = |i: i64, card: Option<&str>, acs: Option<&str>| {
        let mut e = AuditEvent::new(NOW + i, &format!("kind.{i}"), "system".into(), "ok");
        e.card_id = card.map(str::to_owned);
        e.acs_trans_id = acs.map(str::to_owned);
        e
    };
    append_line(s, line(0, Some("card-1"), Some("acs-1"))).await;
    append_line(s, line(1, Some("card-1"), None)).await;
    append_line(s, line(2, Some("card-2"), Some("acs-2"))).await;
    // More lines about card-1's purchase: one naming no card, one the card.
    s.append_audit(&line(3, None, Some("acs-1"))).await.unwrap();
    s.append_audit(&line(4, Some("card-1"), Some("acs-1"))).await.unwrap();
    append_line(s, line(5, Some("card-2"), None)).await;
    append_line(s, line(6, Some("card-1"), None)).await;

    let search = |filter: AuditFilter| async move { kinds(&audit_where(s, filter).await).join(" ") };
    let by_card = |card: &str| AuditFilter { card_id: Some(card.into()), limit: 10, ..AuditFilter::default() };
    assert_eq!(search(by_card("card-1")).await, "kind.0 kind.1 kind.4 kind.6");
    assert_eq!(search(by_card("card-2")).await, "kind.2 kind.5");
    assert_eq!(search(by_card("card-3")).await, "");
    assert_eq!(search(AuditFilter { acs_trans_id: Some("acs-1".into()), ..by_card("card-1") }).await, "kind.0 kind.4");
    assert_eq!(
        search(AuditFilter { from: Some(NOW + 1), until: Some(NOW + 6), ..by_card("card-1") }).await,
        "kind.1 kind.4"
    );
    let first = s.audit_events(&AuditFilter { limit: 2, ..by_card("card-1") }).await.unwrap();
    assert_eq!(kinds(&first.iter().map(|r| r.event.clone()).collect::<Vec<_>>()), ["kind.0", "kind.1"]);
    let after = AuditFilter { after_id: Some(first[1].id), ..by_card("card-1") };
    assert_eq!(search(after).await, "kind.4 kind.6");
}

fn window_session(acs: &str, token: &str, at: i64) -> WindowSession {
    WindowSession {
        acs_trans_id: acs.into(),
        token_hash: token.as_bytes().to_vec(),
        three_ds_session_data: Some("c2Vzc2lvbg".into()),
        window_size: "05".into(),
        language: "sv".into(),
        created_at: at,
        last_active_at: at,
        verified_at: None,
    }
}

async fn a_window_opens_once_and_its_activity_only_moves_forward(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    purchase(s, "1", "card-1", NOW).await;
    let w = window_session("acs-1", "token-1", NOW + 1);
    assert!(s.open_window_session(&w).await.unwrap());
    assert!(
        !s.open_window_session(&window_session("acs-1", "token-2", NOW + 2)).await.unwrap(),
        "a CReq is accepted once"
    );
    assert_eq!(s.window_session(b"token-1").await.unwrap(), Some(w.clone()));
    assert_eq!(s.window_session(b"token-2").await.unwrap(), None);

    s.update_window_session("acs-1", NOW + 10, "ja", false).await.unwrap();
    s.update_window_session("acs-1", NOW + 5, "en", false).await.unwrap();
    let seen = s.window_session(b"token-1").await.unwrap().unwrap();
    assert_eq!((seen.last_active_at, seen.language.as_str(), seen.verified_at), (NOW + 10, "en", None));
    s.update_window_session("acs-1", NOW + 20, "en", true).await.unwrap();
    s.update_window_session("acs-1", NOW + 30, "en", true).await.unwrap();
    s.update_window_session("acs-1", NOW + 40, "en", false).await.unwrap();
    let seen = s.window_session(b"token-1").await.unwrap().unwrap();
    assert_eq!((seen.last_active_at, seen.verified_at), (NOW + 40, Some(NOW + 20)), "verified once, kept");
}

async fn window_sessions_of_ended_purchases_are_deleted(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let _pending = purchase(s, "1", "card-1", NOW).await;
    let early = purchase(s, "2", "card-1", NOW).await;
    let late = purchase(s, "3", "card-1", NOW).await;
    let never_opened = purchase(s, "4", "card-1", NOW).await;
    let other = purchase(s, "5", "card-1", NOW).await;
    for n in ["1", "2", "3", "5"] {
        s.open_window_session(&window_session(&format!("acs-{n}"), &format!("t{n}"), NOW + 1)).await.unwrap();
    }
    s.end_challenge(&ending(&early, ChallengeState::Approved, "approved", NOW + 10)).await.unwrap();
    s.end_challenge(&ending(&late, ChallengeState::Expired, "expired", NOW + 20)).await.unwrap();
    s.end_challenge(&ending(&never_opened, ChallengeState::Cancelled, "creq_timeout", NOW + 5)).await.unwrap();
    s.end_challenge(&ending(&other, ChallengeState::Denied, "not_me", NOW + 10)).await.unwrap();

    assert_eq!(s.delete_ended_window_sessions(NOW + 9, 10).await.unwrap(), 0);
    assert_eq!(s.delete_ended_window_sessions(NOW + 10, 1).await.unwrap(), 1, "the limit holds");
    assert_eq!(s.delete_ended_window_sessions(NOW + 10, 10).await.unwrap(), 1);
    assert!(s.window_session(b"t2").await.unwrap().is_none() && s.window_session(b"t5").await.unwrap().is_none());
    assert!(s.window_session(b"t3").await.unwrap().is_some(), "ended later: kept");
    assert_eq!(s.delete_ended_window_sessions(NOW + 1_000, 10).await.unwrap(), 1);
    assert!(s.window_session(b"t3").await.unwrap().is_none());
    assert!(s.window_session(b"t1").await.unwrap().is_some(), "a pending purchase keeps its window");
    assert_eq!(s.delete_ended_window_sessions(NOW + 1_000, 10).await.unwrap(), 0);
}

async fn challenges_without_or_idle_in_their_window(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1"]).await;
    let opened = purchase(s, "1", "card-1", NOW).await;
    let never_opened_late = purchase(s, "2", "card-1", NOW + 20).await;
    let never_opened = purchase(s, "3", "card-1", NOW + 10).await;
    let ended = purchase(s, "4", "card-1", NOW).await;
    let busy = purchase(s, "5", "card-1", NOW).await;
    s.end_challenge(&ending(&ended, ChallengeState::Denied, "not_me", NOW + 1)).await.unwrap();
    s.open_window_session(&window_session("acs-1", "t1", NOW + 1)).await.unwrap();
    s.open_window_session(&window_session("acs-4", "t4", NOW + 1)).await.unwrap();
    s.open_window_session(&window_session("acs-5", "t5", NOW + 1)).await.unwrap();
    s.update_window_session("acs-5", NOW + 100, "sv", false).await.unwrap();

    assert_eq!(s.challenges_without_window(NOW + 20, 10).await.unwrap(), [never_opened.clone(), never_opened_late]);
    assert_eq!(s.challenges_without_window(NOW + 19, 10).await.unwrap(), std::slice::from_ref(&never_opened));
    assert_eq!(s.challenges_without_window(NOW + 20, 1).await.unwrap(), [never_opened]);
    assert_eq!(s.challenges_idle_in_window(NOW + 50, 10).await.unwrap(), std::slice::from_ref(&opened));
    assert_eq!(s.challenges_idle_in_window(NOW + 100, 10).await.unwrap(), [opened, busy]);
    assert!(s.challenges_idle_in_window(NOW, 10).await.unwrap().is_empty());
}

async fn security_questions_are_replaced_whole(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    let q = |position, text: &str| SecurityQuestion {
        position,
        question: text.into(),
        answer_hash: text.as_bytes().to_vec(),
    };
    assert!(
        s.set_security_questions("card-1", &[q(2, "pet"), q(1, "school")], &audit("card.questions")).await.unwrap()
    );
    assert_eq!(s.security_questions("card-1").await.unwrap(), [q(1, "school"), q(2, "pet")]);
    assert!(s.set_security_questions("card-1", &[q(1, "city")], &audit("card.questions")).await.unwrap());
    assert_eq!(s.security_questions("card-1").await.unwrap(), [q(1, "city")]);
    assert!(s.security_questions("card-2").await.unwrap().is_empty());
    let before = all_audit(s).await.len();
    assert!(!s.set_security_questions("card-9", &[q(1, "x")], &audit("card.questions")).await.unwrap());
    assert_eq!(all_audit(s).await.len(), before);
    assert!(s.security_questions("card-9").await.unwrap().is_empty());
}

/// A master-key rotation replaces each kind of stored hash or seal by
/// value, in its own row only, once.
async fn rekeying_replaces_one_stored_value_where_it_is(db: Db) {
    let s = &*db.s;
    shop_with_cards(s, &["card-1", "card-2"]).await;
    assert!(s.rekey(Rekeyed::PanHash, b"pan-hash-card-1", b"new-pan-1").await.unwrap());
    assert!(!s.rekey(Rekeyed::PanHash, b"pan-hash-card-1", b"new-pan-x").await.unwrap(), "once");
    assert_eq!(s.card_by_pan_hash(b"pan-hash-card-1").await.unwrap(), None);
    assert_eq!(s.card_by_pan_hash(b"new-pan-1").await.unwrap().map(|c| c.id).as_deref(), Some("card-1"));
    assert_eq!(s.card_by_pan_hash(b"pan-hash-card-2").await.unwrap().map(|c| c.id).as_deref(), Some("card-2"));

    // A requestor's key, current or previous in its overlap.
    s.create_requestor(&requestor("shop-b"), b"key-1").await.unwrap();
    let until = NOW + MINUTE;
    assert!(s.rotate_requestor_credential("shop-b", Credential::ApiKey, b"key-2", until, &audit("r")).await.unwrap());
    assert!(s.rekey(Rekeyed::RequestorApiKey, b"key-1", b"key-1-new").await.unwrap());
    assert!(s.rekey(Rekeyed::RequestorApiKey, b"key-2", b"key-2-new").await.unwrap());
    let found = |key: &'static [u8]| async move { s.requestor_by_key(key, NOW).await.unwrap().map(|r| r.id) };
    assert_eq!((found(b"key-1").await, found(b"key-2").await), (None, None));
    assert_eq!(found(b"key-1-new").await.as_deref(), Some("shop-b"), "still the previous key, same overlap");
    assert_eq!(found(b"key-2-new").await.as_deref(), Some("shop-b"));
    assert_eq!(s.requestor_by_key(b"key-1-new", until).await.unwrap(), None);
    assert!(!s.rekey(Rekeyed::OperatorApiKey, b"key-2-new", b"x").await.unwrap(), "an operator's, not a requestor's");

    s.create_operator(&operator("op-1", OperatorRole::Admin), b"op-key").await.unwrap();
    assert!(s.rekey(Rekeyed::OperatorApiKey, b"op-key", b"op-key-new").await.unwrap());
    assert_eq!(s.operator_by_key(b"op-key").await.unwrap(), None);
    assert_eq!(s.operator_by_key(b"op-key-new").await.unwrap().map(|o| o.id).as_deref(), Some("op-1"));

    // Sealed callback secrets, current and previous.
    let mut r = requestor("shop-c");
    r.callback_secret = StoredSecret::Sealed(b"sealed-1".to_vec());
    s.create_requestor(&r, b"key-c").await.unwrap();
    assert!(
        s.rotate_requestor_credential("shop-c", Credential::CallbackSecret, b"sealed-2", until, &audit("r"))
            .await
            .unwrap()
    );
    assert!(s.rekey(Rekeyed::CallbackSecret, b"sealed-1", b"resealed-1").await.unwrap());
    assert!(s.rekey(Rekeyed::CallbackSecret, b"sealed-2", b"resealed-2").await.unwrap());
    let r = s.requestor("shop-c").await.unwrap().unwrap();
    assert_eq!(r.callback_secret, StoredSecret::Sealed(b"resealed-2".to_vec()));
    assert_eq!(r.previous_callback_secret, Some(PreviousSecret { sealed: b"resealed-1".to_vec(), until }));

    // A security answer: of the card named only.
    let q = |position, hash: &str| SecurityQuestion { position, question: "q".into(), answer_hash: hash.into() };
    for card in ["card-1", "card-2"] {
        s.set_security_questions(card, &[q(0, "same"), q(1, "other")], &audit("q")).await.unwrap();
    }
    let card_2 = Rekeyed::SecurityAnswer { card_id: "card-2" };
    assert!(s.rekey(card_2, b"same", b"new").await.unwrap());
    assert!(!s.rekey(card_2, b"same", b"newer").await.unwrap());
    assert_eq!(s.security_questions("card-2").await.unwrap(), [q(0, "new"), q(1, "other")]);
    assert_eq!(s.security_questions("card-1").await.unwrap(), [q(0, "same"), q(1, "other")]);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_db()).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::postgres_db()).await
                }
            )*
        }
    };
}

contract!(
    ping_answers,
    requestors_are_found_by_id_and_by_key,
    a_rotated_key_overlaps_until_its_time_or_revocation,
    a_rotated_callback_secret_keeps_the_previous_one_for_the_overlap,
    operators_are_found_by_key_with_their_role,
    cards_are_found_by_id_and_card_number_hash,
    card_activity_sums_the_cards_history,
    card_activity_counts_stop_at_their_limits,
    a_purchase_reads_card_history_and_devices_at_once,
    failing_writes_among_many_leave_the_others_whole,
    enrolment_codes_run_out_of_attempts,
    enrolment_creates_a_device_or_reuses_its_key,
    one_enrolment_code_enrols_once_however_many_try,
    one_key_enrolled_twice_at_once_is_one_device,
    devices_enrolments_and_push_settings,
    nonces_are_refused_again_within_the_window,
    old_nonces_are_forgotten_in_bulk,
    one_nonce_used_at_once_is_accepted_once,
    authentications_and_challenges_are_stored_whole,
    a_reused_three_ds_server_trans_id_stores_nothing,
    pending_challenges_for_a_device_are_its_cards_open_ones,
    a_challenge_for_a_device_says_whether_it_is_enrolled,
    a_challenge_ends_once_with_all_it_causes,
    twenty_concurrent_endings_have_one_winner,
    endings_and_codes_wake_the_challenges_watchers,
    a_verified_code_is_spent_and_clears_the_wrong_ones,
    a_code_check_reads_the_purchase_its_challenge_card_and_code,
    expired_challenges_are_the_pending_ones_past_expiry,
    the_push_outbox_lists_newest_first,
    a_purchase_status_reads_the_purchase_its_challenge_and_result_delivery,
    callbacks_are_leased_retried_and_settled,
    two_workers_never_claim_the_same_callback,
    contacts_and_unblocking_change_one_card,
    a_cards_language_is_set_or_removed,
    imports_create_update_or_leave_each_card,
    concurrent_imports_of_the_same_cards_create_each_once,
    a_challenge_gets_one_code,
    concurrent_code_starts_make_one_code,
    resends_follow_the_count_they_saw,
    concurrent_resends_send_once,
    wrong_codes_block_the_card_at_the_limit,
    concurrent_wrong_codes_count_exactly_and_block_once,
    deliveries_are_claimed_sent_retried_or_skipped,
    two_workers_never_claim_the_same_delivery,
    pushes_past_their_deadline_are_found,
    the_message_outbox_lists_newest_first,
    audit_lines_are_kept_in_order_and_filtered,
    audit_lines_about_a_card_are_found_with_or_without_a_purchase,
    a_window_opens_once_and_its_activity_only_moves_forward,
    challenges_without_or_idle_in_their_window,
    window_sessions_of_ended_purchases_are_deleted,
    security_questions_are_replaced_whole,
    rekeying_replaces_one_stored_value_where_it_is,
);

// ---- upgrades ------------------------------------------------------------------

/// What an older build left — a requestor whose callback secret was kept in
/// the clear, an operator from before revocation — reads back whole after
/// the upgrade, and the clear secret is gone once sealed. (Each backend's
/// test then plays a node of the older build, still running during a
/// rolling upgrade: its statements keep working against the new schema.)
async fn an_older_database_upgrades_whole(s: &dyn Storage) {
    let r = s.requestor_by_key(b"key-old", NOW).await.unwrap().expect("the requestor, by its old key");
    assert_eq!((r.id.as_str(), r.callback_secret.clone()), ("shop-old", StoredSecret::Legacy("clear-secret".into())));
    assert_eq!((r.previous_callback_secret, r.previous_key_expires_at, r.created_at), (None, None, NOW));
    let op = s.operator_by_key(b"op-key-old").await.unwrap().expect("the operator, by its key");
    assert_eq!((op.role, op.revoked_at), (OperatorRole::Admin, None));
    assert!(s.seal_legacy_callback_secret("shop-old", "clear-secret", b"sealed").await.unwrap());
    let sealed = s.requestor("shop-old").await.unwrap().unwrap().callback_secret;
    assert_eq!(sealed, StoredSecret::Sealed(b"sealed".to_vec()));
}

#[test]
fn an_older_sqlite_database_upgrades_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    assert_eq!(SqliteStorage::migrate_to(&path, 3, NOW).unwrap(), 3);
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute(
        "INSERT INTO requestors (id, name, api_key_hash, callback_secret, created_at) \
         VALUES ('shop-old', 'Old shop', ?1, 'clear-secret', ?2)",
        rusqlite::params![b"key-old".to_vec(), NOW],
    )
    .unwrap();
    old.execute(
        "INSERT INTO operators (id, name, role, api_key_hash, created_at) VALUES ('op-old', 'Ops', 'admin', ?1, ?2)",
        rusqlite::params![b"op-key-old".to_vec(), NOW],
    )
    .unwrap();
    let s = SqliteStorage::open(&path, 2, Synchronous::Normal, NOW).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(an_older_database_upgrades_whole(&s));
    let found: String = old
        .query_row("SELECT id, name, callback_secret FROM requestors WHERE api_key_hash = ?1", [b"key-old"], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(found, "shop-old");
    old.execute(
        "INSERT INTO requestors (id, name, api_key_hash, callback_secret, created_at) \
         VALUES ('shop-new', 'New shop', ?1, 'another-secret', ?2)",
        rusqlite::params![b"key-new".to_vec(), NOW],
    )
    .unwrap();
    let added = runtime.block_on(s.requestor("shop-new")).unwrap().unwrap();
    assert_eq!(added.callback_secret, StoredSecret::Legacy("another-secret".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_postgres_database_upgrades_whole() {
    let url = cluster().create_database();
    assert_eq!(PostgresStorage::migrate_to(&url, 2, NOW).unwrap(), 2);
    let (old, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    old.execute(
        "INSERT INTO requestors (id, name, api_key_hash, callback_secret, created_at) \
         VALUES ('shop-old', 'Old shop', $1, 'clear-secret', $2)",
        &[&b"key-old".as_slice(), &NOW],
    )
    .await
    .unwrap();
    old.execute(
        "INSERT INTO operators (id, name, role, api_key_hash, created_at) VALUES ('op-old', 'Ops', 'admin', $1, $2)",
        &[&b"op-key-old".as_slice(), &NOW],
    )
    .await
    .unwrap();
    let s = PostgresStorage::open(&url, None, 2, NOW).unwrap();
    an_older_database_upgrades_whole(&s).await;
    let found = old
        .query_one(
            "SELECT id, name, callback_secret FROM requestors WHERE api_key_hash = $1",
            &[&b"key-old".as_slice()],
        )
        .await
        .unwrap();
    assert_eq!(found.get::<_, String>(0), "shop-old");
    old.execute(
        "INSERT INTO requestors (id, name, api_key_hash, callback_secret, created_at) \
         VALUES ('shop-new', 'New shop', $1, 'another-secret', $2)",
        &[&b"key-new".as_slice(), &NOW],
    )
    .await
    .unwrap();
    let added = s.requestor("shop-new").await.unwrap().unwrap();
    assert_eq!(added.callback_secret, StoredSecret::Legacy("another-secret".into()));
    drop(old);
    let _ = connection.await;
}

// ---- PostgreSQL only: what SQLite cannot have --------------------------------

/// The database stops under a running pool: every call says `Unavailable`
/// (never hangs, never panics); once it is back the same pool reconnects
/// and everything committed before is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_unavailable_then_recovers() {
    let own = Cluster::start();
    let url = own.create_database();
    let s: Arc<dyn Storage> = Arc::new(PostgresStorage::open(&url, None, 4, NOW).unwrap());
    shop_with_cards(&*s, &["card-1"]).await;
    let ch = purchase(&*s, "1", "card-1", NOW).await;

    let stop = std::time::Instant::now();
    own.stop();
    let unavailable = |r: StorageResult<()>| matches!(r, Err(StorageError::Unavailable(_)));
    assert!(unavailable(s.ping().await));
    assert!(unavailable(s.card("card-1").await.map(|_| ())));
    assert!(unavailable(s.create_card(&new_card("card-2")).await));
    assert!(unavailable(
        s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + 1)).await.map(|_| ())
    ));
    assert!(stop.elapsed() < std::time::Duration::from_secs(10), "calls fail fast: {:?}", stop.elapsed());

    own.restart();
    let mut back = false;
    for _ in 0..100 {
        if s.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(back, "the pool reconnected");
    assert_eq!(s.card("card-1").await.unwrap().unwrap().id, "card-1");
    assert_eq!(s.card("card-2").await.unwrap(), None, "the refused write did not happen");
    assert!(s.end_challenge(&ending(&ch, ChallengeState::Approved, "approved", NOW + 2)).await.unwrap());
}

/// A change committed through one node's storage wakes the watchers of
/// another node's (PostgreSQL's `NOTIFY`, heard by its listener). When the
/// database goes away the watchers are told to fall back on reading again,
/// and once it is back the listener reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_wakes_another_and_the_listener_reconnects() {
    let own = Cluster::start();
    let url = own.create_database();
    let a = PostgresStorage::open(&url, None, 2, NOW).unwrap();
    let b = PostgresStorage::open(&url, None, 2, NOW).unwrap();
    shop_with_cards(&b, &["card-1"]).await;
    let decided = purchase(&b, "1", "card-1", NOW).await;
    let coded = purchase(&b, "2", "card-1", NOW).await;
    let events = a.challenge_events();
    drop(events.watch());
    until_live(events).await;
    let mut watch = events.watch();

    let sent = std::time::Instant::now();
    assert!(b.end_challenge(&ending(&decided, ChallengeState::Approved, "approved", NOW + 1)).await.unwrap());
    assert!(watch.changed(&decided.id, WAKE).await, "the other node's ending woke the watch");
    eprintln!("a commit on node B woke a watcher on node A after {:?}", sent.elapsed());
    assert!(!b.challenge_events().is_live(), "B never watched, so it does not listen");

    own.stop();
    assert!(watch.changed(&coded.id, WAKE).await, "losing the listener wakes the watchers");
    assert!(!events.is_live());
    assert_eq!(events.reread_interval(), ChallengeEvents::REREAD_UNLIVE);

    own.restart();
    until_live(events).await;
    let mut watch = events.watch();
    assert!(b.start_code(&new_code(&coded, NOW + 2, vec![])).await.unwrap());
    assert!(watch.changed(&coded.id, WAKE).await, "the reconnected listener hears the other node again");
}

/// Several nodes starting at once on an empty database: one migrates, the
/// others wait for it and find the schema made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let url = cluster().create_database();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStorage::open(&url, None, 1, NOW).map(|_| ()))
        })
        .collect();
    for node in opened {
        node.join().unwrap().unwrap();
    }
    let s = PostgresStorage::open(&url, None, 1, NOW).unwrap();
    s.ping().await.unwrap();
}

/// TLS to the database, on a cluster that refuses clear connections, its
/// certificate issued to `localhost` by an authority of the test's own.
/// Each mode connects (and then works: schema, pool, the listener) where
/// it can verify the server, and is refused at open where it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_only_to_a_server_it_can_verify() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut authority = CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority.distinguished_name.push(rcgen::DnType::CommonName, "Countersign test CA");
    let authority = CertifiedIssuer::self_signed(authority, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &authority).unwrap();
    let own = Cluster::start_tls(&cert.pem(), &key.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, authority.pem()).unwrap();
    let ip_url = own.create_database();
    let name_url = ip_url.replace("@127.0.0.1:", "@localhost:");

    let opens = |url: String, ca: Option<&std::path::Path>| PostgresStorage::open(&url, ca, 2, NOW);
    let refused = |url: String, ca: Option<&std::path::Path>| match opens(url.clone(), ca) {
        Err(StorageError::Unavailable(why)) => why,
        Err(other) => panic!("{url}: {other:?}"),
        Ok(_) => panic!("{url} opened"),
    };
    // The cluster takes no clear connection: what opens below used TLS.
    let clear = refused(ip_url.clone(), None);
    assert!(clear.contains("no encryption"), "{clear}");

    let modes = [
        format!("{name_url}?sslmode=verify-full"),
        format!("{ip_url}?sslmode=verify-ca"),
        format!("{ip_url}?sslmode=require"),
    ];
    for (i, url) in modes.into_iter().enumerate() {
        let s = opens(url.clone(), Some(&ca_file)).unwrap_or_else(|e| panic!("{url}: {e}"));
        let card = format!("card-{i}");
        s.create_card(&new_card(&card)).await.unwrap();
        assert_eq!(s.card(&card).await.unwrap().unwrap().id, card);
        let events = s.challenge_events();
        drop(events.watch());
        until_live(events).await;
    }

    // An authority it does not trust (the built-in roots), or a name the
    // certificate does not carry: refused, saying why.
    let unknown = refused(format!("{name_url}?sslmode=verify-full"), None);
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    assert!(refused(format!("{ip_url}?sslmode=require"), None).contains("UnknownIssuer"));
    let wrong_name = refused(format!("{ip_url}?sslmode=verify-full"), Some(&ca_file));
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
}

/// `database.password_file` keeps the password out of the URL, and
/// neither a wrong one nor a missing file puts it in an error.
#[test]
fn the_password_can_come_from_a_file() {
    use countersign_server::app::open_storage;
    use countersign_server::config::Config;
    let password = "s3cret with spaces/and:colons@";
    let cluster = Cluster::start_with_password("countersign_app", password);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let url = cluster.create_database().replace("postgres://postgres@", "postgres://countersign_app@");
    let config = |url: &str, file: &std::path::Path| {
        let env = [
            ("COUNTERSIGN_DATABASE__URL".to_owned(), url.to_owned()),
            ("COUNTERSIGN_DATABASE__PASSWORD_FILE".to_owned(), file.display().to_string()),
        ];
        Config::load(None, env).unwrap()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();

    let storage = open_storage(&config(&url, &file), NOW).expect("the password from the file logs in");
    runtime.block_on(storage.ping()).unwrap();

    // A wrong password is refused, and the error does not hold it.
    std::fs::write(&file, "not-the-password\n").unwrap();
    let err = open_storage(&config(&url, &file), NOW).err().expect("a wrong password is refused").to_string();
    assert!(!err.contains("not-the-password") && err.contains("PostgreSQL"), "{err}");

    // Both a password in the URL and a file: refused, naming the keys only.
    let with_password = url.replace("countersign_app@", "countersign_app:inline@");
    let err = open_storage(&config(&with_password, &file), NOW).err().unwrap().to_string();
    assert!(err.contains("database.password_file") && !err.contains("inline"), "{err}");

    // A missing file is named.
    let err = open_storage(&config(&url, &dir.path().join("absent")), NOW).err().unwrap().to_string();
    assert!(err.contains("database.password_file") && err.contains("absent"), "{err}");
}

#[test]
fn a_bad_url_or_unreachable_database_is_refused_at_open() {
    let refused = |url: &str| match PostgresStorage::open(url, None, 1, NOW) {
        Err(StorageError::Unavailable(message)) => message,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened {url}"),
    };
    assert!(refused("postgres://x@127.0.0.1:1/none").contains("error connecting"), "a closed port");
    assert!(refused("postgres://x@127.0.0.1/db?sslmode=prefer").contains("without TLS"));
    assert!(refused("postgres://x@127.0.0.1/db?nonsense=1").contains("not a PostgreSQL URL"));
}
