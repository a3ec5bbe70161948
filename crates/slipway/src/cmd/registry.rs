//! `slipway registry password` and `slipway repo ...`: credentials and repositories of the
//! built-in registry.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use slipway_registry::admin::{
    CreateRepository, DeleteResponse, ImageInfo, PasswordRequest, PasswordResponse, RepositoryInfo,
};

use crate::client::Client;
use crate::output::{ago, print_json, short_digest, table};

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Print a registry password valid for 12 hours (and nothing else), for
    /// `slipway registry password | docker login HOST -u slipway --password-stdin`.
    Password(PasswordArgs),
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
    }
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
