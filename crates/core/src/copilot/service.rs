//! A service's manifest (`copilot/NAME/manifest.yml`): its type, its image, its `http` section, the settings translated by
//! [`fields`](super::fields), and a warning for every other key (AWS-only or unknown).

use super::*;

impl Cx {
    pub(super) fn service(
        &mut self,
        f: usize,
        name: &str,
        root: &Node,
        app: &str,
    ) -> Result<(), CopilotError> {
        let (tk, tv, mut kind) = self.service_type(f, root)?;
        let http = root.get("http");
        if kind == "Load Balanced Web Service"
            && let Some((hk, hv)) = http
            && matches!(hv.val, Val::Bool(false))
        {
            self.warn(
                f,
                hk.at,
                "http",
                "http: false (no Application Load Balancer, a Network Load Balancer instead): the service gets no ingress route and runs as a Backend Service",
            );
            kind = "Backend Service";
        }
        let w_origin = origin(f, root.get("name").map_or(tk.at, |(k, _)| k.at));
        self.w.open(1, name, w_origin);
        self.w.kv(2, "type", &scalar_text(kind), origin(f, tv.at));
        let port = self.service_image(f, root);
        self.service_http(f, name, root, kind, port, tv.at);
        self.service_settings(f, root, app);
        self.unknown_service_keys(f, root);
        Ok(())
    }

    /// The service's `type`, as one of [`TYPES`].
    fn service_type<'n>(
        &self,
        f: usize,
        root: &'n Node,
    ) -> Result<(&'n node::Key, &'n Node, &'static str), CopilotError> {
        let Some((tk, tv)) = root.get("type") else {
            return Err(self.err(
                f,
                root.at,
                format!(
                    "type: missing; a service's type is one of {}",
                    TYPES.join(", ")
                ),
            ));
        };
        let t = tv.scalar().unwrap_or_default();
        let kind = match kind_of(&t) {
            Some(k) => k,
            None => {
                let hint = match t.as_str() {
                    "Request-Driven Web Service" => {
                        " (App Runner): write type: Load Balanced Web Service to run it behind Slipway's ingress"
                    }
                    "Static Site" => {
                        " (S3 and CloudFront): serve the files from a web server image"
                    }
                    _ => "",
                };
                return Err(self.err(
                    f,
                    tv.at,
                    format!(
                        "type: unknown Copilot service type {}{hint}; Slipway runs {}",
                        match &tv.val {
                            Val::Str(s) => format!("{s:?}"),
                            _ => tv.flow(),
                        },
                        TYPES.join(", ")
                    ),
                ));
            }
        };
        Ok((tk, tv, kind))
    }

    /// `image`: written as it is, but for the keys that do not apply. Returns `image.port`.
    fn service_image(&mut self, f: usize, root: &Node) -> Option<String> {
        let mut port: Option<String> = None;
        if let Some((ik, iv)) = root.get("image") {
            if !iv.is_map() {
                self.w.kv(2, "image", &iv.flow(), origin(f, iv.at));
            } else {
                self.w.open(2, "image", origin(f, ik.at));
                for (k, v) in iv.entries() {
                    let key = format!("image.{}", k.name);
                    match k.name.as_str() {
                        "build" if v.is_map() => {
                            self.w.open(3, "build", origin(f, k.at));
                            for (bk, bv) in v.entries() {
                                match bk.name.as_str() {
                                    "context" | "dockerfile" | "args" | "target" => {
                                        self.w.kv(4, &bk.name, &bv.flow(), origin(f, bv.at))
                                    }
                                    "cache_from" => self.warn(
                                        f,
                                        bk.at,
                                        &format!("{key}.cache_from"),
                                        "build cache images are not used",
                                    ),
                                    other => self.warn(
                                        f,
                                        bk.at,
                                        &format!("{key}.{other}"),
                                        "not a build setting Slipway knows; ignored",
                                    ),
                                }
                            }
                        }
                        "build" | "location" | "depends_on" => {
                            self.w.kv(3, &k.name, &v.flow(), origin(f, v.at))
                        }
                        "port" => {
                            port = v.scalar();
                            self.w.kv(3, "port", &v.flow(), origin(f, v.at));
                        }
                        "healthcheck" => {
                            // Copilot's container health check: the same keys as Slipway's.
                            self.w.kv(2, "healthcheck", &v.flow(), origin(f, v.at));
                        }
                        "credentials" => self.warn(
                            f,
                            k.at,
                            &key,
                            "a Secrets Manager secret for a private registry does not apply: the server pulls with its own registry credentials (`docker login` on the host)",
                        ),
                        "labels" | "docker_labels" => self.warn(
                            f,
                            k.at,
                            &key,
                            "Docker labels are not set: Slipway's own labels mark every container",
                        ),
                        other => self.warn(
                            f,
                            k.at,
                            &key,
                            format!("not an image setting Slipway knows ({other}); ignored"),
                        ),
                    }
                }
            }
        }
        port
    }

    /// `http`: the route and health check of a Load Balanced Web Service (Copilot's
    /// defaults written out when missing), warnings for the load balancer's other settings.
    fn service_http(
        &mut self,
        f: usize,
        name: &str,
        root: &Node,
        kind: &str,
        port: Option<String>,
        type_at: Location,
    ) {
        let routed = kind == "Load Balanced Web Service";
        let http = root.get("http");
        let mut wrote_http = false;
        let mut open_http = |cx: &mut Cx, at: Location| {
            if !wrote_http {
                cx.w.open(2, "http", origin(f, at));
                wrote_http = true;
            }
        };
        let (mut has_path, mut has_health) = (false, false);
        if let Some((hk, hv)) = http
            && hv.is_map()
        {
            for (k, v) in hv.entries() {
                let key = format!("http.{}", k.name);
                match k.name.as_str() {
                    "path" if routed => {
                        open_http(self, hk.at);
                        has_path = true;
                        let p = v.scalar().unwrap_or_default();
                        let p = if p.starts_with('/') {
                            p
                        } else {
                            format!("/{p}")
                        };
                        self.w.kv(3, "path", &scalar_text(&p), origin(f, v.at));
                    }
                    "path" => self.warn(
                        f,
                        k.at,
                        &key,
                        "a Backend Service's internal load balancer path does not apply: the app's services reach it by name on their private network",
                    ),
                    "healthcheck" => {
                        open_http(self, hk.at);
                        has_health = true;
                        if v.is_map() {
                            self.w.open(3, "healthcheck", origin(f, k.at));
                            for (ck, cv) in v.entries() {
                                match ck.name.as_str() {
                                    "path" | "success_codes" | "healthy_threshold"
                                    | "unhealthy_threshold" | "interval" | "timeout"
                                    | "grace_period" | "port" => {
                                        let val = match (ck.name.as_str(), &cv.val) {
                                            ("success_codes", Val::Int(i)) => {
                                                scalar_text(&i.to_string())
                                            }
                                            _ => cv.flow(),
                                        };
                                        self.w.kv(4, &ck.name, &val, origin(f, cv.at))
                                    }
                                    other => self.warn(
                                        f,
                                        ck.at,
                                        &format!("{key}.{other}"),
                                        "not a health check setting Slipway applies; ignored",
                                    ),
                                }
                            }
                        } else {
                            self.w.kv(3, "healthcheck", &v.flow(), origin(f, v.at));
                        }
                    }
                    "alias" if routed => {
                        open_http(self, hk.at);
                        let names = self.aliases(f, &key, v);
                        self.w.kv(3, "alias", &names, origin(f, v.at));
                    }
                    "deregistration_delay" => {
                        open_http(self, hk.at);
                        self.w.kv(3, "deregistration_delay", &v.flow(), origin(f, v.at));
                    }
                    "target_port" if v.scalar().is_some() && v.scalar() == port => {}
                    "target_container" if v.scalar().as_deref() == Some(name) => {}
                    "target_container" | "target_port" => self.warn(
                        f,
                        k.at,
                        &key,
                        "only the main container on image.port takes requests: the ingress routes to a task's main container, not to a sidecar",
                    ),
                    "stickiness" | "allowed_source_ips" | "redirect_to_https" | "hosted_zone"
                    | "version" | "additional_rules" | "alias" | "private" | "public" => self
                        .warn(
                            f,
                            k.at,
                            &key,
                            "an Application Load Balancer setting Slipway's ingress does not apply",
                        ),
                    other => self.warn(
                        f,
                        k.at,
                        &key,
                        format!("not an http setting Slipway knows ({other}); ignored"),
                    ),
                }
            }
        } else if let Some((hk, hv)) = http
            && !matches!(hv.val, Val::Bool(false))
        {
            self.w.kv(2, "http", &hv.flow(), origin(f, hk.at));
            (has_path, has_health) = (true, true);
        }
        if routed {
            let at = http.map_or(type_at, |(k, _)| k.at);
            if !has_path {
                open_http(self, at);
                self.w
                    .comment(3, "Copilot routes `/` when http.path is not set.");
                self.w.kv(3, "path", "/", origin(f, at));
            }
            if !has_health {
                open_http(self, at);
                self.w.comment(
                    3,
                    "Copilot's load balancer checks `/` when http.healthcheck is not set; so does Slipway here.",
                );
                self.w.kv(3, "healthcheck", "/", origin(f, at));
            }
        }
    }

    /// Count, resources, command, schedule, platform, variables, secrets, storage and
    /// deployment settings.
    fn service_settings(&mut self, f: usize, root: &Node, app: &str) {
        self.count(f, 2, "", root.get("count"));
        for key in [
            "cpu",
            "memory",
            "command",
            "entrypoint",
            "retries",
            "timeout",
        ] {
            if let Some((_, v)) = root.get(key) {
                self.w.kv(2, key, &v.flow(), origin(f, v.at));
            }
        }
        if let Some((k, v)) = root.get("on") {
            if let Some((sk, sv)) = v.get("schedule") {
                self.w.open(2, "on", origin(f, k.at));
                self.w.kv(3, "schedule", &sv.flow(), origin(f, sv.at));
                let _ = sk;
            } else {
                self.w.kv(2, "on", &v.flow(), origin(f, v.at));
            }
        }
        if let Some((k, v)) = root.get("platform") {
            self.platform(f, k, v);
        }
        self.variables(f, 2, root.get("variables"), app, None, &BTreeSet::new());
        self.secrets(f, 2, root.get("secrets"), app, None, &BTreeSet::new());
        if let Some((k, v)) = root.get("storage") {
            self.storage(f, k, v);
        }
        if let Some((k, v)) = root.get("deployment") {
            self.deployment(f, 2, "", k, v);
        }
        self.sidecars(f, root, app);
        self.logging(f, root, app);
    }

    /// Everything else: AWS-only, or unknown.
    fn unknown_service_keys(&mut self, f: usize, root: &Node) {
        for (k, v) in root.entries() {
            match k.name.as_str() {
                "name" | "type" | "image" | "http" | "count" | "cpu" | "memory" | "command"
                | "entrypoint" | "retries" | "timeout" | "on" | "platform" | "variables"
                | "secrets" | "storage" | "deployment" | "environments" | "sidecars"
                | "logging" => {}
                "exec" if matches!(v.val, Val::Bool(false)) => {}
                other => match aws_only(other) {
                    Some(why) => self.warn_leaves(f, other, k.at, v, why),
                    None => self.warn(
                        f,
                        k.at,
                        other,
                        "not a Copilot service setting Slipway knows; ignored",
                    ),
                },
            }
        }
    }
}
