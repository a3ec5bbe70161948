//! The request filter, in process: method + path + query -> Allow / Refuse(reason).

use std::collections::BTreeMap;

use slipway_enginegate::filter::{build_query, decide, form_content_type, refusal_message};
use slipway_enginegate::{Decision, Route};

fn allowed(method: &str, path: &str, query: Option<&str>) -> Route {
    match decide(method, path, query) {
        Decision::Allow(a) => a.route,
        Decision::Refuse(r) => panic!("{method} {path}?{query:?} refused: {r}"),
    }
}

#[track_caller]
fn refused(method: &str, path: &str, query: Option<&str>) -> String {
    match decide(method, path, query) {
        Decision::Refuse(r) => r,
        Decision::Allow(a) => panic!("{method} {path}?{query:?} allowed: {a:?}"),
    }
}

#[test]
fn the_cli_handshake_is_allowed_with_and_without_a_version() {
    assert_eq!(allowed("HEAD", "/_ping", None), Route::Ping);
    assert_eq!(allowed("GET", "/_ping", None), Route::Ping);
    assert_eq!(allowed("GET", "/v1.41/version", None), Route::Version);
    assert_eq!(allowed("GET", "/v1.41/info", None), Route::Info);
    assert_eq!(allowed("POST", "/v1.41/auth", None), Route::Auth);
    assert_eq!(
        allowed("GET", "/v1.50/images/json", Some("all=1")),
        Route::ListImages
    );
}

#[test]
fn a_classic_build_is_allowed() {
    let q = "buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&cpuquota=0\
             &cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile&labels=%7B%7D\
             &memory=0&memswap=0&networkmode=default&rm=1&shmsize=0&t=app%3Av1&target=\
             &ulimits=null&version=1";
    assert_eq!(allowed("POST", "/v1.41/build", Some(q)), Route::Build);
    assert_eq!(
        allowed("POST", "/build", Some("networkmode=none")),
        Route::Build
    );
}

#[test]
fn dangerous_builds_are_refused() {
    let r = refused("POST", "/v1.41/build", Some("networkmode=host"));
    assert!(r.contains("--network=host"), "{r}");
    refused("POST", "/build", Some("networkmode=container%3Aabc"));
    // A second value the engine would not read is still checked.
    refused(
        "POST",
        "/build",
        Some("networkmode=default&networkmode=host"),
    );
    refused(
        "POST",
        "/build",
        Some("remote=https%3A%2F%2Fexample.com%2Fctx.tar"),
    );
    refused("POST", "/build", Some("cgroupparent=%2F"));
    refused("POST", "/build", Some("isolation=hyperv"));
    let r = refused("POST", "/build", Some("version=2"));
    assert!(r.contains("DOCKER_BUILDKIT=0"), "{r}");
    refused("POST", "/build", Some("session=abc"));
    let r = refused("POST", "/build", Some("privileged=1"));
    assert!(r.contains("privileged"), "{r}");
}

#[test]
fn pulls_are_allowed_imports_are_not() {
    assert_eq!(
        allowed(
            "POST",
            "/v1.41/images/create",
            Some("fromImage=127.0.0.1%3A5000%2Fapp&tag=v1")
        ),
        Route::Pull {
            reference: "127.0.0.1:5000/app:v1".into()
        }
    );
    assert_eq!(
        allowed(
            "POST",
            "/images/create",
            Some("fromImage=app&tag=sha256%3Aabc")
        ),
        Route::Pull {
            reference: "app@sha256:abc".into()
        }
    );
    assert_eq!(
        allowed("POST", "/images/create", Some("fromImage=app%3Av2")),
        Route::Pull {
            reference: "app:v2".into()
        }
    );
    let r = refused("POST", "/images/create", Some("fromSrc=-&repo=x"));
    assert!(r.contains("import"), "{r}");
    refused(
        "POST",
        "/images/create",
        Some("fromImage=app&fromSrc=http%3A%2F%2Fx"),
    );
    refused("POST", "/images/create", Some("fromImage=app"));
    refused("POST", "/images/create", None);
    refused("POST", "/images/create", Some("fromImage=-x&tag=1"));
}

#[test]
fn image_routes_name_the_image() {
    assert_eq!(
        allowed(
            "POST",
            "/v1.41/images/sha256:abc/tag",
            Some("repo=127.0.0.1%3A5000%2Fa%2Fb&tag=v1")
        ),
        Route::Tag {
            name: "sha256:abc".into()
        }
    );
    assert_eq!(
        allowed(
            "POST",
            "/v1.41/images/127.0.0.1:5000/a/b/push",
            Some("tag=v1")
        ),
        Route::Push {
            reference: "127.0.0.1:5000/a/b:v1".into()
        }
    );
    assert_eq!(
        allowed("GET", "/v1.41/images/a/b:v1/json", None),
        Route::InspectImage {
            name: "a/b:v1".into()
        }
    );
    assert_eq!(
        allowed("GET", "/v1.41/distribution/a/b:v1/json", None),
        Route::Distribution {
            name: "a/b:v1".into()
        }
    );
    assert_eq!(
        allowed("DELETE", "/v1.41/images/a:v1", Some("force=1")),
        Route::DeleteImage {
            name: "a:v1".into()
        }
    );
    let r = refused("POST", "/images/a/push", None);
    assert!(r.contains("all tags"), "{r}");
    refused("POST", "/images/a/tag", Some("repo=b&force=1"));
    refused("POST", "/images/a/tag", Some("repo=%2Fetc"));
}

#[test]
fn everything_else_is_refused() {
    for (m, p) in [
        ("POST", "/v1.41/containers/create"),
        ("POST", "/containers/abc/start"),
        ("POST", "/containers/abc/attach"),
        ("POST", "/containers/abc/exec"),
        ("GET", "/v1.41/containers/json"),
        ("POST", "/exec/abc/start"),
        ("GET", "/volumes"),
        ("POST", "/volumes/create"),
        ("GET", "/networks"),
        ("POST", "/networks/create"),
        ("GET", "/swarm"),
        ("GET", "/services"),
        ("GET", "/plugins"),
        ("POST", "/session"),
        ("POST", "/grpc"),
        ("GET", "/system/df"),
        ("GET", "/events"),
        ("POST", "/commit"),
        ("POST", "/build/prune"),
        ("POST", "/images/load"),
        ("GET", "/images/get"),
        ("GET", "/images/a/get"),
        ("GET", "/images/a/history"),
        ("POST", "/images/prune"),
        ("GET", "/images/search"),
        ("PUT", "/containers/abc/archive"),
        ("GET", "/info/../containers/json"),
        ("GET", "/v1.41//containers/json"),
        ("GET", "/v1.41/images/a%2Fb/json"),
    ] {
        refused(m, p, None);
    }
    let r = refused("POST", "/v1.41/containers/create", None);
    assert!(r.contains("containers"), "{r}");
    let r = refused("POST", "/session", None);
    assert!(r.contains("DOCKER_BUILDKIT=0"), "{r}");
}

#[test]
fn refusal_messages_say_what_jobs_may_do() {
    let m = refusal_message("POST /containers/create is refused");
    assert!(
        m.contains("may only build, tag, push, pull and inspect images"),
        "{m}"
    );
}

#[test]
fn form_bodies_are_recognised() {
    assert!(form_content_type("application/x-www-form-urlencoded"));
    assert!(form_content_type(
        " Application/X-WWW-Form-Urlencoded; charset=utf-8"
    ));
    assert!(form_content_type("multipart/form-data; boundary=x"));
    assert!(!form_content_type("application/x-tar"));
    assert!(!form_content_type("application/json"));
}

#[test]
fn build_queries_get_the_job_labels() {
    let q = |s: &str| -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let labels = BTreeMap::from([("slipway.job".to_string(), "j1".to_string())]);
    let out = build_query(
        &q(r#"t=a&labels={"x":"1","slipway.job":"other"}&networkmode=default"#),
        &labels,
        None,
    )
    .unwrap();
    let pairs = q(&out);
    let got: BTreeMap<String, String> =
        serde_json::from_str(&pairs.iter().find(|(k, _)| k == "labels").unwrap().1).unwrap();
    assert_eq!(got["slipway.job"], "j1");
    assert_eq!(got["x"], "1");
    assert!(pairs.contains(&("t".into(), "a".into())));
    assert!(pairs.contains(&("networkmode".into(), "default".into())));

    let out = build_query(&q("networkmode=default"), &labels, Some("run-7")).unwrap();
    assert!(q(&out).contains(&("networkmode".into(), "run-7".into())));
    let out = build_query(&q("networkmode=none"), &labels, Some("run-7")).unwrap();
    assert!(q(&out).contains(&("networkmode".into(), "none".into())));
    assert!(build_query(&q("labels=[1]"), &labels, None).is_err());
}

#[test]
fn repositories_limit_the_names_a_job_gives() {
    use slipway_enginegate::filter::{repository_allowed, repository_of, tag_targets};
    assert_eq!(repository_of("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b");
    assert_eq!(repository_of("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
    assert_eq!(repository_of("app@sha256:abc"), "app");
    assert_eq!(repository_of("app:v1"), "app");
    assert_eq!(repository_of("docker.io/library/app:v1"), "app");
    assert_eq!(repository_of("docker.io/user/app:v1"), "user/app");
    let repos = vec!["127.0.0.1:5000/shop/".to_string(), "app".to_string()];
    assert!(repository_allowed("127.0.0.1:5000/shop/api:v1", &repos));
    assert!(repository_allowed("app:v2", &repos));
    assert!(!repository_allowed("app2:v2", &repos));
    assert!(!repository_allowed("127.0.0.1:5000/other/api:v1", &repos));
    assert!(!repository_allowed("127.0.0.1:5000/shop", &repos));
    assert!(repository_allowed("anything", &[]));

    let d = decide("POST", "/build", Some("t=a%3Av1&t=b&q=1"));
    let a = match d {
        Decision::Allow(a) => a,
        Decision::Refuse(r) => panic!("{r}"),
    };
    assert_eq!(tag_targets(&a.route, &a.query), vec!["a:v1", "b"]);
    let d = decide("POST", "/images/x/tag", Some("repo=r&tag=t"));
    let a = match d {
        Decision::Allow(a) => a,
        Decision::Refuse(r) => panic!("{r}"),
    };
    assert_eq!(tag_targets(&a.route, &a.query), vec!["r:t"]);
}
