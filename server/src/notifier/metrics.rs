//! Push delivery in numbers, per provider: how each push ended and how long
//! it took. Plain atomics with a snapshot; an exporter (Prometheus, issue 9)
//! reads [`metrics`] and renders the buckets as they are — cumulative, with
//! upper bounds in milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the latency buckets, in milliseconds; a last bucket
/// (`+Inf`) holds the rest.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000];

static GLOBAL: LazyLock<Arc<PushMetrics>> = LazyLock::new(Arc::default);

/// The numbers of the notifier the server runs with (the one
/// [`super::PushConfig::build`] makes).
pub fn metrics() -> PushMetricsSnapshot {
    GLOBAL.snapshot()
}

pub(crate) fn global() -> Arc<PushMetrics> {
    GLOBAL.clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }
}

#[derive(Debug, Default)]
pub struct PushMetrics {
    pub apns: ProviderMetrics,
    pub fcm: ProviderMetrics,
}

impl PushMetrics {
    pub fn provider(&self, provider: Provider) -> &ProviderMetrics {
        match provider {
            Provider::Apns => &self.apns,
            Provider::Fcm => &self.fcm,
        }
    }

    pub fn snapshot(&self) -> PushMetricsSnapshot {
        PushMetricsSnapshot { apns: self.apns.snapshot(), fcm: self.fcm.snapshot() }
    }
}

/// Counters for one provider. Every push ends in exactly one of
/// `delivered`, `token_rejected`, `misconfigured`, `gave_up`, `abandoned`.
#[derive(Debug, Default)]
pub struct ProviderMetrics {
    /// Requests sent to the provider, retries and refreshes included.
    pub requests: AtomicU64,
    /// Pushes the provider accepted.
    pub delivered: AtomicU64,
    /// Pushes refused for the device's token (the device is now unreachable).
    pub token_rejected: AtomicU64,
    /// Pushes that failed for our configuration or request — a key, topic,
    /// project or permission to fix. Each one is also logged as an error.
    pub misconfigured: AtomicU64,
    /// Tries that failed for a passing reason and were retried.
    pub retries: AtomicU64,
    /// Pushes still failing for a passing reason when the challenge's life
    /// left no time for another try.
    pub gave_up: AtomicU64,
    /// Pushes whose retries stopped because the challenge ended meanwhile.
    pub abandoned: AtomicU64,
    /// Provider tokens (APNs) or access tokens (FCM) made or fetched.
    pub credential_refreshes: AtomicU64,
    /// One request's round trip.
    pub request_latency: Histogram,
    /// From the server's decision to push until the provider accepted it,
    /// retries included.
    pub delivery_latency: Histogram,
}

impl ProviderMetrics {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProviderSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProviderSnapshot {
            requests: read(&self.requests),
            delivered: read(&self.delivered),
            token_rejected: read(&self.token_rejected),
            misconfigured: read(&self.misconfigured),
            retries: read(&self.retries),
            gave_up: read(&self.gave_up),
            abandoned: read(&self.abandoned),
            credential_refreshes: read(&self.credential_refreshes),
            request_latency: self.request_latency.snapshot(),
            delivery_latency: self.delivery_latency.snapshot(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS_MS.iter().position(|&le| ms <= le).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_MS.len());
        for (le, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            buckets.push((*le, cumulative));
        }
        let count = cumulative + self.buckets[LATENCY_BUCKETS_MS.len()].load(Ordering::Relaxed);
        HistogramSnapshot { buckets, count, sum_ms: self.sum_ms.load(Ordering::Relaxed) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushMetricsSnapshot {
    pub apns: ProviderSnapshot,
    pub fcm: ProviderSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderSnapshot {
    pub requests: u64,
    pub delivered: u64,
    pub token_rejected: u64,
    pub misconfigured: u64,
    pub retries: u64,
    pub gave_up: u64,
    pub abandoned: u64,
    pub credential_refreshes: u64,
    pub request_latency: HistogramSnapshot,
    pub delivery_latency: HistogramSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistogramSnapshot {
    /// `(upper bound in ms, observations at or below it)`, cumulative.
    pub buckets: Vec<(u64, u64)>,
    /// All observations, `+Inf` included.
    pub count: u64,
    pub sum_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_an_infinite_last() {
        let h = Histogram::default();
        for ms in [10, 25, 26, 700, 400_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (25, 2));
        assert_eq!(s.buckets[1], (50, 3));
        assert_eq!(s.buckets[5], (1_000, 4));
        assert_eq!(s.buckets.last(), Some(&(300_000, 4)));
        assert_eq!((s.count, s.sum_ms), (5, 400_761));
    }

    #[test]
    fn counters_per_provider() {
        let m = PushMetrics::default();
        ProviderMetrics::count(&m.provider(Provider::Fcm).delivered);
        let s = m.snapshot();
        assert_eq!((s.fcm.delivered, s.apns.delivered), (1, 0));
        assert_eq!(Provider::Apns.as_str(), "apns");
    }
}
