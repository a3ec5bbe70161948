//! Output helpers: one-line errors, tables, durations and times.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};

/// Prints an error as one line (`error: ...`), or as `{"error": ...}` with `--json`.
/// A reader that went away (`slipway logs web | head -1`) is no error: exit quietly with 0,
/// as other Unix tools do.
pub fn print_error(e: &anyhow::Error, json: bool) {
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        std::process::exit(0);
    }
    let msg = format!("{e:#}").replace('\n', " ");
    if json {
        println!("{}", serde_json::json!({ "error": msg }));
    } else {
        eprintln!("error: {msg}");
    }
}

/// A borderless table that fits the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// `1234` → `1.2s`, `65000` → `1m05s`.
pub fn duration_ms(ms: i64) -> String {
    if ms < 0 {
        return "-".into();
    }
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// How long ago a unix-ms time was.
pub fn ago(at: i64) -> String {
    let now = slipway_controller::now_ms();
    format!("{} ago", duration_ms(now - at))
}

/// Shortens a `sha256:...` digest for tables.
pub fn short_digest(d: &str) -> String {
    let hex = d.rsplit(':').next().unwrap_or(d);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Makes a closed standard output (the reader of a pipe went away, as `head` does) end the
/// process quietly with exit code 0 instead of panicking in `println!` with `failed printing
/// to stdout: Broken pipe`. Other panics are reported as before.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
