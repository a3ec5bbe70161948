//! Image references as compose files write them: `[host[:port]/]path[:tag][@digest]`.

use std::fmt;

/// Docker Hub's registry host (what `nginx:1` or `user/app:tag` refer to).
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host as written (`127.0.0.1:5000`), or [`DOCKER_HUB`].
    pub registry: String,
    /// Repository path in that registry (`team/app`; `library/nginx` on Docker Hub).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Whether the host was written out (Docker Hub references usually omit it).
    explicit_host: bool,
}

/// Why a reference cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("the image reference is empty")]
    Empty,
    #[error("image {0:?} is not a valid reference: {1}")]
    Invalid(String, &'static str),
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RefError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(RefError::Invalid(s.into(), "it contains whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let Some(hex) = d.strip_prefix("sha256:") else {
                    return Err(RefError::Invalid(s.into(), "the digest is not sha256:..."));
                };
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(RefError::Invalid(
                        s.into(),
                        "the digest is not 64 hex digits",
                    ));
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || t.starts_with(['.', '-']))
        {
            return Err(RefError::Invalid(s.into(), "the tag is not valid"));
        }
        let (registry, path, explicit_host) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned(), true)
            }
            _ => {
                let path = if name.contains('/') {
                    name.to_owned()
                } else {
                    format!("library/{name}")
                };
                (DOCKER_HUB.to_owned(), path, false)
            }
        };
        if path.is_empty()
            || path.split('/').any(|c| {
                c.is_empty()
                    || !c.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)
                    })
            })
        {
            return Err(RefError::Invalid(
                s.into(),
                "the repository must be lowercase letters, digits and . _ - separated by /",
            ));
        }
        Ok(ImageRef {
            registry,
            repository: path,
            tag,
            digest,
            explicit_host,
        })
    }

    /// The repository as the engine names it (`127.0.0.1:5000/team/app`, `nginx`).
    pub fn name(&self) -> String {
        if self.explicit_host {
            format!("{}/{}", self.registry, self.repository)
        } else {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_owned()
        }
    }

    /// `name:tag` (the tag must be set).
    pub fn tagged(&self) -> String {
        format!(
            "{}:{}",
            self.name(),
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// `name@digest`.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// The key of this registry in `~/.docker/config.json`.
    pub fn auth_key(&self) -> String {
        if self.registry == DOCKER_HUB {
            "https://index.docker.io/v1/".to_owned()
        } else {
            self.registry.clone()
        }
    }

    /// Whether the registry is on this host (Docker talks plain HTTP to those).
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }

    /// Picks out this repository's digest from an image's `RepoDigests`.
    pub fn digest_in<'a>(&self, repo_digests: &'a [String]) -> Option<&'a str> {
        let name = self.name();
        let long = format!("{}/{}", self.registry, self.repository);
        repo_digests.iter().find_map(|rd| {
            let (n, d) = rd.split_once('@')?;
            (n == name || n == long || (!self.explicit_host && n == format!("docker.io/{name}")))
                .then_some(d)
        })
    }
}

/// Whether a registry (`host[:port]`) is on loopback, which Docker treats as insecure.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = host_only(registry);
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

fn host_only(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_once(']').map_or(registry, |(h, _)| &h[1..]);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_private_and_hub_references() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v2").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.name(), "127.0.0.1:5000/team/app");
        assert!(r.is_loopback());
        assert_eq!(r.auth_key(), "127.0.0.1:5000");

        let h = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!(h.registry, DOCKER_HUB);
        assert_eq!(h.repository, "library/nginx");
        assert_eq!(h.name(), "nginx");
        assert_eq!(h.auth_key(), "https://index.docker.io/v1/");
        assert!(!h.is_loopback());

        let u = ImageRef::parse("user/app").unwrap();
        assert_eq!(u.repository, "user/app");
        assert_eq!(u.tag, None);

        let l = ImageRef::parse("localhost/app:x").unwrap();
        assert_eq!(l.registry, "localhost");
        assert!(l.is_loopback());

        let d = ImageRef::parse(&format!("reg.example.com/a@sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(d.tag, None);
        assert!(d.digest.is_some());
        assert_eq!(
            d.to_string(),
            format!("reg.example.com/a@sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn rejects_bad_references() {
        assert_eq!(ImageRef::parse(" "), Err(RefError::Empty));
        assert!(ImageRef::parse("Team/App:v1").is_err());
        assert!(ImageRef::parse("a:").is_err());
        assert!(ImageRef::parse("a@sha256:zz").is_err());
        assert!(ImageRef::parse("a b:c").is_err());
        assert!(ImageRef::parse("reg:5000//x:1").is_err());
    }

    #[test]
    fn finds_its_repo_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v2").unwrap();
        let digests = vec![
            "other/x@sha256:1".to_owned(),
            "127.0.0.1:5000/team/app@sha256:2".to_owned(),
        ];
        assert_eq!(r.digest_in(&digests), Some("sha256:2"));
        let hub = ImageRef::parse("nginx:1").unwrap();
        assert_eq!(
            hub.digest_in(&["nginx@sha256:3".to_owned()]),
            Some("sha256:3")
        );
        assert_eq!(hub.digest_in(&digests), None);
    }
}
