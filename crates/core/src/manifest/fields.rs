//! The container fields Copilot users reach for beyond the basics: `entrypoint`, `user`,
//! `storage.volumes`, `depends_on`, and an environment's `image` override — their manifest
//! types, their checks (each error names the field) and their compilation.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Build, Dur, ManifestError, Override, Service, check_build};
use crate::model::{
    JobSpec, ServiceKind, VolumeMount, validate_mount_path, validate_user, validate_volume_name,
};

/// `storage:` — what a service keeps across deploys.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Named Docker volumes, by name. A volume belongs to the app environment (services
    /// naming the same volume share it), lives on the host a task runs on, and is kept by
    /// deploys and by `slipway delete`.
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeDef>,
}

/// `storage.volumes.NAME:` — where the volume is mounted.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    /// The mount path in the container (absolute).
    pub path: String,
    /// Mount it read-only (default false).
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// `environments.ENV.services.NAME.image:` — another image source for this environment:
/// `location` (an image to pull) or `build` (exactly one).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideImage {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub location: Option<serde_saphyr::Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<Build>")]
    pub build: Option<serde_saphyr::Spanned<Build>>,
}

/// `on:` — when a Scheduled Job runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct On {
    /// A cron expression (minute hour day month weekday, UTC: `0 3 * * *`), `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly` or `@every DURATION` (`@every 1h`).
    #[schemars(with = "String")]
    pub schedule: serde_saphyr::Spanned<String>,
}

/// The schedule of a Scheduled Job.
pub(super) fn job(svc: &Service) -> Option<JobSpec> {
    let on = svc.on.as_ref()?;
    Some(JobSpec {
        schedule: on.schedule.value.trim().to_owned(),
        retries: svc.retries.map_or(0, |r| r.0),
        timeout_ms: svc.timeout.map(Dur::ms),
    })
}

/// The named volumes of a service, as mounts.
pub(super) fn volumes(svc: &Service) -> Vec<VolumeMount> {
    svc.storage
        .iter()
        .flat_map(|s| s.volumes.iter())
        .map(|(name, v)| VolumeMount {
            name: name.clone(),
            path: v.path.trim().to_owned(),
            read_only: v.read_only.unwrap_or(false),
        })
        .collect()
}

/// Checks `entrypoint`, `user`, `storage` and `depends_on` of the service `name`.
pub(super) fn check_service(
    name: &str,
    svc: &Service,
    services: &BTreeMap<String, Service>,
) -> Result<(), ManifestError> {
    let field = |f: &str, m: String| ManifestError::unplaced(format!("services.{name}.{f}: {m}"));
    if let Some(e) = &svc.entrypoint
        && e.clone().into_vec().is_empty()
    {
        return Err(field(
            "entrypoint",
            "is empty; leave it out to use the image's entrypoint".into(),
        ));
    }
    if let Some(u) = &svc.user {
        validate_user(u.value.trim())
            .map_err(|m| ManifestError::at(u.referenced, format!("services.{name}.user: {m}")))?;
    }
    let mut paths = BTreeSet::new();
    for (vol, v) in svc.storage.iter().flat_map(|s| s.volumes.iter()) {
        let at = format!("storage.volumes.{vol}");
        validate_volume_name(vol).map_err(|m| field(&at, m))?;
        validate_mount_path(v.path.trim()).map_err(|m| field(&format!("{at}.path"), m))?;
        if !paths.insert(v.path.trim().trim_end_matches('/').to_owned()) {
            return Err(field(
                &format!("{at}.path"),
                format!("another volume is mounted at {}", v.path.trim()),
            ));
        }
    }
    check_job(name, svc)?;
    if let Some(d) = &svc.depends_on {
        let at =
            |m: String| ManifestError::at(d.referenced, format!("services.{name}.depends_on: {m}"));
        for dep in d.value.iter().cloned() {
            if dep == name {
                return Err(at(format!("{name} cannot depend on itself")));
            }
            if !services.contains_key(&dep) {
                let known: Vec<&str> = services.keys().map(String::as_str).collect();
                return Err(at(format!(
                    "no service named {dep:?} in this app (services: {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// A Scheduled Job has `on.schedule` (valid) and no `count` or `http`; only a job has
/// `on`, `retries` and `timeout`.
fn check_job(name: &str, svc: &Service) -> Result<(), ManifestError> {
    let field = |f: &str, m: &str| ManifestError::unplaced(format!("services.{name}.{f}: {m}"));
    if svc.kind.0 != ServiceKind::ScheduledJob {
        for (set, f) in [
            (svc.on.is_some(), "on"),
            (svc.retries.is_some(), "retries"),
            (svc.timeout.is_some(), "timeout"),
        ] {
            if set {
                return Err(field(
                    f,
                    "only a Scheduled Job has it (type: Scheduled Job); a service's deploy timeout is deployment.timeout",
                ));
            }
        }
        return Ok(());
    }
    let Some(on) = &svc.on else {
        return Err(field(
            "on.schedule",
            "a Scheduled Job needs one, e.g. on: {schedule: \"@every 1h\"} or a cron expression like \"0 3 * * *\"",
        ));
    };
    crate::schedule::Schedule::parse(&on.schedule.value).map_err(|m| {
        ManifestError::at(
            on.schedule.referenced,
            format!("services.{name}.on.schedule: {m}"),
        )
    })?;
    if svc.count.is_some() {
        return Err(field(
            "count",
            "a Scheduled Job runs no task between its runs; remove count",
        ));
    }
    if svc.http.is_some() {
        return Err(field("http", "a Scheduled Job has no route; remove http"));
    }
    Ok(())
}

/// Checks an environment's `image` override of service `svc`.
pub(super) fn check_override(env: &str, svc: &str, o: &Override) -> Result<(), ManifestError> {
    let Some(img) = &o.image else {
        return Ok(());
    };
    let at = |m: &str| {
        ManifestError::at(
            img.referenced,
            format!("environments.{env}.services.{svc}.image: {m}"),
        )
    };
    match (&img.value.location, &img.value.build) {
        (Some(_), Some(_)) => Err(at(
            "give either location (an image to pull) or build (a Dockerfile to build), not both",
        )),
        (None, None) => Err(at(
            "needs location (an image to pull, e.g. registry/repo:tag) or build (a directory with a Dockerfile)",
        )),
        (Some(l), None) if l.value.trim().is_empty() => Err(at("location is empty")),
        (None, Some(b)) => check_build(svc, b),
        _ => Ok(()),
    }
}

/// Refuses `depends_on` cycles, naming the services of one.
pub(super) fn check_cycles(services: &BTreeMap<String, Service>) -> Result<(), ManifestError> {
    let deps = |s: &str| -> Vec<String> {
        services
            .get(s)
            .and_then(|x| x.depends_on.as_ref())
            .map(|d| d.value.clone())
            .unwrap_or_default()
    };
    // Depth-first search with the path walked so far.
    fn walk(
        s: &str,
        deps: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == s) {
            let mut cycle = path[i..].to_vec();
            cycle.push(s.to_owned());
            return Some(cycle);
        }
        if done.contains(s) {
            return None;
        }
        path.push(s.to_owned());
        for d in deps(s) {
            if let Some(c) = walk(&d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(s.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for name in services.keys() {
        if let Some(cycle) = walk(name, &deps, &mut Vec::new(), &mut done) {
            let d = services[&cycle[0]].depends_on.as_ref().expect("in a cycle");
            return Err(ManifestError::at(
                d.referenced,
                format!(
                    "services.{}.depends_on: the services depend on each other in a circle ({}); remove one of the dependencies",
                    cycle[0],
                    cycle.join(" → ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::{DEFAULT_ENV, parse};

    const APP: &str = "\
app: shop
services:
  db:
    type: backend
    image: {location: 'db:1'}
    entrypoint: /bin/busybox sh -c
    command: [\"echo hi\"]
    user: '1000:1000'
    stop_timeout: 10s
    storage:
      volumes:
        data: {path: /data}
        conf: {path: /etc/conf, read_only: true}
  api:
    type: backend
    image: {build: ./api}
    depends_on: [db]
environments:
  prod:
    services:
      db:
        image: {location: 'db:2'}
        stop_timeout: 3s
      api:
        image: {location: 'registry/api:7'}
";

    #[test]
    fn container_fields_and_overrides_compile() {
        let m = parse(APP).unwrap();
        let specs = m.compile(DEFAULT_ENV).unwrap();
        let db = &specs.iter().find(|s| s.key.name == "db").unwrap().container;
        assert_eq!(
            db.entrypoint.as_deref(),
            Some(&["/bin/busybox".to_owned(), "sh".into(), "-c".into()][..])
        );
        assert_eq!(db.command.as_deref(), Some(&["echo hi".to_owned()][..]));
        assert_eq!(db.user.as_deref(), Some("1000:1000"));
        assert_eq!(db.volumes.len(), 2);
        let conf = db.volumes.iter().find(|v| v.name == "conf").unwrap();
        assert!(conf.read_only && conf.path == "/etc/conf");
        assert_eq!(db.image, "db:1");
        assert_eq!(db.stop_timeout_ms, 10_000);
        let api = specs.iter().find(|s| s.key.name == "api").unwrap();
        assert_eq!(api.container.depends_on, vec!["db".to_owned()]);
        assert!(m.build_in(DEFAULT_ENV, "api").is_some());

        let prod = m.compile("prod").unwrap();
        let db = &prod.iter().find(|s| s.key.name == "db").unwrap().container;
        assert_eq!(db.image, "db:2");
        assert_eq!(db.stop_timeout_ms, 3_000);
        let api = prod.iter().find(|s| s.key.name == "api").unwrap();
        assert_eq!(api.container.image, "registry/api:7");
        assert!(
            m.build_in("prod", "api").is_none(),
            "prod pulls, builds nothing"
        );
        assert_eq!(
            db.volumes[0].docker_name(&prod[0].key),
            "slipway-shop-prod-conf"
        );
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_container_fields_are_refused_with_the_field() {
        let base = "app: a\nservices:\n  s:\n    type: backend\n    image: {location: 'x:1'}\n";
        let e = err(&format!(
            "{base}    storage: {{volumes: {{data: {{path: data}}}}}}\n"
        ));
        assert!(e.contains("services.s.storage.volumes.data.path"), "{e}");
        let e = err(&format!(
            "{base}    storage: {{volumes: {{'b/d': {{path: /d}}}}}}\n"
        ));
        assert!(e.contains("volume name"), "{e}");
        let e = err(&format!(
            "{base}    storage: {{volumes: {{a: {{path: /d}}, b: {{path: /d/}}}}}}\n"
        ));
        assert!(e.contains("another volume is mounted at"), "{e}");
        let e = err(&format!(
            "{base}    storage: {{volumes: {{a: {{path: /d, efs: true}}}}}}\n"
        ));
        assert!(e.contains("efs"), "{e}");
        let e = err(&format!("{base}    user: 'a b'\n"));
        assert!(e.starts_with("6:") && e.contains("services.s.user"), "{e}");
        let e = err(&format!("{base}    entrypoint: []\n"));
        assert!(e.contains("services.s.entrypoint"), "{e}");
        let e = err(&format!("{base}    depends_on: [nope]\n"));
        assert!(
            e.starts_with("6:") && e.contains("no service named \"nope\""),
            "{e}"
        );
        let e = err(&format!("{base}    depends_on: [s]\n"));
        assert!(e.contains("itself"), "{e}");
        let e = err(&format!(
            "{base}environments:\n  p:\n    services:\n      s:\n        image: {{location: 'x:2', build: .}}\n"
        ));
        assert!(e.contains("environments.p.services.s.image"), "{e}");
    }

    #[test]
    fn scheduled_jobs_compile_and_bad_ones_are_refused() {
        let base = "app: a\nservices:\n  s:\n    image: {location: 'x:1'}\n";
        let m = parse(&format!(
            "{base}    type: Scheduled Job\n    on: {{schedule: '@every 10s'}}\n    retries: 2\n    timeout: 1m\n"
        ))
        .unwrap();
        let s = &m.compile(DEFAULT_ENV).unwrap()[0];
        assert_eq!(s.desired_count, Some(0));
        let j = s.container.job.as_ref().unwrap();
        assert_eq!(
            (j.schedule.as_str(), j.retries, j.timeout_ms),
            ("@every 10s", 2, Some(60_000))
        );
        s.validate().unwrap();

        let e = err(&format!(
            "{base}    type: job\n    on: {{schedule: '61 * * * *'}}\n"
        ));
        assert!(
            e.starts_with("6:")
                && e.contains("services.s.on.schedule")
                && e.contains("out of range"),
            "{e}"
        );
        let e = err(&format!("{base}    type: job\n"));
        assert!(e.contains("needs one"), "{e}");
        let e = err(&format!(
            "{base}    type: job\n    on: {{schedule: '@daily'}}\n    retries: 11\n"
        ));
        assert!(e.contains("retries must be between 0 and 10"), "{e}");
        let e = err(&format!(
            "{base}    type: job\n    on: {{schedule: '@daily'}}\n    count: 2\n"
        ));
        assert!(e.contains("services.s.count"), "{e}");
        let e = err(&format!("{base}    type: backend\n    retries: 1\n"));
        assert!(e.contains("only a Scheduled Job"), "{e}");
    }

    /// The input fuzzing found (issue 20): a cron step near `u32::MAX` overflowed while the
    /// schedule was checked.
    #[test]
    fn a_huge_cron_step_is_no_panic() {
        let m = parse(
            "app: shop\nservices:\n  api:\n    type: 'job'\n    image:\n      build: './api'\n    on:\n      schedule: '5/4294967295 * * * *'\n",
        )
        .unwrap();
        let s = &m.compile(DEFAULT_ENV).unwrap()[0];
        assert_eq!(
            s.container.job.as_ref().unwrap().schedule,
            "5/4294967295 * * * *"
        );
    }

    #[test]
    fn depends_on_cycles_are_named() {
        let e = err(
            "app: a\nservices:\n  x:\n    type: backend\n    image: {location: 'x:1'}\n    depends_on: [y]\n  y:\n    type: backend\n    image: {location: 'x:1'}\n    depends_on: [z]\n  z:\n    type: backend\n    image: {location: 'x:1'}\n    depends_on: [x]\n",
        );
        assert!(e.contains("x → y → z → x"), "{e}");
    }
}
