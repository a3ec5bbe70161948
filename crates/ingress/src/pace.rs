//! The pace a request body must keep (used by the ingress' two paths and by the server's
//! API/registry listeners): the rule of Apache's `mod_reqtimeout` (`body=T,MinRate=R`).
//!
//! * No bytes for `idle` → the body is cut (an idle timeout).
//! * In total, a body may take `idle` plus one second per `min_rate` bytes received so far:
//!   a client that trickles (1 byte a second, the slow-POST attack) is cut once its credit is
//!   spent, whatever the gaps between its bytes; a large upload at any reasonable speed earns
//!   credit faster than it spends it. `min_rate` 0 leaves only the idle timeout.
//!
//! Pure arithmetic over instants: the callers own the clocks and the sockets.

use std::time::Duration;

use tokio::time::Instant;

/// The limits of one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// Longest wait for the next bytes, and the credit the body starts with.
    pub idle: Duration,
    /// Bytes a second the body must average after that credit (0: no minimum).
    pub min_rate: u32,
}

impl BodyPace {
    /// The clock of one body, started now.
    pub fn start(self) -> BodyClock {
        let now = Instant::now();
        BodyClock {
            pace: self,
            started: now,
            last: now,
            received: 0,
        }
    }
}

/// The progress of one body: when it started, when bytes last arrived, how many.
#[derive(Debug, Clone, Copy)]
pub struct BodyClock {
    pace: BodyPace,
    started: Instant,
    last: Instant,
    received: u64,
}

impl BodyClock {
    /// `n` bytes arrived now.
    pub fn received(&mut self, n: usize) {
        self.received += n as u64;
        self.last = Instant::now();
    }

    /// When the body is cut unless more bytes arrive: the earlier of the idle deadline and
    /// the end of its credit.
    pub fn deadline(&self) -> Instant {
        let idle = self.last + self.pace.idle;
        match self.credit() {
            Some(total) => idle.min(self.started + total),
            None => idle,
        }
    }

    /// The total time the bytes so far allow (`None` without a minimum rate).
    fn credit(&self) -> Option<Duration> {
        if self.pace.min_rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / f64::from(self.pace.min_rate));
        Some(self.pace.idle.saturating_add(earned))
    }

    /// Why the body was cut, for logs and error messages.
    pub fn reason(&self) -> String {
        let now = Instant::now();
        if now >= self.last + self.pace.idle {
            format!("no bytes of the request body for {:?}", self.pace.idle)
        } else {
            format!(
                "the request body arrived slower than {} bytes/s ({} bytes in {:.1}s)",
                self.pace.min_rate,
                self.received,
                now.duration_since(self.started).as_secs_f64()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(idle_s: u64, rate: u32) -> BodyClock {
        BodyPace {
            idle: Duration::from_secs(idle_s),
            min_rate: rate,
        }
        .start()
    }

    #[test]
    fn no_bytes_means_the_idle_deadline() {
        let c = clock(10, 500);
        assert_eq!(c.deadline(), c.started + Duration::from_secs(10));
    }

    #[test]
    fn a_trickle_spends_its_credit() {
        // One byte a second: the idle deadline keeps moving, the credit barely grows.
        let mut c = clock(10, 500);
        for s in 1..=9 {
            c.last = c.started + Duration::from_secs(s);
            c.received += 1;
        }
        // 9 bytes earn 18 ms: cut at 10.018 s, not at 19 s (the idle deadline).
        assert_eq!(c.deadline(), c.started + Duration::from_millis(10_018));
    }

    #[test]
    fn a_steady_upload_earns_more_than_it_spends() {
        // 1 MB/s for 100 s: 100 MB earn 200 000 s; only the idle deadline applies.
        let mut c = clock(10, 500);
        c.received = 100_000_000;
        c.last = c.started + Duration::from_secs(100);
        assert_eq!(c.deadline(), c.last + Duration::from_secs(10));
    }

    #[test]
    fn rate_zero_is_only_the_idle_timeout() {
        let mut c = clock(10, 0);
        c.received = 1;
        c.last = c.started + Duration::from_secs(1000);
        assert_eq!(c.deadline(), c.last + Duration::from_secs(10));
    }
}
