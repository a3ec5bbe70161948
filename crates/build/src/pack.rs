//! Packing a build context into the tar archive the engine builds from.
//!
//! This module owns walking the context directory, applying `.dockerignore` (see
//! [`crate::ignore`]), writing a deterministic archive to a temporary file, and the
//! context's content hash. The archive never holds more than one buffer of a file in memory.
//!
//! Determinism: entries are written depth first with each directory's names sorted, with
//! mtime 0, uid and gid 0 and no user or group names; permission bits are kept; symlinks are
//! stored as symlinks (their targets are not followed); sockets, FIFOs and devices are
//! skipped.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::ignore::IgnoreRules;
use crate::{BuildError, BuildPlan};

/// A packed build context: the archive in a temporary file (removed on drop) and what it
/// holds.
#[derive(Debug)]
pub struct Packed {
    file: NamedTempFile,
    /// Hex SHA-256 over the archive and the build's settings (Dockerfile path, build args,
    /// target, platform).
    pub content_hash: String,
    /// Regular files and symlinks in the archive (directories not counted).
    pub files: usize,
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// The Dockerfile's path inside the archive (`/`-separated), as sent to the engine.
    pub dockerfile: String,
}

impl Packed {
    /// Where the archive is on disk, for as long as this value lives.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Packs `plan.context` into a temporary tar file, honouring `.dockerignore`.
pub fn pack(plan: &BuildPlan) -> Result<Packed, BuildError> {
    let context = &plan.context;
    if !context.is_dir() {
        return Err(BuildError::ContextMissing {
            path: context.clone(),
        });
    }
    let dockerfile = dockerfile_in_context(plan)?;
    let dockerfile_path = context.join(&dockerfile);
    if !dockerfile_path.is_file() {
        return Err(BuildError::DockerfileMissing {
            path: dockerfile_path,
        });
    }

    let ignore_path = context.join(".dockerignore");
    let mut rules = match fs::read_to_string(&ignore_path) {
        Ok(text) => IgnoreRules::parse(&text).map_err(|source| BuildError::BadIgnore {
            path: ignore_path.clone(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => IgnoreRules::default(),
        Err(source) => {
            return Err(BuildError::Io {
                path: ignore_path,
                source,
            });
        }
    };
    // Like the docker CLI: the Dockerfile and .dockerignore are sent even when ignored.
    if !rules.is_empty() {
        for keep in [dockerfile.as_str(), ".dockerignore"] {
            rules
                .push(&format!("!{}", escape_pattern(keep)))
                .map_err(|source| BuildError::BadIgnore {
                    path: ignore_path.clone(),
                    source,
                })?;
        }
    }

    let tmp = tempfile::Builder::new()
        .prefix("slipway-context-")
        .suffix(".tar")
        .tempfile()
        .map_err(|source| BuildError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let out = HashingWriter {
        inner: BufWriter::with_capacity(64 * 1024, tmp.reopen().map_err(tmp_err(&tmp))?),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut walker = Walker {
        rules: &rules,
        tar: tar::Builder::new(out),
        files: 0,
    };
    walker.walk_dir(context, "")?;
    let out = walker.tar.into_inner().map_err(tmp_err(&tmp))?;
    let files = walker.files;
    let HashingWriter {
        inner,
        mut hash,
        bytes,
    } = out;
    inner
        .into_inner()
        .map_err(|e| tmp_err(&tmp)(e.into_error()))?;

    // The build's settings count as content: changing any of them is a different build.
    let mut field = |name: &str, value: &str| {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    };
    field("dockerfile", &dockerfile);
    for (k, v) in &plan.args {
        field("arg", k);
        field("value", v);
    }
    field("target", plan.target.as_deref().unwrap_or(""));
    field("platform", plan.platform.as_deref().unwrap_or(""));
    let content_hash = hex::encode(hash.finalize());
    tracing::debug!(
        context = %context.display(),
        files,
        bytes,
        hash = %content_hash,
        "packed build context"
    );
    Ok(Packed {
        file: tmp,
        content_hash,
        files,
        bytes,
        dockerfile,
    })
}

fn tmp_err(tmp: &NamedTempFile) -> impl FnOnce(io::Error) -> BuildError + '_ {
    |source| BuildError::Io {
        path: tmp.path().to_owned(),
        source,
    }
}

/// The Dockerfile's `/`-separated path relative to the context; it must lie inside it.
fn dockerfile_in_context(plan: &BuildPlan) -> Result<String, BuildError> {
    let outside = || BuildError::DockerfileOutsideContext {
        dockerfile: plan.dockerfile.clone(),
        context: plan.context.clone(),
    };
    let rel = if plan.dockerfile.is_absolute() {
        plan.dockerfile
            .strip_prefix(&plan.context)
            .map_err(|_| outside())?
    } else {
        plan.dockerfile.as_path()
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(outside)?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(outside)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(parts.join("/"))
}

/// Escapes a literal path so it can be used as a `.dockerignore` pattern.
fn escape_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Walker<'a, W: Write> {
    rules: &'a IgnoreRules,
    tar: tar::Builder<W>,
    files: usize,
}

impl<W: Write> Walker<'_, W> {
    /// Writes the entries below `dir` (whose context-relative path is `rel`, "" for the root).
    fn walk_dir(&mut self, dir: &Path, rel: &str) -> Result<(), BuildError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BuildError::Io { path, source }
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let name = name.to_string_lossy();
            let rel = if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let kind = meta.file_type();
            let excluded = self.rules.is_excluded(&rel);
            if kind.is_dir() {
                if excluded {
                    if self.rules.may_include_below(&rel) {
                        self.walk_dir(&path, &rel)?;
                    }
                    continue;
                }
                let mut h = header(tar::EntryType::Directory, meta.permissions().mode());
                self.tar
                    .append_data(&mut h, format!("{rel}/"), io::empty())
                    .map_err(io_err(&path))?;
                self.walk_dir(&path, &rel)?;
            } else if excluded {
                continue;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let mut h = header(tar::EntryType::Symlink, 0o777);
                self.tar
                    .append_link(&mut h, &rel, &target)
                    .map_err(io_err(&path))?;
                self.files += 1;
            } else if kind.is_file() {
                let file = File::open(&path).map_err(io_err(&path))?;
                let meta = file.metadata().map_err(io_err(&path))?;
                let mut h = header(tar::EntryType::Regular, meta.permissions().mode());
                h.set_size(meta.len());
                self.tar
                    .append_data(&mut h, &rel, io::Read::take(file, meta.len()))
                    .map_err(io_err(&path))?;
                self.files += 1;
            } else {
                tracing::debug!(path = %path.display(), "skipping a special file in the build context");
            }
        }
        Ok(())
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

/// The plan's Dockerfile as the user named it (context joined with dockerfile), for messages.
pub(crate) fn dockerfile_display(plan: &BuildPlan) -> String {
    let p: PathBuf = plan.context.join(&plan.dockerfile);
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    fn plan(dir: &Path) -> BuildPlan {
        BuildPlan {
            context: dir.to_owned(),
            dockerfile: PathBuf::from("Dockerfile"),
            args: BTreeMap::new(),
            target: None,
            platform: None,
        }
    }

    fn write(dir: &Path, rel: &str, body: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    fn sample(dir: &Path) {
        write(dir, "Dockerfile", "FROM scratch\nCOPY . /\n");
        write(dir, ".dockerignore", "*.log\nsecret/\n");
        write(dir, "src/main.rs", "fn main() {}\n");
        write(dir, "src/lib/util.rs", "pub fn util() {}\n");
        write(dir, "debug.log", "noise\n");
        write(dir, "secret/key", "hunter2\n");
        write(dir, "run.sh", "#!/bin/sh\necho hi\n");
        fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("src/main.rs", dir.join("link")).unwrap();
    }

    /// One archive entry's header fields.
    struct Entry {
        path: String,
        kind: char,
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
        size: u64,
        link: Option<String>,
    }

    fn entries(p: &Packed) -> Vec<Entry> {
        let mut a = tar::Archive::new(File::open(p.path()).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                Entry {
                    path: e.path().unwrap().to_string_lossy().into_owned(),
                    kind: h.entry_type().as_byte() as char,
                    mode: h.mode().unwrap(),
                    mtime: h.mtime().unwrap(),
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    size: h.size().unwrap(),
                    link: e
                        .link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                }
            })
            .collect()
    }

    fn names(p: &Packed) -> Vec<String> {
        entries(p).into_iter().map(|e| e.path).collect()
    }

    fn touch_all(dir: &Path, when: SystemTime) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let ft = entry.file_type().unwrap();
            if ft.is_symlink() {
                continue;
            }
            if ft.is_dir() {
                touch_all(&path, when);
            }
            File::options()
                .read(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }

    #[test]
    fn archive_honours_dockerignore_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let p = pack(&plan(dir.path())).unwrap();
        assert_eq!(
            names(&p),
            [
                ".dockerignore",
                "Dockerfile",
                "link",
                "run.sh",
                "src/",
                "src/lib/",
                "src/lib/util.rs",
                "src/main.rs",
            ]
        );
        assert_eq!(p.files, 6);
        assert_eq!(p.bytes, fs::metadata(p.path()).unwrap().len());
        assert_eq!(p.content_hash.len(), 64);
        for Entry {
            path,
            kind,
            mode,
            mtime,
            uid,
            gid,
            size,
            link,
        } in entries(&p)
        {
            assert_eq!((mtime, uid, gid), (0, 0, 0), "{path}");
            match path.as_str() {
                "run.sh" => {
                    assert_eq!(mode & 0o111, 0o111, "exec bit kept");
                    assert_eq!(size, 18);
                }
                "link" => {
                    assert_eq!(kind, '2', "a symlink stays a symlink");
                    assert_eq!(link.as_deref(), Some("src/main.rs"));
                }
                "src/" | "src/lib/" => assert_eq!(kind, '5'),
                _ => assert_eq!(kind, '0', "{path}"),
            }
        }
        let mut a = tar::Archive::new(File::open(p.path()).unwrap());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username().unwrap(), Some(""));
            assert_eq!(e.header().groupname().unwrap(), Some(""));
        }
    }

    #[test]
    fn hash_tracks_content_and_settings_but_not_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let base = pack(&plan(dir.path())).unwrap().content_hash;

        touch_all(
            dir.path(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        );
        assert_eq!(
            pack(&plan(dir.path())).unwrap().content_hash,
            base,
            "mtimes do not count"
        );

        // The same files in another directory hash the same.
        let other = tempfile::tempdir().unwrap();
        sample(other.path());
        assert_eq!(pack(&plan(other.path())).unwrap().content_hash, base);

        write(dir.path(), "debug.log", "more noise\n");
        write(dir.path(), "secret/key", "changed\n");
        assert_eq!(
            pack(&plan(dir.path())).unwrap().content_hash,
            base,
            "ignored files do not count"
        );

        let mut with_arg = plan(dir.path());
        with_arg.args.insert("VERSION".into(), "1".into());
        let arg1 = pack(&with_arg).unwrap().content_hash;
        assert_ne!(arg1, base, "a build arg counts");
        with_arg.args.insert("VERSION".into(), "2".into());
        assert_ne!(pack(&with_arg).unwrap().content_hash, arg1);

        let mut with_target = plan(dir.path());
        with_target.target = Some("prod".into());
        assert_ne!(pack(&with_target).unwrap().content_hash, base);
        let mut with_platform = plan(dir.path());
        with_platform.platform = Some("linux/amd64".into());
        assert_ne!(pack(&with_platform).unwrap().content_hash, base);

        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        let mode_changed = pack(&plan(dir.path())).unwrap().content_hash;
        assert_ne!(mode_changed, base, "a mode change counts");

        write(dir.path(), "src/main.rs", "fn main() { println!(); }\n");
        assert_ne!(
            pack(&plan(dir.path())).unwrap().content_hash,
            mode_changed,
            "an edit counts"
        );
    }

    #[test]
    fn ignored_dockerfile_and_dockerignore_are_still_sent() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "docker/app.Dockerfile", "FROM scratch\n");
        write(dir.path(), "docker/other", "x");
        write(dir.path(), "keep/a", "a");
        write(dir.path(), "keep/b", "b");
        write(
            dir.path(),
            ".dockerignore",
            "# everything docker-related\ndocker\n.dockerignore\nkeep\n!keep/b\n",
        );
        let mut p = plan(dir.path());
        p.dockerfile = PathBuf::from("./docker/app.Dockerfile");
        let packed = pack(&p).unwrap();
        assert_eq!(packed.dockerfile, "docker/app.Dockerfile");
        assert_eq!(
            names(&packed),
            [".dockerignore", "docker/app.Dockerfile", "keep/b"]
        );
    }

    #[test]
    fn missing_paths_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nope");
        match pack(&plan(&gone)) {
            Err(BuildError::ContextMissing { path }) => assert_eq!(path, gone),
            other => panic!("{other:?}"),
        }
        let e = pack(&plan(dir.path())).unwrap_err();
        assert!(
            matches!(&e, BuildError::DockerfileMissing { path } if *path == dir.path().join("Dockerfile")),
            "{e:?}"
        );
        assert!(e.to_string().contains(&dir.path().display().to_string()));

        write(dir.path(), "Dockerfile", "FROM scratch\n");
        let mut outside = plan(dir.path());
        outside.dockerfile = PathBuf::from("../Dockerfile");
        assert!(matches!(
            pack(&outside),
            Err(BuildError::DockerfileOutsideContext { .. })
        ));
        write(dir.path(), ".dockerignore", "[broken\n");
        assert!(matches!(
            pack(&plan(dir.path())),
            Err(BuildError::BadIgnore { .. })
        ));
    }

    #[test]
    fn absolute_dockerfile_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/Dockerfile", "FROM scratch\n");
        let mut p = plan(dir.path());
        p.dockerfile = dir.path().join("sub/Dockerfile");
        assert_eq!(pack(&p).unwrap().dockerfile, "sub/Dockerfile");
    }
}
