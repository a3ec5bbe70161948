//! The health-check path `slipway init` suggests for a service: `/healthz` when the service
//! answers it on its port on this machine (2xx or 3xx), or its build context's source
//! mentions it; otherwise none. Reads the source tree and probes one loopback port.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{MAX_DEPTH, SKIP_DIRS};

/// The health-check path `slipway init` suggests.
pub const HEALTH_PATH: &str = "/healthz";

/// `/healthz` when the service answers it on `port` of this machine (2xx or 3xx), or its
/// build context's source mentions it; else none.
pub fn default_healthcheck(dir: &Path, build: &str, port: u16) -> Option<String> {
    let answers = || -> Option<bool> {
        use std::io::Read;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let t = std::time::Duration::from_millis(300);
        let mut c = std::net::TcpStream::connect_timeout(&addr, t).ok()?;
        c.set_read_timeout(Some(t)).ok()?;
        c.set_write_timeout(Some(t)).ok()?;
        // One write: `write!` on a socket sends each formatted piece on its own.
        let req = format!(
            "GET {HEALTH_PATH} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        c.write_all(req.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        c.read_exact(&mut head).ok()?;
        let status = std::str::from_utf8(&head[9..12]).ok()?;
        Some(status.starts_with('2') || status.starts_with('3'))
    };
    let context = dir.join(
        if build.ends_with("Dockerfile") || build.contains("Dockerfile.") {
            Path::new(build).parent().unwrap_or(Path::new("."))
        } else {
            Path::new(build)
        },
    );
    (answers() == Some(true) || mentions(&context, HEALTH_PATH.as_bytes(), 0))
        .then(|| HEALTH_PATH.to_owned())
}

/// Whether a source file under `dir` (a few levels down, small files only) contains `needle`.
fn mentions(dir: &Path, needle: &[u8], depth: usize) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { return false };
        if ft.is_dir() {
            return depth < MAX_DEPTH
                && !name.starts_with('.')
                && !SKIP_DIRS.contains(&name.as_str())
                && mentions(&e.path(), needle, depth + 1);
        }
        ft.is_file()
            && e.metadata().is_ok_and(|m| m.len() <= 256 * 1024)
            && fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = d.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        d
    }

    #[test]
    fn health_check_default_is_healthz_only_when_it_answers_or_is_in_the_source() {
        let d = tree(&[
            ("api/Dockerfile", "FROM scratch\n"),
            ("api/src/main.rs", "fn main() { route(\"/healthz\"); }\n"),
            ("users/Dockerfile", "FROM scratch\n"),
            ("users/src/main.rs", "fn main() {}\n"),
        ]);
        // A port where nothing listens.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = free.local_addr().unwrap().port();
        drop(free);
        assert_eq!(
            default_healthcheck(d.path(), "./api", closed).as_deref(),
            Some(HEALTH_PATH)
        );
        assert_eq!(default_healthcheck(d.path(), "./users", closed), None);
        // Something on the port that answers /healthz with 200.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Other tests' processes may knock on a port the kernel handed out again (their
        // "is it listening yet" loops): answer the first connection that sends anything.
        let server = std::thread::spawn(move || {
            use std::io::Read;
            for _ in 0..20 {
                let (mut c, _) = l.accept().unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                    .unwrap();
                // The whole head, however it was sent.
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.ends_with(b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if req.is_empty() {
                    continue;
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                c.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").unwrap();
                return req;
            }
            String::new()
        });
        assert_eq!(
            default_healthcheck(d.path(), "./users", port).as_deref(),
            Some(HEALTH_PATH)
        );
        assert!(server.join().unwrap().starts_with("GET /healthz "));
    }
}
