//! Per-identity request rate limits of the API faces (native and AWS): a token bucket per
//! identity, refilled at `rate` requests a second up to a burst of twice that. A request
//! beyond it gets `429` with `Retry-After`. The distribution API (`/v2/`) is not counted:
//! one image pull is dozens of requests and is bounded by the listener's connection cap.
//!
//! A token bucket is a few lines; a crate for it (governor) would bring a dozen more
//! dependencies for no more than this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The buckets of every identity that called recently.
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests a second per identity; 0 = no limit.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets idle for this long are full again and forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// `rate` requests a second per identity (burst `2 × rate`); 0 turns limits off.
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(rate) * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `identity`'s budget, or says how long to wait.
    pub fn take(&self, identity: &str) -> Result<(), Duration> {
        self.take_at(identity, Instant::now())
    }

    fn take_at(&self, identity: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 10_000 {
            b.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
        }
        let (tokens, at) = b.entry(identity.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_identity() {
        let r = RateLimiter::new(5);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(r.take_at("a", t0).is_ok());
        }
        let wait = r.take_at("a", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        // Another identity has its own bucket.
        assert!(r.take_at("b", t0).is_ok());
        // A fifth of a second later one more request fits.
        let t1 = t0 + Duration::from_millis(200);
        assert!(r.take_at("a", t1).is_ok());
        assert!(r.take_at("a", t1).is_err());
        // Off.
        let off = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(off.take_at("a", t0).is_ok());
        }
    }
}
