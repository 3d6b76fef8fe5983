//! The local cloud's own webhook subscriber: it receives notify's signed deliveries like any
//! platform would (checking the Standard Webhooks signature and timestamp) and relays them to
//! the demo page, which long-polls `GET /local/events?after=N`. So the page shows a status
//! change the moment it is pushed, not at its next poll.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exvid_shared::domain::standard_webhook::WebhookSecret;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

/// Deliveries older or newer than this (seconds) are refused, as the spec advises.
const TOLERANCE: i64 = 300;
/// Most events kept for the page.
const KEEP: usize = 500;

pub struct EventRelay {
    secret: WebhookSecret,
    events: Mutex<Vec<Value>>,
    arrived: Notify,
}

impl EventRelay {
    pub fn new(secret: WebhookSecret) -> Self {
        EventRelay {
            secret,
            events: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        }
    }

    /// A delivery: 204 when its signature holds (a redelivered id is kept once), else 401.
    pub fn receive(&self, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> u16 {
        let (Some(id), Some(ts), Some(signatures)) = (
            header("webhook-id"),
            header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
            header("webhook-signature"),
        ) else {
            return 401;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let expected = self.secret.sign(&id, ts, body);
        let valid = signatures
            .split(' ')
            .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
        if !valid || (now - ts).abs() > TOLERANCE {
            return 401;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(body) else {
            return 400;
        };
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if !events.iter().any(|e| e["id"] == id.as_str()) {
            events.push(json!({"id": id, "type": payload["type"], "timestamp": payload["timestamp"], "data": payload["data"]}));
            let excess = events.len().saturating_sub(KEEP);
            events.drain(..excess);
            self.arrived.notify_waiters();
        }
        204
    }

    /// Events after the first `after` (waiting up to `wait` for one), and the next cursor.
    pub async fn after(&self, after: usize, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            {
                let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                if events.len() > after || tokio::time::Instant::now() >= deadline {
                    let new: Vec<Value> = events.iter().skip(after).cloned().collect();
                    return json!({"next": events.len(), "events": new});
                }
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}
