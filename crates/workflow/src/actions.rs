//! The built-in actions a step may `uses:` (there is no internet to download others).

use std::fmt;

/// The actions Slipway implements itself, by the names workflows use.
pub const BUILTIN_ACTIONS: &[&str] = &[
    "actions/checkout",
    "aws-actions/configure-aws-credentials",
    "aws-actions/amazon-ecr-login",
    "aws-actions/amazon-ecs-render-task-definition",
    "aws-actions/amazon-ecs-deploy-task-definition",
    "docker/login-action",
    "docker/build-push-action",
    "actions/upload-artifact",
    "actions/download-artifact",
    "slipway/deploy",
];

/// A `uses:` that names a built-in action, with the version written after `@` (any version
/// is accepted: the built-in implements the inputs and outputs those versions share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// One of [`BUILTIN_ACTIONS`], lowercase.
    pub name: String,
    /// What follows `@`, empty when absent.
    pub version: String,
}

impl fmt::Display for ActionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.version)
        }
    }
}

/// Checks a step's `uses:`; the error says why it is refused.
pub fn parse_uses(uses: &str) -> Result<ActionRef, String> {
    let uses = uses.trim();
    if uses.starts_with("docker://") {
        return Err(format!(
            "`{uses}`: docker:// actions are not supported; run the image's command in a `run:` step of a job with `container:`"
        ));
    }
    if uses.starts_with("./") || uses.starts_with('/') {
        return Err(format!(
            "`{uses}`: local actions are not supported; only the built-in actions are: {}",
            BUILTIN_ACTIONS.join(", ")
        ));
    }
    let (name, version) = uses.split_once('@').unwrap_or((uses, ""));
    let lower = name.to_ascii_lowercase();
    if !BUILTIN_ACTIONS.contains(&lower.as_str()) {
        return Err(format!(
            "`{uses}`: `{name}` is not a built-in action (there is no download); replace the step with `run:` or use one of: {}",
            BUILTIN_ACTIONS.join(", ")
        ));
    }
    Ok(ActionRef {
        name: lower,
        version: version.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_with_any_version() {
        let a = parse_uses("actions/checkout@v4").unwrap();
        assert_eq!(
            (a.name.as_str(), a.version.as_str()),
            ("actions/checkout", "v4")
        );
        assert_eq!(parse_uses("slipway/deploy").unwrap().version, "");
        assert!(parse_uses("Docker/Build-Push-Action@v5").is_ok());
        let e = parse_uses("actions/setup-java@v2").unwrap_err();
        assert!(
            e.contains("`actions/setup-java` is not a built-in action"),
            "{e}"
        );
        assert!(
            parse_uses("./.github/actions/x")
                .unwrap_err()
                .contains("local actions")
        );
        assert!(
            parse_uses("docker://alpine:3")
                .unwrap_err()
                .contains("docker://")
        );
    }
}
