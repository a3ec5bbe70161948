//! A service's `sidecars`, `logging` and `image.depends_on`: written into `slipway.yml`
//! in the same shapes (Slipway's `sidecars:` and `logging:` follow Copilot's), with a
//! warning for each key that only means something on AWS.

use super::*;

impl Cx {
    /// `sidecars:` — each container with the keys Slipway runs.
    pub(super) fn sidecars(&mut self, f: usize, root: &Node, app: &str) {
        let Some((k, v)) = root.get("sidecars") else {
            return;
        };
        if !v.is_map() || v.entries().is_empty() {
            self.warn(f, k.at, "sidecars", "not a map of containers; ignored");
            return;
        }
        self.w.open(2, "sidecars", origin(f, k.at));
        for (sk, sv) in v.entries() {
            self.w.open(3, &sk.name, origin(f, sk.at));
            let path = format!("sidecars.{}", sk.name);
            for (ck, cv) in sv.entries() {
                let key = format!("{path}.{}", ck.name);
                match ck.name.as_str() {
                    "image" => match (cv.scalar(), cv.get("location")) {
                        (Some(s), _) => self.w.kv(4, "image", &scalar_text(&s), origin(f, cv.at)),
                        (None, Some((_, lv))) => {
                            self.w.kv(4, "image", &lv.flow(), origin(f, lv.at))
                        }
                        (None, None) => self.warn(
                            f,
                            ck.at,
                            &key,
                            "a sidecar's image is not built here; give image (or image.location) as an image to pull",
                        ),
                    },
                    "port" => {
                        // Copilot writes `8126` or `8126/tcp`.
                        let p = cv.scalar().unwrap_or_default();
                        let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                        if proto != "tcp" {
                            self.warn(
                                f,
                                cv.at,
                                &key,
                                "only TCP ports are reached on localhost here; the protocol is ignored",
                            );
                        }
                        self.w.kv(4, "port", num, origin(f, cv.at));
                    }
                    "essential" | "depends_on" | "healthcheck" | "command" | "entrypoint"
                    | "mount_points" => self.w.kv(4, &ck.name, &cv.flow(), origin(f, cv.at)),
                    "variables" => {
                        self.variables(f, 4, Some((ck, cv)), app, None, &BTreeSet::new());
                    }
                    "secrets" => {
                        self.secrets(f, 4, Some((ck, cv)), app, None, &BTreeSet::new());
                    }
                    "credentialsParameter" => self.warn(
                        f,
                        ck.at,
                        &key,
                        "a Secrets Manager secret for a private registry does not apply: the server pulls with its own registry credentials",
                    ),
                    "labels" => self.warn(
                        f,
                        ck.at,
                        &key,
                        "Docker labels are not set: Slipway's own labels mark every container",
                    ),
                    other => self.warn(
                        f,
                        ck.at,
                        &key,
                        format!("not a sidecar setting Slipway knows ({other}); ignored"),
                    ),
                }
            }
        }
    }

    /// `logging:` — the FireLens log router.
    pub(super) fn logging(&mut self, f: usize, root: &Node, app: &str) {
        let Some((k, v)) = root.get("logging") else {
            return;
        };
        self.w.open(2, "logging", origin(f, k.at));
        for (lk, lv) in v.entries() {
            let key = format!("logging.{}", lk.name);
            match lk.name.as_str() {
                "image" | "destination" | "enable_metadata" | "config_file" => {
                    self.w.kv(3, &lk.name, &lv.flow(), origin(f, lv.at))
                }
                "variables" => {
                    self.variables(f, 3, Some((lk, lv)), app, None, &BTreeSet::new());
                }
                "secrets" => {
                    self.secrets(f, 3, Some((lk, lv)), app, None, &BTreeSet::new());
                }
                "retention" | "secretOptions" | "env_file" => self.warn(
                    f,
                    lk.at,
                    &key,
                    "a CloudWatch or S3 setting of the router does not apply; configure the router's output in destination or its config_file",
                ),
                other => self.warn(
                    f,
                    lk.at,
                    &key,
                    format!("not a logging setting Slipway knows ({other}); ignored"),
                ),
            }
        }
    }
}
