//! The watcher's state: one small JSON file per state directory, written atomically, and
//! a lock so two watchers never work on the same state at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decide::Outcome;

/// One image a service ran (newest first in the history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub digest: Option<String>,
    pub image_id: String,
    pub at_ms: i64,
}

/// What the watcher knows about one compose service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub project: String,
    pub service: String,
    pub image: String,
    pub running_digest: Option<String>,
    pub running_image_id: Option<String>,
    pub last_check_ms: Option<i64>,
    pub last_outcome: Option<Outcome>,
    pub last_reason: Option<String>,
    pub last_change_ms: Option<i64>,
    /// The last digest that failed and was rolled back.
    pub failed_digest: Option<String>,
    #[serde(default)]
    pub history: Vec<Deployed>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
}

impl State {
    pub fn key(project: &str, service: &str) -> String {
        format!("{project}/{service}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error(
        "another `slipway watch` is working with the state directory {0}; stop it first or pass a different --state-dir"
    )]
    Locked(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The default state directory: `$XDG_STATE_HOME/slipway/watch`, else
/// `~/.local/state/slipway/watch`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from(".slipway-state"))
        .join("slipway/watch")
}

/// Reads the state without taking the lock (for `watch status`).
pub fn read(dir: &Path) -> Result<State, StateError> {
    let path = dir.join("state.json");
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            serde_json::from_str(&t).map_err(|e| io(&path, format!("not valid state JSON: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(io(&path, e)),
    }
}

/// The locked state directory of a running watcher.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    _lock: File,
}

impl StateStore {
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
        Ok(StateStore {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn load(&self) -> Result<State, StateError> {
        read(&self.dir)
    }

    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(state).map_err(|e| io(&path, e))?;
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// Where a project's override file lives.
    pub fn override_path(&self, project: &str) -> PathBuf {
        self.dir.join("overrides").join(format!("{project}.yml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lock() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        assert_eq!(s.load().unwrap(), State::default());
        let mut st = State::default();
        st.services.insert(
            State::key("p", "web"),
            ServiceState {
                project: "p".into(),
                service: "web".into(),
                last_outcome: Some(Outcome::RolledBack),
                ..Default::default()
            },
        );
        s.save(&st).unwrap();
        assert_eq!(read(d.path()).unwrap(), st);
        let text = std::fs::read_to_string(d.path().join("state.json")).unwrap();
        assert!(text.contains("\"rolled_back\""), "{text}");
        let e = StateStore::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("another `slipway watch`"), "{e}");
        drop(s);
        assert!(StateStore::open(d.path()).is_ok());
    }
}
