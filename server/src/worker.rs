//! What the background workers share: a pass repeated until shutdown, and
//! the exponential backoff of retried sends.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `pass` every `interval` until `shutdown` fires. A pass logs its own
/// failures; the loop never stops on one.
pub async fn repeat<F, Fut>(interval: Duration, mut shutdown: watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        pass().await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The delay before the attempt after `attempt` (1-based): `initial`,
/// doubling each time, never above `max`.
pub fn backoff_ms(initial_ms: u64, attempt: u32, max_ms: u64) -> i64 {
    let factor = 1u64.checked_shl(attempt.saturating_sub(1)).unwrap_or(u64::MAX);
    initial_ms.saturating_mul(factor).min(max_ms).min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let delays: Vec<i64> = (1..=6).map(|a| backoff_ms(1000, a, 10_000)).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(1000, 200, u64::MAX), i64::MAX);
    }
}
