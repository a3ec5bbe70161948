//! Bounded load on Slipway's AWS API for `bench/aws.sh`: CONCURRENCY clients, each with one
//! keep-alive HTTP/1.1 connection, sending SigV4-signed JSON 1.1 requests for DURATION
//! seconds; prints p50/p90/p99/max latency (ms) and requests per second as one JSON line.
//!
//! ```text
//! cargo run --release --example aws_load -- URL KEY SECRET TARGET BODY_TEMPLATE CONCURRENCY DURATION [RATE]
//! ```
//!
//! BODY_TEMPLATE may contain `{n}` (a per-request counter), `{c}` (the client's number),
//! `{v}` (1 or 2, alternating per request) and `{svc10}` (10 service names `svc-K`, K random
//! in 0..100).
//!
//! With KEY `bearer` the requests go to Slipway's native API instead: SECRET is the admin
//! token and TARGET is `METHOD /path` (the path may hold the same placeholders), e.g.
//! `POST /api/v1/services/bench/default/svc-{c}/scale` (`bench/controlplane.sh`). Every request is signed on its own (canonical request,
//! string to sign, HMAC with the scope's signing key, which depends only on the secret and the
//! day, so it is derived once, as the AWS SDKs' credential caches allow).
//!
//! All clients share one thread, so the load generator takes at most one core and leaves the
//! rest to the server (the Python clients of `bench/aws_load.py`, one process each, spend
//! more CPU signing than the server spends answering, so on a small machine they measure
//! themselves).
//!
//! Without RATE the run is closed-loop: each client sends its next request as soon as the
//! previous one is answered (latency = CONCURRENCY / throughput once the server saturates).
//! With RATE (requests per second, all clients together) the run is open-loop: client i's
//! k-th request is due at `start + (i + k * CONCURRENCY) / RATE` and its latency is measured
//! from that time when the client is behind, so a client that falls behind counts the wait (no
//! coordinated omission), and from when it is sent when the client had to wait for it (the
//! timer's own lateness is not the server's); `late` counts requests sent more than 1 ms
//! after they were due.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand::Rng;
use slipway_aws::sigv4;

struct Args {
    host: String,
    key: String,
    secret: String,
    target: String,
    template: String,
    conc: usize,
    duration: Duration,
    rate: Option<f64>,
}

#[derive(Default)]
struct Outcome {
    latencies_ms: Vec<f64>,
    errors: usize,
    late: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 7 {
        bail!("usage: aws_load URL KEY SECRET TARGET BODY_TEMPLATE CONCURRENCY DURATION [RATE]");
    }
    let host = a[0]
        .strip_prefix("http://")
        .context("URL must start with http://")?
        .trim_end_matches('/')
        .to_owned();
    Ok(Args {
        host,
        key: a[1].clone(),
        secret: a[2].clone(),
        target: a[3].clone(),
        template: a[4].clone(),
        conc: a[5].parse().context("CONCURRENCY must be a number")?,
        duration: Duration::from_secs_f64(a[6].parse().context("DURATION must be seconds")?),
        rate: a
            .get(7)
            .map(|r| r.parse())
            .transpose()
            .context("RATE must be a number")?,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The headers of one signed request.
fn signed_headers(
    args: &Args,
    key: &[u8; 32],
    body: &[u8],
    amz_date: &str,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("host".to_owned(), args.host.clone()),
        ("x-amz-date".to_owned(), amz_date.to_owned()),
        ("x-amz-target".to_owned(), args.target.clone()),
    ];
    let signed: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    let auth = sigv4::AuthHeader {
        access_key: args.key.clone(),
        date: amz_date[..8].to_owned(),
        region: "us-east-1".to_owned(),
        service: "ecs".to_owned(),
        signed_headers: signed.clone(),
        signature: String::new(),
    };
    let req = sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: headers.clone(),
        body,
    };
    let signature = sigv4::sign_with_key(&req, &auth, amz_date, key);
    headers.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={signature}",
            args.key,
            auth.scope(),
            signed.join(";")
        ),
    ));
    headers
}

async fn client(i: usize, args: &Args, start: Instant) -> anyhow::Result<Outcome> {
    let stream = tokio::net::TcpStream::connect(&args.host)
        .await
        .with_context(|| format!("connecting to {}", args.host))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(conn);
    let mut out = Outcome::default();
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.conc as f64 / r));
    let mut due = start
        + args
            .rate
            .map(|r| Duration::from_secs_f64(i as f64 / r))
            .unwrap_or_default();
    let end = start + args.duration;
    tokio::time::sleep_until(start.into()).await;
    let mut day = String::new();
    let mut key = [0u8; 32];
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        // When the request's latency starts: its due time, unless the client had to wait
        // for it, in which case the timer's own lateness (up to a millisecond) is the
        // generator's, not the server's, and the request starts when it is sent.
        let mut t0 = due;
        if interval.is_some() {
            if due >= end {
                break;
            }
            if due > now {
                tokio::time::sleep_until(due.into()).await;
                t0 = Instant::now();
            } else if now - due > Duration::from_millis(1) {
                out.late += 1;
            }
        } else if now >= end {
            break;
        }
        n += 1;
        let svc10 = {
            let mut rng = rand::rng();
            let names: Vec<String> = (0..10)
                .map(|_| format!("svc-{}", rng.random_range(0..100)))
                .collect();
            serde_json::to_string(&names)?
        };
        let fill = |t: &str| {
            t.replace("{n}", &format!("{i}-{n}"))
                .replace("{c}", &i.to_string())
                .replace("{v}", &(1 + n % 2).to_string())
                .replace("{svc10}", &svc10)
        };
        let body = fill(&args.template);
        if interval.is_none() {
            t0 = Instant::now();
        }
        let req = if args.key == "bearer" {
            let (method, path) = args
                .target
                .split_once(' ')
                .context("TARGET must be `METHOD /path` with KEY bearer")?;
            hyper::Request::builder()
                .method(method)
                .uri(fill(path))
                .header("host", &args.host)
                .header("authorization", format!("Bearer {}", args.secret))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?
        } else {
            let amz_date = sigv4::format_amz_date(unix_now());
            if amz_date[..8] != day {
                day = amz_date[..8].to_owned();
                key = sigv4::signing_key(&args.secret, &day, "us-east-1", "ecs");
            }
            let mut req = hyper::Request::post("/");
            for (name, value) in signed_headers(args, &key, body.as_bytes(), &amz_date) {
                req = req.header(name, value);
            }
            req.body(Full::new(Bytes::from(body)))?
        };
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        out.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            out.errors += 1;
        }
        if let Some(interval) = interval {
            due += interval;
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let args = &*Box::leak(Box::new(args));
    let (outcomes, wall) = local.block_on(&rt, async move {
        // Every client starts at the same instant, after all are connected.
        let start = Instant::now() + Duration::from_millis(500);
        let handles: Vec<_> = (0..args.conc)
            .map(|i| tokio::task::spawn_local(client(i, args, start)))
            .collect();
        let mut outcomes = Vec::new();
        for h in handles {
            outcomes.push(h.await?);
        }
        anyhow::Ok((outcomes, start.elapsed()))
    })?;
    let mut lat = Vec::new();
    let (mut errors, mut late) = (0, 0);
    for o in outcomes {
        let o = o?;
        lat.extend(o.latencies_ms);
        errors += o.errors;
        late += o.late;
    }
    if lat.is_empty() {
        bail!("no request was answered");
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let v = lat[((p * lat.len() as f64) as usize).min(lat.len() - 1)];
        (v * 100.0).round() / 100.0
    };
    let mut out = serde_json::json!({
        "mode": match args.rate {
            Some(r) => format!("fixed rate {r}/s"),
            None => "closed loop".to_owned(),
        },
        "requests": lat.len(),
        "errors": errors,
        "rps": (lat.len() as f64 / wall.as_secs_f64()).round(),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    });
    if args.rate.is_some() {
        out["late"] = late.into();
    }
    println!("{out}");
    Ok(())
}
