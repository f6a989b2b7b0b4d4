//! The HTTP side of the client: where requests go, how they are signed, and
//! what an answer means.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode, Url};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;

use super::error::ClientError;
use super::signer::CheckedSigner;
use crate::protocol::wire::ErrorBody;
use crate::protocol::{NONCE_LEN, RequestAuth};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Far above any device API answer; stops a broken or hostile server from
/// exhausting a phone's memory.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Who signs a request, and as which device.
pub(crate) struct Signing<'a> {
    pub signer: &'a CheckedSigner,
    pub device_id: &'a str,
    pub now_ms: i64,
}

pub(crate) struct Transport {
    http: Client,
    base: Url,
    rng: SystemRandom,
}

impl Transport {
    pub(crate) fn new(server_url: &str) -> Result<Self, ClientError> {
        let base = parse_server_url(server_url)?;
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirect would send a signed request somewhere it was not
            // signed for; the device API never redirects.
            .redirect(Policy::none())
            .build()
            .map_err(|e| ClientError::Network(describe(e)))?;
        Ok(Self { http, base, rng: SystemRandom::new() })
    }

    /// The URL of a device API path, below any path prefix of the server URL.
    /// Each segment is percent-encoded, so an id cannot change the route.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked to be an http(s) URL").pop_if_empty().extend(segments);
        url
    }

    /// Sends `body` (JSON, or empty) and returns the body of a 2xx answer.
    pub(crate) fn send(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        signing: Option<Signing<'_>>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(signing) = signing {
            let nonce = self.nonce()?;
            let auth = sign_request(&signing, &method, &url, &body, nonce)?;
            for (name, value) in auth.to_headers() {
                request = request.header(name, value);
            }
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().map_err(|e| ClientError::Network(describe(e)))?;
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ClientError::Network(format!("reading the answer failed: {e}")))?;
        if bytes.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(ClientError::BadResponse(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        interpret(status, bytes)
    }

    fn nonce(&self) -> Result<[u8; NONCE_LEN], ClientError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| ClientError::KeyUnavailable("the system random source failed".into()))?;
        Ok(nonce)
    }
}

/// Signs a request as it will travel: the method, the path and query exactly
/// as they appear in the request line, and the body bytes.
pub(crate) fn sign_request(
    signing: &Signing<'_>,
    method: &Method,
    url: &Url,
    body: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<RequestAuth, ClientError> {
    let mut auth = RequestAuth {
        device_id: signing.device_id.to_owned(),
        timestamp_ms: signing.now_ms,
        nonce: nonce.to_vec(),
        signature: Vec::new(),
    };
    let message = auth.message(method.as_str(), &path_and_query(url), body);
    auth.signature = signing.signer.sign(&message.signed_bytes())?;
    Ok(auth)
}

pub(crate) fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::BadResponse(format!("{what}: {e}")))
}

/// A 2xx answer's body, or the error the answer stands for.
fn interpret(status: StatusCode, bytes: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    if status.is_success() {
        return Ok(bytes);
    }
    if status.is_client_error() || status.is_server_error() {
        return match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::from_error_body(status.as_u16(), body)),
            Err(_) => Err(ClientError::BadResponse(format!("HTTP {status} without a Countersign error body"))),
        };
    }
    Err(ClientError::BadResponse(format!("unexpected HTTP {status}")))
}

/// The server URL as the client stores and compares it: parsed, checked,
/// and without a trailing slash, so `https://a.example/` and
/// `https://a.example` are one server.
pub(crate) fn normalize_server_url(server_url: &str) -> Result<String, ClientError> {
    Ok(parse_server_url(server_url)?.as_str().trim_end_matches('/').to_owned())
}

/// Plain HTTP is accepted only to this machine (local servers, tests): a
/// phone must reach the issuer over TLS.
fn parse_server_url(server_url: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| ClientError::BadPayload(format!("server URL {why}"));
    let url = Url::parse(server_url.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials, a query or a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(bad("must use https (plain http is only allowed to localhost)")),
        _ => Err(bad("must be an https URL")),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A reqwest error as one line, with its causes (which name the real
/// problem: refused, DNS, TLS) but without the URL.
fn describe(error: reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect to the server"
    } else {
        "request failed"
    };
    let mut line = what.to_owned();
    let error = error.without_url();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
