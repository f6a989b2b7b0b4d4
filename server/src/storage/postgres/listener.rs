//! The node's ear for changes made on any node: one connection of its own
//! (`LISTEN` belongs to a session, so not a pooled one) listening on
//! [`CHANNEL`], where each transaction that ends a challenge or gives it a
//! code sends the challenge's id (`pg_notify`, delivered on commit only).
//! Each notification wakes this node's waiters on that challenge.
//!
//! Notifications sent while the connection is down are lost: the waiters
//! are told so (they read again, and keep reading every
//! [`ChallengeEvents::REREAD_UNLIVE`] until the listener is back), and the
//! listener reconnects by itself.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::pool::Target;
use crate::storage::ChallengeEvents;

/// The channel challenge changes are announced on.
pub const CHANNEL: &str = "countersign_challenge";

/// A connection that stays quiet this long is asked something, so that a
/// dead one is found (the connection's TCP user timeout then drops it)
/// rather than trusted.
const PING_EVERY: Duration = Duration::from_secs(10);
const RETRY_FIRST_MS: u64 = 250;
const RETRY_MAX_MS: u64 = 5_000;

/// Listens until `stop` is dropped (with the storage) or `events` is gone.
pub async fn run(target: Target, events: Weak<ChallengeEvents>, mut stop: watch::Receiver<()>) {
    let mut failures = 0;
    loop {
        let session = listen(&target, &events, &mut failures);
        let outcome = tokio::select! {
            outcome = session => outcome,
            _ = stop.changed() => return,
        };
        let Some(live) = events.upgrade() else { return };
        live.set_live(false);
        failures += 1;
        match outcome.map_err(|e| crate::error::describe_chain(&e)) {
            Ok(()) => tracing::warn!("the database closed the challenge listener's connection; reconnecting"),
            Err(e) if failures == 1 => tracing::warn!(error = %e, "challenge listener lost; reconnecting"),
            Err(e) => tracing::debug!(error = %e, failures, "challenge listener still down"),
        }
        drop(live);
        let wait = Duration::from_millis(crate::worker::backoff_ms(RETRY_FIRST_MS, failures, RETRY_MAX_MS) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One connection's life: connect, `LISTEN`, then hand every notification
/// to `events` until the connection fails. `failures` is reset once
/// listening.
async fn listen(
    target: &Target,
    events: &Weak<ChallengeEvents>,
    failures: &mut u32,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = target.config.connect(target.tls.clone()).await?;
    // The connection delivers notifications only while polled, and the
    // client's queries complete only while it is: both run together.
    let deliver = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message? {
                match events.upgrade() {
                    Some(events) => events.changed(n.payload()),
                    None => break,
                }
            }
        }
        Ok(())
    };
    let keep = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        if *failures > 0 {
            tracing::info!("challenge listener reconnected");
        }
        *failures = 0;
        if let Some(events) = events.upgrade() {
            events.set_live(true);
        }
        loop {
            tokio::time::sleep(PING_EVERY).await;
            client.batch_execute("").await?;
        }
    };
    tokio::select! {
        delivered = deliver => delivered,
        kept = keep => kept,
    }
}
