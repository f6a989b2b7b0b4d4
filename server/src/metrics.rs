//! Prometheus metrics: one process-wide registry, the functions the flows
//! call to count what happened, and the separate listener that serves
//! `GET /metrics` in the text exposition format.
//!
//! Labels are bounded: routes are axum's matched path templates (never the
//! raw URI), outcomes and reasons are the server's own codes. Nothing that
//! identifies a card, a device or a purchase is ever a label.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::notifier::{self, HistogramSnapshot, ProviderSnapshot};

/// `[metrics]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on `listen`. Off by default: a second open port
    /// is the operator's choice, and several nodes on one host would collide.
    pub enabled: bool,
    /// Where the metrics listener binds, apart from the API. Loopback by
    /// default: scrape from the host, or bind elsewhere on purpose.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: false, listen: SocketAddr::from(([127, 0, 0, 1], 9480)) }
    }
}

type Labels = Vec<(&'static str, String)>;

const SECONDS_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    authentications: Family<Labels, Counter>,
    challenges: Family<Labels, Counter>,
    code_deliveries: Family<Labels, Counter>,
    result_callbacks: Family<Labels, Counter>,
    card_blocks: Counter,
    card_unblocks: Counter,
    db_duration: Family<Labels, Histogram, fn() -> Histogram>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("countersign");
    let requests = Family::<Labels, Counter>::default();
    registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
    let request_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram);
    registry.register(
        "http_request_duration_seconds",
        "HTTP request latency by route and method",
        request_duration.clone(),
    );
    let authentications = Family::<Labels, Counter>::default();
    registry.register(
        "authentications",
        "AReqs answered, by transStatus and the first reason that decided it",
        authentications.clone(),
    );
    let challenges = Family::<Labels, Counter>::default();
    registry.register(
        "challenges_ended",
        "Challenges ended, by channel (push, code, none) and outcome",
        challenges.clone(),
    );
    let code_deliveries = Family::<Labels, Counter>::default();
    registry.register(
        "code_deliveries",
        "One-time-code send attempts, by channel (email, sms), provider and result",
        code_deliveries.clone(),
    );
    let result_callbacks = Family::<Labels, Counter>::default();
    registry.register(
        "result_callbacks",
        "Result callback (RReq) attempts, by result (delivered, retried, failed)",
        result_callbacks.clone(),
    );
    let card_blocks = Counter::default();
    registry.register("cards_blocked", "Cards blocked after too many wrong codes", card_blocks.clone());
    let card_unblocks = Counter::default();
    registry.register("cards_unblocked", "Unblock actions by an operator or the CLI", card_unblocks.clone());
    let db_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram);
    registry.register(
        "db_operation_duration_seconds",
        "Database operations (one pooled call, usually one transaction), by backend",
        db_duration.clone(),
    );
    registry.register_collector(Box::new(PushCollector));
    Metrics {
        registry,
        requests,
        request_duration,
        authentications,
        challenges,
        code_deliveries,
        result_callbacks,
        card_blocks,
        card_unblocks,
        db_duration,
    }
});

/// One HTTP request answered. `route` is the matched path template.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.requests
        .get_or_create(&vec![
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ])
        .inc();
    m.request_duration
        .get_or_create(&vec![("route", route.to_owned()), ("method", method.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// An AReq answered with `status` (Y, C, N, R) for `reason` (a risk or
/// refusal code, or `none`).
pub fn authentication(status: &str, reason: &str) {
    METRICS.authentications.get_or_create(&vec![("status", status.to_owned()), ("reason", reason.to_owned())]).inc();
}

/// A challenge ended through `channel` (`push`, `code`, or `none` when
/// neither answered) with `outcome` (its outcome reason).
pub fn challenge_ended(channel: &str, outcome: &str) {
    METRICS.challenges.get_or_create(&vec![("channel", channel.to_owned()), ("outcome", outcome.to_owned())]).inc();
}

/// One attempt to send a one-time code.
pub fn code_delivery(channel: &str, provider: &str, result: &str) {
    METRICS
        .code_deliveries
        .get_or_create(&vec![
            ("channel", channel.to_owned()),
            ("provider", provider.to_owned()),
            ("result", result.to_owned()),
        ])
        .inc();
}

/// One attempt to send a result callback: `delivered`, `retried` (to be
/// tried again) or `failed` (given up).
pub fn result_callback(result: &str) {
    METRICS.result_callbacks.get_or_create(&vec![("result", result.to_owned())]).inc();
}

pub fn card_blocked() {
    METRICS.card_blocks.inc();
}

pub fn card_unblocked() {
    METRICS.card_unblocks.inc();
}

/// One database call took `elapsed`.
pub fn db_operation(backend: &'static str, elapsed: Duration) {
    METRICS.db_duration.get_or_create(&vec![("backend", backend.to_owned())]).observe(elapsed.as_secs_f64());
}

/// The registry in the Prometheus text format.
pub fn render() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &METRICS.registry).expect("writing to a String");
    text
}

type ReadCounter = fn(&ProviderSnapshot) -> u64;
type ReadHistogram = fn(&ProviderSnapshot) -> &HistogramSnapshot;

/// The notifier's own push counters (APNs, FCM), read at each scrape.
#[derive(Debug)]
struct PushCollector;

impl Collector for PushCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = notifier::metrics();
        let providers = [("apns", &snapshot.apns), ("fcm", &snapshot.fcm)];
        let mut family = encoder.encode_descriptor(
            "push_deliveries",
            "Pushes to a provider, by how each ended",
            None,
            MetricType::Counter,
        )?;
        for (provider, s) in providers {
            for (result, value) in [
                ("delivered", s.delivered),
                ("token_rejected", s.token_rejected),
                ("misconfigured", s.misconfigured),
                ("gave_up", s.gave_up),
                ("abandoned", s.abandoned),
            ] {
                let labels = [("provider", provider), ("result", result)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let counters: [(&str, &str, ReadCounter); 3] = [
            ("push_requests", "Requests sent to a push provider, retries included", |s| s.requests),
            ("push_retries", "Push tries that failed for a passing reason and were retried", |s| s.retries),
            ("push_credential_refreshes", "Provider or access tokens made or fetched", |s| s.credential_refreshes),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (provider, s) in providers {
                ConstCounter::new(read(s)).encode(family.encode_family(&[("provider", provider)])?)?;
            }
        }
        let histograms: [(&str, &str, ReadHistogram); 2] = [
            ("push_request_duration_seconds", "One request to a push provider", |s| &s.request_latency),
            (
                "push_delivery_duration_seconds",
                "From the decision to push until the provider accepted it, retries included",
                |s| &s.delivery_latency,
            ),
        ];
        for (name, help, read) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (provider, s) in providers {
                let h = read(s);
                let buckets = per_bucket(h);
                family.encode_family(&[("provider", provider)])?.encode_histogram::<NoLabelSet>(
                    h.sum_ms as f64 / 1000.0,
                    h.count,
                    &buckets,
                    None,
                )?;
            }
        }
        Ok(())
    }
}

/// The notifier's cumulative millisecond buckets as the per-bucket seconds
/// the encoder sums up, with `+Inf` last.
fn per_bucket(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    let mut previous = 0;
    let mut out: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(le_ms, cumulative)| {
            let count = cumulative - previous;
            previous = cumulative;
            (le_ms as f64 / 1000.0, count)
        })
        .collect();
    out.push((f64::INFINITY, h.count - previous));
    out
}

async fn scrape() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render())
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router() -> Router {
    Router::new().route("/metrics", get(scrape))
}

/// Serves [`router`] on `listener` until `shutdown` turns true.
pub async fn serve(listener: tokio::net::TcpListener, mut shutdown: watch::Receiver<bool>) {
    let graceful = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, router()).with_graceful_shutdown(graceful).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_push_numbers() {
        http_request("/v1/authentications", "POST", 200, Duration::from_millis(3));
        authentication("C", "amount_above_threshold");
        challenge_ended("push", "approved");
        code_delivery("sms", "outbox", "sent");
        card_blocked();
        db_operation("sqlite", Duration::from_micros(300));
        let text = render();
        for line in [
            "countersign_http_requests_total{route=\"/v1/authentications\",method=\"POST\",status=\"200\"}",
            "countersign_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/authentications\",method=\"POST\"}",
            "countersign_authentications_total{status=\"C\",reason=\"amount_above_threshold\"}",
            "countersign_challenges_ended_total{channel=\"push\",outcome=\"approved\"}",
            "countersign_code_deliveries_total{channel=\"sms\",provider=\"outbox\",result=\"sent\"}",
            "countersign_cards_blocked_total",
            "countersign_db_operation_duration_seconds_count{backend=\"sqlite\"}",
            "countersign_push_deliveries_total{provider=\"apns\",result=\"delivered\"}",
            "countersign_push_request_duration_seconds_bucket{le=\"+Inf\",provider=\"fcm\"}",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn cumulative_buckets_become_per_bucket() {
        let h = HistogramSnapshot { buckets: vec![(25, 2), (50, 3), (100, 3)], count: 5, sum_ms: 0 };
        assert_eq!(per_bucket(&h), vec![(0.025, 2), (0.05, 1), (0.1, 0), (f64::INFINITY, 2)]);
    }
}
