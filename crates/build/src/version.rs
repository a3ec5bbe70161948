//! The version tag of a build, from git when the context is in a git work tree.
//!
//! This module owns asking `git` (the command, through `std::process`) whether the context's
//! files are committed, and turning the answer and the context hash into an image tag. A
//! missing `git`, a directory outside any work tree, or a repository without commits all
//! count as "outside git".

use std::path::Path;
use std::process::{Command, Stdio};

/// The tag for an image built from `context` whose packed content hashes to `content_hash`:
///
/// - `<sha12>`: the context is in a git work tree and nothing under it is modified, staged
///   or untracked (ignored files do not count);
/// - `<sha12>-dirty-<hash12>`: the same with uncommitted changes under the context;
/// - `build-<hash12>`: outside git.
///
/// `sha12` is the first 12 hex digits of `HEAD`, `hash12` of the content hash.
pub fn version_tag(context: &Path, content_hash: &str) -> String {
    let hash12: String = content_hash.chars().take(12).collect();
    let Some(head) = git(
        context,
        &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
    ) else {
        return format!("build-{hash12}");
    };
    let head = head.trim();
    if head.len() < 12 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return format!("build-{hash12}");
    }
    let sha12 = &head[..12];
    // Status limited to the context: "." is relative to the directory git runs in.
    match git(
        context,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignore-submodules=none",
            "--",
            ".",
        ],
    ) {
        Some(status) if status.trim().is_empty() => sha12.to_owned(),
        Some(_) => format!("{sha12}-dirty-{hash12}"),
        // HEAD resolved but status failed: claim nothing about cleanliness.
        None => format!("{sha12}-dirty-{hash12}"),
    }
}

/// Runs `git` in `dir`; its standard output when it exits 0.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(
            |e| tracing::debug!(error = %e, "cannot run git; treating the context as outside git"),
        )
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version tag with the platform it was built for when that is not the hosts'
/// (`<tag>-linux-arm64`), so builds of one commit for two platforms never share a tag (and
/// the registry never hands back the other platform's image as "already there"). Without
/// a known host platform, any platform named is added.
pub fn platform_tag(tag: &str, platform: Option<&str>, host: Option<&str>) -> String {
    let os_arch = |p: &str| p.split('/').take(2).collect::<Vec<_>>().join("/");
    match platform {
        Some(p) if host.is_none_or(|h| os_arch(h) != os_arch(p)) => {
            let suffix: String = p
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("{tag}-{suffix}")
        }
        _ => tag.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_in_the_tag_only_when_not_the_hosts() {
        let host = Some("linux/amd64");
        assert_eq!(platform_tag("abc", None, host), "abc");
        assert_eq!(platform_tag("abc", Some("linux/amd64"), host), "abc");
        assert_eq!(
            platform_tag("abc", Some("linux/arm64/v8"), host),
            "abc-linux-arm64-v8"
        );
        assert_eq!(
            platform_tag("abc", Some("linux/arm64"), None),
            "abc-linux-arm64"
        );
    }

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=Slipway Test",
                "-c",
                "user.email=test@slipway.invalid",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn tags_follow_the_work_tree_state() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        let ctx = root.join("svc");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("README"), "readme\n").unwrap();

        // A directory in no repository (git may be missing too): build-<hash12>.
        assert_eq!(version_tag(&ctx, HASH), "build-0123456789ab");

        run(root, &["init", "-q"]);
        // A repository without commits is still "outside git".
        assert_eq!(version_tag(&ctx, HASH), "build-0123456789ab");

        run(root, &["add", "-A"]);
        run(root, &["commit", "-q", "-m", "first"]);
        let head = run(root, &["rev-parse", "HEAD"]);
        let sha12 = &head.trim()[..12];
        assert_eq!(version_tag(&ctx, HASH), sha12);

        // Ignored files and changes outside the context do not make it dirty.
        std::fs::write(ctx.join("debug.log"), "noise\n").unwrap();
        std::fs::write(root.join("README"), "changed\n").unwrap();
        assert_eq!(version_tag(&ctx, HASH), sha12);

        // A modified file under the context does.
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        assert_eq!(
            version_tag(&ctx, HASH),
            format!("{sha12}-dirty-0123456789ab")
        );
        run(&ctx, &["checkout", "--", "Dockerfile"]);
        assert_eq!(version_tag(&ctx, HASH), sha12);

        // So does an untracked file, even deep in a new directory.
        std::fs::create_dir_all(ctx.join("new/deeper")).unwrap();
        std::fs::write(ctx.join("new/deeper/file.txt"), "x").unwrap();
        assert_eq!(
            version_tag(&ctx, HASH),
            format!("{sha12}-dirty-0123456789ab")
        );
        std::fs::remove_dir_all(ctx.join("new")).unwrap();

        // And a staged change.
        std::fs::write(ctx.join("extra"), "x").unwrap();
        run(root, &["add", "svc/extra"]);
        assert!(version_tag(&ctx, HASH).contains("-dirty-"));
    }
}
