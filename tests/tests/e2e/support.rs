//! A whole Countersign server per test, a controllable clock, and helpers
//! that speak the APIs the way requestors, operators and devices do.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use countersign_core::client::DeviceClient;
use countersign_core::protocol::wire::EnrolmentResponse;
use countersign_core::protocol::{Platform, RequestAuth, SoftwareKey};
use countersign_server::clock::{Clock, ManualClock};
use countersign_server::config::Config;
use countersign_server::flows::admin::{self, CreatedRequestor};
use countersign_server::notifier::Notifier;
use countersign_server::storage::OperatorRole;
use countersign_server::{App, RunningServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Amex test card numbers (Luhn-valid).
pub const PAN: &str = "378282246310005";
pub const OTHER_PAN: &str = "371449635398431";

/// A whole server in this process: its directory, clock and state, and
/// (through `Deref`) the [`ServerApi`] that speaks to it.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub app: App,
    api: ServerApi,
    server: Option<RunningServer>,
}

impl std::ops::Deref for TestServer {
    type Target = ServerApi;
    fn deref(&self) -> &ServerApi {
        &self.api
    }
}

/// The clock a phone signs with: the server's, which a test may move.
pub type Now = Arc<dyn countersign_core::client::Clock>;

/// A running server as its clients see it: where it listens, an
/// operator's API key, and the clock its phones sign with. The server runs
/// in this process ([`TestServer`]) or in another one (the several-node
/// tests).
pub struct ServerApi {
    pub base: String,
    pub admin_key: String,
    pub http: reqwest::Client,
    now: Now,
}

/// Whether the suite runs over PostgreSQL (`COUNTERSIGN_TEST_BACKEND=postgres`)
/// rather than SQLite files (the default, or `sqlite`).
pub fn on_postgres() -> bool {
    match std::env::var("COUNTERSIGN_TEST_BACKEND").as_deref() {
        Err(_) | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("COUNTERSIGN_TEST_BACKEND={other}: say sqlite or postgres"),
    }
}

#[allow(dead_code)]
#[path = "../../../server/tests/support/postgres.rs"]
pub mod postgres;

/// This test binary's throwaway PostgreSQL cluster, started on first use.
pub fn cluster() -> &'static postgres::Cluster {
    static CLUSTER: std::sync::OnceLock<postgres::Cluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(postgres::Cluster::start)
}

/// A test server's configuration: its database (a SQLite file in `dir`,
/// or a fresh PostgreSQL database) and master key, quick workers.
pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.database.url = if on_postgres() {
        cluster().create_database()
    } else {
        format!("sqlite://{}", dir.join("countersign.db").display())
    };
    c.secrets.master_key_file = dir.join("master.key");
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.body_limit_bytes = 16 * 1024;
    c.challenge.sweep_interval_ms = 20;
    c.callbacks.poll_interval_ms = 20;
    c.callbacks.initial_backoff_ms = 1_000;
    c.callbacks.max_attempts = 4;
    // The API-only suites never post a CReq and move the clock minutes at
    // a time; the browser suite turns the window timers back on.
    c.window.creq_timeout_secs = 0;
    c
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test configuration, changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        tweak(&mut c);
        let clock = ManualClock::starting_at(countersign_server::clock::SystemClock.now_ms());
        let (app, server, base) = launch(c, clock.clone()).await;
        Self::assemble(dir, clock, app, server, base).await
    }

    /// Starts with a notifier of the test's own instead of the outbox.
    pub async fn start_with_notifier(notifier: Arc<dyn Notifier>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        let clock = ManualClock::starting_at(countersign_server::clock::SystemClock.now_ms());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        c.server.public_url = Some(base.clone());
        let storage = countersign_server::app::open_storage(&c, clock.now_ms()).unwrap();
        let app = App::with_parts(c, storage, Arc::new(clock.clone()), notifier).unwrap();
        let server = countersign_server::start(app.clone(), listener).unwrap();
        Self::assemble(dir, clock, app, server, base).await
    }

    /// Creates the operator the tests act as.
    async fn assemble(
        dir: tempfile::TempDir,
        clock: ManualClock,
        app: App,
        server: RunningServer,
        base: String,
    ) -> Self {
        let admin_key = admin::create_operator(&app, "test admin", OperatorRole::Admin, "test").await.unwrap().api_key;
        let now = clock.clone();
        let api = ServerApi::new(base, admin_key, Arc::new(move || now.now_ms()));
        Self { dir, clock, app, api, server: Some(server) }
    }

    /// Stops the server and starts a new one on the same database and key.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await
    }

    /// Stops the server and starts a new one on the same database, its
    /// configuration changed by `tweak` (a new master key, say).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        let mut config = self.app.config.clone();
        tweak(&mut config);
        self.server.take().unwrap().stop().await;
        let (app, server, base) = launch(config, self.clock.clone()).await;
        self.app = app;
        self.api.base = base;
        self.server = Some(server);
    }

    /// Where the metrics listener serves, when the test turned it on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().and_then(|s| s.metrics_addr)
    }
}

impl ServerApi {
    pub fn new(base: String, admin_key: String, now: Now) -> Self {
        Self { base, admin_key, http: reqwest::Client::new(), now }
    }

    /// What the challenge window shows for a purchase.
    pub async fn window(&self, acs: &str) -> Value {
        let resp = self.http.get(self.url(&format!("/v1/window/{acs}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// The page's long-poll for the window a page belongs to: answers
    /// when its screen is no longer `seen`.
    pub async fn poll_window(&self, page: &str, seen: &str) -> (StatusCode, Value) {
        let (session, csrf) = (hidden(page, "session"), hidden(page, "csrf"));
        let fields = [("session", session.as_str()), ("csrf", csrf.as_str()), ("seen", seen)];
        send(self.http.post(self.url("/challenge/poll")).form(&fields)).await
    }

    /// A window action (`code`, `code/resend`, `code/verify`).
    pub async fn window_post(&self, acs: &str, action: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(&format!("/v1/window/{acs}/{action}")));
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    /// The development outbox's messages, oldest first.
    pub async fn messages(&self) -> Vec<Value> {
        let (status, body) = self.admin(reqwest::Method::GET, "/v1/admin/messages?limit=500", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut all = body.as_array().unwrap().clone();
        all.reverse();
        all
    }

    /// Waits (bounded) for the `n`th message to `recipient`; returns the
    /// six-digit code in it.
    pub async fn nth_code_to(&self, recipient: &str, n: usize) -> String {
        for _ in 0..250 {
            let to_them: Vec<Value> =
                self.messages().await.into_iter().filter(|m| m["recipient"] == recipient).collect();
            if let Some(m) = to_them.get(n - 1) {
                return six_digits(m["body"].as_str().unwrap()).expect("a code in the message");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no message {n} to {recipient}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin API call; returns status and JSON body.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.admin_as(Some(&self.admin_key), method, path, body).await
    }

    /// An admin API call with this operator key (or none).
    pub async fn admin_as(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    pub async fn create_requestor(&self, id: &str) -> CreatedRequestor {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/v1/admin/requestors", Some(json!({"id": id, "name": format!("{id} shop")})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Registers a card; returns its id.
    pub async fn create_card(&self, pan: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/cards",
                Some(json!({"acctNumber": pan, "email": "taro@example.jp", "language": "ja"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["cardId"].as_str().unwrap().to_owned()
    }

    pub async fn enrolment_code(&self, card_id: &str) -> String {
        let (status, body) =
            self.admin(reqwest::Method::POST, &format!("/v1/admin/cards/{card_id}/enrolment-codes"), None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// Sends an AReq as `requestor`; returns status and JSON body.
    pub async fn areq(&self, requestor: &CreatedRequestor, areq: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/v1/authentications"))
            .bearer_auth(&requestor.api_key)
            .json(areq)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }

    pub async fn status(&self, requestor: &CreatedRequestor, acs_trans_id: &str) -> Value {
        let resp = self
            .http
            .get(self.url(&format!("/v1/authentications/{acs_trans_id}")))
            .bearer_auth(&requestor.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// A new simulated phone (software key) using the server's clock.
    pub fn phone(&self) -> Phone {
        let key = Arc::new(SoftwareKey::generate());
        let (base, signer, now) = (self.base.clone(), key.clone(), self.now.clone());
        // The blocking client owns a runtime of its own: make and drop it
        // outside the test's runtime.
        let client =
            std::thread::spawn(move || DeviceClient::new(&base, signer, None).unwrap().with_clock(now)).join().unwrap();
        Phone { client: Arc::new(OffRuntime(Some(client))), key, base: self.base.clone(), now: self.now.clone() }
    }

    /// The server clock's time (ms), which the phones share.
    pub fn now(&self) -> i64 {
        self.now.now_ms()
    }

    /// The pushes the outbox recorded for one device, newest first.
    pub async fn pushes(&self, device_id: &str) -> Vec<Value> {
        let (status, body) =
            self.admin(reqwest::Method::GET, &format!("/v1/admin/pushes?deviceId={device_id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    /// A challenge AReq (60.00 EUR: above the low-value exemption, below
    /// number matching); returns the acsTransID.
    pub async fn challenge(&self, requestor: &CreatedRequestor, pan: &str, notify: &str) -> String {
        let (status, ares) = self.areq(requestor, &areq(&requestor.id, pan, 6_000, notify)).await;
        assert_eq!(status, StatusCode::OK, "{ares}");
        assert_eq!(ares["transStatus"], "C", "{ares}");
        ares["acsTransID"].as_str().unwrap().to_owned()
    }

    /// The state of the challenge behind an authentication.
    pub async fn challenge_state(&self, requestor: &CreatedRequestor, acs: &str) -> String {
        self.status(requestor, acs).await["challenge"]["state"].as_str().unwrap().to_owned()
    }

    /// A card with one phone enrolled on it.
    pub async fn card_with_phone(&self, pan: &str) -> (String, Phone) {
        let card = self.create_card(pan).await;
        let phone = self.phone();
        phone.enrol(&self.enrolment_code(&card).await).await;
        (card, phone)
    }
}

async fn launch(mut config: Config, clock: ManualClock) -> (App, RunningServer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    config.server.public_url = Some(base.clone());
    let app = App::open(config, Arc::new(clock)).unwrap();
    let server = countersign_server::start(app.clone(), listener).unwrap();
    (app, server, base)
}

/// A CReq for the purchase an ARes answered, base64url as a 3DS server
/// posts it.
pub fn creq(ares: &Value, size: &str) -> String {
    use base64::Engine;
    let json = json!({
        "messageType": "CReq", "messageVersion": "2.2.0",
        "threeDSServerTransID": ares["threeDSServerTransID"], "acsTransID": ares["acsTransID"],
        "challengeWindowSize": size,
    });
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// The value of the hidden field `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A phone: the core client (blocking, so run off the async workers) and
/// its key, for the tests that forge requests by hand.
#[derive(Clone)]
pub struct Phone {
    client: Arc<OffRuntime>,
    pub key: Arc<SoftwareKey>,
    pub base: String,
    now: Now,
}

/// Drops the blocking client on a plain thread.
struct OffRuntime(Option<DeviceClient>);

impl Drop for OffRuntime {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

impl Phone {
    /// Runs a client call on the blocking pool.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&DeviceClient) -> R + Send + 'static) -> R {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(client.0.as_ref().expect("client present until drop"))).await.unwrap()
    }

    pub async fn enrol(&self, code: &str) -> EnrolmentResponse {
        self.enrol_with(code, Some("apns-token-1"), true).await
    }

    /// Enrols with the push token and notification permission given.
    pub async fn enrol_with(
        &self,
        code: &str,
        push_token: Option<&str>,
        notifications_enabled: bool,
    ) -> EnrolmentResponse {
        let (code, token) = (code.to_owned(), push_token.map(str::to_owned));
        self.call(move |c| c.enrol(&code, Platform::Ios, token, notifications_enabled, "Taro's iPhone")).await.unwrap()
    }

    /// The same phone (key and device id) talking to a server at `base`,
    /// as after a restart on another port.
    pub fn reconnect(&self, base: &str) -> Phone {
        let (base, key, now) = (base.to_owned(), self.key.clone(), self.now.clone());
        let device_id = self.device_id();
        let (b, signer, n) = (base.clone(), key.clone(), now.clone());
        let client = std::thread::spawn(move || DeviceClient::new(&b, signer, Some(device_id)).unwrap().with_clock(n))
            .join()
            .unwrap();
        Phone { client: Arc::new(OffRuntime(Some(client))), key, base, now }
    }

    pub fn device_id(&self) -> String {
        self.client.0.as_ref().and_then(DeviceClient::device_id).expect("the phone has enrolled")
    }

    /// Approves the first challenge waiting for this phone.
    pub async fn approve_first(&self) {
        let view = self.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
        self.call(move |c| c.decide(&view, countersign_core::protocol::Decision::Approve, None)).await.unwrap();
    }

    /// A request signed by hand: `ts` and `nonce` chosen by the test.
    pub fn signed(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        ts: i64,
        nonce: [u8; 16],
    ) -> reqwest::RequestBuilder {
        self.signed_as(&self.device_id(), http, method, path, body, ts, nonce)
    }

    /// As [`Phone::signed`], signed by this phone's key but naming
    /// `device_id` (an unknown or revoked one).
    #[allow(clippy::too_many_arguments)]
    pub fn signed_as(
        &self,
        device_id: &str,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        ts: i64,
        nonce: [u8; 16],
    ) -> reqwest::RequestBuilder {
        let mut auth =
            RequestAuth { device_id: device_id.to_owned(), timestamp_ms: ts, nonce: nonce.to_vec(), signature: vec![] };
        auth.signature = self.key.sign(&auth.message(method.as_str(), path, body).signed_bytes());
        let mut req = http.request(method, format!("{}{path}", self.base)).body(body.to_vec());
        for (name, value) in auth.to_headers() {
            req = req.header(name, value);
        }
        req.header("content-type", "application/json")
    }
}

/// A fresh random request nonce.
pub fn nonce() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// Sends a request; returns status and JSON body (`Null` if not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts a device/admin API refusal: status and `error.code`.
#[track_caller]
pub fn assert_refused(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].is_string(), "{}", got.1);
}

pub use countersign_tests::areq;

/// A requestor's result endpoint on loopback: records every POST, and
/// answers 500 to the first `fail_first` of them.
pub struct CallbackReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl CallbackReceiver {
    pub async fn start(fail_first: usize) -> Self {
        use axum::routing::post;
        let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
        let store = received.clone();
        let handler = move |headers: HeaderMap, body: String| {
            let store = store.clone();
            async move {
                let mut all = store.lock().unwrap();
                all.push((headers, body));
                if all.len() <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        };
        let router = axum::Router::new().route("/notify", post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, received }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.received.lock().unwrap().iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect()
    }

    /// Waits (real time, bounded) until at least `n` callbacks arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..250 {
            if self.received.lock().unwrap().len() >= n {
                return self.bodies();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("expected {n} callbacks, got {}", self.received.lock().unwrap().len());
    }
}

/// `value` (base64) with its first character changed: a different value of
/// the same length and alphabet, whatever character it started with.
pub fn forged(value: &str) -> String {
    let first = if value.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &value[1..])
}

/// A six-digit code that is not `right`.
pub fn wrong_code(right: &str) -> &'static str {
    if right == "000000" { "111111" } else { "000000" }
}

/// The first run of exactly six digits in `text`.
pub fn six_digits(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).find_map(|i| {
        let run: String = chars[i..].iter().take_while(|c| c.is_ascii_digit()).collect();
        let starts = i == 0 || !chars[i - 1].is_ascii_digit();
        (starts && run.len() == 6).then_some(run)
    })
}

/// Polls (bounded) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A secret and how to look for it: digits must stand alone, not inside a
/// longer run of letters and digits (a timestamp, a hex id or hash, where
/// any six digits turn up by chance), anything else as a plain substring.
pub struct Secret {
    pub what: &'static str,
    pub value: String,
}

impl Secret {
    pub fn new(what: &'static str, value: impl Into<String>) -> Self {
        Self { what, value: value.into() }
    }
}

pub fn leaks(text: &str, secret: &Secret) -> bool {
    let value = secret.value.as_str();
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return text.contains(value);
    }
    text.match_indices(value).any(|(at, _)| {
        let before = text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric());
        let after = text[at + value.len()..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        !before && !after
    })
}
