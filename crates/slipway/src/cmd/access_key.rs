//! `slipway access-key create|ls|revoke`: SigV4 access keys of the AWS-compatible API
//! (`aws ecs ...`, `aws ecr ...` with `--endpoint-url`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use slipway_aws::{AccessKeyCreated, AccessKeyInfo, CreateAccessKey};

use crate::client::Client;
use crate::output::{ago, print_json, table};

#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Create an access key; its secret is printed once (`--json` gives IAM's AccessKey
    /// shape: {"AccessKeyId": ..., "SecretAccessKey": ...}).
    Create(CreateArgs),
    /// List access keys (never their secrets).
    Ls,
    /// Revoke an access key: requests signed with it are refused from now on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A key that may only describe and list (mutating calls get AccessDeniedException).
    #[arg(long)]
    read_only: bool,
    /// A name for the key (who or what uses it), shown by `ls` and in STS answers.
    #[arg(long)]
    name: Option<String>,
    /// The identity the key belongs to (`slipway token create`): it acts with that
    /// identity's role and scope and is revoked with it. Without, the key acts as the admin.
    #[arg(long = "for", value_name = "IDENTITY")]
    owner: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The access key id (AKIA...).
    id: String,
}

pub async fn run(cmd: AccessKeyCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        AccessKeyCmd::Create(a) => {
            let k: AccessKeyCreated = client
                .post(
                    "/access-keys",
                    &CreateAccessKey {
                        name: a.name,
                        read_only: a.read_only,
                        owner: a.owner,
                    },
                )
                .await?;
            if json {
                print_json(&k)?;
            } else {
                println!("AccessKeyId:     {}", k.access_key_id);
                println!("SecretAccessKey: {}", k.secret_access_key);
                println!(
                    "{}; the secret is shown only now. Use it with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and --endpoint-url.",
                    if k.read_only {
                        "read-only key"
                    } else {
                        "read-write key"
                    }
                );
            }
        }
        AccessKeyCmd::Ls => {
            let keys: Vec<AccessKeyInfo> = client.get("/access-keys").await?;
            if json {
                print_json(&keys)?;
            } else if keys.is_empty() {
                println!("no access keys yet; `slipway access-key create` makes one");
            } else {
                let mut t = table(&["ID", "NAME", "IDENTITY", "ACCESS", "CREATED", "STATUS"]);
                for k in &keys {
                    t.add_row(vec![
                        k.id.clone(),
                        k.name.clone().unwrap_or_else(|| "-".into()),
                        k.owner.clone().unwrap_or_else(|| "admin".into()),
                        if k.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        }
                        .into(),
                        ago(k.created_at),
                        match k.revoked_at {
                            Some(at) => format!("revoked {}", ago(at)),
                            None => "active".into(),
                        },
                    ]);
                }
                println!("{t}");
            }
        }
        AccessKeyCmd::Revoke(a) => {
            let k: AccessKeyInfo = client.delete(&format!("/access-keys/{}", a.id)).await?;
            if json {
                print_json(&k)?;
            } else {
                println!("revoked access key {}", k.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
