//! The APNs and FCM clients against local HTTP/2 servers that keep each
//! provider's contract: they verify the ES256 provider token and the RS256
//! grant assertion with the public key, check the headers, the payload and
//! its size, and answer every class of error. The tests assert what the
//! server does about each answer: retries counted, fallback within bounds,
//! devices marked unreachable, credentials renewed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use countersign_core::protocol::wire::PushPayload;
use countersign_server::App;
use countersign_server::clock::{Clock, ManualClock, SystemClock};
use countersign_server::config::Config;
use countersign_server::flows::{admin, authenticate, codes};
use countersign_server::notifier::{
    ApnsConfig, FcmConfig, Notifier, NotifyError, PushConfig, PushMetrics, PushProvider,
};
use countersign_server::storage::sqlite::{SqliteStorage, Synchronous};
use countersign_server::storage::{AuditEvent, AuditFilter, Device, EnrolmentCode, Storage};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_2048_8192_SHA256,
    RsaKeyPair, UnparsedPublicKey, VerificationAlgorithm,
};
use serde_json::{Value, json};

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "TEAM123456";
const TOPIC: &str = "jp.example.bank";
const PROJECT: &str = "bank-app";
const CLIENT_EMAIL: &str = "push@bank-app.iam.gserviceaccount.com";
const PRIVATE_KEY_ID: &str = "0123456789abcdef";
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A throwaway key: it signs nothing but these tests.
const RSA_PEM: &str = include_str!("fixtures/fcm-test-only-rsa-key.pem");
/// The keys a push may carry besides `aps`: the challenge and its expiry.
const PAYLOAD_KEYS: [&str; 3] = ["cs_type", "cs_challenge", "cs_expires"];

// ---------------------------------------------------------------- helpers

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// A new P-256 key: its `.p8` text and its public point.
fn p256() -> (String, Vec<u8>) {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    (pem(doc.as_ref()), pair.public_key().as_ref().to_vec())
}

fn rsa_public_key() -> Vec<u8> {
    let body: String = RSA_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
    pair.public().as_ref().to_vec()
}

/// Header and claims of a JWT whose signature verifies, or why not.
fn verify_jwt(token: &str, alg: &'static dyn VerificationAlgorithm, key: &[u8]) -> Result<(Value, Value), String> {
    let (signed, signature) = token.rsplit_once('.').ok_or("not a JWT")?;
    let (header, claims) = signed.split_once('.').ok_or("not a JWT")?;
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("not base64url: {e}"));
    UnparsedPublicKey::new(alg, key).verify(signed.as_bytes(), &decode(signature)?).map_err(|_| "bad signature")?;
    let json = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string());
    Ok((json(decode(header)?)?, json(decode(claims)?)?))
}

/// A canned answer, with an optional `Retry-After`.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<&'static str>,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = axum::http::StatusCode::from_u16(self.status).unwrap();
        let mut response = (status, Json(self.body)).into_response();
        if let Some(v) = self.retry_after {
            response.headers_mut().insert("retry-after", v.parse().unwrap());
        }
        response
    }
}

fn apns_error(status: u16, reason: &str) -> Reply {
    Reply { status, body: json!({ "reason": reason }), retry_after: None }
}

fn fcm_error(status: u16, grpc_status: &str, code: &str, message: &str) -> Reply {
    let details = json!([{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code }]);
    Reply {
        status,
        body: json!({"error": {"code": status, "message": message, "status": grpc_status, "details": details}}),
        retry_after: None,
    }
}

fn after(reply: Reply, retry_after: &'static str) -> Reply {
    Reply { retry_after: Some(retry_after), ..reply }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Checks a push's custom data: the challenge and its expiry, no more.
fn check_custom_keys(keys: impl Iterator<Item = String>, violations: &mut Vec<String>) {
    for key in keys {
        if !PAYLOAD_KEYS.contains(&key.as_str()) {
            violations.push(format!("the push carries `{key}`"));
        }
    }
}

// ---------------------------------------------------------------- fake APNs

#[derive(Clone)]
struct FakeApns(Arc<ApnsState>);

struct ApnsState {
    public_key: Vec<u8>,
    /// Provider tokens issued before this second are called expired.
    expired_before: AtomicI64,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    requests: Mutex<Vec<ApnsRequest>>,
    violations: Mutex<Vec<String>>,
}

#[derive(Clone, Debug)]
struct ApnsRequest {
    device_token: String,
    at: Instant,
    jwt: String,
    headers: HeaderMap,
    payload: Value,
}

impl FakeApns {
    /// Starts the server; returns it, its URL and the `.p8` it trusts.
    async fn start() -> (Self, String, String) {
        let (p8, public_key) = p256();
        let state = Arc::new(ApnsState {
            public_key,
            expired_before: AtomicI64::new(0),
            scripts: Mutex::default(),
            requests: Mutex::default(),
            violations: Mutex::default(),
        });
        let fake = FakeApns(state);
        let url = serve(Router::new().route("/3/device/{token}", post(apns_send)).with_state(fake.clone())).await;
        (fake, url, p8)
    }

    /// The next answers for a device token, in order; then 200.
    fn script(&self, device_token: &str, replies: impl IntoIterator<Item = Reply>) {
        self.0.scripts.lock().unwrap().entry(device_token.to_owned()).or_default().extend(replies);
    }

    fn requests_for(&self, device_token: &str) -> Vec<ApnsRequest> {
        self.0.requests.lock().unwrap().iter().filter(|r| r.device_token == device_token).cloned().collect()
    }

    fn assert_contract_kept(&self) {
        let v = self.0.violations.lock().unwrap();
        assert!(v.is_empty(), "{v:?}");
    }
}

async fn apns_send(
    State(apns): State<FakeApns>,
    UrlPath(device_token): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &apns.0;
    let mut violations = Vec::new();
    if version != Version::HTTP_2 {
        violations.push(format!("APNs speaks HTTP/2 only, got {version:?}"));
    }
    let Some(jwt) = header(&headers, "authorization").strip_prefix("bearer ") else {
        return apns_error(403, "MissingProviderToken").into_response();
    };
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    s.requests.lock().unwrap().push(ApnsRequest {
        device_token: device_token.clone(),
        at: Instant::now(),
        jwt: jwt.to_owned(),
        headers: headers.clone(),
        payload: payload.clone(),
    });
    let claims = match verify_jwt(jwt, &ECDSA_P256_SHA256_FIXED, &s.public_key) {
        Ok((h, c)) if h == json!({"alg": "ES256", "kid": KEY_ID}) && c["iss"] == TEAM_ID && c["iat"].is_i64() => c,
        _ => return apns_error(403, "InvalidProviderToken").into_response(),
    };
    if claims["iat"].as_i64().unwrap() < s.expired_before.load(Ordering::SeqCst) {
        return apns_error(403, "ExpiredProviderToken").into_response();
    }
    if header(&headers, "apns-topic") != TOPIC {
        return apns_error(400, "TopicDisallowed").into_response();
    }
    if body.len() > 4096 {
        return apns_error(413, "PayloadTooLarge").into_response();
    }
    for (name, want) in [("apns-push-type", "alert"), ("apns-priority", "10"), ("content-type", "application/json")] {
        if header(&headers, name) != want {
            violations.push(format!("{name}: {:?}", header(&headers, name)));
        }
    }
    if header(&headers, "apns-expiration").parse::<i64>().map_or(true, |e| e <= 0) {
        violations.push("apns-expiration is not a UNIX time".into());
    }
    let collapse = header(&headers, "apns-collapse-id");
    if collapse.is_empty() || collapse.len() > 64 {
        violations.push(format!("apns-collapse-id {collapse:?}"));
    }
    if uuid::Uuid::parse_str(header(&headers, "apns-id")).is_err() {
        violations.push("apns-id is not a UUID".into());
    }
    if !device_token.bytes().all(|b| b.is_ascii_hexdigit()) {
        violations.push("the device token is not hexadecimal".into());
    }
    let aps = &payload["aps"];
    if !aps["alert"]["loc-key"].is_string() || aps["mutable-content"] != 1 || !aps["category"].is_string() {
        violations.push(format!("aps: {aps}"));
    }
    if let Some(object) = payload.as_object() {
        check_custom_keys(object.keys().filter(|k| *k != "aps").cloned(), &mut violations);
    }
    s.violations.lock().unwrap().extend(violations);
    let scripted = s.scripts.lock().unwrap().get_mut(&device_token).and_then(VecDeque::pop_front);
    match scripted {
        Some(reply) => reply.into_response(),
        None => ([("apns-id", header(&headers, "apns-id").to_owned())], "").into_response(),
    }
}

// ---------------------------------------------------------------- fake FCM

#[derive(Clone)]
struct FakeFcm(Arc<FcmState>);

struct FcmState {
    public_key: Vec<u8>,
    expires_in: AtomicI64,
    issued: Mutex<Vec<String>>,
    revoked: Mutex<HashSet<String>>,
    token_script: Mutex<VecDeque<Reply>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    messages: Mutex<Vec<(Instant, Value)>>,
    violations: Mutex<Vec<String>>,
}

impl FakeFcm {
    /// Starts the token endpoint and the FCM API on one server.
    async fn start() -> (Self, String) {
        let state = Arc::new(FcmState {
            public_key: rsa_public_key(),
            expires_in: AtomicI64::new(3599),
            issued: Mutex::default(),
            revoked: Mutex::default(),
            token_script: Mutex::default(),
            scripts: Mutex::default(),
            messages: Mutex::default(),
            violations: Mutex::default(),
        });
        let fake = FakeFcm(state);
        let router = Router::new()
            .route("/token", post(fcm_token))
            .route("/v1/projects/{project}/messages:send", post(fcm_send))
            .with_state(fake.clone());
        (fake, serve(router).await)
    }

    fn script(&self, device_token: &str, replies: impl IntoIterator<Item = Reply>) {
        self.0.scripts.lock().unwrap().entry(device_token.to_owned()).or_default().extend(replies);
    }

    fn token_fetches(&self) -> usize {
        self.0.issued.lock().unwrap().len()
    }

    fn messages_to(&self, device_token: &str) -> Vec<(Instant, Value)> {
        let messages = self.0.messages.lock().unwrap();
        messages.iter().filter(|(_, m)| m["message"]["token"] == device_token).cloned().collect()
    }

    fn assert_contract_kept(&self) {
        let v = self.0.violations.lock().unwrap();
        assert!(v.is_empty(), "{v:?}");
    }
}

async fn fcm_token(State(fcm): State<FakeFcm>, Form(form): Form<HashMap<String, String>>) -> Response {
    let s = &fcm.0;
    if let Some(reply) = s.token_script.lock().unwrap().pop_front() {
        return reply.into_response();
    }
    let refuse = |why: &str| {
        Reply { status: 400, body: json!({"error": "invalid_grant", "error_description": why}), retry_after: None }
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse("grant_type");
    }
    let assertion = form.get("assertion").map(String::as_str).unwrap_or_default();
    let Ok((header, claims)) = verify_jwt(assertion, &RSA_PKCS1_2048_8192_SHA256, &s.public_key) else {
        return refuse("Invalid JWT Signature.");
    };
    if header != json!({"alg": "RS256", "typ": "JWT", "kid": PRIVATE_KEY_ID}) {
        return refuse("header");
    }
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
    if claims["iss"] != CLIENT_EMAIL
        || claims["scope"] != FCM_SCOPE
        || claims["aud"] != GOOGLE_TOKEN_URI
        || exp <= iat
        || exp - iat > 3600
    {
        return refuse(&format!("claims {claims}"));
    }
    let mut issued = s.issued.lock().unwrap();
    let token = format!("ya29.test-{}", issued.len() + 1);
    issued.push(token.clone());
    Json(json!({"access_token": token, "expires_in": s.expires_in.load(Ordering::SeqCst), "token_type": "Bearer"}))
        .into_response()
}

async fn fcm_send(
    State(fcm): State<FakeFcm>,
    UrlPath(project): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &fcm.0;
    let bearer = header(&headers, "authorization").strip_prefix("Bearer ").unwrap_or_default().to_owned();
    let known = s.issued.lock().unwrap().contains(&bearer);
    if !known || s.revoked.lock().unwrap().contains(&bearer) {
        let status = json!({"code": 401, "message": "Request had invalid authentication credentials.",
                            "status": "UNAUTHENTICATED"});
        return Reply { status: 401, body: json!({ "error": status }), retry_after: None }.into_response();
    }
    if project != PROJECT {
        return Reply {
            status: 404,
            body: json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}),
            retry_after: None,
        }
        .into_response();
    }
    let mut violations = Vec::new();
    if version != Version::HTTP_2 {
        violations.push(format!("expected HTTP/2, got {version:?}"));
    }
    if body.len() > 4096 {
        violations.push(format!("a message of {} bytes", body.len()));
    }
    let m: Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = &m["message"];
    let device_token = message["token"].as_str().unwrap_or_default().to_owned();
    if device_token.is_empty() {
        violations.push("no token".into());
    }
    match message["data"].as_object() {
        Some(data) => check_custom_keys(data.keys().cloned(), &mut violations),
        None => violations.push("no data".into()),
    }
    if let Some(android) = message.get("android") {
        let ttl = android["ttl"].as_str().unwrap_or_default();
        let whole_seconds = ttl.strip_suffix('s').is_some_and(|n| n.parse::<u64>().is_ok());
        if android["priority"] != "HIGH" || !whole_seconds {
            violations.push(format!("android: {android}"));
        }
    }
    if let Some(apns) = message.get("apns")
        && (apns["headers"]["apns-push-type"] != "alert" || !apns["payload"]["aps"]["alert"].is_object())
    {
        violations.push(format!("apns: {apns}"));
    }
    s.violations.lock().unwrap().extend(violations);
    s.messages.lock().unwrap().push((Instant::now(), m.clone()));
    let scripted = s.scripts.lock().unwrap().get_mut(&device_token).and_then(VecDeque::pop_front);
    match scripted {
        Some(reply) => reply.into_response(),
        None => Json(json!({ "name": format!("projects/{PROJECT}/messages/1") })).into_response(),
    }
}

// ---------------------------------------------------------------- the notifier under test

struct Harness {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    metrics: Arc<PushMetrics>,
    notifier: Arc<dyn Notifier>,
}

fn apns_config(dir: &Path, url: &str, p8: &str) -> PushConfig {
    let key_file = dir.join(format!("AuthKey_{KEY_ID}.p8"));
    std::fs::write(&key_file, p8).unwrap();
    PushConfig {
        ios: PushProvider::Apns,
        inline_wait_ms: 5_000,
        initial_backoff_ms: 20,
        max_backoff_ms: 200,
        apns: ApnsConfig {
            key_file: Some(key_file),
            key_id: KEY_ID.into(),
            team_id: TEAM_ID.into(),
            topic: TOPIC.into(),
            base_url: Some(url.into()),
            ..ApnsConfig::default()
        },
        ..PushConfig::default()
    }
}

/// FCM for both platforms. The service account names Google's token
/// endpoint (the assertion's audience); the override sends it here.
fn fcm_config(dir: &Path, url: &str) -> PushConfig {
    let account = dir.join("service-account.json");
    let json = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": RSA_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "112233",
        "token_uri": GOOGLE_TOKEN_URI,
    });
    std::fs::write(&account, json.to_string()).unwrap();
    PushConfig {
        ios: PushProvider::Fcm,
        android: PushProvider::Fcm,
        inline_wait_ms: 5_000,
        initial_backoff_ms: 20,
        max_backoff_ms: 200,
        fcm: FcmConfig {
            service_account_file: Some(account),
            token_url: Some(format!("{url}/token")),
            base_url: url.into(),
            ..FcmConfig::default()
        },
        ..PushConfig::default()
    }
}

impl Harness {
    fn new(config: impl FnOnce(&Path) -> PushConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let storage: Arc<dyn Storage> = Arc::new(
            SqliteStorage::open(&dir.path().join("db.sqlite"), 2, Synchronous::Normal, clock.now_ms()).unwrap(),
        );
        let metrics = Arc::new(PushMetrics::default());
        let notifier =
            config(dir.path()).build_with_metrics(storage.clone(), Arc::new(clock.clone()), metrics.clone()).unwrap();
        Self { _dir: dir, clock, metrics, notifier }
    }

    fn payload(&self, life_ms: i64) -> PushPayload {
        PushPayload { challenge_id: uuid::Uuid::new_v4().to_string(), expires_at: self.clock.now_ms() + life_ms }
    }

    async fn push(&self, device: &Device, life_ms: i64) -> Result<(), NotifyError> {
        self.notifier.notify(device, &self.payload(life_ms), self.clock.now_ms()).await
    }
}

fn device(platform: &str, token: &str) -> Device {
    Device {
        id: uuid::Uuid::new_v4().to_string(),
        public_key: uuid::Uuid::new_v4().as_bytes().repeat(4),
        platform: platform.into(),
        display_name: "phone".into(),
        push_token: Some(token.into()),
        notifications_enabled: true,
        push_unreachable: false,
        revoked_at: None,
        created_at: 0,
    }
}

/// An APNs device token: 32 bytes in hex, the last one telling them apart.
fn apns_token(n: u8) -> String {
    format!("{}{n:02x}", "ab".repeat(31))
}

const FIVE_MINUTES: i64 = 300_000;

fn is_token_rejected(r: &Result<(), NotifyError>) -> bool {
    matches!(r, Err(NotifyError::TokenRejected(_)))
}

fn failure(r: Result<(), NotifyError>) -> String {
    match r {
        Err(NotifyError::Failed(reason)) => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------- APNs

#[tokio::test]
async fn apns_delivers_with_a_verified_reused_provider_token_and_the_contract_headers() {
    let (apns, url, p8) = FakeApns::start().await;
    let h = Harness::new(|dir| apns_config(dir, &url, &p8));
    let (one, two) = (device("ios", &apns_token(1)), device("ios", &apns_token(2)));
    let payload = h.payload(FIVE_MINUTES);
    h.notifier.notify(&one, &payload, h.clock.now_ms()).await.unwrap();
    h.push(&two, FIVE_MINUTES).await.unwrap();

    let first = &apns.requests_for(&apns_token(1))[0];
    let second = &apns.requests_for(&apns_token(2))[0];
    assert_eq!(first.jwt, second.jwt, "one provider token for both pushes");
    assert_eq!(header(&first.headers, "apns-expiration"), (payload.expires_at / 1000).to_string());
    assert_eq!(header(&first.headers, "apns-collapse-id"), payload.challenge_id);
    assert_eq!(first.payload["cs_challenge"], payload.challenge_id);
    assert_eq!(first.payload["cs_expires"], payload.expires_at.to_string());
    assert_eq!(first.payload["aps"]["category"], "COUNTERSIGN_CHALLENGE");
    apns.assert_contract_kept();

    let m = h.metrics.snapshot().apns;
    assert_eq!((m.requests, m.delivered, m.retries, m.credential_refreshes), (2, 2, 0, 1));
    assert_eq!(m.delivery_latency.count, 2);
    assert_eq!(m.request_latency.count, 2);
    assert_eq!(h.metrics.snapshot().fcm.requests, 0);
}

#[tokio::test]
async fn apns_refused_tokens_are_rejected_at_once() {
    let (apns, url, p8) = FakeApns::start().await;
    let h = Harness::new(|dir| apns_config(dir, &url, &p8));
    apns.script(&apns_token(1), [apns_error(410, "Unregistered")]);
    apns.script(&apns_token(2), [apns_error(400, "BadDeviceToken")]);
    apns.script(&apns_token(3), [apns_error(400, "DeviceTokenNotForTopic")]);
    let started = Instant::now();
    for n in 1..=3 {
        let result = h.push(&device("ios", &apns_token(n)), FIVE_MINUTES).await;
        assert!(is_token_rejected(&result), "{n}: {result:?}");
    }
    // A token APNs could never have issued is refused without asking it.
    assert!(is_token_rejected(&h.push(&device("ios", "not/a/token"), FIVE_MINUTES).await));
    assert!(started.elapsed() < Duration::from_secs(2));
    let m = h.metrics.snapshot().apns;
    assert_eq!((m.requests, m.token_rejected, m.retries, m.delivered), (3, 4, 0, 0));
    apns.assert_contract_kept();
}

#[tokio::test]
async fn apns_passing_failures_are_retried_with_backoff_and_retry_after() {
    let (apns, url, p8) = FakeApns::start().await;
    let h = Harness::new(|dir| apns_config(dir, &url, &p8));
    apns.script(&apns_token(1), [apns_error(503, "ServiceUnavailable"), apns_error(500, "InternalServerError")]);
    h.push(&device("ios", &apns_token(1)), FIVE_MINUTES).await.unwrap();
    assert_eq!(apns.requests_for(&apns_token(1)).len(), 3);

    apns.script(&apns_token(2), [after(apns_error(429, "TooManyRequests"), "1")]);
    h.push(&device("ios", &apns_token(2)), FIVE_MINUTES).await.unwrap();
    let tries = apns.requests_for(&apns_token(2));
    assert_eq!(tries.len(), 2);
    assert!(tries[1].at - tries[0].at >= Duration::from_secs(1), "Retry-After: 1 honoured");

    let m = h.metrics.snapshot().apns;
    assert_eq!((m.requests, m.retries, m.delivered, m.gave_up), (5, 3, 2, 0));
    apns.assert_contract_kept();
}

#[tokio::test]
async fn retries_end_with_the_challenge_and_fall_back() {
    let (apns, url, p8) = FakeApns::start().await;
    let h =
        Harness::new(|dir| PushConfig { initial_backoff_ms: 200, max_backoff_ms: 400, ..apns_config(dir, &url, &p8) });
    apns.script(&apns_token(1), vec![apns_error(500, "InternalServerError"); 100]);
    let started = Instant::now();
    let reason = failure(h.push(&device("ios", &apns_token(1)), 1_500).await);
    let took = started.elapsed();
    assert!(reason.contains("APNs 500 InternalServerError") && reason.contains("expires"), "{reason}");
    assert!(took >= Duration::from_millis(1_000) && took < Duration::from_millis(2_500), "{took:?}");
    assert!(apns.requests_for(&apns_token(1)).len() >= 3);

    // Asked to come back after the challenge is over: give up at once.
    apns.script(&apns_token(2), [after(apns_error(429, "TooManyRequests"), "3600")]);
    let started = Instant::now();
    failure(h.push(&device("ios", &apns_token(2)), FIVE_MINUTES).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(apns.requests_for(&apns_token(2)).len(), 1);

    let m = h.metrics.snapshot().apns;
    assert_eq!((m.gave_up, m.delivered), (2, 0));
    assert!(m.retries >= 2);
}

#[tokio::test]
async fn apns_configuration_errors_fall_back_at_once() {
    let (apns, url, _) = FakeApns::start().await;
    // A key APNs does not know: every token it signs is invalid.
    let (other_p8, _) = p256();
    let h = Harness::new(|dir| apns_config(dir, &url, &other_p8));
    let started = Instant::now();
    let reason = failure(h.push(&device("ios", &apns_token(1)), FIVE_MINUTES).await);
    assert_eq!(reason, "APNs 403 InvalidProviderToken");

    let (apns2, url2, p8) = FakeApns::start().await;
    let h2 = Harness::new(|dir| PushConfig {
        apns: ApnsConfig { topic: "jp.example.other".into(), ..apns_config(dir, &url2, &p8).apns },
        ..apns_config(dir, &url2, &p8)
    });
    assert_eq!(failure(h2.push(&device("ios", &apns_token(1)), FIVE_MINUTES).await), "APNs 400 TopicDisallowed");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.metrics.snapshot().apns.misconfigured, 1);
    assert_eq!(h2.metrics.snapshot().apns.misconfigured, 1);
    assert_eq!(h.metrics.snapshot().apns.retries, 0, "a configuration error is not retried");
    apns.assert_contract_kept();
    apns2.assert_contract_kept();
}

#[tokio::test]
async fn apns_provider_token_is_renewed_once_when_expired_and_never_within_20_minutes() {
    let (apns, url, p8) = FakeApns::start().await;
    let h = Harness::new(|dir| apns_config(dir, &url, &p8));
    let ios = device("ios", &apns_token(1));
    h.push(&ios, FIVE_MINUTES).await.unwrap();
    let first = apns.requests_for(&apns_token(1))[0].jwt.clone();

    // 30 minutes on, APNs calls the (still cached) token expired: one new
    // token, one retry, delivered.
    h.clock.advance_secs(30 * 60);
    apns.0.expired_before.store(h.clock.now_ms() / 1000 - 60, Ordering::SeqCst);
    h.push(&ios, FIVE_MINUTES).await.unwrap();
    let tries = apns.requests_for(&apns_token(1));
    assert_eq!(tries.len(), 3);
    assert_eq!(tries[1].jwt, first, "the cached token went first");
    assert_ne!(tries[2].jwt, first, "then a new one");
    let renewed = tries[2].jwt.clone();

    // 5 minutes after that renewal it is called expired again: renewing so
    // soon would break Apple's rule, so the push fails loudly instead.
    h.clock.advance_secs(5 * 60);
    apns.0.expired_before.store(h.clock.now_ms() / 1000, Ordering::SeqCst);
    let reason = failure(h.push(&ios, FIVE_MINUTES).await);
    assert!(reason.contains("ExpiredProviderToken") && reason.contains("clock"), "{reason}");
    assert_eq!(apns.requests_for(&apns_token(1)).last().unwrap().jwt, renewed);

    // After 50 minutes the token is renewed without being asked to.
    apns.0.expired_before.store(0, Ordering::SeqCst);
    h.clock.advance_secs(50 * 60);
    h.push(&ios, FIVE_MINUTES).await.unwrap();
    assert_ne!(apns.requests_for(&apns_token(1)).last().unwrap().jwt, renewed);

    let m = h.metrics.snapshot().apns;
    assert_eq!((m.credential_refreshes, m.misconfigured, m.delivered, m.retries), (3, 1, 3, 0));
    apns.assert_contract_kept();
}

// ---------------------------------------------------------------- the background

/// A card and a device enrolled for it, straight into storage.
async fn enrolled_device(storage: &dyn Storage, card_id: &str, platform: &str, token: &str, now: i64) -> Device {
    let lookup = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let code = EnrolmentCode {
        lookup: lookup.clone(),
        secret_hash: vec![0; 32],
        card_id: card_id.into(),
        created_at: now,
        expires_at: now + 3_600_000,
        attempts_left: 5,
        used_at: None,
    };
    storage.create_enrolment_code(&code).await.unwrap();
    let audit = AuditEvent::new(now, "device.enrolled", "test".into(), "ok");
    storage.complete_enrolment(&lookup, &device(platform, token), now, &audit).await.unwrap()
}

fn app_config(dir: &Path, push: PushConfig) -> Config {
    let mut c = Config::default();
    c.database.url = format!("sqlite://{}", dir.join("countersign.db").display());
    c.secrets.master_key_file = dir.join("master.key");
    c.push = push;
    c
}

async fn card(app: &App, pan: &str) -> String {
    let req = admin::NewCardRequest {
        acct_number: pan.into(),
        language: Some("ja".into()),
        email: Some("taro@example.jp".into()),
        phone: None,
    };
    admin::create_card(app, req, "test").await.unwrap().card_id
}

#[tokio::test]
async fn a_push_still_retrying_after_the_inline_wait_records_its_own_outcome() {
    let (apns, url, p8) = FakeApns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let app = App::open(app_config(dir.path(), PushConfig::default()), Arc::new(clock.clone())).unwrap();
    let card_id = card(&app, "378282246310005").await;
    let ios = enrolled_device(&*app.storage, &card_id, "ios", &apns_token(7), clock.now_ms()).await;
    let metrics = Arc::new(PushMetrics::default());
    let config = PushConfig {
        inline_wait_ms: 100,
        initial_backoff_ms: 400,
        max_backoff_ms: 400,
        ..apns_config(dir.path(), &url, &p8)
    };
    let notifier = config.build_with_metrics(app.storage.clone(), Arc::new(clock.clone()), metrics.clone()).unwrap();
    apns.script(&apns_token(7), [apns_error(503, "ServiceUnavailable"), apns_error(410, "Unregistered")]);

    let payload = PushPayload { challenge_id: uuid::Uuid::new_v4().to_string(), expires_at: clock.now_ms() + 60_000 };
    let started = Instant::now();
    notifier.notify(&ios, &payload, clock.now_ms()).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "the caller does not wait for retries");

    // The device is marked, then the failure audited: two writes, so wait
    // until both show.
    let (mut unreachable, mut audit) = (false, Vec::new());
    for _ in 0..100 {
        unreachable = app.storage.device(&ios.id).await.unwrap().unwrap().push_unreachable;
        audit = app.storage.audit_events(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.unwrap();
        if unreachable && audit.iter().any(|e| e.kind == "push.failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(unreachable, "the late refusal marked the device unreachable");
    let failed = audit.iter().find(|e| e.kind == "push.failed").expect("the failure is audited");
    assert_eq!(failed.challenge_id.as_deref(), Some(&*payload.challenge_id));
    assert_eq!(failed.device_id.as_deref(), Some(&*ios.id));
    assert!(failed.detail["error"].as_str().unwrap().contains("410 Unregistered"), "{failed:?}");
    let m = metrics.snapshot().apns;
    assert_eq!((m.retries, m.token_rejected, m.requests), (1, 1, 2));
}

/// The whole path: an AReq that needs the cardholder, the push, and the
/// fallback the push's answer calls for.
#[tokio::test]
async fn challenges_fall_back_at_once_on_a_refused_token_and_within_the_push_deadline_otherwise() {
    let (apns, url, p8) = FakeApns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let push = PushConfig { inline_wait_ms: 300, ..apns_config(dir.path(), &url, &p8) };
    let app = App::open(app_config(dir.path(), push), Arc::new(clock.clone())).unwrap();
    let requestor =
        admin::create_requestor(&app, admin::NewRequestorRequest { id: "shop-1".into(), name: "Shop".into() }, "test")
            .await
            .unwrap();
    let requestor = app.storage.requestor(&requestor.id).await.unwrap().unwrap();
    let gone =
        enrolled_device(&*app.storage, &card(&app, "378282246310005").await, "ios", &apns_token(1), clock.now_ms())
            .await;
    let flaky =
        enrolled_device(&*app.storage, &card(&app, "371449635398431").await, "ios", &apns_token(2), clock.now_ms())
            .await;
    apns.script(&apns_token(1), [apns_error(410, "Unregistered")]);
    apns.script(&apns_token(2), vec![apns_error(503, "ServiceUnavailable"); 10_000]);

    let purchase = |pan: &str| {
        json!({
            "messageType": "AReq", "messageVersion": "2.2.0",
            "threeDSServerTransID": uuid::Uuid::new_v4().to_string(),
            "deviceChannel": "02", "messageCategory": "01",
            "acctNumber": pan, "cardExpiryDate": "3012",
            "purchaseAmount": "12800", "purchaseCurrency": "978", "purchaseExponent": "2",
            "purchaseDate": "20261122101500", "merchantName": "Nordic Outdoor AB", "mcc": "5941",
            "merchantCountryCode": "752", "acquirerMerchantID": "MID-000451",
            "threeDSRequestorID": "shop-1", "threeDSRequestorName": "Shop",
            "notificationURL": "http://127.0.0.1:9/notify",
            "browserAcceptHeader": "text/html", "browserJavaEnabled": false, "browserLanguage": "ja-JP",
            "browserColorDepth": "24", "browserScreenHeight": "900", "browserScreenWidth": "1440",
            "browserTZ": "-540", "browserUserAgent": "Mozilla/5.0"
        })
        .to_string()
    };
    let challenge = |acs: uuid::Uuid| {
        let app = app.clone();
        async move {
            let auth = app.storage.authentication(&acs.to_string()).await.unwrap().unwrap();
            app.storage.challenge(&auth.challenge_id.unwrap()).await.unwrap().unwrap()
        }
    };

    // The token is refused: a code at once, and no more pushes to it.
    let ares = authenticate::authenticate(&app, &requestor, purchase("378282246310005").as_bytes()).await.unwrap();
    assert_eq!(challenge(ares.acs_trans_id).await.fallback_reason.as_deref(), Some("token_rejected"));
    assert!(app.storage.device(&gone.id).await.unwrap().unwrap().push_unreachable);

    // APNs keeps failing: the ARes does not wait for the retries...
    let started = Instant::now();
    let ares = authenticate::authenticate(&app, &requestor, purchase("371449635398431").as_bytes()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let pending = challenge(ares.acs_trans_id).await;
    assert_eq!(pending.fallback_reason, None);
    assert!(!app.storage.device(&flaky.id).await.unwrap().unwrap().push_unreachable);
    // ...and the push deadline sends the code while they go on.
    clock.advance_secs(i64::try_from(app.config.codes.push_timeout_secs).unwrap() + 1);
    codes::fall_back_unanswered_pushes(&app).await.unwrap();
    assert_eq!(challenge(ares.acs_trans_id).await.fallback_reason.as_deref(), Some("push_timeout"));
    assert!(apns.requests_for(&apns_token(2)).len() >= 2, "retried meanwhile");
    assert!(countersign_server::notifier::metrics().apns.retries >= 1);
    apns.assert_contract_kept();
}

// ---------------------------------------------------------------- FCM

#[tokio::test]
async fn fcm_delivers_data_messages_with_one_cached_access_token() {
    let (fcm, url) = FakeFcm::start().await;
    let h = Harness::new(|dir| fcm_config(dir, &url));
    let android = device("android", "android-token-1");
    let payload = h.payload(FIVE_MINUTES);
    h.notifier.notify(&android, &payload, h.clock.now_ms()).await.unwrap();
    h.push(&device("android", "android-token-2"), FIVE_MINUTES).await.unwrap();
    h.push(&device("ios", "ios-through-firebase"), FIVE_MINUTES).await.unwrap();
    assert_eq!(fcm.token_fetches(), 1, "one access token for all three");

    let (_, m) = &fcm.messages_to("android-token-1")[0];
    let message = &m["message"];
    assert_eq!(
        message["data"],
        json!({"cs_type": "challenge", "cs_challenge": payload.challenge_id, "cs_expires": payload.expires_at.to_string()})
    );
    assert_eq!(message["android"], json!({"priority": "HIGH", "ttl": "300s"}));
    let (_, ios) = &fcm.messages_to("ios-through-firebase")[0];
    assert_eq!(ios["message"]["apns"]["payload"]["aps"]["category"], "COUNTERSIGN_CHALLENGE");
    fcm.assert_contract_kept();

    let s = h.metrics.snapshot().fcm;
    assert_eq!((s.requests, s.delivered, s.credential_refreshes), (4, 3, 1));
    assert_eq!(s.delivery_latency.count, 3);
}

#[tokio::test]
async fn fcm_access_token_is_renewed_before_expiry_and_once_when_refused() {
    let (fcm, url) = FakeFcm::start().await;
    let h = Harness::new(|dir| fcm_config(dir, &url));
    let android = device("android", "android-token-1");
    fcm.0.expires_in.store(3600, Ordering::SeqCst);
    h.push(&android, FIVE_MINUTES).await.unwrap();
    h.clock.advance_secs(3000);
    h.push(&android, FIVE_MINUTES).await.unwrap();
    assert_eq!(fcm.token_fetches(), 1, "still well within its hour");
    h.clock.advance_secs(400);
    h.push(&android, FIVE_MINUTES).await.unwrap();
    assert_eq!(fcm.token_fetches(), 2, "renewed five minutes before it expires");

    // Revoked behind our back: FCM says UNAUTHENTICATED, one new token,
    // one retry.
    let current = fcm.0.issued.lock().unwrap().last().unwrap().clone();
    fcm.0.revoked.lock().unwrap().insert(current);
    h.push(&android, FIVE_MINUTES).await.unwrap();
    assert_eq!(fcm.token_fetches(), 3);
    assert_eq!(fcm.messages_to("android-token-1").len(), 4, "the refused request never reached the API");

    let s = h.metrics.snapshot().fcm;
    assert_eq!((s.delivered, s.credential_refreshes, s.retries, s.misconfigured), (4, 3, 0, 0));
}

#[tokio::test]
async fn fcm_answers_each_error_class() {
    let (fcm, url) = FakeFcm::start().await;
    let h = Harness::new(|dir| fcm_config(dir, &url));
    let token_message = "The registration token is not a valid FCM registration token";
    fcm.script("unregistered", [fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")]);
    fcm.script("invalid", [fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", token_message)]);
    fcm.script("mismatch", [fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch")]);
    fcm.script("apns-auth", [fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "Auth error from APNS")]);
    fcm.script(
        "busy",
        [
            fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
            fcm_error(500, "INTERNAL", "INTERNAL", "Internal error encountered."),
        ],
    );
    fcm.script("quota", [after(fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded"), "1")]);

    assert!(is_token_rejected(&h.push(&device("android", "unregistered"), FIVE_MINUTES).await));
    assert!(is_token_rejected(&h.push(&device("android", "invalid"), FIVE_MINUTES).await));
    let reason = failure(h.push(&device("android", "mismatch"), FIVE_MINUTES).await);
    assert!(reason.contains("SENDER_ID_MISMATCH"), "{reason}");
    let reason = failure(h.push(&device("ios", "apns-auth"), FIVE_MINUTES).await);
    assert!(reason.contains("THIRD_PARTY_AUTH_ERROR"), "{reason}");
    assert_eq!(fcm.token_fetches(), 1, "an APNs credential problem is not our access token's");

    h.push(&device("android", "busy"), FIVE_MINUTES).await.unwrap();
    assert_eq!(fcm.messages_to("busy").len(), 3);
    h.push(&device("android", "quota"), FIVE_MINUTES).await.unwrap();
    let tries = fcm.messages_to("quota");
    assert!(tries[1].0 - tries[0].0 >= Duration::from_secs(1), "Retry-After: 1 honoured");

    let s = h.metrics.snapshot().fcm;
    assert_eq!((s.token_rejected, s.misconfigured, s.retries, s.delivered, s.gave_up), (2, 2, 3, 2, 0));
    fcm.assert_contract_kept();
}

#[tokio::test]
async fn fcm_service_account_refusals_are_configuration_errors_and_outages_are_retried() {
    let (fcm, url) = FakeFcm::start().await;
    let h = Harness::new(|dir| fcm_config(dir, &url));
    let refused = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."});
    fcm.0.token_script.lock().unwrap().push_back(Reply { status: 400, body: refused, retry_after: None });
    let reason = failure(h.push(&device("android", "t1"), FIVE_MINUTES).await);
    assert!(reason.contains("invalid_grant: Invalid JWT Signature."), "{reason}");
    assert_eq!(h.metrics.snapshot().fcm.misconfigured, 1);

    fcm.0.token_script.lock().unwrap().push_back(Reply { status: 503, body: json!({}), retry_after: None });
    h.push(&device("android", "t1"), FIVE_MINUTES).await.unwrap();
    let s = h.metrics.snapshot().fcm;
    assert_eq!((s.retries, s.delivered, s.credential_refreshes), (1, 1, 1));

    // Sending to a project the account does not have is ours to fix.
    let (_, url2) = FakeFcm::start().await;
    let h2 = Harness::new(|dir| {
        let c = fcm_config(dir, &url2);
        PushConfig { fcm: FcmConfig { project_id: Some("other-app".into()), ..c.fcm.clone() }, ..c }
    });
    let reason = failure(h2.push(&device("android", "t1"), FIVE_MINUTES).await);
    assert!(reason.starts_with("FCM 404 NOT_FOUND"), "{reason}");
    fcm.assert_contract_kept();
}
