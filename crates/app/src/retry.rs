//! The one rule for lost races: re-read and apply the intent again, a bounded number of
//! times; or, when the caller named the version it read (`If-Match`, `--expect-version`),
//! refuse with what changed since.

use std::future::Future;
use std::time::Duration;

use slipway_core::model::ServiceKey;
use slipway_store::{ServiceRecord, StoreError};

use crate::{App, AppError, Result};

/// How many times an intent is applied before the caller is told to try again.
const ATTEMPTS: u32 = 24;

/// Runs `attempt` until it does not lose a race (a [`StoreError::Conflict`] from its
/// commit), at most [`ATTEMPTS`] times, with a short random pause between attempts so
/// racing writers spread out.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = None;
    for n in 0..ATTEMPTS {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Lost(c)) => {
                tracing::debug!(record = %c.record, attempt = n + 1, "lost a race; applying the intent again");
                last = Some(c);
                // Exponential back-off with full jitter, up to 128 ms: racing writers on
                // several servers spread out instead of colliding again.
                let cap = 2u64 << n.min(6);
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % cap)).await;
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
    Err(StoreError::Conflict(last.expect("at least one attempt lost")).into())
}

/// How one attempt of an intent ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Another writer got there first: apply the intent again.
    Lost(slipway_store::Conflict),
    Failed(AppError),
}

impl From<StoreError> for Attempt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(c) => Attempt::Lost(c),
            e => Attempt::Failed(e.into()),
        }
    }
}

impl From<AppError> for Attempt {
    fn from(e: AppError) -> Self {
        Attempt::Failed(e)
    }
}

impl App {
    /// A service record that exists, or 404.
    pub(crate) async fn service(&self, key: &ServiceKey) -> Result<ServiceRecord> {
        self.store()
            .get_service(key)
            .await?
            .ok_or_else(|| AppError::not_found(format!("service {key}")))
    }

    /// Checks the version a caller expects against the record read: a mismatch is a
    /// conflict that says what changed since the expected version.
    pub(crate) async fn expect_version(
        &self,
        svc: &ServiceRecord,
        expect: Option<u64>,
    ) -> Result<()> {
        let Some(expected) = expect else {
            return Ok(());
        };
        if svc.version == expected {
            return Ok(());
        }
        let changes = self.store().events_since(&svc.key, expected).await?;
        let what = if changes.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                changes
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        let mut e = AppError::conflict(
            "VERSION_CONFLICT",
            format!(
                "service {} is at version {}, not {expected}{what}; read it again and retry with --expect-version {}",
                svc.key, svc.version, svc.version
            ),
        );
        e.current_version = Some(svc.version);
        Err(e)
    }

    /// A commit lost with `expect` set is the caller's conflict, not a retry: say what
    /// changed.
    pub(crate) async fn lost_expected(&self, key: &ServiceKey, expected: u64) -> AppError {
        match self.store().get_service(key).await {
            Ok(Some(svc)) => match self.expect_version(&svc, Some(expected)).await {
                Err(e) => e,
                Ok(()) => AppError::conflict(
                    "VERSION_CONFLICT",
                    format!("service {key} changed while this request was applied; try again"),
                ),
            },
            Ok(None) => AppError::not_found(format!("service {key}")),
            Err(e) => e.into(),
        }
    }
}
