//! Requests per second per caller: a token bucket for each token name, and for each remote
//! address when the request carries no valid token (or the API needs none), so a leaked or
//! runaway token, or a client guessing tokens, cannot monopolise the daemon.
//!
//! Invariant: a bucket absent from the map is a full one. A bucket that has refilled to its
//! burst is therefore dropped without changing any answer, which bounds memory by the keys
//! active within one refill time (burst / rate seconds).

use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Whom a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    Token(String),
    Address(Option<IpAddr>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns the limit off.
    pub per_second: f64,
    /// Requests allowed at once after an idle spell.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Below this many keys the map is never swept.
const SWEEP_FLOOR: usize = 1024;

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
    refused: AtomicU64,
}

struct Buckets {
    map: HashMap<RateKey, Bucket>,
    /// The map is swept of full buckets when it grows past this (amortised: twice the size
    /// left by the last sweep).
    sweep_at: usize,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes one request from `key`'s bucket at time `now`; Err(how long until the next one
    /// would be admitted) when it is empty.
    pub fn admit(&self, key: RateKey, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock();
        if b.map.len() >= b.sweep_at {
            b.map.retain(|_, k| {
                k.tokens + now.saturating_duration_since(k.at).as_secs_f64() * per_second < burst
            });
            b.sweep_at = (b.map.len() * 2).max(SWEEP_FLOOR);
        }
        let k = b.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(k.at).as_secs_f64();
        k.tokens = (k.tokens + elapsed * per_second).min(burst);
        k.at = k.at.max(now);
        if k.tokens >= 1.0 {
            k.tokens -= 1.0;
            Ok(())
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs_f64((1.0 - k.tokens) / per_second))
        }
    }

    fn tracked(&self) -> usize {
        self.buckets.lock().map.len()
    }

    /// The refusal counter and the number of buckets held, in the Prometheus text format.
    pub fn render_metrics(&self, o: &mut String) {
        let refused = self.refused.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "# HELP arca_api_rate_limited_total API requests refused with 429 by the \
             per-token rate limit.\n# TYPE arca_api_rate_limited_total counter\n\
             arca_api_rate_limited_total {refused}"
        );
        let _ = writeln!(
            o,
            "# HELP arca_api_rate_buckets Callers with a partly spent rate-limit bucket.\n\
             # TYPE arca_api_rate_buckets gauge\narca_api_rate_buckets {}",
            self.tracked()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(RateLimit { per_second, burst })
    }

    fn token(name: &str) -> RateKey {
        RateKey::Token(name.into())
    }

    /// `n` requests from token `name` at `at`, each admitted.
    fn spend(r: &RateLimiter, name: &str, at: Instant, n: usize) {
        for i in 0..n {
            assert_eq!(r.admit(token(name), at), Ok(()), "request {i}");
        }
    }

    #[test]
    fn a_burst_then_the_sustained_rate_per_key() {
        let r = limiter(2.0, 3.0);
        let t0 = Instant::now();
        spend(&r, "a", t0, 3);
        let wait = r.admit(token("a"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another token, and an address, have their own buckets.
        r.admit(token("b"), t0).unwrap();
        r.admit(RateKey::Address(None), t0).unwrap();
        // Half a second refills one request, not two.
        let t1 = t0 + Duration::from_millis(500);
        r.admit(token("a"), t1).unwrap();
        assert!(r.admit(token("a"), t1).is_err());
        // A long idle spell refills to the burst, no further.
        let t2 = t1 + Duration::from_secs(3600);
        spend(&r, "a", t2, 3);
        assert!(r.admit(token("a"), t2).is_err());
        let mut m = String::new();
        r.render_metrics(&mut m);
        assert!(m.contains("arca_api_rate_limited_total 3\n"), "{m}");
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let r = limiter(1.0, 1.0);
        let t0 = Instant::now() + Duration::from_secs(10);
        r.admit(token("a"), t0).unwrap();
        assert!(r.admit(token("a"), t0 - Duration::from_secs(5)).is_err());
        assert!(
            r.admit(token("a"), t0 + Duration::from_millis(999))
                .is_err()
        );
        r.admit(token("a"), t0 + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let r = limiter(0.0, 0.0);
        spend(&r, "a", Instant::now(), 10_000);
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn idle_keys_are_dropped_so_memory_stays_bounded() {
        let r = limiter(10.0, 5.0);
        let t0 = Instant::now();
        // Many one-off callers (addresses), each refilled half a second later.
        for i in 0..20_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            r.admit(RateKey::Address(Some(ip)), at).unwrap();
        }
        // Only those within one refill time (0.1 s) of the last could not be dropped.
        assert!(r.tracked() <= 2 * SWEEP_FLOOR, "{}", r.tracked());
        // A caller that is still limited keeps its bucket through a sweep.
        let busy = t0 + Duration::from_secs(100);
        spend(&r, "busy", busy, 5);
        for i in 0..(3 * SWEEP_FLOOR as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(1_000_000 + i));
            r.admit(RateKey::Address(Some(ip)), busy).unwrap();
        }
        assert!(r.admit(token("busy"), busy).is_err());
    }
}
