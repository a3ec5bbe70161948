//! `slipway schema`: prints the JSON Schema of `slipway.yml` (the one committed as
//! `docs/slipway.schema.json`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;

pub fn run() -> Result<ExitCode> {
    let text = serde_json::to_string_pretty(&slipway_core::schema::manifest_schema())?;
    match writeln!(io::stdout().lock(), "{text}") {
        // `slipway schema | head` is fine.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        r => r?,
    }
    Ok(ExitCode::SUCCESS)
}
