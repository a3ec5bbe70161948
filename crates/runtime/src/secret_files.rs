//! Secrets delivered as files (`secrets: {NAME: {from: secret, as: file}}`).
//!
//! A task's file secrets are written, before its container is created, into a directory of
//! their own on an in-memory file system of the host (`/dev/shm/slipway-secrets` by
//! default, `SLIPWAY_SECRET_FILES_DIR` to choose another; it must be a tmpfs or ramfs, so
//! values never reach a disk), laid out as `ROOT/CLUSTER/TASK/NAME`. That directory is bound
//! read-only at `/run/secrets` in the container, so the task reads `/run/secrets/NAME`.
//! Each file has mode 0400 and belongs to the container's user when it is numeric
//! (`user: 1000[:1000]` or the image's `USER`); a user given by name cannot be resolved
//! without the image's `/etc/passwd`, so its files get mode 0444 (readable inside the
//! container only: the directories above it are 0700). The directory is removed with
//! the container.
//!
//! Why not the engine's archive upload into a tmpfs mount: the engine writes uploads into
//! the container's writable layer (on disk), underneath a tmpfs mount, which then hides
//! them (seen with Docker 20.10: nothing reaches the tmpfs, before or after start).
//! `docker inspect` shows only the bind's host path, never a value.
//!
//! This module owns that directory tree; it may touch the file system under it and read
//! `/proc/self` (mount table, effective uid), nothing else. Values are never logged.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the directory of a task's file secrets is bound in its container.
pub use slipway_core::model::SECRET_FILES_DIR as MOUNT_PATH;

/// The default root of the secret file directories: the host's `/dev/shm` is a tmpfs.
pub const DEFAULT_ROOT: &str = "/dev/shm/slipway-secrets";

/// The environment variable naming another root.
pub const ROOT_ENV: &str = "SLIPWAY_SECRET_FILES_DIR";

/// One secret delivered as the file `/run/secrets/NAME`. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretFile {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why secret files could not be written. None carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "{0} is not on an in-memory file system (tmpfs), so secret files would reach a disk; point {ROOT_ENV} at a tmpfs directory"
    )]
    NotInMemory(String),
    #[error(
        "{0} is not a directory of this user with mode 0700 (someone else may read it); remove it or point {ROOT_ENV} elsewhere"
    )]
    Unsafe(String),
    #[error("secret file name {0:?} is not a plain file name")]
    BadName(String),
    #[error("secret files under {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SecretFileError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretFileError + '_ {
    move |source| SecretFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The root of the secret file directories of this process.
pub fn root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// Who owns the files: the container's user if numeric (`uid` or `uid:gid`; the group
/// defaults to the uid's number), `None` when it is a name.
pub fn numeric_owner(user: &str) -> Option<(u32, u32)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid: u32 = u.trim().parse().ok()?;
    let gid = match g {
        Some(g) => g.trim().parse().ok()?,
        None => uid,
    };
    Some((uid, gid))
}

/// A plain path component: letters, digits, `_ . -`, not `.` or `..`.
fn component(s: &str) -> Result<&str> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(s)
    } else {
        Err(SecretFileError::BadName(s.to_owned()))
    }
}

/// The directory of one task's secret files.
pub fn task_dir(root: &Path, cluster: &str, task_id: &str) -> Result<PathBuf> {
    Ok(root.join(component(cluster)?).join(component(task_id)?))
}

/// Writes a task's secret files into a fresh `dir` (see [`task_dir`]); `owner` as
/// [`numeric_owner`] read it, or `None` for a user known only by name.
pub fn write(
    root: &Path,
    dir: &Path,
    files: &[SecretFile],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let euid = effective_uid().map_err(io(Path::new("/proc/self/status")))?;
    private_dir(root, euid)?;
    if let Some(cluster) = dir.parent() {
        private_dir(cluster, euid)?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(dir)(e)),
    }
    if !in_memory(dir.parent().unwrap_or(root)).map_err(io(Path::new("/proc/self/mountinfo")))? {
        return Err(SecretFileError::NotInMemory(root.display().to_string()));
    }
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(io(dir))?;
    // Owned by the container's user when we may give it away (as root); otherwise a
    // user other than ours reads it through mode 0444.
    let owner = owner.filter(|(uid, _)| euid == 0 || *uid == euid);
    let mode = if owner.is_some() { 0o400 } else { 0o444 };
    for f in files {
        let path = dir.join(component(&f.name)?);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(f.value.as_bytes()).map_err(io(&path))?;
        // The mode given at creation is masked by the umask; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&path))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Removes a task's secret files: `dir` only if it lies under `root` (a path the engine
/// reports is checked before anything is deleted).
pub fn remove(root: &Path, dir: &Path) {
    let inside = dir.starts_with(root)
        && dir != root
        && dir.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::RootDir
            )
        });
    if !inside {
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "secret files removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove secret files"),
    }
}

/// Creates `dir` (0700) or checks the one there: a real directory of `euid`, closed to
/// everyone else (a directory someone else made in a shared `/dev/shm` is refused).
fn private_dir(dir: &Path, euid: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !m.file_type().is_dir() || m.uid() != euid || m.mode() & 0o077 != 0 {
        return Err(SecretFileError::Unsafe(dir.display().to_string()));
    }
    Ok(())
}

/// This process's effective uid (`/proc/self/status`, so no `unsafe` call is needed).
fn effective_uid() -> std::io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| std::io::Error::other("no effective uid in /proc/self/status"))
}

/// Whether `path` (which exists) lies on a tmpfs or ramfs: the file system of the longest
/// mount point above it in this process's mount table.
fn in_memory(path: &Path) -> std::io::Result<bool> {
    let path = std::fs::canonicalize(path)?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(fs_type_of(&table, &path).is_some_and(|t| matches!(t, "tmpfs" | "ramfs")))
}

/// The file system type of `path` in a `/proc/self/mountinfo` text.
fn fs_type_of<'a>(mountinfo: &'a str, path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let point = unescape(left.split(' ').nth(4)?);
        let fs_type = right.split(' ').next()?;
        let point = Path::new(&point);
        if path.starts_with(point) {
            let depth = point.components().count();
            // A later line with the same mount point is mounted over the earlier one.
            if best.is_none_or(|(d, _)| depth >= d) {
                best = Some((depth, fs_type));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\')
            .then(|| s.get(i + 1..i + 4))
            .flatten()
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match octal {
            Some(n) => {
                out.push(n);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
24 22 0:22 / /dev/shm/on\\040disk rw shared:3 - ext4 /dev/sdb1 rw
25 22 0:23 / /run rw shared:4 - tmpfs tmpfs rw
";

    #[test]
    fn the_file_system_of_a_path_is_its_deepest_mount() {
        let t = |p: &str| fs_type_of(MOUNTINFO, Path::new(p));
        assert_eq!(t("/dev/shm/slipway-secrets/c/t"), Some("tmpfs"));
        assert_eq!(t("/dev/shm/on disk/x"), Some("ext4"));
        assert_eq!(t("/dev/shmx"), Some("ext4"));
        assert_eq!(t("/var/lib/slipway"), Some("ext4"));
        assert_eq!(t("/run/slipway"), Some("tmpfs"));
    }

    #[test]
    fn owners_are_numeric_or_unknown() {
        assert_eq!(numeric_owner("1000"), Some((1000, 1000)));
        assert_eq!(numeric_owner("1000:50"), Some((1000, 50)));
        assert_eq!(numeric_owner("0"), Some((0, 0)));
        assert_eq!(numeric_owner("app"), None);
        assert_eq!(numeric_owner("1000:staff"), None);
        assert_eq!(numeric_owner(""), None);
    }

    #[test]
    fn names_cannot_leave_their_directory() {
        let root = Path::new("/dev/shm/s");
        assert!(task_dir(root, "c1", "t-1").is_ok());
        for bad in ["..", ".", "a/b", "", "a\0b"] {
            assert!(task_dir(root, bad, "t").is_err(), "{bad:?}");
            assert!(task_dir(root, "c", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_a_value() {
        let f = SecretFile {
            name: "KEY".into(),
            value: "hunter2".into(),
        };
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    /// Files land with their modes in a private directory, on the host's `/dev/shm` when
    /// it is a tmpfs (skipped where it is not), and go away with [`remove`].
    #[test]
    fn writes_private_files_on_tmpfs_and_removes_them() {
        let base = Path::new("/dev/shm");
        if !base.is_dir() || !in_memory(base).unwrap_or(false) {
            eprintln!("skipping: /dev/shm is not a tmpfs here");
            return;
        }
        let root = base.join(format!("slipway-secrets-test-{}", std::process::id()));
        let dir = task_dir(&root, "cluster", "task1").unwrap();
        let files = [
            SecretFile {
                name: "A".into(),
                value: "alpha".into(),
            },
            SecretFile {
                name: "B".into(),
                value: "beta".into(),
            },
        ];
        let euid = effective_uid().unwrap();
        write(&root, &dir, &files, Some((euid, euid))).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("A")).unwrap(), "alpha");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("B")), 0o400);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(dir.parent().unwrap()), 0o700);
        // Written again (a retried create): a fresh directory, nothing left over.
        write(&root, &dir, &files[..1], None).unwrap();
        assert!(!dir.join("B").exists());
        // A user known by name reads through 0444.
        assert_eq!(mode(&dir.join("A")), 0o444);
        // Nothing outside the root is removed; the task's directory is.
        remove(&root, Path::new("/dev/shm"));
        remove(&root, &root.join("../x"));
        assert!(base.is_dir());
        remove(&root, &dir);
        assert!(!dir.exists());
        // A root directory open to others is refused.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = write(&root, &dir, &files, None).unwrap_err();
        assert!(matches!(e, SecretFileError::Unsafe(_)), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
