//! The job's scope: the image ids it built, pulled or tagged, and the response body that
//! watches a build or pull stream to learn them.
//!
//! The rule: a job may tag, push or delete a name only when the engine resolves that name
//! (image inspect) to an image id in its scope. An id enters the scope when
//! - a build through this gate reports it (`{"aux":{"ID":"sha256:.."}}` in the stream), or
//! - a pull through this gate ends without an error in its stream (the pulled reference is
//!   resolved then, before the client sees the end of the stream).
//!
//! Tags made by the job point at ids already in scope, so they need no bookkeeping. The
//! scope lives in memory, per gate, and dies with it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The image ids of one job.
#[derive(Debug, Default, Clone)]
pub struct Scope(Arc<Mutex<BTreeSet<String>>>);

impl Scope {
    pub fn insert(&self, id: &str) -> bool {
        self.0.lock().unwrap().insert(id.to_string())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap().contains(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// What to learn from a streamed response.
pub(crate) enum Watch {
    /// A build by this job: ids from `aux.ID` lines.
    Build { job: String },
    /// A pull: at the end, unless an error line was seen, run the future (which resolves
    /// the reference and adds its id).
    Pull(Option<Pin<Box<dyn Future<Output = ()> + Send>>>),
}

/// Lines longer than this are not scanned (progress lines are short).
const MAX_LINE: usize = 1 << 20;

/// A response body passed through unchanged while its JSON lines are watched.
pub(crate) struct Tap {
    inner: Incoming,
    scope: Scope,
    watch: Watch,
    line: Vec<u8>,
    overlong: bool,
    failed: bool,
    finishing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    done: bool,
}

impl Tap {
    pub(crate) fn new(inner: Incoming, scope: Scope, watch: Watch) -> Self {
        Tap {
            inner,
            scope,
            watch,
            line: Vec::new(),
            overlong: false,
            failed: false,
            finishing: None,
            done: false,
        }
    }

    fn scan(&mut self, data: &[u8]) {
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            if self.overlong {
                if chunk.ends_with(b"\n") {
                    self.overlong = false;
                }
                continue;
            }
            self.line.extend_from_slice(chunk);
            if self.line.len() > MAX_LINE {
                self.line.clear();
                self.overlong = !chunk.ends_with(b"\n");
                continue;
            }
            if self.line.ends_with(b"\n") {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        if v.get("error").is_some() || v.get("errorDetail").is_some() {
            self.failed = true;
        }
        if let Watch::Build { job } = &self.watch
            && let Some(id) = v.pointer("/aux/ID").and_then(|i| i.as_str())
            && id.starts_with("sha256:")
            && self.scope.insert(id)
        {
            tracing::info!(%job, image = id, "built by the job: in its scope");
        }
    }
}

impl Body for Tap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(fut) = this.finishing.as_mut() {
                ready!(fut.as_mut().poll(cx));
                this.finishing = None;
                this.done = true;
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.scan(data);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if !this.line.is_empty() {
                        let line = std::mem::take(&mut this.line);
                        this.line_done(&line);
                    }
                    this.finishing = match &mut this.watch {
                        Watch::Pull(fut) if !this.failed => fut.take(),
                        _ => None,
                    };
                    if this.finishing.is_none() {
                        this.done = true;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
