//! Who may do what: roles, identities and the one permission table of every face.
//!
//! Every operation of every face (the native API, the ECS, ECR, ELBv2 and STS APIs, the
//! registry's distribution API) has one rule in [`RULES`]: what it needs ([`Need`]) and
//! whether it changes anything (mutating calls are audited). Checks are by allow-list: an
//! operation without a rule is refused to every identity, the admin included, so a new
//! operation cannot be callable by accident (the faces' tests enumerate their operations
//! against this table).
//!
//! Roles: `admin` may do everything; `deployer` deploys, scales, rolls back, restarts and
//! runs, pushes and pulls images, and reads everything but secret values; `reader` reads.
//! A deployer may be scoped to apps and environments: it then changes only those (reads
//! stay open: a scope limits what an identity can break, not what it can see).
//!
//! Pure: no I/O; the shells look identities up and call [`Identity::check`].

use serde::{Deserialize, Serialize};

/// A role of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Deployer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "deployer" => Some(Role::Deployer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role meets `need`.
    pub fn meets(self, need: Need) -> bool {
        match need {
            Need::Read => true,
            Need::Deploy => self >= Role::Deployer,
            Need::Admin => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reads only (any identity).
    Read,
    /// Changes a service's release or its images (deployer or admin).
    Deploy,
    /// Changes the platform: hosts, secrets, credentials, repositories' settings (admin).
    Admin,
}

/// The face an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Face {
    /// `/api/v1/...`: the operation is `METHOD /route` with the route's pattern.
    Native,
    Ecs,
    Ecr,
    Sts,
    /// ELBv2 (`elasticloadbalancing`, the query protocol).
    Elb,
    /// The distribution API: `pull`, `push`, `delete`.
    Registry,
    /// The built-in git remote of an app (`/git/APP.git`): `fetch`, `push`.
    Git,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Native => "native",
            Face::Ecs => "ecs",
            Face::Ecr => "ecr",
            Face::Sts => "sts",
            Face::Elb => "elasticloadbalancing",
            Face::Registry => "registry",
            Face::Git => "git",
        }
    }
}

/// One rule of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub face: Face,
    pub op: &'static str,
    pub need: Need,
    /// Changes something (and is therefore audited).
    pub mutates: bool,
}

const fn r(face: Face, op: &'static str, need: Need) -> Rule {
    Rule {
        face,
        op,
        need,
        mutates: !matches!(need, Need::Read),
    }
}

/// A read that is a POST (computes, changes nothing).
const fn q(face: Face, op: &'static str) -> Rule {
    Rule {
        face,
        op,
        need: Need::Read,
        mutates: false,
    }
}

/// A read only the admin may make (credentials, the audit log).
const fn ra(face: Face, op: &'static str) -> Rule {
    Rule {
        face,
        op,
        need: Need::Admin,
        mutates: false,
    }
}

/// A call any identity may make that still changes something (issues a credential).
const fn w(face: Face, op: &'static str) -> Rule {
    Rule {
        face,
        op,
        need: Need::Read,
        mutates: true,
    }
}

use Face::{Ecr, Ecs, Elb, Git, Native, Registry, Sts};
use Need::{Admin, Deploy, Read};

/// The permission table: every operation of every face.
pub const RULES: &[Rule] = &[
    // Native API: services and deployments.
    r(Native, "POST /deploy", Deploy),
    q(Native, "POST /diff"),
    r(Native, "GET /services", Read),
    r(Native, "GET /tasks", Read),
    r(Native, "GET /services/{app}/{env}/{name}", Read),
    r(Native, "DELETE /services/{app}/{env}/{name}", Admin),
    r(Native, "GET /services/{app}/{env}/{name}/events", Read),
    r(Native, "GET /services/{app}/{env}/{name}/logs", Read),
    r(Native, "POST /services/{app}/{env}/{name}/rollback", Deploy),
    r(Native, "POST /services/{app}/{env}/{name}/scale", Deploy),
    r(Native, "POST /services/{app}/{env}/{name}/promote", Deploy),
    r(Native, "POST /services/{app}/{env}/{name}/abort", Deploy),
    r(Native, "POST /services/{app}/{env}/{name}/restart", Deploy),
    r(
        Native,
        "POST /services/{app}/{env}/{name}/rebalance",
        Deploy,
    ),
    r(Native, "POST /services/{app}/{env}/{name}/exec", Admin),
    r(Native, "GET /deployments/{id}", Read),
    r(Native, "GET /apps", Read),
    r(Native, "GET /apps/{app}", Read),
    r(Native, "DELETE /apps/{app}", Admin),
    // Pipelines' push events (the built-in git remote's and webhooks').
    r(Native, "GET /apps/{app}/pushes", Read),
    r(Native, "GET /envs", Read),
    r(Native, "GET /jobs", Read),
    r(Native, "POST /jobs/{app}/{env}/{name}/run", Deploy),
    r(Native, "GET /logs", Read),
    r(Native, "GET /info", Read),
    r(Native, "GET /servers", Read),
    // Hosts.
    r(Native, "GET /hosts", Read),
    r(Native, "POST /hosts/join-token", Admin),
    r(Native, "DELETE /hosts/{id}", Admin),
    r(Native, "POST /hosts/{id}/drain", Admin),
    r(Native, "POST /hosts/{id}/activate", Admin),
    r(Native, "POST /debug/panic", Admin),
    // Secrets: names for everyone, values never leave the server.
    r(Native, "GET /secrets", Read),
    r(Native, "PUT /secrets/{*name}", Admin),
    r(Native, "DELETE /secrets/{*name}", Admin),
    // Credentials and the audit log.
    ra(Native, "GET /tokens"),
    r(Native, "POST /tokens", Admin),
    r(Native, "DELETE /tokens/{name}", Admin),
    ra(Native, "GET /access-keys"),
    r(Native, "POST /access-keys", Admin),
    r(Native, "DELETE /access-keys/{id}", Admin),
    ra(Native, "GET /audit"),
    r(Native, "GET /whoami", Read),
    // Prometheus metrics of the control plane (`GET /metrics`, beside `/api/v1`).
    r(Native, "GET /metrics", Read),
    // The registry's part of the native API.
    w(Native, "POST /registry/password"),
    r(Native, "POST /registry/gc", Admin),
    r(Native, "GET /registry/ca", Read),
    r(Native, "GET /repositories", Read),
    r(Native, "POST /repositories", Deploy),
    r(Native, "GET /repositories/{*name}", Read),
    r(Native, "PATCH /repositories/{*name}", Admin),
    r(Native, "DELETE /repositories/{*name}", Admin),
    r(Native, "POST /repositories/{*name}", Admin),
    r(Native, "PUT /repositories/{*name}", Admin),
    // ECS.
    r(Ecs, "CreateCluster", Deploy),
    r(Ecs, "DescribeClusters", Read),
    r(Ecs, "ListClusters", Read),
    r(Ecs, "DeleteCluster", Admin),
    r(Ecs, "RegisterTaskDefinition", Deploy),
    r(Ecs, "DescribeTaskDefinition", Read),
    r(Ecs, "ListTaskDefinitions", Read),
    r(Ecs, "ListTaskDefinitionFamilies", Read),
    r(Ecs, "DeregisterTaskDefinition", Deploy),
    r(Ecs, "CreateService", Deploy),
    r(Ecs, "UpdateService", Deploy),
    r(Ecs, "DescribeServices", Read),
    r(Ecs, "ListServices", Read),
    r(Ecs, "DeleteService", Admin),
    r(Ecs, "ListTasks", Read),
    r(Ecs, "ListServiceDeployments", Read),
    r(Ecs, "DescribeServiceDeployments", Read),
    r(Ecs, "DescribeTasks", Read),
    r(Ecs, "RunTask", Deploy),
    r(Ecs, "StartTask", Deploy),
    r(Ecs, "StopTask", Deploy),
    r(Ecs, "ListContainerInstances", Read),
    r(Ecs, "DescribeContainerInstances", Read),
    r(Ecs, "UpdateContainerInstancesState", Admin),
    r(Ecs, "TagResource", Deploy),
    r(Ecs, "UntagResource", Deploy),
    // ECR.
    w(Ecr, "GetAuthorizationToken"),
    r(Ecr, "CreateRepository", Deploy),
    r(Ecr, "DescribeRepositories", Read),
    r(Ecr, "DeleteRepository", Admin),
    r(Ecr, "DescribeImages", Read),
    r(Ecr, "ListImages", Read),
    r(Ecr, "BatchDeleteImage", Deploy),
    r(Ecr, "BatchGetImage", Read),
    r(Ecr, "PutImageTagMutability", Admin),
    r(Ecr, "PutLifecyclePolicy", Admin),
    r(Ecr, "GetLifecyclePolicy", Read),
    r(Ecr, "DeleteLifecyclePolicy", Admin),
    r(Ecr, "StartLifecyclePolicyPreview", Deploy),
    r(Ecr, "GetLifecyclePolicyPreview", Read),
    // STS.
    r(Sts, "GetCallerIdentity", Read),
    // ELBv2: creating and changing load balancers, target groups, listeners and rules is
    // a deployer's (as creating a service is); deleting them cuts traffic, so it is the
    // admin's (as deleting a service is).
    r(Elb, "CreateLoadBalancer", Deploy),
    r(Elb, "CreateTargetGroup", Deploy),
    r(Elb, "ModifyTargetGroupAttributes", Deploy),
    r(Elb, "CreateListener", Deploy),
    r(Elb, "CreateRule", Deploy),
    r(Elb, "DescribeLoadBalancers", Read),
    r(Elb, "DescribeTargetGroups", Read),
    r(Elb, "DescribeTargetGroupAttributes", Read),
    r(Elb, "DescribeTargetHealth", Read),
    r(Elb, "DescribeListeners", Read),
    r(Elb, "DescribeRules", Read),
    r(Elb, "DeleteLoadBalancer", Admin),
    r(Elb, "DeleteTargetGroup", Admin),
    r(Elb, "DeleteListener", Admin),
    r(Elb, "DeleteRule", Admin),
    // The distribution API.
    r(Registry, "pull", Read),
    r(Registry, "push", Deploy),
    r(Registry, "delete", Deploy),
    // The built-in git remote: clone and fetch read; a push may start pipelines that
    // deploy, so it is a deployer's (and, for a scoped one, only to its apps, every
    // environment: see `slipway_triggers`).
    r(Git, "fetch", Read),
    r(Git, "push", Deploy),
];

/// The rule of an operation, if it has one.
pub fn rule(face: Face, op: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.face == face && r.op == op)
}

/// An identity: a named token's or an access key's owner, with its role and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// Apps it may change (empty: every app).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// Environments it may change (empty: every environment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<String>,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{face} operation {op:?} has no permission rule, so nobody may call it")]
    NoRule { face: &'static str, op: String },
    #[error("{who} ({role}) may not {op}: it needs the {need} role")]
    Role {
        who: String,
        role: Role,
        op: String,
        need: &'static str,
    },
    #[error("{who} may change only {scope}, not {target}")]
    Scope {
        who: String,
        scope: String,
        target: String,
    },
}

impl Identity {
    /// The server's own admin (the first-start admin token).
    pub fn admin(name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            role: Role::Admin,
            apps: Vec::new(),
            envs: Vec::new(),
        }
    }

    pub fn scoped(&self) -> bool {
        !self.apps.is_empty() || !self.envs.is_empty()
    }

    /// Whether `rule` allows this identity (role only; targets see [`Identity::may_change`]).
    pub fn check(&self, face: Face, op: &str) -> Result<&'static Rule, Denied> {
        let rule = rule(face, op).ok_or_else(|| Denied::NoRule {
            face: face.as_str(),
            op: op.to_owned(),
        })?;
        if !self.role.meets(rule.need) {
            return Err(Denied::Role {
                who: self.name.clone(),
                role: self.role,
                op: op.to_owned(),
                need: match rule.need {
                    Need::Read => "reader",
                    Need::Deploy => "deployer",
                    Need::Admin => "admin",
                },
            });
        }
        Ok(rule)
    }

    /// Whether this identity may change app `app` (environment `env`, if known).
    pub fn may_change(&self, app: &str, env: Option<&str>) -> Result<(), Denied> {
        let app_ok = self.apps.is_empty() || self.apps.iter().any(|a| a == app);
        let env_ok = match env {
            Some(e) => self.envs.is_empty() || self.envs.iter().any(|x| x == e),
            // An operation without an environment touches all of them.
            None => self.envs.is_empty(),
        };
        if app_ok && env_ok {
            return Ok(());
        }
        Err(Denied::Scope {
            who: self.name.clone(),
            scope: self.describe_scope(),
            target: match env {
                Some(e) => format!("app {app} environment {e}"),
                None => format!("app {app} (every environment)"),
            },
        })
    }

    /// Whether this identity may push to or delete in repository `repo` (a scoped
    /// identity: repositories named `APP` or `APP/...` of its apps).
    pub fn may_change_repo(&self, repo: &str) -> Result<(), Denied> {
        if self.apps.is_empty() {
            return Ok(());
        }
        let app = repo.split('/').next().unwrap_or(repo);
        if self.apps.iter().any(|a| a == app) {
            return Ok(());
        }
        Err(Denied::Scope {
            who: self.name.clone(),
            scope: self.describe_scope(),
            target: format!("repository {repo}"),
        })
    }

    pub fn describe_scope(&self) -> String {
        let apps = if self.apps.is_empty() {
            "every app".to_owned()
        } else {
            format!("app {}", self.apps.join(", "))
        };
        if self.envs.is_empty() {
            apps
        } else {
            format!("{apps} in environment {}", self.envs.join(", "))
        }
    }
}

/// Checks a name of an identity (`[a-z0-9][a-z0-9._-]{0,62}`, as registry-safe as app names).
pub fn validate_identity_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "identity name {name:?} must be 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, apps: &[&str]) -> Identity {
        Identity {
            name: "t".into(),
            role,
            apps: apps.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
        }
    }

    #[test]
    fn every_rule_is_unique_and_reads_do_not_mutate_unless_marked() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                assert!(
                    !(a.face == b.face && a.op == b.op),
                    "{:?} {} has two rules",
                    a.face,
                    a.op
                );
            }
            if a.need != Need::Read && !a.op.starts_with("GET ") {
                assert!(
                    a.mutates,
                    "{} needs more than read but is not audited",
                    a.op
                );
            }
            if a.face == Face::Native {
                let (method, path) = a.op.split_once(' ').expect("METHOD /path");
                assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method));
                assert!(path.starts_with('/'), "{}", a.op);
                if method == "GET" {
                    assert!(!a.mutates, "{} is a GET", a.op);
                }
            }
        }
    }

    #[test]
    fn roles_meet_needs_in_order() {
        let reader = who(Role::Reader, &[]);
        let deployer = who(Role::Deployer, &[]);
        let admin = who(Role::Admin, &[]);
        assert!(reader.check(Face::Native, "GET /services").is_ok());
        assert!(matches!(
            reader.check(Face::Native, "POST /deploy"),
            Err(Denied::Role { .. })
        ));
        assert!(deployer.check(Face::Native, "POST /deploy").is_ok());
        assert!(
            deployer
                .check(Face::Native, "PUT /secrets/{*name}")
                .is_err()
        );
        assert!(deployer.check(Face::Registry, "push").is_ok());
        assert!(reader.check(Face::Registry, "push").is_err());
        assert!(reader.check(Face::Registry, "pull").is_ok());
        assert!(admin.check(Face::Native, "PUT /secrets/{*name}").is_ok());
        // Allow-list: an operation without a rule is refused even to the admin.
        let e = admin
            .check(Face::Ecs, "CreateCapacityProvider")
            .unwrap_err();
        assert!(matches!(e, Denied::NoRule { .. }));
        assert!(e.to_string().contains("no permission rule"));
    }

    #[test]
    fn scopes_limit_changes_by_app_environment_and_repository() {
        let mut d = who(Role::Deployer, &["shop"]);
        assert!(d.may_change("shop", Some("prod")).is_ok());
        let e = d.may_change("blog", Some("prod")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t may change only app shop, not app blog environment prod"
        );
        assert!(d.may_change_repo("shop/web").is_ok());
        assert!(d.may_change_repo("shop").is_ok());
        assert!(d.may_change_repo("shopping/web").is_err());
        d.envs = vec!["staging".into()];
        assert!(d.may_change("shop", Some("staging")).is_ok());
        assert!(d.may_change("shop", Some("prod")).is_err());
        assert!(d.may_change("shop", None).is_err());
        let open = who(Role::Deployer, &[]);
        assert!(open.may_change("any", None).is_ok());
        assert!(open.may_change_repo("x/y").is_ok());
    }

    #[test]
    fn identity_names() {
        assert!(validate_identity_name("ci-shop.prod_1").is_ok());
        for bad in ["", "Upper", "-x", "a b", &"x".repeat(64)] {
            assert!(validate_identity_name(bad).is_err(), "{bad:?}");
        }
    }
}
