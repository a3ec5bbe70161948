//! The built-in git remote: one bare repository per app under `DATA_DIR/git/APP.git`,
//! served over git's smart HTTP protocol by git's own `git http-backend` run as a CGI
//! program (no pack protocol is spoken here), and the refs a push changed.
//!
//! A repository is created (`git init --bare`, default branch `main`) by the first push of
//! an identity allowed to push; fetching one that does not exist is `404`. Its settings:
//! `receive.denyNonFastForwards=false` and `receive.denyDeletes=false` (a force push or a
//! deleted branch is the pusher's decision, as on GitHub without branch protection; each is
//! recorded as a push event with its `before` and `after`), `http.receivepack=true`.
//!
//! What a push changed is read by comparing the refs before and after `git-receive-pack`
//! runs, under a per-app lock of this server (two servers sharing a database each keep
//! their own repositories; see the crate documentation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// The id of no commit (a created or deleted ref's other side).
pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// Why a git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// The repository of `app` under `root`.
pub fn repo_path(root: &Path, app: &str) -> PathBuf {
    root.join(format!("{app}.git"))
}

/// A git command in repository `repo`, with no user or system configuration.
pub fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = git(repo).args(args).output().await?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the bare repository of an app unless it exists; true when it was created.
pub async fn ensure_repo(root: &Path, app: &str) -> Result<bool, GitError> {
    let repo = repo_path(root, app);
    if repo.join("HEAD").exists() {
        return Ok(false);
    }
    tokio::fs::create_dir_all(root).await?;
    let out = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(&repo)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: "init --bare".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    for (k, v) in [
        ("receive.denyNonFastForwards", "false"),
        ("receive.denyDeletes", "false"),
        ("http.receivepack", "true"),
        ("http.uploadpack", "true"),
    ] {
        run(&repo, &["config", k, v]).await?;
    }
    tracing::info!(app, repo = %repo.display(), "created the app's git repository");
    Ok(true)
}

/// Every ref of a repository and its object id.
pub async fn refs(repo: &Path) -> Result<BTreeMap<String, String>, GitError> {
    let out = run(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, name)| (name.to_owned(), sha.to_owned()))
        .collect())
}

/// One ref a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    pub git_ref: String,
    /// [`ZERO`] when the ref was created.
    pub before: String,
    /// [`ZERO`] when the ref was deleted.
    pub after: String,
}

/// The refs that differ between two snapshots, in ref order.
pub fn changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<RefChange> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let b = before.get(n).map_or(ZERO, String::as_str);
            let a = after.get(n).map_or(ZERO, String::as_str);
            (a != b).then(|| RefChange {
                git_ref: n.clone(),
                before: b.to_owned(),
                after: a.to_owned(),
            })
        })
        .collect()
}

/// The paths a ref change touched, sorted, with whether the list was cut at
/// [`slipway_store::MAX_PUSH_PATHS`]: `git diff --name-only before after` for an update;
/// for a new ref, the paths of its commits not reachable from any ref before the push
/// (`before_tips`); nothing for a deletion.
pub async fn changed_paths(
    repo: &Path,
    c: &RefChange,
    before_tips: &[String],
) -> Result<(Vec<String>, bool), GitError> {
    if c.after == ZERO {
        return Ok((Vec::new(), false));
    }
    let out = if c.before == ZERO {
        let mut args = vec![
            "log".to_owned(),
            "--format=".to_owned(),
            "--name-only".to_owned(),
            "--no-renames".to_owned(),
            c.after.clone(),
            "--not".to_owned(),
        ];
        args.extend(before_tips.iter().cloned());
        args.push("--".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(repo, &args).await?
    } else {
        run(
            repo,
            &[
                "diff",
                "--name-only",
                "--no-renames",
                &c.before,
                &c.after,
                "--",
            ],
        )
        .await?
    };
    let mut paths: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    let truncated = paths.len() > slipway_store::MAX_PUSH_PATHS;
    paths.truncate(slipway_store::MAX_PUSH_PATHS);
    Ok((paths, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn changes_are_created_updated_and_deleted_refs() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let before = map(&[
            ("refs/heads/main", &a),
            ("refs/heads/gone", &a),
            ("refs/tags/v1", &a),
        ]);
        let after = map(&[
            ("refs/heads/main", &b),
            ("refs/heads/new", &b),
            ("refs/tags/v1", &a),
        ]);
        let c = changes(&before, &after);
        assert_eq!(
            c,
            vec![
                RefChange {
                    git_ref: "refs/heads/gone".into(),
                    before: a.clone(),
                    after: ZERO.into()
                },
                RefChange {
                    git_ref: "refs/heads/main".into(),
                    before: a.clone(),
                    after: b.clone()
                },
                RefChange {
                    git_ref: "refs/heads/new".into(),
                    before: ZERO.into(),
                    after: b.clone()
                },
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }

    /// A real repository: a new branch's paths are its commits' (all of them on the first
    /// push), an update's are the diff.
    #[tokio::test]
    async fn paths_of_a_real_repository() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("git");
        assert!(ensure_repo(&root, "shop").await.unwrap());
        assert!(!ensure_repo(&root, "shop").await.unwrap());
        let repo = repo_path(&root, "shop");
        assert!(refs(&repo).await.unwrap().is_empty());
        let work = dir.path().join("work");
        let sh = |script: &str| {
            let st = std::process::Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir.path())
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .status()
                .unwrap();
            assert!(st.success(), "{script}");
        };
        sh(&format!(
            "git init -q -b main {w} && cd {w} && echo a > a.txt && git add . && git commit -qm one \
             && mkdir src && echo b > src/b.rs && git add . && git commit -qm two \
             && git push -q {r} main",
            w = work.display(),
            r = repo.display()
        ));
        let after = refs(&repo).await.unwrap();
        let c = changes(&BTreeMap::new(), &after);
        assert_eq!(c.len(), 1);
        let (paths, cut) = changed_paths(&repo, &c[0], &[]).await.unwrap();
        assert_eq!(paths, vec!["a.txt", "src/b.rs"]);
        assert!(!cut);
        sh(&format!(
            "cd {w} && echo c > c.txt && git add . && git commit -qm three && git push -q {r} main \
             && git push -q {r} main:refs/heads/feature",
            w = work.display(),
            r = repo.display()
        ));
        let later = refs(&repo).await.unwrap();
        let c = changes(&after, &later);
        assert_eq!(c.len(), 2, "{c:?}");
        let tips: Vec<String> = after.values().cloned().collect();
        let (paths, _) = changed_paths(&repo, &c[1], &tips).await.unwrap();
        assert_eq!(
            (c[1].git_ref.as_str(), paths),
            ("refs/heads/main", vec!["c.txt".to_owned()])
        );
        // The new branch: only what the tips before did not have.
        let (paths, _) = changed_paths(&repo, &c[0], &tips).await.unwrap();
        assert_eq!(
            (c[0].git_ref.as_str(), paths),
            ("refs/heads/feature", vec!["c.txt".to_owned()])
        );
    }
}
