//! Wake-ups for whoever waits for a challenge to change: the challenge
//! window's long-poll, waiting for the phone's answer or a code.
//!
//! Each backend announces the changes a window shows (a challenge ending, a
//! code taking over from the push) its own way: SQLite, with one node, from
//! the process that made them; PostgreSQL through `LISTEN`/`NOTIFY`, so
//! that a change committed on any node wakes the windows waiting on every
//! node. A wake-up only says "read again": the database stays the truth.
//! Waiters also read again every so often on their own, often while
//! wake-ups cannot be trusted (PostgreSQL's listener is reconnecting),
//! rarely while they can (for the few changes nobody announces, such as a
//! card blocked by another purchase).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

/// Wake-ups queued for a waiter that has not looked yet; beyond that it
/// reads again (as after any lost wake-up).
const QUEUE: usize = 256;

#[derive(Debug, Clone)]
enum Wake {
    /// This challenge changed.
    Changed(Arc<str>),
    /// Anything may have changed: wake-ups were, or may have been, lost.
    Everything,
}

type Listen = Box<dyn FnOnce() + Send>;

pub struct ChallengeEvents {
    sender: broadcast::Sender<Wake>,
    /// Whether every change reaches this node's waiters now.
    live: AtomicBool,
    /// Starts the backend's listening, on the first watch.
    listen: Mutex<Option<Listen>>,
}

impl ChallengeEvents {
    /// How often a waiter reads again while wake-ups may be missed.
    pub const REREAD_UNLIVE: Duration = Duration::from_millis(500);
    /// How often a waiter reads again while every change wakes it.
    pub const REREAD_LIVE: Duration = Duration::from_secs(5);

    /// Announced by this process, which makes every change: always live.
    pub fn in_process() -> Self {
        Self::new(true, None)
    }

    /// Announced from elsewhere once `listen` (run in the async runtime on
    /// the first [`watch`](Self::watch)) has connected them; not live until
    /// it calls [`set_live`](Self::set_live).
    pub fn listening(listen: impl FnOnce() + Send + 'static) -> Self {
        Self::new(false, Some(Box::new(listen)))
    }

    fn new(live: bool, listen: Option<Listen>) -> Self {
        Self { sender: broadcast::channel(QUEUE).0, live: AtomicBool::new(live), listen: Mutex::new(listen) }
    }

    /// Wakes this node's waiters on `challenge_id`.
    pub fn changed(&self, challenge_id: &str) {
        // No waiter at all is no error.
        let _ = self.sender.send(Wake::Changed(challenge_id.into()));
    }

    /// Records whether wake-ups arrive; either way every waiter reads
    /// again now: what changed meanwhile may not have been announced, and
    /// waiters re-read at the pace that now fits.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
        let _ = self.sender.send(Wake::Everything);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// How long a waiter goes without reading again.
    pub fn reread_interval(&self) -> Duration {
        if self.is_live() { Self::REREAD_LIVE } else { Self::REREAD_UNLIVE }
    }

    /// Starts watching. Call it before reading the state watched: a change
    /// that lands in between still wakes the watch.
    pub fn watch(&self) -> ChallengeWatch<'_> {
        let receiver = self.sender.subscribe();
        let listen = self.listen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(listen) = listen {
            listen();
        }
        ChallengeWatch { events: self, receiver }
    }
}

pub struct ChallengeWatch<'a> {
    events: &'a ChallengeEvents,
    receiver: broadcast::Receiver<Wake>,
}

impl ChallengeWatch<'_> {
    /// Waits until `challenge_id` may have changed, for at most `at_most`
    /// and at most the re-read interval. Returns whether a wake-up (not
    /// the time) ended the wait.
    pub async fn changed(&mut self, challenge_id: &str, at_most: Duration) -> bool {
        let reread = self.events.reread_interval();
        let woken = async {
            loop {
                match self.receiver.recv().await {
                    Ok(Wake::Changed(id)) if *id == *challenge_id => return,
                    Ok(Wake::Changed(_)) => {}
                    Ok(Wake::Everything) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    // Nobody announces any more: only time ends the wait.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::time::timeout(at_most.min(reread), woken).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "challenge-1";

    #[tokio::test]
    async fn a_change_wakes_the_watch_on_its_challenge_only() {
        let events = ChallengeEvents::in_process();
        let mut watch = events.watch();
        // Announced before the wait began (between the read and the
        // wait): still a wake-up.
        events.changed("another");
        events.changed(ID);
        assert!(watch.changed(ID, Duration::from_secs(5)).await);
        // Nothing more: the wait ends on time.
        assert!(!watch.changed(ID, Duration::from_millis(30)).await);
    }

    #[tokio::test]
    async fn waiters_reread_often_while_not_live_and_are_woken_when_that_changes() {
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let events = ChallengeEvents::listening(move || flag.store(true, Ordering::Relaxed));
        assert!(!started.load(Ordering::Relaxed));
        assert_eq!(events.reread_interval(), ChallengeEvents::REREAD_UNLIVE);
        let mut watch = events.watch();
        assert!(started.load(Ordering::Relaxed), "the first watch starts the listening");
        assert!(!watch.changed(ID, Duration::from_millis(30)).await);

        events.set_live(true);
        assert!(watch.changed(ID, Duration::from_secs(5)).await, "going live wakes everyone");
        assert_eq!(events.reread_interval(), ChallengeEvents::REREAD_LIVE);
        events.set_live(false);
        assert!(watch.changed(ID, Duration::from_secs(5)).await, "so does losing the listener");
        assert_eq!(events.reread_interval(), ChallengeEvents::REREAD_UNLIVE);
    }

    #[tokio::test]
    async fn a_waiter_that_fell_behind_reads_again() {
        let events = ChallengeEvents::in_process();
        let mut watch = events.watch();
        for _ in 0..QUEUE + 1 {
            events.changed("another");
        }
        assert!(watch.changed(ID, Duration::from_secs(5)).await);
    }
}
