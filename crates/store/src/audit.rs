//! The audit entry of the call in progress, recorded in the same transaction as the call's
//! first change.
//!
//! A face (the native API's gate, the AWS front door) runs each mutating call inside
//! [`with_pending_audit`]: the first batch the call commits through [`Store::commit`]
//! carries the entry, so the change and the record of who made it are one transaction (one
//! fsync, not two). A call that changes nothing (a no-op, a refusal, an error before any
//! change) leaves the entry pending, and the face writes it on its own with the status it
//! answered. The entry recorded with a change says `ok` with status 0 ("answered after the
//! change was committed"); should the call still fail after that commit, the face records a
//! second entry with the failure.
//!
//! A batch committed from another task (a spawned one) does not see the pending entry: the
//! face then writes it itself, so no call goes unrecorded.
//!
//! [`Store::commit`]: crate::Store::commit

use std::cell::RefCell;
use std::future::Future;

use crate::AuditEntry;

tokio::task_local! {
    static PENDING: RefCell<Option<AuditEntry>>;
}

/// Runs `call` with `entry` pending; returns its output and whether the entry was recorded
/// with one of the call's commits.
pub async fn with_pending_audit<F: Future>(entry: AuditEntry, call: F) -> (F::Output, bool) {
    PENDING
        .scope(RefCell::new(Some(entry)), async {
            let out = call.await;
            let left = PENDING.with(|p| p.borrow_mut().take());
            (out, left.is_none())
        })
        .await
}

/// The pending entry of the call this task runs, if any (taken: one commit carries it).
pub(crate) fn take() -> Option<AuditEntry> {
    PENDING.try_with(|p| p.borrow_mut().take()).ok().flatten()
}

/// The commit that took the entry failed: it is pending again.
pub(crate) fn put_back(entry: AuditEntry) {
    let _ = PENDING.try_with(|p| *p.borrow_mut() = Some(entry));
}
