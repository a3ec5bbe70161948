//! `git http-backend` as a CGI program: the request's method, path, query, content type
//! and encoding become its environment; the request body is streamed to its stdin; its
//! stdout (CGI headers, a blank line, the body) becomes the response.

use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// What the CGI program is asked.
#[derive(Debug, Clone)]
pub struct CgiRequest {
    pub method: String,
    /// `/APP.git/info/refs`, `/APP.git/git-receive-pack`, ...
    pub path_info: String,
    pub query: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_length: Option<String>,
    /// The `Git-Protocol` header (protocol v2 for fetches).
    pub git_protocol: Option<String>,
    pub remote_user: String,
    pub remote_addr: String,
}

/// A started `git http-backend`, its headers read.
pub struct CgiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The rest of its stdout.
    pub body: BufReader<tokio::process::ChildStdout>,
    pub child: Child,
    /// Copies the request body in; ends when the body does.
    pub feeder: tokio::task::JoinHandle<()>,
}

/// Why the CGI program could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CgiError {
    #[error("cannot run git http-backend: {0}")]
    Io(#[from] std::io::Error),
    #[error("git http-backend answered no CGI headers")]
    NoHeaders,
}

/// Starts `git http-backend` for `req` on repositories under `root`, streaming `body` to it,
/// and reads its CGI headers.
pub async fn start(root: &Path, req: &CgiRequest, body: Body) -> Result<CgiResponse, CgiError> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path_info)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_USER", &req.remote_user)
        .env("REMOTE_ADDR", &req.remote_addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (var, v) in [
        ("CONTENT_TYPE", &req.content_type),
        ("HTTP_CONTENT_ENCODING", &req.content_encoding),
        ("CONTENT_LENGTH", &req.content_length),
        ("GIT_PROTOCOL", &req.git_protocol),
    ] {
        if let Some(v) = v {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or(CgiError::NoHeaders)?;
    let feeder = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                tracing::debug!("the git client's request body ended early");
                return;
            };
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    });
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_stderr(err));
    }
    let stdout = child.stdout.take().ok_or(CgiError::NoHeaders)?;
    let mut body = BufReader::new(stdout);
    let (status, headers) = read_headers(&mut body).await?;
    Ok(CgiResponse {
        status,
        headers,
        body,
        child,
        feeder,
    })
}

async fn log_stderr(err: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(err).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        tracing::warn!(line = %l, "git http-backend");
    }
}

/// Reads CGI headers up to the blank line: `Status:` is the status (200 without it).
pub async fn read_headers<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<(StatusCode, HeaderMap), CgiError> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    let mut any = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return if any {
                Ok((status, headers))
            } else {
                Err(CgiError::NoHeaders)
            };
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((status, headers));
        }
        any = true;
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            if let Some(code) = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                status = code;
            }
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
}

/// Reads the rest of a response whole (a push's report is small).
pub async fn read_all(r: &mut BufReader<tokio::process::ChildStdout>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cgi_headers() {
        let raw: &[u8] = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\n\r\nbody";
        let mut r = BufReader::new(raw);
        let (st, h) = read_headers(&mut r).await.unwrap();
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(h["content-type"], "text/plain");
        let mut rest = String::new();
        r.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "body");
        let raw: &[u8] = b"Content-Type: application/x-git-upload-pack-advertisement\n\n0000";
        let (st, _) = read_headers(&mut BufReader::new(raw)).await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert!(read_headers(&mut BufReader::new(&b""[..])).await.is_err());
    }
}
