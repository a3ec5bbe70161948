//! Renders the console's pages on the made-up cluster of [`slipway_console::fixture`] and
//! prints server time (the first, cold render, then the median and p90 of the runs after it) and bytes per page, as
//! `bench/console.sh` reports them. Usage: `render SERVICES [RUNS]`.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(21);
    let f = slipway_console::fixture::build(services).await;
    let cookie = slipway_console::fixture::login(&f).await;
    let k = &f.service;
    let pages = [
        ("overview", "/ui/".to_owned()),
        (
            "service",
            format!("/ui/services/{}/{}/{}", k.app, k.env, k.name),
        ),
        ("deployment", format!("/ui/deployments/{}", f.deployment)),
    ];
    for (name, path) in pages {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        let mut cold = 0.0;
        for i in 0..=runs {
            let req = Request::get(&path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .expect("a request");
            let t = Instant::now();
            let resp = f.router.clone().oneshot(req).await.expect("an answer");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .expect("a body");
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if i == 0 {
                cold = ms;
            } else {
                times.push(ms);
            }
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<11} services={services:<4} cold_ms={cold:.2} median_ms={:.2} p90_ms={:.2} bytes={bytes}",
            times[times.len() / 2],
            times[times.len() * 9 / 10]
        );
    }
}
