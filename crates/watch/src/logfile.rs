//! A size-capped log file: when a write would take the file past its cap, the file is
//! renamed to `NAME.1` (replacing the previous one) and a fresh file is started, so neither
//! ever exceeds the cap and the newest lines are never lost.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    len: u64,
    max: u64,
}

/// A cloneable, thread-safe rotating writer (one `write` per log line).
#[derive(Debug, Clone)]
pub struct RotatingWriter {
    inner: Arc<Mutex<Inner>>,
}

impl RotatingWriter {
    /// Opens (appends to) `path`; `max_bytes` is at least 256.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<RotatingWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let mut inner = Inner {
            path: path.to_owned(),
            file,
            len,
            max: max_bytes.max(256),
        };
        if inner.len > inner.max {
            inner.rotate()?;
        }
        Ok(RotatingWriter {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// The backup file's path (`NAME.1`).
    pub fn backup_path(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(".1");
        PathBuf::from(s)
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, RotatingWriter::backup_path(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let max = g.max;
        // A single line longer than the cap is cut (keeping its newline).
        let cut;
        let data: &[u8] = if buf.len() as u64 > max {
            let mut v = buf[..(max as usize - 1)].to_vec();
            v.push(b'\n');
            cut = v;
            &cut
        } else {
            buf
        };
        if g.len + data.len() as u64 > max && g.len > 0 {
            g.rotate()?;
        }
        g.file.write_all(data)?;
        g.len += data.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows_past_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("logs/watch.log");
        let mut w = RotatingWriter::open(&p, 1000).unwrap();
        let backup = RotatingWriter::backup_path(&p);
        for i in 0..5000 {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 97));
            w.write_all(line.as_bytes()).unwrap();
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 1000, "log is {len} bytes after line {i}");
        }
        assert!(std::fs::metadata(&backup).unwrap().len() <= 1000);
        // The newest line is the last of the current file, whole.
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with(&format!(
            "{{\"n\":4999,\"pad\":\"{}\"}}\n",
            "x".repeat(4999 % 97)
        )));
        assert!(
            text.lines().all(|l| l.starts_with("{\"n\":")),
            "only whole lines"
        );
        // An oversized line is cut to the cap; reopening an oversized file rotates it.
        w.write_all(&[b'y'; 5000]).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() <= 1000);
        std::fs::write(&p, vec![b'z'; 3000]).unwrap();
        let _w2 = RotatingWriter::open(&p, 1000).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }
}
