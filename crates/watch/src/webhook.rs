//! The optional webhook: one JSON POST per update or rollback.

use std::time::Duration;

use serde::Serialize;

/// The body of a webhook POST.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `updated`, `rolled_back` or `rollback_failed`.
    pub outcome: String,
    pub project: String,
    pub service: String,
    pub image: String,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    pub reason: Option<String>,
    pub time_ms: i64,
}

/// Sends an event; failures are returned for logging, never fatal.
pub async fn send(client: &reqwest::Client, url: &str, event: &Event) -> Result<(), String> {
    let resp = client
        .post(url)
        .timeout(Duration::from_secs(10))
        .json(event)
        .send()
        .await
        .map_err(|e| format!("webhook {url} failed: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook {url} answered {}", resp.status()))
    }
}
