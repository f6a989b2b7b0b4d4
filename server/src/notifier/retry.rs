//! When to try a push again: exponential backoff with jitter, never sooner
//! than the provider asked (`Retry-After`), and never after the challenge
//! has expired — a push that arrives too late to be answered is worse than
//! the code the cardholder gets instead.

use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial.max(Duration::from_millis(1)), max: max.max(initial) }
    }

    /// How long to wait before the next try, or `None` when that try would
    /// start after `deadline`. The wait is between half and all of the
    /// current step (so many servers retrying at once spread out), and at
    /// least `retry_after`; the step doubles each time up to the maximum.
    pub fn next_wait(&mut self, retry_after: Option<Duration>, now: Instant, deadline: Instant) -> Option<Duration> {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        let jittered = half + rand::rng().random_range(Duration::ZERO..=step - half);
        let wait = retry_after.map_or(jittered, |asked| asked.max(jittered));
        (now + wait < deadline).then_some(wait)
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3);
/// a date in the past means "now".
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.timestamp_millis();
    Some(Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(backoff.next_wait(None, now, far).unwrap().as_millis());
        }
        let steps = [100, 200, 350, 350, 350];
        for (wait, step) in waits.iter().zip(steps) {
            assert!((step / 2..=step).contains(wait), "{waits:?}");
        }
    }

    #[test]
    fn honours_retry_after_and_the_deadline() {
        let now = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let asked = Duration::from_secs(2);
        assert_eq!(backoff.next_wait(Some(asked), now, now + Duration::from_secs(60)), Some(asked));
        // Asked to wait past the challenge's expiry: give up now.
        assert_eq!(backoff.next_wait(Some(asked), now, now + Duration::from_secs(1)), None);
        let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(backoff.next_wait(None, now, now + Duration::from_millis(2_000)), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        let at = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT").unwrap().timestamp_millis();
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at - 1_500), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at + 10_000), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }
}
