//! `slipway watch`: keeps docker compose services on the newest image of their tag.
//!
//! The pure parts (image references, credentials and challenges, the compose model, the
//! update/health/prune decisions, the rotating log file, the state file) are unit-tested;
//! the shell (registry HTTP, the engine through `slipway-runtime`, the compose CLI) is thin
//! and exercised by the binary's integration tests.

pub mod auth;
pub mod compose;
pub mod decide;
pub mod logfile;
pub mod reference;
pub mod registry;
pub mod state;
pub mod tls;
pub mod watcher;
pub mod webhook;

pub use decide::Outcome;
pub use reference::ImageRef;
pub use watcher::{Config, CycleReport, ServiceReport, Watcher};
