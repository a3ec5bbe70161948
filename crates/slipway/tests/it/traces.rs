//! OTLP traces against a real receiver: an HTTP server in the test accepting
//! `POST /v1/traces` and decoding `ExportTraceServiceRequest` with the official generated
//! types (`opentelemetry-proto`). A deployment is one trace with its spans under the root in
//! causal order; a rolled-back deployment's trace has an ERROR rollback span; requests
//! through the ingress (both of its paths) export spans whose trace ids the task saw in its
//! `traceparent`, and a client's sampled `traceparent` keeps its trace. One server is set up
//! with the flags, the other with the `OTEL_*` variables.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::support::*;

/// Spans received, with their resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver on an ephemeral loopback port.
struct Receiver {
    url: String,
    spans: Received,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        use axum::extract::State;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spans: Received = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        async fn export(
            State(spans): State<Received>,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> (
            axum::http::StatusCode,
            [(&'static str, &'static str); 1],
            Vec<u8>,
        ) {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert_eq!(ct, "application/x-protobuf");
            let req = ExportTraceServiceRequest::decode(body).expect("a valid OTLP request");
            let mut got = spans.lock().unwrap();
            for rs in req.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    got.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
            (
                axum::http::StatusCode::OK,
                [("content-type", "application/x-protobuf")],
                Vec::new(),
            )
        }
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(spans.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            spans,
            _rt: rt,
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }

    /// What arrived, in short (for failure messages).
    fn summary(&self) -> String {
        self.spans()
            .iter()
            .map(|(svc, s)| format!("{svc} {} {} {}", hex(&s.trace_id), hex(&s.span_id), s.name))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the spans of `trace_id` satisfy `done`.
    fn wait_trace(&self, trace_id: &[u8], what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.trace(trace_id);
            if done(&t) {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what} in trace {}; received:\n{}",
                hex(trace_id),
                self.summary()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The spans of one trace.
    fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s)
            .collect()
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            Some(AnyValue::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The trace id Slipway derives from a deployment id (FNV-1a twice: the controller's rule,
/// written out again here so the test pins it).
fn deployment_trace_id(id: &str) -> Vec<u8> {
    let fnv = |offset: u64| {
        id.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let mut v = fnv(0xcbf2_9ce4_8422_2325).to_be_bytes().to_vec();
    v.extend(fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    v
}

/// `deploy --json` with an image; returns the new deployment's id and the outcome.
fn deploy(s: &Server, image: &str) -> (String, String) {
    let out = s.cli(&[
        "--json",
        "deploy",
        "--image",
        &format!("web={image}"),
        "--timeout",
        "120s",
    ]);
    let v = out.json();
    let r = &v["results"][0];
    let id = r["deployment"]["id"].as_str();
    (
        id.unwrap_or_else(|| panic!("no deployment id: {v}"))
            .to_owned(),
        r["outcome"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A GET through the ingress with extra header lines; returns (status, body).
fn get(addr: &str, path: &str, version: &str, extra: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {path} {version}\r\nHost: traces.test\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    c.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// (trace id, parent span id, sampled) of a `traceparent` the task echoed.
fn seen(body: &str) -> (String, String, bool) {
    let p: Vec<&str> = body.trim().split('-').collect();
    assert_eq!(p.len(), 4, "not a traceparent: {body:?}");
    assert_eq!((p[0], p[1].len(), p[2].len()), ("00", 32, 16), "{body:?}");
    (p[1].to_owned(), p[2].to_owned(), p[3] == "01")
}

#[test]
fn a_deployment_is_one_trace_and_requests_carry_their_trace_to_the_task() {
    if !docker() {
        return;
    }
    let rx = Receiver::start();
    let s = Server::start_with(&["--otlp-endpoint", &rx.url, "--trace-sample-ratio", "1"]);
    s.manifest(&web_manifest(&app_name("otel"), "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let (id, state) = deploy(&s, "slipway-hello:v2");
    assert_eq!(state, "SUCCEEDED", "deploy of v2");
    let trace_id = deployment_trace_id(&id);

    // Every span of the deployment arrives (the drain and stop of the v1 task included).
    let names = [
        "deployment",
        "resolve",
        "task start",
        "pull",
        "health wait",
        "register",
        "drain",
        "stop",
    ];
    let spans = rx.wait_trace(&trace_id, "the deployment's spans", |t| {
        names.iter().all(|n| t.iter().any(|s| s.name == *n))
    });
    let one = |name: &str| -> &Span {
        let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
        found[0]
    };
    let root = one("deployment");
    assert!(root.parent_span_id.is_empty(), "the root has no parent");
    assert_eq!(
        attr(root, "slipway.deployment").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(attr(root, "slipway.outcome").as_deref(), Some("SUCCEEDED"));
    assert!(
        attr(root, "container.image.digest").is_some_and(|d| d.starts_with("sha256:")),
        "{root:?}"
    );
    assert!(root.status.as_ref().is_none_or(|s| s.code != 2), "{root:?}");
    let start = one("task start");
    let task = attr(start, "slipway.task").expect("task id on the start span");
    assert_eq!(attr(start, "slipway.revision").as_deref(), Some("2"));
    let pull = one("pull");
    assert_eq!(
        pull.parent_span_id, start.span_id,
        "pull is part of the task start"
    );
    for s in spans
        .iter()
        .filter(|s| s.name != "deployment" && s.name != "pull")
    {
        assert_eq!(
            s.parent_span_id, root.span_id,
            "{} is under the root",
            s.name
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano, "{s:?}");
        assert_eq!(
            attr(s, "slipway.deployment").as_deref(),
            Some(id.as_str()),
            "{s:?}"
        );
    }
    let health = one("health wait");
    assert_eq!(attr(health, "slipway.task").as_deref(), Some(task.as_str()));
    let register = one("register");
    assert_eq!(
        attr(register, "slipway.task").as_deref(),
        Some(task.as_str())
    );
    let (drain, stop) = (one("drain"), one("stop"));
    assert_ne!(
        attr(drain, "slipway.task").as_deref(),
        Some(task.as_str()),
        "the old task drains"
    );
    // In causal order: resolve, start (its pull inside), health, registration; the old
    // task drains once the new one is healthy, then stops; the root covers them.
    let resolve = one("resolve");
    assert!(resolve.end_time_unix_nano <= start.start_time_unix_nano);
    assert!(start.start_time_unix_nano <= pull.start_time_unix_nano);
    assert!(pull.end_time_unix_nano <= start.end_time_unix_nano);
    assert!(start.end_time_unix_nano <= health.start_time_unix_nano);
    assert!(health.end_time_unix_nano <= register.start_time_unix_nano);
    assert!(health.end_time_unix_nano <= drain.start_time_unix_nano);
    assert!(drain.end_time_unix_nano <= stop.start_time_unix_nano);
    assert!(root.start_time_unix_nano <= start.start_time_unix_nano);
    assert!(root.end_time_unix_nano >= health.end_time_unix_nano);

    // Requests: a new trace per request (sampled at ratio 1), on the fast path (HTTP/1.1)
    // and the hyper path (HTTP/1.0); the task sees the ingress' span as its parent.
    let ingress = s.ingress();
    let mut expected = Vec::new();
    for version in ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1"] {
        let (status, body) = get(&ingress, "/headers/traceparent", version, "");
        assert_eq!(
            status, 200,
            "the task got no traceparent (rebuild the images: scripts/build-example.sh): {body}"
        );
        let (t, parent, sampled) = seen(&body);
        assert!(sampled, "ratio 1 samples every new trace: {body}");
        expected.push((t, parent, None::<String>));
    }
    // A client's sampled traceparent keeps its trace; the task's parent is the ingress' span.
    let client_trace = hex(&rand::random::<[u8; 16]>());
    let client_span = hex(&rand::random::<[u8; 8]>());
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let (status, body) = get(
            &ingress,
            "/headers/traceparent",
            version,
            &format!("traceparent: 00-{client_trace}-{client_span}-01\r\n"),
        );
        assert_eq!(status, 200, "{body}");
        let (t, parent, sampled) = seen(&body);
        assert_eq!(t, client_trace, "the client's trace is continued");
        assert_ne!(
            parent, client_span,
            "the ingress' own span is the task's parent"
        );
        assert!(sampled);
        expected.push((t, parent, Some(client_span.clone())));
    }
    // An invalid traceparent is replaced by a new trace.
    let (_, body) = get(
        &ingress,
        "/headers/traceparent",
        "HTTP/1.1",
        &format!(
            "traceparent: 00-{}-{client_span}-01\r\n",
            client_trace.to_uppercase()
        ),
    );
    let (t, _, _) = seen(&body);
    assert_ne!(t, client_trace);
    assert_ne!(t, client_trace.to_uppercase());

    for (trace, span, parent) in &expected {
        let got = wait_for(Duration::from_secs(20), "the request's span", || {
            rx.spans()
                .into_iter()
                .find(|(_, s)| hex(&s.trace_id) == *trace && hex(&s.span_id) == *span)
        });
        let (service, sp) = got;
        assert_eq!(service, "slipway-ingress");
        assert_eq!(sp.kind, 2, "a server span");
        assert_eq!(attr(&sp, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attr(&sp, "url.path").as_deref(),
            Some("/headers/traceparent")
        );
        assert_eq!(attr(&sp, "http.route").as_deref(), Some("/"));
        assert_eq!(
            attr(&sp, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert!(attr(&sp, "slipway.task").is_some(), "{sp:?}");
        assert!(sp.end_time_unix_nano >= sp.start_time_unix_nano);
        match parent {
            Some(p) => assert_eq!(hex(&sp.parent_span_id), *p, "continues the client's span"),
            None => assert!(sp.parent_span_id.is_empty(), "a new trace's root"),
        }
    }
}

#[test]
fn a_rolled_back_deploy_has_an_error_rollback_span() {
    if !docker() {
        return;
    }
    let rx = Receiver::start();
    // The standard variables this time (the signal's own endpoint is used as it is).
    let s = Server::start_with_env(
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{}/v1/traces", rx.url),
            ),
            ("OTEL_SERVICE_NAME", "platform"),
        ],
    );
    s.manifest(&web_manifest(
        &app_name("otelrb"),
        "slipway-hello:v1",
        1,
        "",
    ));
    s.cli(&["deploy"]).ok();
    let (id, state) = deploy(&s, "slipway-hello:unhealthy");
    assert_eq!(state, "ROLLED_BACK");
    let trace_id = deployment_trace_id(&id);
    let spans = rx.wait_trace(&trace_id, "the rollback span", |t| {
        t.iter().any(|s| s.name == "rollback") && t.iter().any(|s| s.name == "deployment")
    });
    let root = spans.iter().find(|s| s.name == "deployment").unwrap();
    assert_eq!(
        attr(root, "slipway.outcome").as_deref(),
        Some("ROLLED_BACK")
    );
    assert!(
        rx.spans()
            .iter()
            .any(|(svc, s)| s.span_id == root.span_id && svc == "platform"),
        "OTEL_SERVICE_NAME names the resource"
    );
    assert_eq!(root.status.as_ref().map(|s| s.code), Some(2), "{root:?}");
    let rollback = spans.iter().find(|s| s.name == "rollback").unwrap();
    assert_eq!(rollback.parent_span_id, root.span_id);
    assert_eq!(
        rollback.status.as_ref().map(|s| s.code),
        Some(2),
        "{rollback:?}"
    );
    assert!(
        attr(rollback, "slipway.rollback.deployment").is_some_and(|d| d != id),
        "{rollback:?}"
    );
    // The task that never became healthy says so.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "health wait" && s.status.as_ref().is_some_and(|st| st.code == 2)),
        "{spans:#?}"
    );
    // The rollback deployment's own trace ends SUCCEEDED.
    let back = attr(rollback, "slipway.rollback.deployment").unwrap();
    wait_for(
        Duration::from_secs(30),
        "the rollback deployment's root",
        || {
            rx.trace(&deployment_trace_id(&back))
                .into_iter()
                .find(|s| s.name == "deployment")
                .filter(|s| attr(s, "slipway.outcome").as_deref() == Some("SUCCEEDED"))
        },
    );
}
