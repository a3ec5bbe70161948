//! The runner's text protocols, as pure functions: the `GITHUB_OUTPUT` / `GITHUB_ENV` /
//! `GITHUB_PATH` file formats and the workflow commands a step prints (`::add-mask::`,
//! `::set-output`, ...). `GITHUB_STEP_SUMMARY` is Markdown the runner stores as it is.

use std::fmt;

/// A line of a `GITHUB_OUTPUT`/`GITHUB_ENV` file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FileCommandError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Reads a `GITHUB_OUTPUT` or `GITHUB_ENV` file: `NAME=value` lines and
/// `NAME<<DELIMITER` ... `DELIMITER` blocks (multi-line values, joined with `\n`). Blank
/// lines are skipped; a later value of a name replaces the earlier one at the caller's
/// choice (pairs are returned in order).
pub fn parse_file_commands(text: &str) -> Result<Vec<(String, String)>, FileCommandError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let number = i + 1;
        i += 1;
        if line.trim().is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        let err = |message: String| FileCommandError {
            line: number,
            message,
        };
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(err("a name is missing before `=`".into()));
                }
                out.push((name.to_owned(), line[e + 1..].to_owned()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() {
                    return Err(err("a name is missing before `<<`".into()));
                }
                if delimiter.is_empty() {
                    return Err(err(format!("`{name}<<` needs a delimiter after `<<`")));
                }
                let mut value = Vec::new();
                loop {
                    match lines.get(i) {
                        None => {
                            return Err(err(format!(
                                "`{name}<<{delimiter}`: the delimiter `{delimiter}` never comes"
                            )));
                        }
                        Some(l) if *l == delimiter => {
                            i += 1;
                            break;
                        }
                        Some(l) => {
                            value.push(*l);
                            i += 1;
                        }
                    }
                }
                out.push((name.to_owned(), value.join("\n")));
            }
            _ => {
                return Err(err(format!(
                    "expected `NAME=value` or `NAME<<DELIMITER`, found `{}`",
                    line.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(out)
}

/// Reads a `GITHUB_PATH` file: one directory per line, to put in front of `PATH` for the
/// steps after (the last line first, as GitHub prepends each in turn).
pub fn parse_path_file(text: &str) -> Vec<String> {
    let mut dirs: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    dirs.reverse();
    dirs
}

/// The level of an annotation command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// A workflow command read from a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `::add-mask::VALUE`: register VALUE with the [`crate::Masker`] (before printing).
    AddMask(String),
    /// `::set-output name=NAME::VALUE` (deprecated on GitHub but still honoured, as seed 004
    /// uses it): a step output.
    SetOutput { name: String, value: String },
    /// `::set-env name=NAME::VALUE`: disabled on GitHub since 2020 and here; the runner
    /// fails the step with [`SET_ENV_DISABLED`].
    SetEnvDisabled { name: String },
    /// `::error`, `::warning`, `::notice` with their optional place.
    Annotation {
        level: Level,
        message: String,
        title: Option<String>,
        file: Option<String>,
        line: Option<u64>,
        end_line: Option<u64>,
        col: Option<u64>,
        end_column: Option<u64>,
    },
    /// `::debug::MESSAGE`
    Debug(String),
    /// `::group::TITLE`
    Group(String),
    /// `::endgroup::`
    EndGroup,
    /// `::stop-commands::TOKEN`: no command is processed until `::TOKEN::`.
    StopCommands(String),
    /// `::TOKEN::` after `::stop-commands::TOKEN`: commands are processed again.
    ResumeCommands,
    /// Any other `::name::`: printed as it is.
    Unknown { name: String, message: String },
}

/// The message for a `::set-env` command.
pub const SET_ENV_DISABLED: &str =
    "the `set-env` command is disabled: write `NAME=value` to the file at $GITHUB_ENV instead";

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        })
    }
}

fn unescape(s: &str, property: bool) -> String {
    let mut out = s.replace("%0D", "\r").replace("%0A", "\n");
    if property {
        out = out.replace("%3A", ":").replace("%2C", ",");
    }
    out.replace("%25", "%")
}

/// A command's parts: name, properties (unescaped), message (unescaped).
type Parts = (String, Vec<(String, String)>, String);

/// Splits `::name k=v,k=v::message` into its parts.
fn split(line: &str) -> Option<Parts> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let (head, message) = (&rest[..end], &rest[end + 2..]);
    let (name, props) = match head.split_once(' ') {
        Some((n, p)) => (n, p),
        None => (head, ""),
    };
    if name.is_empty() {
        return None;
    }
    let props = props
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), unescape(v, true)))
        .collect();
    Some((name.to_owned(), props, unescape(message, false)))
}

/// Reads workflow commands from a step's output, line by line, keeping the
/// `stop-commands` state.
#[derive(Debug, Clone, Default)]
pub struct CommandReader {
    stopped: Option<String>,
}

impl CommandReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The command on `line`, if any (`None` for ordinary output and for everything
    /// between `::stop-commands::TOKEN` and `::TOKEN::`).
    pub fn read(&mut self, line: &str) -> Option<Command> {
        let (name, props, message) = split(line.trim_end_matches(['\r', '\n']))?;
        if let Some(token) = &self.stopped {
            if name == *token && props.is_empty() {
                self.stopped = None;
                return Some(Command::ResumeCommands);
            }
            return None;
        }
        let prop = |k: &str| props.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
        let num = |k: &str| prop(k).and_then(|v| v.trim().parse().ok());
        let level = match name.as_str() {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "notice" => Some(Level::Notice),
            _ => None,
        };
        if let Some(level) = level {
            return Some(Command::Annotation {
                level,
                message,
                title: prop("title"),
                file: prop("file"),
                line: num("line"),
                end_line: num("endLine"),
                col: num("col"),
                end_column: num("endColumn"),
            });
        }
        Some(match name.as_str() {
            "add-mask" => Command::AddMask(message),
            "set-output" => Command::SetOutput {
                name: prop("name").unwrap_or_default(),
                value: message,
            },
            "set-env" => Command::SetEnvDisabled {
                name: prop("name").unwrap_or_default(),
            },
            "debug" => Command::Debug(message),
            "group" => Command::Group(message),
            "endgroup" => Command::EndGroup,
            "stop-commands" if !message.is_empty() => {
                self.stopped = Some(message.clone());
                Command::StopCommands(message)
            }
            _ => Command::Unknown { name, message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_env_files() {
        let text = "a=1\r\nempty=\n\nb=x=y\nm<<EOF\nline 1\n\nline 3\nEOF\nc<<x=y\nv\nx=y\n";
        let got = parse_file_commands(text).unwrap();
        let want = [
            ("a", "1"),
            ("empty", ""),
            ("b", "x=y"),
            ("m", "line 1\n\nline 3"),
            ("c<<x", "y"),
            ("v", ""),
        ];
        // `c<<x=y`: `=` comes after `<<`, so it is a heredoc named `c` with delimiter `x=y`.
        assert_eq!(
            got[..4]
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            want[..4]
        );
        assert_eq!(got[4], ("c".to_owned(), "v".to_owned()));
        let e = parse_file_commands("x<<EOF\nno end\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("never comes"), "{e}");
        assert!(
            parse_file_commands("just text\n")
                .unwrap_err()
                .message
                .contains("expected")
        );
        assert!(parse_file_commands("=v\n").is_err());
    }

    #[test]
    fn path_file() {
        assert_eq!(
            parse_path_file("/a/bin\n\n/b/bin\r\n"),
            ["/b/bin", "/a/bin"]
        );
    }

    #[test]
    fn workflow_commands() {
        let mut r = CommandReader::new();
        assert_eq!(
            r.read("::add-mask::hunter2"),
            Some(Command::AddMask("hunter2".into()))
        );
        assert_eq!(
            r.read("::set-output name=image::reg/app:abc"),
            Some(Command::SetOutput {
                name: "image".into(),
                value: "reg/app:abc".into()
            })
        );
        assert_eq!(
            r.read("::set-env name=X::1"),
            Some(Command::SetEnvDisabled { name: "X".into() })
        );
        assert_eq!(
            r.read("::error file=app.js,line=10,col=15,title=Bad%3A thing::Something%0Afailed %25"),
            Some(Command::Annotation {
                level: Level::Error,
                message: "Something\nfailed %".into(),
                title: Some("Bad: thing".into()),
                file: Some("app.js".into()),
                line: Some(10),
                end_line: None,
                col: Some(15),
                end_column: None,
            })
        );
        assert!(matches!(
            r.read("::warning::careful"),
            Some(Command::Annotation {
                level: Level::Warning,
                ..
            })
        ));
        assert!(matches!(
            r.read("::notice::fyi"),
            Some(Command::Annotation {
                level: Level::Notice,
                ..
            })
        ));
        assert_eq!(
            r.read("::group::Build"),
            Some(Command::Group("Build".into()))
        );
        assert_eq!(r.read("::endgroup::"), Some(Command::EndGroup));
        assert_eq!(r.read("plain output"), None);
        assert_eq!(
            r.read("::stop-commands::tok"),
            Some(Command::StopCommands("tok".into()))
        );
        assert_eq!(r.read("::add-mask::not-now"), None);
        assert_eq!(r.read("::tok::"), Some(Command::ResumeCommands));
        assert_eq!(
            r.read("::add-mask::now"),
            Some(Command::AddMask("now".into()))
        );
        assert!(matches!(
            r.read("::save-state name=x::y"),
            Some(Command::Unknown { .. })
        ));
    }
}
