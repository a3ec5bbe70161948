//! Validation of a parsed manifest (names, references, builds, secrets, deployment
//! settings) and its compilation into one [`ServiceSpec`] per service and environment.

use super::*;

impl Manifest {
    pub(super) fn validate(&self) -> Result<(), ManifestError> {
        validate_name(&self.app.value)
            .map_err(|m| ManifestError::at(self.app.referenced, format!("app: {m}")))?;
        if self.services.is_empty() {
            return Err(ManifestError::at(
                self.app.referenced,
                "services: the manifest declares no service",
            ));
        }
        for (name, svc) in &self.services {
            validate_name(name)
                .map_err(|m| ManifestError::unplaced(format!("services.{name}: {m}")))?;
            let image = &svc.image.value;
            let loc = svc.image.referenced;
            match (&image.location, &image.build) {
                (Some(_), Some(_)) => {
                    return Err(ManifestError::at(
                        loc,
                        format!(
                            "services.{name}.image: give either location (an image to pull) or build (a Dockerfile to build), not both"
                        ),
                    ));
                }
                (None, None) => {
                    return Err(ManifestError::at(
                        loc,
                        format!(
                            "services.{name}.image needs location (an image to pull, e.g. registry/repo:tag) or build (a directory with a Dockerfile, e.g. ./{name})"
                        ),
                    ));
                }
                (Some(l), None) if l.value.trim().is_empty() => {
                    return Err(ManifestError::at(
                        l.referenced,
                        format!("services.{name}.image.location is empty"),
                    ));
                }
                (None, Some(b)) => check_build(name, b)?,
                _ => {}
            }
            if let Some(p) = &svc.platform {
                check_platform(&p.value).map_err(|m| {
                    ManifestError::at(p.referenced, format!("services.{name}.platform: {m}"))
                })?;
            }
            if let Some(p) = &svc.placement {
                crate::placement::validate(&p.value).map_err(|m| {
                    ManifestError::at(p.referenced, format!("services.{name}.placement: {m}"))
                })?;
            }
            if svc.kind.0 == ServiceKind::LoadBalancedWebService && image.port.is_none() {
                return Err(ManifestError::at(
                    loc,
                    format!(
                        "services.{name}: a Load Balanced Web Service needs image.port (the port the container listens on)"
                    ),
                ));
            }
            check_secrets(name, &svc.secrets, &svc.variables)?;
            check_secret_mount(name, svc, &svc.secrets)?;
            sidecars::check(name, svc)?;
            fields::check_service(name, svc, &self.services)?;
            if let Some(h) = &svc.http {
                check_aliases(&format!("services.{name}.http.alias"), h.alias.as_ref())?;
                if let Some(p) = &h.path
                    && !p.starts_with('/')
                {
                    return Err(ManifestError::unplaced(format!(
                        "services.{name}.http.path must start with '/', got {p:?}"
                    )));
                }
                if let Some(hc) = &h.healthcheck {
                    let path = match hc {
                        HttpHealth::Path(p) => p,
                        HttpHealth::Full(f) => &f.path,
                    };
                    if !path.starts_with('/') {
                        return Err(ManifestError::unplaced(format!(
                            "services.{name}.http.healthcheck must be a path starting with '/', got {path:?}"
                        )));
                    }
                    if image.port.is_none()
                        && !matches!(hc, HttpHealth::Full(HttpHealthFull { port: Some(_), .. }))
                    {
                        return Err(ManifestError::unplaced(format!(
                            "services.{name}.http.healthcheck needs image.port (or healthcheck.port) to probe"
                        )));
                    }
                    if let HttpHealth::Full(HttpHealthFull {
                        success_codes: Some(codes),
                        ..
                    }) = hc
                    {
                        parse_success_codes(codes).map_err(|m| {
                            ManifestError::unplaced(format!(
                                "services.{name}.http.healthcheck.success_codes: {m}"
                            ))
                        })?;
                    }
                }
            }
            if let Some(d) = &svc.deployment {
                check_deploy(name, d, svc.http.is_some())?;
            }
            for k in svc.variables.keys() {
                check_var_name(name, k)?;
            }
        }
        for (env, e) in &self.environments {
            validate_name(env)
                .map_err(|m| ManifestError::unplaced(format!("environments.{env}: {m}")))?;
            for (svc, o) in &e.services {
                if !self.services.contains_key(svc) {
                    return Err(ManifestError::unplaced(format!(
                        "environments.{env}.services.{svc}: no service named {svc:?} is declared under services:"
                    )));
                }
                if let Some(d) = &o.deployment {
                    check_deploy(svc, d, self.services[svc].http.is_some())?;
                }
                fields::check_override(env, svc, o)?;
                for k in o.variables.keys() {
                    check_var_name(svc, k)?;
                }
                let mut vars = self.services[svc].variables.clone();
                vars.extend(o.variables.clone());
                check_secrets(svc, &o.secrets, &vars)?;
                check_secret_mount(svc, &self.services[svc], &o.secrets)?;
                if let Some(h) = &o.http {
                    if self.services[svc].kind.0 != ServiceKind::LoadBalancedWebService {
                        return Err(ManifestError::unplaced(format!(
                            "environments.{env}.services.{svc}.http: only a Load Balanced Web Service has http routes"
                        )));
                    }
                    check_aliases(
                        &format!("environments.{env}.services.{svc}.http.alias"),
                        h.alias.as_ref(),
                    )?;
                }
            }
        }
        fields::check_cycles(&self.services)?;
        Ok(())
    }

    /// Compiles the services of one environment into specs.
    pub fn compile(&self, env: &str) -> Result<Vec<ServiceSpec>, ManifestError> {
        validate_name(env).map_err(|m| ManifestError::unplaced(format!("environment: {m}")))?;
        let overrides = match self.environments.get(env) {
            Some(e) => Some(e),
            None if env == DEFAULT_ENV => None,
            None => {
                let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
                return Err(ManifestError::unplaced(format!(
                    "environment {env:?} is not declared under environments: (declared: {}); add it or use --env {DEFAULT_ENV}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        };
        let mut out = Vec::new();
        for (name, svc) in &self.services {
            let ov = overrides.and_then(|e| e.services.get(name));
            out.push(compile_service(&self.app.value, env, name, svc, ov));
        }
        Ok(out)
    }
}

impl Manifest {
    /// The build of a service whose image is built from source (`image.build`).
    pub fn build_of(&self, service: &str) -> Option<BuildSpec> {
        self.build_in(DEFAULT_ENV, service)
    }

    /// The build of a service in an environment: the environment's `image` override wins.
    pub fn build_in(&self, env: &str, service: &str) -> Option<BuildSpec> {
        let svc = self.services.get(service)?;
        let ov = self
            .environments
            .get(env)
            .and_then(|e| e.services.get(service))
            .and_then(|o| o.image.as_ref());
        let b = match ov {
            Some(o) => o.value.build.as_ref()?,
            None => svc.image.value.build.as_ref()?,
        };
        Some(
            b.value
                .resolve(svc.platform.as_ref().map(|p| p.value.as_str())),
        )
    }

    /// An error about a service's secret reference (`VARIABLE: name`), placed where the
    /// reference is written (an environment's override wins).
    pub fn secret_error(
        &self,
        env: &str,
        service: &str,
        var: &str,
        message: &str,
    ) -> ManifestError {
        let from_env = self
            .environments
            .get(env)
            .and_then(|e| e.services.get(service))
            .and_then(|o| o.secrets.get(var));
        let message = format!("services.{service}.secrets.{var}: {message}");
        match from_env.or_else(|| self.services.get(service)?.secrets.get(var)) {
            Some(s) => match &s.value {
                SecretSource::Full { from, .. } => ManifestError::at(from.referenced, message),
                SecretSource::Name(_) => ManifestError::at(s.referenced, message),
            },
            None => ManifestError::unplaced(message),
        }
    }
}

pub(super) fn check_aliases(
    field: &str,
    alias: Option<&StringOrList>,
) -> Result<(), ManifestError> {
    for alias in alias
        .cloned()
        .map(StringOrList::into_list)
        .unwrap_or_default()
    {
        let bare = alias.strip_prefix("*.").unwrap_or(&alias);
        let ok = !bare.is_empty()
            && bare
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            return Err(ManifestError::unplaced(format!(
                "{field}: {alias:?} is not a host name (or a '*.' wildcard)"
            )));
        }
    }
    Ok(())
}

pub(super) fn check_build(
    name: &str,
    b: &serde_saphyr::Spanned<Build>,
) -> Result<(), ManifestError> {
    let at =
        |m: String| ManifestError::at(b.referenced, format!("services.{name}.image.build: {m}"));
    match &b.value {
        Build::Path(p) if p.trim().is_empty() => Err(at("the path is empty".into())),
        Build::Path(_) => Ok(()),
        Build::Full(f) => {
            for k in f.args.keys() {
                let ok = !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(at(format!(
                        "args: {k:?} is not a valid build argument name"
                    )));
                }
            }
            if f.context.as_deref().is_some_and(|c| c.trim().is_empty())
                || f.dockerfile.as_deref().is_some_and(|d| d.trim().is_empty())
            {
                return Err(at("context and dockerfile must not be empty".into()));
            }
            Ok(())
        }
    }
}

/// `os/arch[/variant]`, as Docker writes platforms.
pub fn check_platform(p: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a platform; write it as os/arch, e.g. linux/amd64 or linux/arm64"
        ))
    }
}

/// Secret names: letters, digits and `/ _ . -` (e.g. `shop/db-password`).
pub fn check_secret_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 200
        && !n.starts_with('/')
        && !n.ends_with('/')
        && !n.contains("//")
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a secret name (letters, digits, '/', '_', '.', '-', e.g. shop/db-password)"
        ))
    }
}

pub(super) fn check_secrets(
    svc: &str,
    secrets: &BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
    variables: &BTreeMap<String, String>,
) -> Result<(), ManifestError> {
    for (var, source) in secrets {
        let field = format!("services.{svc}.secrets.{var}");
        let at = |loc, m: String| ManifestError::at(loc, format!("{field}: {m}"));
        check_var_name(svc, var)?;
        let name_at = match &source.value {
            SecretSource::Name(_) => source.referenced,
            SecretSource::Full { from, delivery } => {
                if let Some(d) = delivery
                    && SecretDelivery::parse(d.value.trim()).is_none()
                {
                    return Err(at(
                        d.referenced,
                        format!(
                            "as: {:?} is not a way to deliver a secret; write `as: file` (the file /run/secrets/{var}) or `as: env` (the environment variable {var})",
                            d.value
                        ),
                    ));
                }
                from.referenced
            }
        };
        check_secret_name(source.value.name()).map_err(|m| at(name_at, m))?;
        if source.value.delivery() == SecretDelivery::Env && variables.contains_key(var) {
            return Err(at(
                name_at,
                format!(
                    "{var} is also set under variables; a variable comes from one place, remove one of them"
                ),
            ));
        }
    }
    Ok(())
}

/// File secrets are mounted at `/run/secrets`: no volume may take that place.
pub(super) fn check_secret_mount(
    svc: &str,
    service: &Service,
    secrets: &BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
) -> Result<(), ManifestError> {
    let Some((var, source)) = secrets
        .iter()
        .find(|(_, s)| s.value.delivery() == SecretDelivery::File)
    else {
        return Ok(());
    };
    let dir = crate::model::SECRET_FILES_DIR;
    for (vol, v) in service.storage.iter().flat_map(|s| s.volumes.iter()) {
        let path = v.path.trim().trim_end_matches('/');
        if path == dir || path.starts_with(&format!("{dir}/")) {
            return Err(ManifestError::at(
                source.referenced,
                format!(
                    "services.{svc}.secrets.{var}: file secrets are mounted at {dir}, where volume {vol} is mounted ({}); move the volume elsewhere",
                    v.path.trim()
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn check_var_name(svc: &str, k: &str) -> Result<(), ManifestError> {
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::unplaced(format!(
            "services.{svc}.variables: {k:?} is not a valid environment variable name (letters, digits, '_')"
        )))
    }
}

pub(super) fn check_deploy(name: &str, d: &Deploy, has_http: bool) -> Result<(), ManifestError> {
    if d.analysis
        .as_ref()
        .is_some_and(|a| a.enabled != Some(false))
        && !has_http
    {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.analysis: analysis measures requests through the ingress, and this service has no http routes; remove analysis or add http:"
        )));
    }
    let prog = progressive(d, has_http);
    prog.validate(deploy_timeout_ms(d, &prog), has_http)
        .map_err(|m| ManifestError::unplaced(format!("services.{name}.deployment: {m}")))?;
    let (min, max) = percents(d);
    if min > 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.minimum_healthy_percent must be at most 100, got {min}"
        )));
    }
    if max < 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.maximum_percent must be at least 100, got {max}"
        )));
    }
    if min == 100 && max == 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment: minimum_healthy_percent 100 with maximum_percent 100 lets a deploy neither start nor stop a task; raise maximum_percent or lower minimum_healthy_percent"
        )));
    }
    Ok(())
}

/// The deployment timeout: as written, else 10 minutes beyond the rollout's bake times.
pub(super) fn deploy_timeout_ms(d: &Deploy, prog: &crate::rollout::Progressive) -> u64 {
    d.timeout
        .map_or_else(|| DeploymentConfig::default_timeout_ms(prog), Dur::ms)
}

/// The progressive delivery settings a `deployment:` block asks for.
pub(super) fn progressive(d: &Deploy, has_http: bool) -> crate::rollout::Progressive {
    use crate::rollout::{self as r, Strategy};
    let strategy = match d.strategy.unwrap_or(StrategyName::Rolling) {
        StrategyName::Rolling => Strategy::Rolling,
        StrategyName::Canary => {
            let c = d.canary.clone().unwrap_or_default();
            Strategy::Canary {
                percent: c.percent.map_or(r::CANARY_PERCENT, |p| p.0),
                bake_ms: c.bake.map_or(r::CANARY_BAKE_MS, Dur::ms),
            }
        }
        StrategyName::Linear => {
            let l = d.linear.clone().unwrap_or_default();
            Strategy::Linear {
                step_percent: l.step_percent.map_or(r::LINEAR_STEP_PERCENT, |p| p.0),
                bake_ms: l.bake.map_or(r::LINEAR_BAKE_MS, Dur::ms),
            }
        }
        StrategyName::BlueGreen => Strategy::BlueGreen,
    };
    let bake_ms = d.bake.map_or(0, Dur::ms);
    let wanted = match &d.analysis {
        Some(a) => a.enabled != Some(false),
        None => r::analysis_by_default(&strategy, bake_ms, has_http),
    };
    let analysis = wanted.then(|| {
        let a = d.analysis.clone().unwrap_or_default();
        let def = r::Analysis::default();
        r::Analysis {
            interval_ms: a.interval.map_or(def.interval_ms, Dur::ms),
            max_error_rate_bp: a.max_error_rate.map(|x| x.0),
            max_p99_ms: a.max_p99.map(Dur::ms),
            min_requests: a.min_requests.unwrap_or(def.min_requests),
            failures: a.failures.map_or(def.failures, |f| f.0),
        }
    });
    r::Progressive {
        strategy,
        bake_ms,
        analysis,
        sticky: d.sticky.unwrap_or(true),
    }
}

pub(super) fn percents(d: &Deploy) -> (u32, u32) {
    let (dmin, dmax) = match d.rolling {
        Some(Rolling::Recreate) => (0, 100),
        _ => (100, 200),
    };
    (
        d.minimum_healthy_percent.map_or(dmin, |p| p.0),
        d.maximum_percent.map_or(dmax, |p| p.0),
    )
}

/// Parses ALB-style matchers: `200`, `200,204`, `200-299`.
pub fn parse_success_codes(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let parse = |x: &str| -> Result<u16, String> {
            x.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{x:?} is not an HTTP status code (100-599)"))
        };
        let range = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let c = parse(part)?;
                (c, c)
            }
        };
        if range.0 > range.1 {
            return Err(format!("range {part:?} is reversed"));
        }
        out.push(range);
    }
    Ok(out)
}

pub(super) fn compile_service(
    app: &str,
    env: &str,
    name: &str,
    svc: &Service,
    ov: Option<&Override>,
) -> ServiceSpec {
    let mut environment = svc.variables.clone();
    let mut secrets: BTreeMap<String, SecretRef> = svc
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.value.reference()))
        .collect();
    if let Some(o) = ov {
        environment.extend(o.variables.clone());
        for (k, v) in &o.secrets {
            let r = v.value.reference();
            if r.delivery == SecretDelivery::Env {
                environment.remove(k);
            }
            secrets.insert(k.clone(), r);
        }
        // An environment's variable replaces a secret variable of the same name (a file
        // secret is no variable).
        for k in o.variables.keys() {
            if secrets
                .get(k)
                .is_some_and(|r| r.delivery == SecretDelivery::Env)
            {
                secrets.remove(k);
            }
        }
    }
    let image = &svc.image.value;
    let deploy = ov
        .and_then(|o| o.deployment.clone())
        .or_else(|| svc.deployment.clone())
        .unwrap_or_default();
    let (min, max) = percents(&deploy);
    let prog = progressive(&deploy, svc.http.is_some());
    let grace = svc
        .http
        .as_ref()
        .and_then(|h| match &h.healthcheck {
            Some(HttpHealth::Full(f)) => f.grace_period,
            _ => None,
        })
        .map_or(0, Dur::ms);
    let deployment = DeploymentConfig {
        minimum_healthy_percent: min,
        maximum_percent: max,
        circuit_breaker: CircuitBreaker {
            enable: deploy.circuit_breaker.unwrap_or(true),
            rollback: deploy.rollback.unwrap_or(true),
            threshold: deploy.failure_threshold.map(|t| t.0),
        },
        health_check_grace_period_ms: grace,
        timeout_ms: deploy_timeout_ms(&deploy, &prog),
        progressive: prog,
    };
    let http_health = svc
        .http
        .as_ref()
        .and_then(|h| h.healthcheck.as_ref())
        .map(|hc| match hc {
            HttpHealth::Path(p) => HttpHealthCheck {
                path: p.clone(),
                port: None,
                interval_ms: HTTP_HEALTH_INTERVAL_MS,
                timeout_ms: HTTP_HEALTH_TIMEOUT_MS,
                healthy_threshold: HTTP_HEALTHY_THRESHOLD,
                unhealthy_threshold: HTTP_UNHEALTHY_THRESHOLD,
                success_codes: vec![(200, 399)],
            },
            HttpHealth::Full(f) => HttpHealthCheck {
                path: f.path.clone(),
                port: f.port.map(|p| p.0 as u16),
                interval_ms: f.interval.map_or(HTTP_HEALTH_INTERVAL_MS, Dur::ms).max(100),
                timeout_ms: f.timeout.map_or(HTTP_HEALTH_TIMEOUT_MS, Dur::ms).max(50),
                healthy_threshold: f.healthy_threshold.map_or(HTTP_HEALTHY_THRESHOLD, |t| t.0),
                unhealthy_threshold: f
                    .unhealthy_threshold
                    .map_or(HTTP_UNHEALTHY_THRESHOLD, |t| t.0),
                success_codes: f
                    .success_codes
                    .as_deref()
                    .map(|c| parse_success_codes(c).unwrap_or_else(|_| vec![(200, 399)]))
                    .unwrap_or_else(|| vec![(200, 399)]),
            },
        });
    // Checked by `validate`, so compiling them again cannot fail.
    let side = sidecars::compile(name, svc).unwrap_or_default();
    let healthcheck = svc.healthcheck.as_ref().map(sidecars::command_health);
    ServiceSpec {
        key: ServiceKey::new(app, env, name),
        kind: svc.kind.0,
        desired_count: if svc.kind.0 == ServiceKind::ScheduledJob {
            Some(0)
        } else {
            ov.and_then(|o| o.count).or(svc.count).map(|c| c.0)
        },
        container: ContainerSpec {
            // A built image is named by `slipway deploy` once it is pushed.
            image: match ov.and_then(|o| o.image.as_ref()) {
                Some(o) => o.value.location.as_ref(),
                None => image.location.as_ref(),
            }
            .map(|l| l.value.trim().to_owned())
            .unwrap_or_default(),
            image_digest: None,
            pull: image.pull.unwrap_or_default(),
            port: image.port.map(|p| p.0 as u16),
            secrets,
            command: svc.command.clone().map(StringOrList::into_vec),
            environment,
            cpu: ov.and_then(|o| o.cpu).or(svc.cpu).map(|c| c.0),
            memory: ov.and_then(|o| o.memory).or(svc.memory).map(|m| m.0),
            healthcheck,
            http_health,
            stop_timeout_ms: ov
                .and_then(|o| o.stop_timeout)
                .or(svc.stop_timeout)
                .map_or(DEFAULT_STOP_TIMEOUT_MS, Dur::ms),
            init: svc.init.unwrap_or(false),
            http_route: (svc.kind.0 == ServiceKind::LoadBalancedWebService).then(|| {
                let h = svc.http.as_ref();
                HttpRoute {
                    path: h
                        .and_then(|h| h.path.clone())
                        .unwrap_or_else(|| "/".to_owned()),
                    aliases: ov
                        .and_then(|o| o.http.as_ref())
                        .and_then(|h| h.alias.clone())
                        .or_else(|| h.and_then(|h| h.alias.clone()))
                        .map(StringOrList::into_list)
                        .unwrap_or_default(),
                    strip_prefix: h.and_then(|h| h.strip_prefix).unwrap_or(false),
                    deregistration_delay_ms: h
                        .and_then(|h| h.deregistration_delay)
                        .map_or(DEFAULT_DEREGISTRATION_DELAY_MS, Dur::ms),
                    allow_shadowing: h.and_then(|h| h.allow_shadowing).unwrap_or(false),
                    target_group: None,
                    more_paths: Vec::new(),
                }
            }),
            entrypoint: svc.entrypoint.clone().map(StringOrList::into_vec),
            user: svc.user.as_ref().map(|u| u.value.trim().to_owned()),
            volumes: fields::volumes(svc),
            job: fields::job(svc),
            depends_on: svc
                .depends_on
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
            sidecars: side.sidecars,
            container_depends_on: side.depends_on,
            logging: side.logging,
            ..ContainerSpec::default()
        },
        deployment,
        placement: svc
            .placement
            .as_ref()
            .map(|p| p.value.clone())
            .unwrap_or_default(),
    }
}
