//! The requestor's result endpoint: the RReqs the server sends, each
//! handed to the round trip that waits for its purchase's final result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

/// A purchase's RReq: awaited by its round trip, or come before it asked
/// (the server may send it before the phone has its decision's answer).
enum Slot {
    Waiting(oneshot::Sender<Value>),
    Arrived(Value),
}

#[derive(Clone, Default)]
pub struct Results {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    /// RReqs received so far.
    received: Arc<AtomicU64>,
}

impl Results {
    /// Serves `POST /notify` (answering every RReq 200 at once) on a port
    /// of its own; returns the URL to give as the AReq's notificationURL.
    pub async fn serve(&self) -> Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/notify", listener.local_addr()?);
        let router = axum::Router::new().route("/notify", axum::routing::post(receive)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(url)
    }

    fn arrived(&self, rreq: Value) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let Some(id) = rreq["acsTransID"].as_str().map(str::to_owned) else { return };
        let mut slots = self.slots.lock().expect("results lock");
        match slots.remove(&id) {
            Some(Slot::Waiting(waiter)) => drop(waiter.send(rreq)),
            _ => drop(slots.insert(id, Slot::Arrived(rreq))),
        }
    }

    /// The RReq for `acs_trans_id`, once it comes (within `within`).
    pub async fn wait(&self, acs_trans_id: &str, within: Duration) -> Result<Value> {
        let answer = {
            let mut slots = self.slots.lock().expect("results lock");
            if let Some(Slot::Arrived(rreq)) = slots.remove(acs_trans_id) {
                return Ok(rreq);
            }
            let (waiter, answer) = oneshot::channel();
            slots.insert(acs_trans_id.to_owned(), Slot::Waiting(waiter));
            answer
        };
        let no_rreq = || anyhow!("no RReq for {acs_trans_id} within {within:?}");
        tokio::time::timeout(within, answer).await.map_err(|_| no_rreq())?.map_err(|_| no_rreq())
    }

    /// RReqs received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `count` RReqs have been received in all (within
    /// `within`); returns when it saw the last of them (it looks every
    /// 2 ms).
    pub async fn all_received(&self, count: u64, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        while self.received() < count {
            if Instant::now() > deadline {
                return Err(anyhow!("{} RReqs of {count} received within {within:?}", self.received()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Instant::now())
    }
}

async fn receive(State(results): State<Results>, body: String) -> StatusCode {
    match serde_json::from_str(&body) {
        Ok(rreq) => {
            results.arrived(rreq);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn an_rreq_reaches_its_waiter_whether_it_comes_before_or_after_the_wait() {
        let results = Results::default();
        results.arrived(json!({ "acsTransID": "early", "transStatus": "Y" }));
        assert_eq!(results.wait("early", Duration::from_secs(1)).await.unwrap()["transStatus"], "Y");

        let waiting = tokio::spawn({
            let results = results.clone();
            async move { results.wait("late", Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        results.arrived(json!({ "acsTransID": "late", "transStatus": "N" }));
        assert_eq!(waiting.await.unwrap().unwrap()["transStatus"], "N");

        assert!(results.wait("never", Duration::from_millis(10)).await.is_err());
    }
}
