//! Reading an AWS Copilot workspace (`copilot/`) for `slipway deploy` and
//! `slipway init --from-copilot`; the translation itself is `slipway_core::copilot`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use slipway_core::copilot::{self, Translation, WORKSPACE_FILE, WorkspaceFile};
use slipway_core::manifest::{DEFAULT_ENV, ManifestError};

/// The default manifest name: a Copilot workspace is read only where it is missing.
const DEFAULT_MANIFEST: &str = "slipway.yml";

/// The workspace root `slipway deploy -f FILE` means, if it means one: `-f` left at
/// `slipway.yml` where no `slipway.yml` exists but `copilot/` does, or `-f` naming a directory
/// that holds `copilot/` (or the `copilot/` directory itself).
pub fn workspace_root(file: &Path) -> Option<PathBuf> {
    if file.is_dir() {
        if file.join("copilot").is_dir() {
            return Some(file.to_owned());
        }
        if file.join(".workspace").is_file() {
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
            return Some(parent.unwrap_or(Path::new(".")).to_owned());
        }
        return None;
    }
    if file == Path::new(DEFAULT_MANIFEST) && !file.exists() && Path::new("copilot").is_dir() {
        return Some(PathBuf::from("."));
    }
    None
}

/// How a workspace's files are shown: relative to the current directory.
pub fn shown(root: &Path, rel: &str) -> String {
    if root == Path::new(".") {
        rel.to_owned()
    } else {
        root.join(rel).display().to_string()
    }
}

/// Reads and translates the workspace under `root`; errors name `file:line:column`.
pub fn read(root: &Path) -> Result<Translation> {
    let dir = root.join("copilot");
    let mut files = Vec::new();
    let mut add = |rel: String, read_text: bool| -> Result<()> {
        let path = root.join(&rel);
        let text = if read_text {
            match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => bail!("{}: cannot read it ({e})", shown(root, &rel)),
            }
        } else {
            String::new()
        };
        files.push(WorkspaceFile { path: rel, text });
        Ok(())
    };
    if root.join(WORKSPACE_FILE).is_file() {
        add(WORKSPACE_FILE.to_owned(), true)?;
    }
    let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(e) => e.filter_map(|e| e.ok()).collect(),
        Err(e) => bail!("{}: cannot read the Copilot workspace ({e})", dir.display()),
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !p.is_dir() || name.starts_with('.') {
            continue;
        }
        if name == "environments" {
            for env in sorted_dirs(&p) {
                let rel = format!("copilot/environments/{env}/manifest.yml");
                if root.join(&rel).is_file() {
                    add(rel, true)?;
                }
            }
            continue;
        }
        if name == "pipelines" {
            for pl in sorted_dirs(&p) {
                add(format!("copilot/pipelines/{pl}/manifest.yml"), false)?;
            }
            continue;
        }
        let rel = format!("copilot/{name}/manifest.yml");
        if root.join(&rel).is_file() {
            add(rel, true)?;
            if let Ok(addons) = std::fs::read_dir(p.join("addons")) {
                let mut names: Vec<String> = addons
                    .filter_map(|a| a.ok())
                    .map(|a| a.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                for a in names {
                    add(format!("copilot/{name}/addons/{a}"), false)?;
                }
            }
        }
    }
    copilot::translate(&files).map_err(|e| {
        let file = shown(root, &e.file);
        anyhow::anyhow!("{}", e.error.with_file(&file))
    })
}

fn sorted_dirs(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// An error about the translated manifest, placed in the workspace's files.
pub fn render(root: &Path, t: &Translation, e: &ManifestError) -> String {
    match t.origin_of(e) {
        Some((f, l, c)) if l > 0 => format!("{}:{l}:{c}: {}", shown(root, &f), e.message),
        Some((f, _, _)) => format!("{}: {}", shown(root, &f), e.message),
        None => format!("{}: {}", shown(root, "copilot/"), e.message),
    }
}

/// Prints the warnings on stderr, one line each, with the file as shown from here.
pub fn print_warnings(root: &Path, t: &Translation) {
    for w in &t.warnings {
        eprintln!(
            "{}:{}:{}: warning: {}: {}",
            shown(root, &w.file),
            w.line,
            w.column,
            w.key,
            w.message
        );
    }
}

/// The warnings as JSON, the files as shown from here.
pub fn warnings_json(root: &Path, t: &Translation) -> Vec<copilot::Warning> {
    t.warnings
        .iter()
        .map(|w| copilot::Warning {
            file: shown(root, &w.file),
            ..w.clone()
        })
        .collect()
}

/// Where a verb's manifest comes from: `slipway.yml`, or a Copilot workspace.
pub struct Source {
    /// How the manifest is named in messages.
    pub shown: String,
    pub manifest: slipway_core::manifest::Manifest,
    /// The directory builds are relative to.
    pub dir: PathBuf,
    /// The workspace root and its translation.
    copilot: Option<(PathBuf, slipway_core::copilot::Translation)>,
}

impl Source {
    /// `-f FILE`, or the Copilot workspace it means (its warnings printed on stderr when
    /// `warn`).
    pub fn open(file: &Path, env: &str, warn: bool) -> Result<Source> {
        let Some(root) = workspace_root(file) else {
            let (shown, manifest) = super::read_manifest(file)?;
            return Ok(Source {
                shown,
                manifest,
                dir: super::build::manifest_dir(file),
                copilot: None,
            });
        };
        let t = read(&root)?;
        if warn {
            print_warnings(&root, &t);
        }
        let shown = shown(&root, "copilot/");
        if env != DEFAULT_ENV && !t.environments.iter().any(|e| e == env) {
            bail!(
                "{shown}: the workspace has no environment {env:?} (environments: {}); add copilot/environments/{env}/manifest.yml, or leave out --env to deploy the services as their manifests write them (nothing was deployed)",
                if t.environments.is_empty() {
                    "none".to_owned()
                } else {
                    t.environments.join(", ")
                }
            );
        }
        Ok(Source {
            shown,
            manifest: t.manifest.clone(),
            dir: root.clone(),
            copilot: Some((root, t)),
        })
    }

    /// An error about the manifest, as `file:line:column: message`.
    pub fn render(&self, e: &slipway_core::manifest::ManifestError) -> String {
        match &self.copilot {
            Some((root, t)) => render(root, t, e),
            None => e.with_file(&self.shown),
        }
    }

    pub fn warnings(&self) -> Vec<slipway_core::copilot::Warning> {
        match &self.copilot {
            Some((root, t)) => warnings_json(root, t),
            None => Vec::new(),
        }
    }
}
