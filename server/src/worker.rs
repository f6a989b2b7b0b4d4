//! What the background workers share: a pass repeated until shutdown, a
//! queue of sends worked side by side, and the exponential backoff of
//! retried sends.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Wakes this node's queue workers when it has just queued a job, so the
/// job goes at once rather than at the next poll.
#[derive(Default)]
pub struct Wake {
    /// A result callback (RReq) was queued.
    pub callbacks: Notify,
    /// A one-time code's sends were queued.
    pub deliveries: Notify,
}

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

/// Works a queue kept in the database until `shutdown` fires: `claim(n)`
/// takes up to `n` due jobs (leased, so no other worker takes them
/// meanwhile; a failure is logged as looking for `what`, and the next
/// pass tries again), and each is sent by `send` on a task of its own, at
/// most `places` at once — a slow receiver holds one place, not the queue.
/// While claims come back full the next follows at once: under load the
/// queue drains as fast as its receivers answer, not a batch per poll.
/// Otherwise the worker waits `interval` (jobs other nodes queued, retries
/// coming due) or until `wake` says this node queued one. On shutdown the
/// sends in flight finish (each has its own timeout) and are recorded.
pub async fn work_queue<J, E, C, CF, S, SF>(
    what: &str,
    places: usize,
    interval: Duration,
    wake: &Notify,
    mut shutdown: watch::Receiver<bool>,
    mut claim: C,
    send: S,
) where
    E: std::fmt::Display,
    C: FnMut(usize) -> CF,
    CF: Future<Output = Result<Vec<J>, E>>,
    S: Fn(J) -> SF,
    SF: Future<Output = ()> + Send + 'static,
{
    let mut in_flight = JoinSet::new();
    // Stops when told to, or when whoever could tell it is gone.
    let mut stopped = false;
    while !stopped && !*shutdown.borrow() {
        while let Some(done) = in_flight.try_join_next() {
            log_panic(done);
        }
        let free = places.saturating_sub(in_flight.len());
        if free > 0 {
            let jobs = claim(free).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "looking for due {what} failed");
                Vec::new()
            });
            let full = jobs.len() == free;
            for job in jobs {
                in_flight.spawn(send(job));
            }
            if full {
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
            Some(done) = in_flight.join_next(), if free == 0 => log_panic(done),
            changed = shutdown.changed() => stopped = changed.is_err(),
        }
    }
    while let Some(done) = in_flight.join_next().await {
        log_panic(done);
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a queued send stopped short");
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
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::time::{Instant, timeout};

    use super::*;

    /// A queue of numbered jobs, as a database table would hold them, and
    /// the jobs sent so far.
    #[derive(Clone, Default)]
    struct Queue {
        due: Arc<Mutex<VecDeque<u32>>>,
        sent: Arc<Mutex<Vec<u32>>>,
        /// Jobs whose send waits for `release`.
        slow: Arc<Mutex<Vec<u32>>>,
        release: Arc<Notify>,
    }

    impl Queue {
        fn with(jobs: impl IntoIterator<Item = u32>) -> Self {
            let q = Self::default();
            q.due.lock().unwrap().extend(jobs);
            q
        }

        fn claim(&self, n: usize) -> Vec<u32> {
            let mut due = self.due.lock().unwrap();
            let n = n.min(due.len());
            due.drain(..n).collect()
        }

        async fn send(self, job: u32) {
            if self.slow.lock().unwrap().contains(&job) {
                self.release.notified().await;
            }
            self.sent.lock().unwrap().push(job);
        }

        fn sent(&self) -> Vec<u32> {
            let mut sent = self.sent.lock().unwrap().clone();
            sent.sort_unstable();
            sent
        }

        /// Works the queue until the returned sender says stop.
        fn work(&self, places: usize, wake: Arc<Notify>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
            let (stop, shutdown) = watch::channel(false);
            let q = self.clone();
            // An hour between polls: anything sent promptly was drained or woken, not polled.
            let worker = tokio::spawn(async move {
                let claim = |n| std::future::ready(Ok::<_, String>(q.claim(n)));
                let send = |job| q.clone().send(job);
                work_queue("jobs", places, Duration::from_secs(3600), &wake, shutdown, claim, send).await
            });
            (stop, worker)
        }
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_queue_longer_than_the_places_drains_without_waiting_for_a_poll() {
        let q = Queue::with(0..500);
        let (_stop, _worker) = q.work(8, Arc::default());
        until("every job is sent", || q.sent().len() == 500).await;
        assert_eq!(q.sent(), (0..500).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_slow_send_holds_one_place_and_the_others_go_on() {
        let q = Queue::with(0..50);
        q.slow.lock().unwrap().extend([0, 1]);
        let (_stop, _worker) = q.work(3, Arc::default());
        until("the others are sent", || q.sent() == (2..50).collect::<Vec<_>>()).await;
        q.release.notify_waiters();
        until("the slow ones are sent too", || q.sent().len() == 50).await;
    }

    #[tokio::test]
    async fn a_job_queued_later_goes_when_the_worker_is_woken() {
        let q = Queue::default();
        let wake = Arc::new(Notify::new());
        let (_stop, _worker) = q.work(4, wake.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.due.lock().unwrap().push_back(7);
        wake.notify_one();
        until("the queued job is sent", || q.sent() == [7]).await;
    }

    #[tokio::test]
    async fn shutdown_lets_the_sends_in_flight_finish() {
        let q = Queue::with([1]);
        q.slow.lock().unwrap().push(1);
        let (stop, worker) = q.work(4, Arc::default());
        until("the send is in flight", || q.due.lock().unwrap().is_empty()).await;
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!worker.is_finished(), "the worker waits for its send");
        q.release.notify_waiters();
        timeout(Duration::from_secs(10), worker).await.expect("the worker stops").unwrap();
        assert_eq!(q.sent(), [1]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let delays: Vec<i64> = (1..=6).map(|a| backoff_ms(1000, a, 10_000)).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(1000, 200, u64::MAX), i64::MAX);
    }
}
