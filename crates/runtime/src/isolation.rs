//! Network isolation of tasks' published ports (the "security group" of a service).
//!
//! A task is reached by the ingress and by the services of its own app environment; other
//! app environments must not reach it. On one host Docker keeps app networks apart (its
//! `DOCKER-ISOLATION` chains drop traffic between two bridges), and a task's port is not
//! published. In a cluster of several hosts, though, a task's port is published on its
//! host's advertised address so that the ingress and the discovery proxies of other hosts
//! reach it, and any container could then connect to it: on the same host through Docker's
//! userland proxy (the `INPUT` path: Docker does not translate traffic coming from a bridge),
//! on another host through its own host's forwarding (the `FORWARD` path, masqueraded to
//! the host's address, where the receiving host can no longer tell it from the ingress).
//!
//! So on every host, traffic *from a container* (entering from one of Docker's bridges,
//! `docker0` or `br-*`) to a published task port is dropped, before Docker's own rules:
//! - a chain, [`CHAIN`], jumped to from `INPUT` and `DOCKER-USER` for those interfaces;
//! - one `DROP` rule per task of this host, added when its container is created (before it
//!   starts) and removed with it, tagged `slipway-task:ID` (the rules of containers removed
//!   behind Slipway's back go when the next task of the host is created);
//! - one `DROP` rule per task published on another host, from the service map the server
//!   sends every host, tagged `slipway-remote:CLUSTER` and kept in step with the map.
//!
//! Host processes (the ingress, the discovery proxies, which serve only the asking
//! container's own app environment) are not affected: their connections leave through
//! `OUTPUT`, and Docker translates them to the container address there.
//!
//! The rules live in the kernel (they survive a restart of Slipway, not of the host, where
//! the tasks are created again anyway). Several Slipway processes may share a host: each
//! touches only the rules of its own tasks and clusters, and `iptables -w` serialises
//! them. Needs `iptables` and the right to use it (root); without, a warning says that
//! published ports are not isolated.
//!
//! May call: the `iptables` command. IPv4 only.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

/// The chain holding the rules.
pub const CHAIN: &str = "SLIPWAY-ISOLATION";

/// Interfaces of Docker's bridges (`+` is iptables' wildcard): where containers' traffic
/// enters the host.
const BRIDGES: [&str; 2] = ["docker0", "br-+"];

/// Why a rule could not be set.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("cannot run iptables: {0}")]
    Unavailable(String),
    #[error("iptables {args}: {stderr}")]
    Refused { args: String, stderr: String },
    #[error("only IPv4 published addresses are isolated ({0})")]
    NotIpv4(IpAddr),
}

/// Serialises this process's changes (other processes: `iptables -w`).
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The warning that isolation is off was given.
static WARNED: AtomicBool = AtomicBool::new(false);

async fn iptables(args: &[&str]) -> Result<String, IsolationError> {
    let out = tokio::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| IsolationError::Unavailable(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(IsolationError::Refused {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Creates [`CHAIN`] and the jumps to it (each only when missing).
async fn ensure_chain() -> Result<(), IsolationError> {
    if iptables(&["-S", CHAIN]).await.is_err() {
        match iptables(&["-N", CHAIN]).await {
            Ok(_) => {}
            // Created meanwhile by another process.
            Err(IsolationError::Refused { stderr, .. }) if stderr.contains("exists") => {}
            Err(e) => return Err(e),
        }
    }
    // Docker's forwarding hook; without it (Docker not managing iptables), FORWARD itself.
    let forward = if iptables(&["-S", "DOCKER-USER"]).await.is_ok() {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    for hook in ["INPUT", forward] {
        for bridge in BRIDGES {
            let rule = ["-i", bridge, "-j", CHAIN];
            if iptables(&[&["-C", hook][..], &rule[..]].concat())
                .await
                .is_err()
            {
                iptables(&[&["-I", hook, "1"][..], &rule[..]].concat()).await?;
            }
        }
    }
    Ok(())
}

fn drop_rule(ip: Ipv4Addr, port: u16, tag: &str) -> Vec<String> {
    [
        "-d",
        &format!("{ip}/32"),
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        &port.to_string(),
        "-m",
        "comment",
        "--comment",
        tag,
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The rules of [`CHAIN`] tagged `tag`, as `iptables -S` prints them (split into words).
async fn rules_tagged(tag: &str) -> Result<Vec<Vec<String>>, IsolationError> {
    Ok(iptables(&["-S", CHAIN])
        .await?
        .lines()
        .map(words)
        .filter(|w| {
            w.first().map(String::as_str) == Some("-A")
                && w.windows(2).any(|p| p[0] == "--comment" && p[1] == tag)
        })
        .collect())
}

/// The words of a rule printed by `iptables -S` (tags hold no space; it prints them quoted).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect()
}

/// The `(address, port)` a rule of [`drop_rule`] drops.
fn endpoint_of(words: &[String]) -> Option<SocketAddr> {
    let arg = |flag: &str| {
        words
            .windows(2)
            .find(|p| p[0] == flag)
            .map(|p| p[1].as_str())
    };
    let ip: Ipv4Addr = arg("-d")?.trim_end_matches("/32").parse().ok()?;
    let port: u16 = arg("--dport")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

async fn delete(words: &[String]) -> Result<(), IsolationError> {
    let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
    args[0] = "-D";
    iptables(&args).await.map(|_| ())
}

fn task_tag(container: &str) -> String {
    format!("slipway-task:{}", &container[..container.len().min(12)])
}

fn warn_off(e: &IsolationError) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "published task ports are not isolated from other app environments on this host");
    }
}

/// Drops containers' traffic to `published`, the port of this host's task `container`.
pub async fn block_task(container: &str, published: SocketAddr) -> Result<(), IsolationError> {
    let IpAddr::V4(ip) = published.ip() else {
        return Err(IsolationError::NotIpv4(published.ip()));
    };
    let _guard = LOCK.lock().await;
    let r = async {
        ensure_chain().await?;
        let rule = drop_rule(ip, published.port(), &task_tag(container));
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        iptables(&[&["-A", CHAIN][..], &rule[..]].concat())
            .await
            .map(|_| ())
    }
    .await;
    if let Err(e) = &r {
        warn_off(e);
    }
    r
}

/// Removes the rule of the task `container` (nothing when it has none).
pub async fn unblock_task(container: &str) {
    let _guard = LOCK.lock().await;
    let Ok(rules) = rules_tagged(&task_tag(container)).await else {
        return;
    };
    for r in rules {
        if let Err(e) = delete(&r).await {
            tracing::warn!(error = %e, container, "cannot remove a task's isolation rule");
        }
    }
}

/// Removes the rules of tasks whose container is gone without Slipway removing it (removed
/// by hand, or while no Slipway process ran): `exists` tells whether a container whose id
/// starts with the given prefix still exists.
pub async fn prune_tasks(exists: impl Fn(&str) -> bool) {
    let _guard = LOCK.lock().await;
    let Ok(listed) = iptables(&["-S", CHAIN]).await else {
        return;
    };
    for w in listed.lines().map(words) {
        let gone = w
            .windows(2)
            .find(|p| p[0] == "--comment")
            .and_then(|p| p[1].strip_prefix("slipway-task:"))
            .is_some_and(|id| !exists(id));
        if gone && w.first().map(String::as_str) == Some("-A") {
            let _ = delete(&w).await;
        }
    }
}

/// Keeps the rules for the published ports of `cluster`'s tasks on the other hosts in step
/// with `published` (every published task of the cluster, this host's included: harmless).
pub async fn sync_remote(cluster: &str, published: &[SocketAddr]) -> Result<(), IsolationError> {
    let tag = format!("slipway-remote:{cluster}");
    let wanted: BTreeSet<SocketAddr> = published.iter().filter(|a| a.is_ipv4()).copied().collect();
    let _guard = LOCK.lock().await;
    let r = async {
        ensure_chain().await?;
        let existing = rules_tagged(&tag).await?;
        let mut have = BTreeSet::new();
        for words in &existing {
            match endpoint_of(words) {
                Some(a) if wanted.contains(&a) && have.insert(a) => {}
                _ => delete(words).await?,
            }
        }
        for a in wanted.difference(&have) {
            let IpAddr::V4(ip) = a.ip() else { continue };
            let rule = drop_rule(ip, a.port(), &tag);
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            iptables(&[&["-A", CHAIN][..], &rule[..]].concat()).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = &r {
        warn_off(e);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_printed_by_iptables_gives_back_its_endpoint() {
        let line = "-A SLIPWAY-ISOLATION -d 10.0.0.5/32 -p tcp -m tcp --dport 41001 -m comment --comment \"slipway-remote:c1\" -j DROP";
        let printed = words(line);
        assert!(printed.contains(&"slipway-remote:c1".to_owned()));
        assert_eq!(
            endpoint_of(&printed),
            Some("10.0.0.5:41001".parse().unwrap())
        );
        let built = drop_rule(Ipv4Addr::new(10, 0, 0, 5), 41001, "slipway-remote:c1");
        assert_eq!(endpoint_of(&built), Some("10.0.0.5:41001".parse().unwrap()));
    }

    #[test]
    fn a_task_tag_is_short_and_has_no_space() {
        assert_eq!(task_tag("0123456789abcdef"), "slipway-task:0123456789ab");
        assert_eq!(task_tag("abc"), "slipway-task:abc");
    }
}
