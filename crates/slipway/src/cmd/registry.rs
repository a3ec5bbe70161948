//! `slipway registry password` and `slipway repo ...`: credentials and repositories of the
//! built-in registry.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use slipway_registry::admin::{
    CreateRepository, DeleteResponse, GcRequest, ImageInfo, PasswordRequest, PasswordResponse,
    PolicyResponse, RepositoryInfo,
};
use slipway_registry::gc::GcReport;
use slipway_registry::lifecycle::LifecycleReport;

use crate::client::Client;
use crate::output::{ago, print_json, short_digest, table};

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Print a registry password valid for 12 hours (and nothing else), for
    /// `slipway registry password | docker login HOST -u slipway --password-stdin`.
    Password(PasswordArgs),
    /// Delete blobs no manifest refers to (older than the grace period); pushes and pulls
    /// keep working meanwhile.
    Gc(GcArgs),
    /// Print the certificate of the server's private CA (for `docker` on other hosts).
    Ca,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be deleted without deleting it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Set a repository's lifecycle policy from a file in ECR's JSON format.
    Set(PolicySetArgs),
    /// Print a repository's lifecycle policy.
    Get(NameArg),
    /// Show the images the policy would expire now (exactly what a run deletes).
    Preview(NameArg),
    /// Apply the policy now (it also runs on a schedule).
    Run(NameArg),
    /// Remove a repository's lifecycle policy.
    Delete(NameArg),
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    name: String,
    /// The policy: ECR's lifecycle policy JSON (`-` reads standard input).
    file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// A password that can pull but not push or delete.
    #[arg(long)]
    pull_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Create a repository (pushing to a new name also creates one, mutable).
    Create(CreateArgs),
    /// List repositories.
    Ls,
    /// List the images of a repository: tags, digest, size, push time, platforms.
    Images(NameArg),
    /// Delete a repository; one that holds images needs --force.
    Delete(DeleteArgs),
    /// Lifecycle policies (ECR's JSON format) that expire old images.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// Refuse to move an existing tag to another image.
    #[arg(long)]
    immutable: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    name: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    name: String,
    /// Delete even when the repository holds images.
    #[arg(long)]
    force: bool,
}

pub async fn registry(cmd: RegistryCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        RegistryCmd::Password(a) => {
            let client = Client::from_env()?;
            let r: PasswordResponse = client
                .post(
                    "/registry/password",
                    &PasswordRequest {
                        pull_only: a.pull_only,
                    },
                )
                .await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.password);
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCmd::Gc(a) => {
            let client = Client::from_env()?;
            let r: GcReport = client
                .post("/registry/gc", &GcRequest { dry_run: a.dry_run })
                .await?;
            if json {
                print_json(&r)?;
            } else {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                for b in &r.blobs {
                    println!("{verb} {} ({})", b.digest, human_size(b.size));
                }
                println!(
                    "{verb} {} blob(s), {} ({} orphan file(s)); grace period {}s",
                    r.blobs.len(),
                    human_size(r.bytes_freed),
                    r.orphan_files,
                    r.grace_secs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCmd::Ca => {
            let client = Client::from_env()?;
            let r: slipway_registry::admin::CaResponse = client.get("/registry/ca").await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", r.certificate);
                eprintln!("{}", r.instruction);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_lifecycle(r: &LifecycleReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let verb = if r.dry_run { "would expire" } else { "expired" };
    if r.expired.is_empty() {
        println!("{}: nothing to expire", r.repository);
    } else {
        let mut t = table(&["DIGEST", "TAGS", "PUSHED", "RULE"]);
        for e in &r.expired {
            t.add_row(vec![
                short_digest(&e.digest),
                if e.tags.is_empty() {
                    "<untagged>".into()
                } else {
                    e.tags.join(",")
                },
                ago(e.pushed_at),
                e.rule_priority.to_string(),
            ]);
        }
        println!("{t}");
        println!(
            "{}: {verb} {} image(s) (and {} untagged child/referrer manifest(s))",
            r.repository,
            r.expired.len(),
            r.also_deleted.len()
        );
    }
    for p in &r.protected {
        println!(
            "kept {} (in use by a running task or a last successful release)",
            short_digest(p)
        );
    }
    Ok(())
}

fn mutability(immutable: bool) -> &'static str {
    if immutable { "IMMUTABLE" } else { "MUTABLE" }
}

/// `1536` → `1.5 KiB`.
fn human_size(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub async fn repo(cmd: RepoCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        RepoCmd::Create(a) => {
            let r: RepositoryInfo = client
                .post(
                    "/repositories",
                    &CreateRepository {
                        name: a.name,
                        immutable: a.immutable,
                    },
                )
                .await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "created repository {} ({})",
                    r.name,
                    mutability(r.immutable).to_lowercase()
                );
            }
        }
        RepoCmd::Ls => {
            let list: Vec<RepositoryInfo> = client.get("/repositories").await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no repositories yet; `slipway repo create NAME` or push to one");
            } else {
                let mut t = table(&["NAME", "TAGS", "IMAGES", "MUTABILITY", "CREATED"]);
                for r in &list {
                    t.add_row(vec![
                        r.name.clone(),
                        r.tags.to_string(),
                        r.manifests.to_string(),
                        mutability(r.immutable).into(),
                        ago(r.created_at),
                    ]);
                }
                println!("{t}");
            }
        }
        RepoCmd::Images(a) => {
            let list: Vec<ImageInfo> = client
                .get(&format!("/repositories/{}/images", a.name))
                .await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("{} has no images", a.name);
            } else {
                let mut t = table(&["TAGS", "DIGEST", "SIZE", "PUSHED", "PLATFORM"]);
                for i in &list {
                    t.add_row(vec![
                        if i.tags.is_empty() {
                            "<untagged>".into()
                        } else {
                            i.tags.join(",")
                        },
                        short_digest(&i.digest),
                        human_size(i.size),
                        ago(i.pushed_at),
                        if i.platforms.is_empty() {
                            "-".into()
                        } else {
                            i.platforms.join(",")
                        },
                    ]);
                }
                println!("{t}");
            }
        }
        RepoCmd::Policy { cmd } => {
            let path = |n: &str| format!("/repositories/{n}/lifecycle-policy");
            match cmd {
                PolicyCmd::Set(a) => {
                    let text = if a.file.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&a.file)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.file.display()))?
                    };
                    let r: PolicyResponse = client.put_text(&path(&a.name), text).await?;
                    if json {
                        print_json(&r)?;
                    } else {
                        println!("set the lifecycle policy of {}", r.repository);
                    }
                }
                PolicyCmd::Get(a) => {
                    let r: PolicyResponse = client.get(&path(&a.name)).await?;
                    if json {
                        print_json(&r)?;
                    } else {
                        println!("{}", r.policy.unwrap_or_default().trim_end());
                    }
                }
                PolicyCmd::Delete(a) => {
                    let r: PolicyResponse = client.delete(&path(&a.name)).await?;
                    if json {
                        print_json(&r)?;
                    } else {
                        println!("removed the lifecycle policy of {}", r.repository);
                    }
                }
                PolicyCmd::Preview(a) => {
                    let r: LifecycleReport = client
                        .post_empty(&format!("{}/preview", path(&a.name)))
                        .await?;
                    print_lifecycle(&r, json)?;
                }
                PolicyCmd::Run(a) => {
                    let r: LifecycleReport =
                        client.post_empty(&format!("{}/run", path(&a.name))).await?;
                    print_lifecycle(&r, json)?;
                }
            }
        }
        RepoCmd::Delete(a) => {
            if a.name.is_empty() {
                bail!("name a repository to delete");
            }
            let path = format!(
                "/repositories/{}{}",
                a.name,
                if a.force { "?force=true" } else { "" }
            );
            let r: DeleteResponse = client.delete(&path).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("deleted repository {}", r.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
