//! The clients' side: the requestor and phones talking to the server over
//! loopback HTTP, and the preloads done through the admin flows on the
//! same database (they are not timed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow, ensure};
use countersign_core::protocol::wire::EnrolmentRequest;
use countersign_core::protocol::wire::EnrolmentResponse;
use countersign_core::protocol::{EnrolmentMessage, Platform, RequestAuth, SoftwareKey};
use countersign_server::App;
use countersign_server::clock::{Clock, SystemClock};
use countersign_server::flows::admin::{self, CreatedRequestor, NewCardRequest, NewRequestorRequest};
use countersign_tests::areq;
use serde_json::Value;

use crate::results::Results;

/// What the clients need to reach the server, and the admin side of the
/// same database for preloading.
pub struct Bench {
    /// The server's state opened in this process: admin flows only.
    pub admin: App,
    pub base: String,
    pub http: reqwest::Client,
    pub requestor: CreatedRequestor,
    pub notify_url: String,
    /// The RReqs the server sent to `notify_url`.
    pub results: Results,
    pans: AtomicU64,
}

pub struct Device {
    pub id: String,
    pub key: SoftwareKey,
}

impl Bench {
    pub async fn new(admin: App, base: String) -> Result<Self> {
        let results = Results::default();
        let notify_url = results.serve().await?;
        let requestor = admin::create_requestor(
            &admin,
            NewRequestorRequest { id: "bench-shop".into(), name: "Bench shop".into() },
            "bench",
        )
        .await
        .map_err(|e| anyhow!("creating the requestor: {e:?}"))?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(4096).build()?;
        Ok(Self { admin, base, http, requestor, notify_url, results, pans: AtomicU64::new(0) })
    }

    /// A new Luhn-valid card number, different each call.
    fn next_pan(&self) -> String {
        let n = self.pans.fetch_add(1, Ordering::Relaxed);
        luhn_complete(&format!("37{n:012}"))
    }

    /// A new card; returns its number and id.
    pub async fn card(&self, email: Option<String>) -> Result<(String, String)> {
        let pan = self.next_pan();
        let req = NewCardRequest { acct_number: pan.clone(), language: Some("en".into()), email, phone: None };
        let card =
            admin::create_card(&self.admin, req, "bench").await.map_err(|e| anyhow!("creating a card: {e:?}"))?;
        Ok((pan, card.card_id))
    }

    /// `n` new cards made by `tasks` concurrent callers; returns their numbers.
    pub async fn cards(self: &Arc<Self>, n: usize) -> Result<Vec<String>> {
        let tasks: Vec<_> = (0..64.min(n.max(1)))
            .map(|t| {
                let bench = self.clone();
                tokio::spawn(async move {
                    let mut pans = Vec::new();
                    for _ in (t..n).step_by(64) {
                        pans.push(bench.card(None).await?.0);
                    }
                    Ok::<_, anyhow::Error>(pans)
                })
            })
            .collect();
        let mut pans = Vec::with_capacity(n);
        for t in tasks {
            pans.extend(t.await??);
        }
        Ok(pans)
    }

    pub async fn enrolment_code(&self, card_id: &str) -> Result<String> {
        let code = admin::create_enrolment_code(&self.admin, card_id, "bench")
            .await
            .map_err(|e| anyhow!("creating an enrolment code: {e:?}"))?;
        Ok(code.code)
    }

    pub async fn areq(&self, pan: &str, amount_minor: u64) -> Result<Value> {
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

    pub async fn enrol(&self, key: &SoftwareKey, code: &str) -> Result<EnrolmentResponse> {
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
    pub async fn signed(&self, device: &Device, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<String> {
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
pub fn six_digits(text: &str) -> Option<String> {
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
