//! `docs/pipelines.md` carries the support matrix and the built-in actions generated from
//! the code; this test fails when they differ (`SLIPWAY_UPDATE_DOCS=1` rewrites them).

use std::path::PathBuf;

use slipway_workflow::actions::BUILTIN_ACTIONS;
use slipway_workflow::keys::support_matrix_markdown;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/pipelines.md")
}

fn actions_markdown() -> String {
    BUILTIN_ACTIONS
        .iter()
        .map(|a| format!("- `{a}`\n"))
        .collect()
}

/// `text` with the part between `<!-- NAME:start -->` and `<!-- NAME:end -->` replaced.
fn splice(text: &str, name: &str, body: &str) -> String {
    let (start, end) = (
        format!("<!-- {name}:start -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let i = text.find(&start).expect("start marker") + start.len();
    let j = text.find(&end).expect("end marker");
    format!("{}{body}{}", &text[..i], &text[j..])
}

#[test]
fn the_docs_match_the_code() {
    let path = doc_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let want = splice(
        &splice(&text, "support-matrix", &support_matrix_markdown()),
        "actions",
        &actions_markdown(),
    );
    if std::env::var_os("SLIPWAY_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        text == want,
        "docs/pipelines.md is out of date with crates/workflow/src/keys.rs or actions.rs; \
         regenerate it with:\n    SLIPWAY_UPDATE_DOCS=1 cargo test -p slipway-workflow --test docs"
    );
}
