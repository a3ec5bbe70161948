//! Push events of pipelines: what the triggers (the built-in git remote, webhooks) record
//! and what lists them. One event per updated ref; a webhook's delivery id is recorded once
//! per app (the store's unique key, so it holds across restarts and servers).
//!
//! The webhook secret of an app is the secret named [`webhook_secret_name`] in the secret
//! store (`slipway secret set APP/webhook`), opened in memory only to check a signature.

use slipway_store::{Batch, PushRecord, Write};

use crate::{App, AppError, Result};

/// The most push events one listing returns.
pub const MAX_PUSHES_LISTED: u32 = 1000;

/// The name of the secret holding an app's webhook secret: `APP/webhook`.
pub fn webhook_secret_name(app: &str) -> String {
    format!("{app}/webhook")
}

impl App {
    /// Records push events in one batch; returns, per event, whether it was recorded
    /// (false: its delivery was recorded before).
    pub async fn record_pushes(&self, pushes: Vec<PushRecord>) -> Result<Vec<bool>> {
        if pushes.is_empty() {
            return Ok(Vec::new());
        }
        for p in &pushes {
            slipway_core::model::validate_name(&p.app).map_err(AppError::invalid)?;
        }
        let mut batch = Batch::new();
        for p in &pushes {
            batch.push(Write::Push(p.clone()));
        }
        let out = self.store().commit(batch).await?;
        let recorded: Vec<bool> = out
            .iter()
            .map(|o| matches!(o, slipway_store::Outcome::Done(true)))
            .collect();
        for (p, new) in pushes.iter().zip(&recorded) {
            if *new {
                tracing::info!(app = %p.app, source = %p.source, git_ref = %p.git_ref, after = %p.after, pusher = %p.pusher, paths = p.paths.len(), "push event recorded");
            } else {
                tracing::info!(app = %p.app, source = %p.source, delivery = %p.delivery, "a repeated delivery: already recorded");
            }
        }
        Ok(recorded)
    }

    /// The push events of an app, newest first (at most `limit`, capped at
    /// [`MAX_PUSHES_LISTED`]).
    pub async fn list_pushes(&self, app: &str, limit: u32) -> Result<Vec<PushRecord>> {
        slipway_core::model::validate_name(app).map_err(AppError::invalid)?;
        Ok(self
            .store()
            .list_pushes(app, limit.clamp(1, MAX_PUSHES_LISTED))
            .await?)
    }

    /// The current value of an app's webhook secret ([`webhook_secret_name`]), opened;
    /// `None` when it is not set.
    pub async fn webhook_secret(&self, app: &str) -> Result<Option<Vec<u8>>> {
        let name = webhook_secret_name(app);
        let Some((version, sealed)) = self.store().get_secret(&name, None).await? else {
            return Ok(None);
        };
        let opened = self
            .secrets()
            .open(&name, version, &sealed)
            .map_err(AppError::internal)?;
        Ok(Some(opened.value))
    }
}
