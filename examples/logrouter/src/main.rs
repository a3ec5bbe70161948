//! A stand-in FireLens log router, packaged FROM scratch for Slipway's tests and
//! benchmarks (no image can be pulled here, so Fluent Bit cannot be): it listens on
//! `0.0.0.0:24224` (`FORWARD_PORT`) for Fluentd's `forward` protocol — what Docker's
//! `fluentd` log driver sends — decodes each entry with a MessagePack library and prints
//! one line per record on its own stdout:
//!
//! ```text
//! router: TAG SOURCE LOG
//! ```
//!
//! It handles the protocol's Message (`[tag, time, record, option?]`), Forward (`[tag,
//! [[time, record], ...], option?]`) and PackedForward (`[tag, bin, option?]`) modes, and
//! answers `option.chunk` with an ack, so a sender that asks for acks gets them.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};

use rmpv::Value;

fn main() {
    let port = std::env::var("FORWARD_PORT").unwrap_or_else(|_| "24224".into());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("router: cannot listen on {port}: {e}");
            std::process::exit(2);
        }
    };
    println!("router: listening on {port}");
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || serve(conn));
    }
}

fn serve(conn: TcpStream) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    while let Ok(v) = rmpv::decode::read_value(&mut r) {
        let Value::Array(items) = v else { continue };
        let tag = items
            .first()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let option = match items.get(1) {
            // Forward: [tag, [[time, record], ...], option]
            Some(Value::Array(entries)) => {
                for e in entries {
                    if let Value::Array(pair) = e
                        && let Some(rec) = pair.get(1)
                    {
                        print_record(&tag, rec);
                    }
                }
                items.get(2)
            }
            // PackedForward: [tag, bin (a stream of [time, record]), option]
            Some(Value::Binary(bytes)) => {
                let mut cur = std::io::Cursor::new(bytes.as_slice());
                while let Ok(Value::Array(pair)) = rmpv::decode::read_value(&mut cur) {
                    if let Some(rec) = pair.get(1) {
                        print_record(&tag, rec);
                    }
                }
                items.get(2)
            }
            // Message: [tag, time, record, option]
            Some(_) => {
                if let Some(rec) = items.get(2) {
                    print_record(&tag, rec);
                }
                items.get(3)
            }
            None => None,
        };
        // An ack for a sender that asks for one (`require_ack_response`).
        if let Some(Value::Map(opts)) = option
            && let Some((_, chunk)) = opts.iter().find(|(k, _)| k.as_str() == Some("chunk"))
        {
            let ack = Value::Map(vec![(Value::from("ack"), chunk.clone())]);
            let mut buf = Vec::new();
            if rmpv::encode::write_value(&mut buf, &ack).is_ok() {
                let _ = out.write_all(&buf);
            }
        }
    }
}

fn print_record(tag: &str, rec: &Value) {
    let Value::Map(fields) = rec else { return };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| match v {
                Value::String(s) => s.as_str().unwrap_or("").to_owned(),
                Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    println!("router: {tag} {} {}", get("source"), get("log"));
}
