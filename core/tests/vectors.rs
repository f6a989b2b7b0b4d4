//! Runs the shared protocol test vectors in `test-vectors/` (the same files
//! the Kotlin and Swift tests read). `cargo test -p countersign-core --test
//! vectors -- --ignored regenerate` writes them anew from fresh signatures.

use std::path::PathBuf;

use countersign_core::protocol::{
    Decision, DecisionMessage, DenyReason, DeviceRequestMessage, EnrolmentMessage, Platform, ProtocolError, SeenNonces,
    SoftwareKey, TransactionTerms, check_freshness, verify_signature,
};
use serde::{Deserialize, Serialize};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-vectors")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorFile<I> {
    description: String,
    cases: Vec<Case<I>>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Case<I> {
    name: String,
    /// "valid", or the error: bad_signature, malformed_signature,
    /// stale_timestamp, replayed_nonce.
    expect: String,
    /// The verifier's public key (hex, uncompressed SEC1).
    public_key: String,
    input: I,
    /// The canonical bytes of `input` (hex): what a correct encoder produces.
    signed_bytes: String,
    signature: String,
    /// Request vectors only: the verifier's clock (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    now: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct DecisionInput {
    challenge_id: String,
    challenge_nonce: String,
    decision: String,
    deny_reason: Option<String>,
    amount_minor: u64,
    currency: u16,
    exponent: u8,
    merchant_name: String,
    requestor_id: String,
    merchant_id: String,
    device_id: String,
    signed_at: i64,
    number_match: Option<u8>,
}

impl DecisionInput {
    fn message(&self) -> DecisionMessage {
        let decision = match (self.decision.as_str(), self.deny_reason.as_deref()) {
            ("approve", None) => Decision::Approve,
            ("deny", Some("not_me")) => Decision::Deny(DenyReason::NotMe),
            ("deny", Some("cancelled")) => Decision::Deny(DenyReason::Cancelled),
            other => panic!("bad decision in vector: {other:?}"),
        };
        DecisionMessage {
            challenge_id: self.challenge_id.clone(),
            challenge_nonce: hex::decode(&self.challenge_nonce).unwrap(),
            decision,
            terms: TransactionTerms {
                amount_minor: self.amount_minor,
                currency: self.currency,
                exponent: self.exponent,
                merchant_name: self.merchant_name.clone(),
                requestor_id: self.requestor_id.clone(),
                merchant_id: self.merchant_id.clone(),
            },
            device_id: self.device_id.clone(),
            signed_at_ms: self.signed_at,
            number_match: self.number_match,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct RequestInput {
    method: String,
    path: String,
    device_id: String,
    timestamp: i64,
    nonce: String,
    /// The body as UTF-8 text (its SHA-256 is what is signed).
    body: String,
}

impl RequestInput {
    fn message(&self) -> DeviceRequestMessage {
        DeviceRequestMessage::new(
            &self.method,
            &self.path,
            &self.device_id,
            self.timestamp,
            &hex::decode(&self.nonce).unwrap(),
            self.body.as_bytes(),
        )
    }
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct EnrolmentInput {
    code: String,
    public_key: String,
    platform: String,
    signed_at: i64,
}

impl EnrolmentInput {
    fn message(&self) -> EnrolmentMessage {
        EnrolmentMessage {
            code: EnrolmentMessage::normalize_code(&self.code),
            public_key: hex::decode(&self.public_key).unwrap(),
            platform: self.platform.parse::<Platform>().unwrap(),
            signed_at_ms: self.signed_at,
        }
    }
}

fn error_name(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::BadSignature => "bad_signature",
        ProtocolError::MalformedSignature => "malformed_signature",
        ProtocolError::StaleTimestamp { .. } => "stale_timestamp",
        ProtocolError::ReplayedNonce => "replayed_nonce",
        ProtocolError::MalformedPublicKey => "malformed_public_key",
        _ => "other",
    }
}

fn outcome(result: Result<(), ProtocolError>) -> String {
    match result {
        Ok(()) => "valid".into(),
        Err(e) => error_name(&e).into(),
    }
}

fn load<I: for<'de> Deserialize<'de>>(file: &str) -> VectorFile<I> {
    let text = std::fs::read_to_string(vectors_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn check_case<I>(case: &Case<I>, bytes: Vec<u8>, extra: impl FnOnce() -> Result<(), ProtocolError>) {
    assert_eq!(hex::encode(&bytes), case.signed_bytes, "{}: canonical bytes differ", case.name);
    let result = extra().and_then(|()| {
        verify_signature(&hex::decode(&case.public_key).unwrap(), &bytes, &hex::decode(&case.signature).unwrap())
    });
    assert_eq!(outcome(result), case.expect, "{}", case.name);
}

#[test]
fn decision_vectors() {
    let file: VectorFile<DecisionInput> = load("decision.json");
    assert!(file.cases.len() >= 8);
    for case in &file.cases {
        check_case(case, case.input.message().signed_bytes(), || Ok(()));
    }
}

#[test]
fn enrolment_vectors() {
    let file: VectorFile<EnrolmentInput> = load("enrolment.json");
    for case in &file.cases {
        check_case(case, case.input.message().signed_bytes(), || Ok(()));
    }
}

/// Request vectors run in order against one nonce log, as a server would.
#[test]
fn request_vectors() {
    let file: VectorFile<RequestInput> = load("request.json");
    let mut seen = SeenNonces::default();
    for case in &file.cases {
        let now = case.now.expect("request vectors carry `now`");
        let input = &case.input;
        check_case(case, input.message().signed_bytes(), || {
            check_freshness(input.timestamp, now)?;
            seen.check_and_remember(&input.device_id, &hex::decode(&input.nonce).unwrap(), now)
        });
    }
}

#[test]
fn every_required_invalid_case_is_covered() {
    let decision: VectorFile<DecisionInput> = load("decision.json");
    let request: VectorFile<RequestInput> = load("request.json");
    let names: Vec<&str> =
        decision.cases.iter().map(|c| c.name.as_str()).chain(request.cases.iter().map(|c| c.name.as_str())).collect();
    for required in [
        "wrong_key",
        "tampered_amount",
        "tampered_merchant",
        "tampered_currency",
        "replayed_nonce",
        "wrong_domain_tag",
        "truncated_signature",
    ] {
        assert!(names.contains(&required), "no vector for {required}");
    }
}

// ---- generation -------------------------------------------------------------

struct Keys {
    device: SoftwareKey,
    other: SoftwareKey,
}

/// The vectors' two test keys are kept in `keys.json` so regenerating keeps
/// the same public keys (signatures change: ECDSA nonces are random).
fn keys() -> Keys {
    let path = vectors_dir().join("keys.json");
    let read = |v: &serde_json::Value, k: &str| {
        SoftwareKey::from_pkcs8(&hex::decode(v[k]["pkcs8"].as_str().unwrap()).unwrap()).unwrap()
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        return Keys { device: read(&v, "device"), other: read(&v, "other") };
    }
    let keys = Keys { device: SoftwareKey::generate(), other: SoftwareKey::generate() };
    let entry = |k: &SoftwareKey| serde_json::json!({"pkcs8": hex::encode(k.pkcs8()), "publicKey": hex::encode(k.public_key())});
    let v = serde_json::json!({
        "description": "Test-only P-256 keys used to make the vectors. Never use them for anything else.",
        "device": entry(&keys.device),
        "other": entry(&keys.other),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    keys
}

fn case<I: Clone>(
    name: &str,
    expect: &str,
    key: &SoftwareKey,
    input: &I,
    bytes: Vec<u8>,
    signature: Vec<u8>,
) -> Case<I> {
    Case {
        name: name.into(),
        expect: expect.into(),
        public_key: hex::encode(key.public_key()),
        input: input.clone(),
        signed_bytes: hex::encode(bytes),
        signature: hex::encode(signature),
        now: None,
    }
}

fn write<I: Serialize>(file: &str, description: &str, cases: Vec<Case<I>>) {
    let v = VectorFile { description: description.into(), cases };
    std::fs::write(vectors_dir().join(file), serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
}

/// Re-signs `bytes` with `domain` in place of the message's own tag.
fn with_domain(bytes: &[u8], domain: &str) -> Vec<u8> {
    let old_len = bytes[0] as usize;
    let mut out = vec![domain.len() as u8];
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(&bytes[1 + old_len..]);
    out
}

#[test]
#[ignore = "writes test-vectors/; run on purpose"]
fn regenerate() {
    let Keys { device, other } = keys();
    let base = DecisionInput {
        challenge_id: "7f1c2d9e-4b3a-4c5d-8e6f-0a1b2c3d4e5f".into(),
        challenge_nonce: "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0".into(),
        decision: "approve".into(),
        deny_reason: None,
        amount_minor: 12800,
        currency: 978,
        exponent: 2,
        merchant_name: "Nordic Outdoor AB".into(),
        requestor_id: "req-nordic-outdoor".into(),
        merchant_id: "MID-000451".into(),
        device_id: "3b9f0c1e-9d55-4e71-a2a8-64f1d1c0b7aa".into(),
        signed_at: 1_795_000_000_000,
        number_match: None,
    };
    let sign = |k: &SoftwareKey, i: &DecisionInput| k.sign(&i.message().signed_bytes());
    let mut cases = Vec::new();
    cases.push(case("approve", "valid", &device, &base, base.message().signed_bytes(), sign(&device, &base)));
    let jpy = DecisionInput {
        amount_minor: 5400,
        currency: 392,
        exponent: 0,
        merchant_name: "東京カメラ店".into(),
        number_match: Some(47),
        ..base.clone()
    };
    cases.push(case(
        "approve_jpy_with_number_match",
        "valid",
        &device,
        &jpy,
        jpy.message().signed_bytes(),
        sign(&device, &jpy),
    ));
    let deny = DecisionInput { decision: "deny".into(), deny_reason: Some("not_me".into()), ..base.clone() };
    cases.push(case("deny_not_me", "valid", &device, &deny, deny.message().signed_bytes(), sign(&device, &deny)));
    let cancel = DecisionInput { decision: "deny".into(), deny_reason: Some("cancelled".into()), ..base.clone() };
    cases.push(case(
        "deny_cancelled",
        "valid",
        &device,
        &cancel,
        cancel.message().signed_bytes(),
        sign(&device, &cancel),
    ));

    let good = sign(&device, &base);
    cases.push(case("wrong_key", "bad_signature", &device, &base, base.message().signed_bytes(), sign(&other, &base)));
    for (name, tampered) in [
        ("tampered_amount", DecisionInput { amount_minor: 1280000, ..base.clone() }),
        ("tampered_merchant", DecisionInput { merchant_name: "Nordic 0utdoor AB".into(), ..base.clone() }),
        ("tampered_currency", DecisionInput { currency: 840, ..base.clone() }),
        (
            "tampered_decision",
            DecisionInput { decision: "deny".into(), deny_reason: Some("cancelled".into()), ..base.clone() },
        ),
        ("tampered_number_match", DecisionInput { number_match: Some(12), ..base.clone() }),
    ] {
        cases.push(case(name, "bad_signature", &device, &tampered, tampered.message().signed_bytes(), good.clone()));
    }
    let request_tagged = with_domain(&base.message().signed_bytes(), "countersign.request.v1");
    cases.push(case(
        "wrong_domain_tag",
        "bad_signature",
        &device,
        &base,
        base.message().signed_bytes(),
        device.sign(&request_tagged),
    ));
    cases.push(case(
        "truncated_signature",
        "malformed_signature",
        &device,
        &base,
        base.message().signed_bytes(),
        good[..good.len() - 4].to_vec(),
    ));
    write(
        "decision.json",
        "Decision messages (countersign.decision.v1). Rebuild signedBytes from input, then verify signature with publicKey.",
        cases,
    );

    // Requests: verified in order, sharing one nonce log.
    let now = 1_795_000_000_000;
    let get = RequestInput {
        method: "GET".into(),
        path: "/v1/device/challenges".into(),
        device_id: base.device_id.clone(),
        timestamp: now - 1_500,
        nonce: "a1a2a3a4a5a6a7a8a9aaabacadaeafb0".into(),
        body: String::new(),
    };
    let post = RequestInput {
        method: "POST".into(),
        path: "/v1/device/challenges/7f1c2d9e-4b3a-4c5d-8e6f-0a1b2c3d4e5f/decision".into(),
        timestamp: now + 2_000,
        nonce: "b1b2b3b4b5b6b7b8b9babbbcbdbebfc0".into(),
        body: r#"{"challengeId":"7f1c2d9e-4b3a-4c5d-8e6f-0a1b2c3d4e5f","decision":"approve"}"#.into(),
        ..get.clone()
    };
    let rsign = |k: &SoftwareKey, i: &RequestInput| k.sign(&i.message().signed_bytes());
    let with_now = |mut c: Case<RequestInput>| {
        c.now = Some(now);
        c
    };
    let mut reqs = vec![
        with_now(case("get_pending", "valid", &device, &get, get.message().signed_bytes(), rsign(&device, &get))),
        with_now(case("post_decision", "valid", &device, &post, post.message().signed_bytes(), rsign(&device, &post))),
        with_now(case(
            "replayed_nonce",
            "replayed_nonce",
            &device,
            &get,
            get.message().signed_bytes(),
            rsign(&device, &get),
        )),
    ];
    let stale =
        RequestInput { timestamp: now - 300_001, nonce: "c1c2c3c4c5c6c7c8c9cacbcccdcecfd0".into(), ..get.clone() };
    reqs.push(with_now(case(
        "stale_timestamp",
        "stale_timestamp",
        &device,
        &stale,
        stale.message().signed_bytes(),
        rsign(&device, &stale),
    )));
    let fresh = |n: &str| RequestInput { nonce: n.into(), ..get.clone() };
    let wk = fresh("d1d2d3d4d5d6d7d8d9dadbdcdddedfe0");
    reqs.push(with_now(case(
        "wrong_key",
        "bad_signature",
        &device,
        &wk,
        wk.message().signed_bytes(),
        rsign(&other, &wk),
    )));
    let tb = RequestInput { nonce: "e1e2e3e4e5e6e7e8e9eaebecedeeeff0".into(), ..post.clone() };
    let tampered_body = RequestInput { body: tb.body.replace("approve", "deny"), ..tb.clone() };
    reqs.push(with_now(case(
        "tampered_body",
        "bad_signature",
        &device,
        &tampered_body,
        tampered_body.message().signed_bytes(),
        rsign(&device, &tb),
    )));
    let td = fresh("f1f2f3f4f5f6f7f8f9fafbfcfdfeff00");
    let decision_tagged = with_domain(&td.message().signed_bytes(), "countersign.decision.v1");
    reqs.push(with_now(case(
        "wrong_domain_tag",
        "bad_signature",
        &device,
        &td,
        td.message().signed_bytes(),
        device.sign(&decision_tagged),
    )));
    let tr = fresh("0102030405060708090a0b0c0d0e0f10");
    let sig = rsign(&device, &tr);
    reqs.push(with_now(case(
        "truncated_signature",
        "malformed_signature",
        &device,
        &tr,
        tr.message().signed_bytes(),
        sig[..20].to_vec(),
    )));
    write(
        "request.json",
        "Device request authentication (countersign.request.v1). Verify in order with one nonce log: freshness (±300000 ms of now), nonce novelty per device, then signature.",
        reqs,
    );

    let enrol = EnrolmentInput {
        code: "K7QM-4TZD-9XWP".into(),
        public_key: hex::encode(device.public_key()),
        platform: "ios".into(),
        signed_at: now,
    };
    let esign = |k: &SoftwareKey, i: &EnrolmentInput| k.sign(&i.message().signed_bytes());
    let other_code = EnrolmentInput { code: "K7QM-4TZD-9XWQ".into(), ..enrol.clone() };
    let enrolments = vec![
        case("enrol_ios", "valid", &device, &enrol, enrol.message().signed_bytes(), esign(&device, &enrol)),
        case("wrong_key", "bad_signature", &device, &enrol, enrol.message().signed_bytes(), esign(&other, &enrol)),
        case(
            "tampered_code",
            "bad_signature",
            &device,
            &other_code,
            other_code.message().signed_bytes(),
            esign(&device, &enrol),
        ),
    ];
    write(
        "enrolment.json",
        "Enrolment proof of possession (countersign.enrolment.v1). The code is normalised (upper case, no spaces or dashes) before encoding.",
        enrolments,
    );
}
