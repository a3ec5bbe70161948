//! The HTTP health probe, one for every host: the server probes the tasks of its own host
//! with it, and an agent the tasks of its host when the server asks ([`crate::proto::Op::Probe`]).
//!
//! It answers what a user needs to see when a check fails: the status and the first bytes of
//! the body, or why nothing was answered (timeout, connection refused).

use std::time::Duration;

use crate::proto::ProbeResult;

/// How much of a body is kept for reports.
pub const BODY_PREFIX_BYTES: usize = 64;

/// `GET url` within `timeout`: the status and the body's first bytes, or why it failed
/// (without the URL: the caller names the check).
pub async fn http_get(client: &reqwest::Client, url: &str, timeout: Duration) -> ProbeResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut resp = match client.get(url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return ProbeResult::Failed(format!("timed out after {} ms", timeout.as_millis()));
        }
        Err(e) if e.is_connect() => {
            return ProbeResult::Failed("connection refused or unreachable".to_owned());
        }
        Err(e) => return ProbeResult::Failed(e.to_string()),
    };
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < BODY_PREFIX_BYTES {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(BODY_PREFIX_BYTES);
    ProbeResult::Answered {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

impl ProbeResult {
    /// The answer's status, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProbeResult::Status(s) | ProbeResult::Answered { status: s, .. } => Some(*s),
            ProbeResult::Failed(_) => None,
        }
    }

    /// A failed check in words, naming it: `GET /healthz on port 8080 answered 404: "not
    /// found"`, `GET /healthz on port 8080: timed out after 2000 ms`.
    pub fn describe(&self, path: &str, port: u16) -> String {
        match self {
            ProbeResult::Status(s) => format!("GET {path} on port {port} answered {s}"),
            ProbeResult::Answered { status, body } => {
                let body = body.trim();
                if body.is_empty() {
                    format!("GET {path} on port {port} answered {status} (empty body)")
                } else {
                    format!("GET {path} on port {port} answered {status}: {body:?}")
                }
            }
            ProbeResult::Failed(why) => format!("GET {path} on port {port}: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_check_status_and_body() {
        let r = ProbeResult::Answered {
            status: 404,
            body: "no such page\n".into(),
        };
        assert_eq!(
            r.describe("/healthz", 8080),
            "GET /healthz on port 8080 answered 404: \"no such page\""
        );
        assert_eq!(
            ProbeResult::Failed("connection refused or unreachable".into()).describe("/h", 80),
            "GET /h on port 80: connection refused or unreachable"
        );
        assert_eq!(r.status(), Some(404));
    }
}
