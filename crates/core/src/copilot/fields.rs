//! The fields of a service manifest that need more than a copy: aliases, count and its
//! autoscaling keys, platform, variables and secrets (with Copilot's name expansion),
//! storage, deployment, and an environment's overrides.

use super::*;

impl Cx {
    /// `http.alias`: a name, a list of names, or a list of `{name, hosted_zone}`.
    pub(super) fn aliases(&mut self, f: usize, key: &str, v: &Node) -> String {
        let Val::Seq(items) = &v.val else {
            return v.flow();
        };
        let mut names = Vec::new();
        for it in items {
            match it.get("name") {
                Some((_, n)) => {
                    names.push(n.flow());
                    if let Some((hk, _)) = it.get("hosted_zone") {
                        self.warn(
                            f,
                            hk.at,
                            &format!("{key}.hosted_zone"),
                            "Route 53 records are not created; point the name's DNS at the ingress",
                        );
                    }
                }
                None => names.push(it.flow()),
            }
        }
        format!("[{}]", names.join(", "))
    }

    /// `count`: a number, or autoscaling (not applied: the range's minimum runs).
    pub(super) fn count(
        &mut self,
        f: usize,
        depth: usize,
        prefix: &str,
        count: Option<(&node::Key, &Node)>,
    ) {
        let Some((ck, cv)) = count else {
            return;
        };
        if !cv.is_map() {
            self.w.kv(depth, "count", &cv.flow(), origin(f, cv.at));
            return;
        }
        let mut n: Option<(String, Location)> = None;
        for (k, v) in cv.entries() {
            match k.name.as_str() {
                "range" => {
                    let min = match &v.val {
                        Val::Str(s) => s.split('-').next().map(|m| m.trim().to_owned()),
                        _ => v.get("min").and_then(|(_, m)| m.scalar()),
                    };
                    if let Some(m) = min {
                        n = Some((m, v.at));
                    }
                }
                "spot" if n.is_none() => {
                    if let Some(s) = v.scalar() {
                        n = Some((s, v.at));
                    }
                }
                _ => {}
            }
        }
        let runs = n
            .as_ref()
            .map_or("the count Slipway keeps".to_owned(), |(m, _)| {
                format!("{m} task(s), the range's minimum")
            });
        for (k, _) in cv.entries() {
            let why = match k.name.as_str() {
                "spot" => format!("Fargate Spot does not apply; Slipway runs {runs}"),
                _ => format!(
                    "autoscaling is accepted but not applied; Slipway runs {runs} (scale with `slipway scale`)"
                ),
            };
            self.warn(f, k.at, &format!("{prefix}count.{}", k.name), why);
        }
        match n {
            Some((m, at)) => {
                self.w.comment(
                    depth,
                    "Copilot autoscales this service; Slipway runs the range's minimum (see the warnings above).",
                );
                let v = m
                    .parse::<i64>()
                    .map_or_else(|_| scalar_text(&m), |i| i.to_string());
                self.w.kv(depth, "count", &v, origin(f, at));
            }
            None => {
                let _ = ck;
            }
        }
    }

    pub(super) fn platform(&mut self, f: usize, k: &node::Key, v: &Node) {
        let (os, arch) = match (&v.val, v.get("osfamily"), v.get("architecture")) {
            (Val::Str(s), _, _) => match s.split_once('/') {
                Some((o, a)) => (o.to_ascii_lowercase(), a.to_ascii_lowercase()),
                None => (s.to_ascii_lowercase(), String::new()),
            },
            (_, Some((_, o)), Some((_, a))) => (
                o.scalar().unwrap_or_default().to_ascii_lowercase(),
                a.scalar().unwrap_or_default().to_ascii_lowercase(),
            ),
            _ => (String::new(), String::new()),
        };
        let arch = match arch.as_str() {
            "x86_64" | "amd64" => "amd64",
            "arm64" | "aarch64" | "arm" => "arm64",
            _ => "",
        };
        if os == "linux" && !arch.is_empty() {
            let p = format!("linux/{arch}");
            self.w.kv(2, "platform", &p, origin(f, v.at));
        } else {
            self.warn(
                f,
                k.at,
                "platform",
                format!(
                    "{} cannot run on Slipway's hosts (linux/amd64 or linux/arm64); images are built for the hosts' platform",
                    v.flow()
                ),
            );
        }
    }

    /// Copilot's names for an app and an environment in a string.
    pub(super) fn expand(s: &str, app: &str, env: Option<&str>) -> String {
        s.replace("${COPILOT_APPLICATION_NAME}", app).replace(
            "${COPILOT_ENVIRONMENT_NAME}",
            env.unwrap_or(crate::manifest::DEFAULT_ENV),
        )
    }

    /// `variables:`; `skip` names those an environment's override already sets.
    pub(super) fn variables(
        &mut self,
        f: usize,
        depth: usize,
        vars: Option<(&node::Key, &Node)>,
        app: &str,
        env: Option<&str>,
        skip: &BTreeSet<String>,
    ) -> bool {
        let Some((k, v)) = vars else {
            return false;
        };
        if !v.is_map() {
            self.w.kv(depth, "variables", &v.flow(), origin(f, v.at));
            return true;
        }
        let mut lines = Vec::new();
        for (vk, vv) in v.entries() {
            if skip.contains(&vk.name) {
                continue;
            }
            match vv.scalar() {
                Some(s) => lines.push((vk.name.clone(), Self::expand(&s, app, env), vv.at)),
                None if vv.get("from_cfn").is_some() => self.warn(
                    f,
                    vk.at,
                    &format!("{}variables.{}", env_prefix(env), vk.name),
                    "a CloudFormation stack output (from_cfn) does not exist here; the variable is not set",
                ),
                None => lines.push((vk.name.clone(), String::new(), vv.at)),
            }
        }
        if lines.is_empty() {
            return false;
        }
        self.w.open(depth, "variables", origin(f, k.at));
        for (name, val, at) in lines {
            self.w
                .kv(depth + 1, &name, &scalar_text(&val), origin(f, at));
        }
        true
    }

    /// `secrets:` — SSM parameter and Secrets Manager names become Slipway secret names
    /// (without the leading `/`).
    pub(super) fn secrets(
        &mut self,
        f: usize,
        depth: usize,
        secrets: Option<(&node::Key, &Node)>,
        app: &str,
        env: Option<&str>,
        skip: &BTreeSet<String>,
    ) -> bool {
        let Some((k, v)) = secrets else {
            return false;
        };
        if !v.is_map() {
            self.w.kv(depth, "secrets", &v.flow(), origin(f, v.at));
            return true;
        }
        let mut lines = Vec::new();
        for (sk, sv) in v.entries() {
            if skip.contains(&sk.name) {
                continue;
            }
            let key = format!("{}secrets.{}", env_prefix(env), sk.name);
            let raw = match (&sv.val, sv.get("secretsmanager")) {
                (Val::Str(s), _) => s.clone(),
                (_, Some((_, n))) => match n.scalar() {
                    Some(s) => {
                        let s = s.trim_end_matches("::");
                        // `name:json-key:version-stage:version-id`
                        let (name, rest) = s.split_once(':').map_or((s, ""), |(a, b)| (a, b));
                        if !rest.is_empty() && !s.starts_with("arn:") {
                            self.warn(
                                f,
                                n.at,
                                &format!("{key}.secretsmanager"),
                                "a JSON key or version of a Secrets Manager secret is not applied: the whole secret's value is delivered",
                            );
                            name.to_owned()
                        } else {
                            s.to_owned()
                        }
                    }
                    None => String::new(),
                },
                _ if sv.get("from_cfn").is_some() => {
                    self.warn(
                        f,
                        sk.at,
                        &key,
                        "a CloudFormation stack output (from_cfn) does not exist here; the secret is not set",
                    );
                    continue;
                }
                _ => {
                    lines.push((sk.name.clone(), sv.flow(), sv.at));
                    continue;
                }
            };
            let name = secret_name(&Self::expand(&raw, app, env));
            lines.push((sk.name.clone(), scalar_text(&name), sv.at));
        }
        if lines.is_empty() {
            return false;
        }
        self.w.open(depth, "secrets", origin(f, k.at));
        if env.is_none() {
            self.w.comment(
                depth + 1,
                "Copilot's SSM parameter (or Secrets Manager secret) names, without the leading '/', name\nSlipway secrets: set each with `slipway secret set NAME`.",
            );
        }
        for (name, val, at) in lines {
            self.w.kv(depth + 1, &name, &val, origin(f, at));
        }
        true
    }

    pub(super) fn storage(&mut self, f: usize, k: &node::Key, v: &Node) {
        let mut vols = Vec::new();
        for (sk, sv) in v.entries() {
            match sk.name.as_str() {
                "volumes" => {
                    for (vk, vv) in sv.entries() {
                        let mut parts = Vec::new();
                        for (pk, pv) in vv.entries() {
                            match pk.name.as_str() {
                                "path" | "read_only" => {
                                    parts.push(format!("{}: {}", pk.name, pv.flow()))
                                }
                                "efs" => self.warn_leaves(
                                    f,
                                    &format!("storage.volumes.{}.efs", vk.name),
                                    pk.at,
                                    pv,
                                    "EFS does not apply: the volume is a named Docker volume on the host the task runs on (kept across deploys, not shared between hosts)",
                                ),
                                other => self.warn(
                                    f,
                                    pk.at,
                                    &format!("storage.volumes.{}.{other}", vk.name),
                                    "not a volume setting Slipway applies; ignored",
                                ),
                            }
                        }
                        vols.push((vk.name.clone(), format!("{{{}}}", parts.join(", ")), vk.at));
                    }
                }
                other => self.warn_leaves(
                    f,
                    &format!("storage.{other}"),
                    sk.at,
                    sv,
                    "Fargate's ephemeral storage size and read-only root file system do not apply",
                ),
            }
        }
        if vols.is_empty() {
            return;
        }
        self.w.open(2, "storage", origin(f, k.at));
        self.w.comment(
            3,
            "Copilot mounts EFS or a task-local volume; Slipway mounts a named volume of the\napp environment on the task's host, kept across deploys.",
        );
        self.w.open(3, "volumes", None);
        for (name, val, at) in vols {
            self.w.kv(4, &name, &val, origin(f, at));
        }
    }

    pub(super) fn deployment(
        &mut self,
        f: usize,
        depth: usize,
        prefix: &str,
        k: &node::Key,
        v: &Node,
    ) {
        let mut wrote = false;
        for (dk, dv) in v.entries() {
            match dk.name.as_str() {
                "rolling" => {
                    if !wrote {
                        self.w.open(depth, "deployment", origin(f, k.at));
                        wrote = true;
                    }
                    self.w.kv(depth + 1, "rolling", &dv.flow(), origin(f, dv.at));
                }
                "rollback_alarms" => self.warn_leaves(
                    f,
                    &format!("{prefix}deployment.rollback_alarms"),
                    dk.at,
                    dv,
                    "CloudWatch alarms do not apply: Slipway's circuit breaker rolls back a deploy whose tasks fail their health checks",
                ),
                other => self.warn(
                    f,
                    dk.at,
                    &format!("{prefix}deployment.{other}"),
                    "not a deployment setting Slipway knows; ignored",
                ),
            }
        }
        if !v.is_map() {
            self.w.kv(depth, "deployment", &v.flow(), origin(f, v.at));
        }
    }

    /// `environments.ENV.services.*`: what each service's `environments.ENV` overrides, plus
    /// the base's variables and secrets naming `${COPILOT_ENVIRONMENT_NAME}`, expanded.
    pub(super) fn environment_overrides(
        &mut self,
        env: &str,
        services: &[(usize, String, Node)],
        app: &str,
    ) -> Result<(), CopilotError> {
        let mut any = false;
        for (f, name, root) in services {
            let f = *f;
            let ov = root
                .get("environments")
                .and_then(|(_, e)| e.get(env))
                .map(|(k, v)| (k.clone(), v.clone()));
            let env_dependent = |key: &str| -> Vec<String> {
                root.get(key)
                    .map(|(_, v)| v.entries())
                    .unwrap_or_default()
                    .iter()
                    .filter(|(_, v)| v.flow().contains("${COPILOT_ENVIRONMENT_NAME}"))
                    .map(|(k, _)| k.name.clone())
                    .collect()
            };
            let (dep_vars, dep_secrets) = (env_dependent("variables"), env_dependent("secrets"));
            if ov.is_none() && dep_vars.is_empty() && dep_secrets.is_empty() {
                continue;
            }
            if !any {
                self.w.open(1, env, None);
                self.w.open(2, "services", None);
                any = true;
            }
            let at = ov.as_ref().map_or(root.at, |(k, _)| k.at);
            let mark = self.w.mark();
            self.w.open(3, name, origin(f, at));
            let empty = Node {
                val: Val::Map(Vec::new()),
                at: root.at,
            };
            let ov_node = ov.as_ref().map_or(&empty, |(_, v)| v);
            let prefix = format!("environments.{env}");
            for (k, v) in ov_node.entries() {
                let key = format!("{prefix}.{}", k.name);
                match k.name.as_str() {
                    "count" => self.count(f, 4, &format!("{prefix}."), Some((k, v))),
                    "cpu" | "memory" => self.w.kv(4, &k.name, &v.flow(), origin(f, v.at)),
                    "variables" | "secrets" => {}
                    "deployment" => self.deployment(f, 4, &format!("{prefix}."), k, v),
                    "image" => {
                        let mut wrote = false;
                        for (ik, iv) in v.entries() {
                            match ik.name.as_str() {
                                "location" | "build" => {
                                    if !wrote {
                                        self.w.open(4, "image", origin(f, k.at));
                                        wrote = true;
                                    }
                                    self.w.kv(5, &ik.name, &iv.flow(), origin(f, iv.at));
                                }
                                other => self.warn(
                                    f,
                                    ik.at,
                                    &format!("{key}.{other}"),
                                    "an environment override of this image setting is not applied; set it in the service's base manifest",
                                ),
                            }
                        }
                    }
                    "http" => {
                        for (hk, hv) in v.entries() {
                            if hk.name == "alias" {
                                let names = self.aliases(f, &format!("{key}.alias"), hv);
                                self.w.open(4, "http", origin(f, k.at));
                                self.w.kv(5, "alias", &names, origin(f, hv.at));
                            } else {
                                self.warn(
                                    f,
                                    hk.at,
                                    &format!("{key}.{}", hk.name),
                                    "an environment override of this http setting is not applied; set it in the service's base manifest",
                                );
                            }
                        }
                    }
                    "sidecars" | "logging" => self.warn(
                        f,
                        k.at,
                        &key,
                        "an environment override of the task's containers is not applied; set sidecars and logging in the service's base manifest",
                    ),
                    other => match aws_only(other) {
                        Some(why) => self.warn_leaves(f, &key, k.at, v, why),
                        None => self.warn(
                            f,
                            k.at,
                            &key,
                            "an environment override of this setting is not applied; set it in the service's base manifest",
                        ),
                    },
                }
            }
            // Variables and secrets: the override's, then the base's that name the environment.
            let ov_names = |key: &str| -> BTreeSet<String> {
                ov_node
                    .get(key)
                    .map(|(_, v)| v.entries().iter().map(|(k, _)| k.name.clone()).collect())
                    .unwrap_or_default()
            };
            let set_vars = ov_names("variables");
            let set_secrets = ov_names("secrets");
            let base_only = |root: &Node, key: &str, names: &[String], set: &BTreeSet<String>| {
                root.get(key).map(|(k, v)| {
                    let entries = v
                        .entries()
                        .iter()
                        .filter(|(k, _)| names.contains(&k.name) && !set.contains(&k.name))
                        .cloned()
                        .collect();
                    (
                        k.clone(),
                        Node {
                            val: Val::Map(entries),
                            at: v.at,
                        },
                    )
                })
            };
            let mut vars: Option<(node::Key, Node)> = ov_node
                .get("variables")
                .map(|(k, v)| (k.clone(), v.clone()));
            if let Some((bk, bv)) = base_only(root, "variables", &dep_vars, &set_vars) {
                merge(&mut vars, bk, bv);
            }
            let mut secs: Option<(node::Key, Node)> =
                ov_node.get("secrets").map(|(k, v)| (k.clone(), v.clone()));
            if let Some((bk, bv)) = base_only(root, "secrets", &dep_secrets, &set_secrets) {
                merge(&mut secs, bk, bv);
            }
            let none = BTreeSet::new();
            self.variables(
                f,
                4,
                vars.as_ref().map(|(k, v)| (k, v)),
                app,
                Some(env),
                &none,
            );
            self.secrets(
                f,
                4,
                secs.as_ref().map(|(k, v)| (k, v)),
                app,
                Some(env),
                &none,
            );
            self.w.close_if_empty(mark);
        }
        if !any {
            self.w.kv(1, env, "{}", None);
        }
        Ok(())
    }
}
