//! Per-source-IP token buckets for handshake initiations, checked before any DH or signature work
//! (WireGuard's ratelimiter: 20 per second, bursts of 5), and a global bucket whose emptiness means
//! "under load" (cookies required).
//!
//! Table policy when full (`N` sources, default 256): buckets that have refilled completely are as good as
//! absent and are reused first; if every bucket is still draining, the new source is refused (counted as
//! rate-limited). Under load only sources that proved their address with a valid mac2 reach this table, so
//! spoofed addresses cannot fill it then; an attacker owning many real addresses can delay new sources by
//! at most [`BURST`] / [`RATE_PER_SEC`] seconds per bucket it keeps busy.

use core::net::IpAddr;
use heapless::Vec;
use smoltcp::time::Instant;

/// Initiations per second allowed from one IP address.
pub const RATE_PER_SEC: u64 = 20;
/// Initiations one IP address may send in a burst.
pub const BURST: u64 = 5;
/// Default number of source addresses tracked.
pub const DEFAULT_SOURCES: usize = 256;

/// Token unit: one initiation costs `COST` micro-tokens; a bucket gains `RATE_PER_SEC` tokens a second.
const COST: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    ip: IpAddr,
    /// Micro-tokens at `at`.
    tokens: u64,
    at: Instant,
}

fn refill(tokens: u64, at: Instant, now: Instant, rate: u64, burst: u64) -> u64 {
    let dt = if now > at { (now - at).total_micros() } else { 0 };
    tokens.saturating_add(dt.saturating_mul(rate)).min(burst * COST)
}

/// The per-source table.
#[derive(Debug, Clone)]
pub struct RateLimiter<const N: usize = DEFAULT_SOURCES> {
    buckets: Vec<Bucket, N>,
}

impl<const N: usize> Default for RateLimiter<N> {
    fn default() -> Self {
        Self { buckets: Vec::new() }
    }
}

impl<const N: usize> RateLimiter<N> {
    /// Take one token for `ip`; `false` when its bucket is empty or no bucket is free.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if let Some(b) = self.buckets.iter_mut().find(|b| b.ip == ip) {
            let t = refill(b.tokens, b.at, now, RATE_PER_SEC, BURST);
            b.at = now;
            if t < COST {
                b.tokens = t;
                return false;
            }
            b.tokens = t - COST;
            return true;
        }
        let fresh = Bucket { ip, tokens: BURST * COST - COST, at: now };
        if self.buckets.push(fresh).is_ok() {
            return true;
        }
        // Full: reuse a bucket that has refilled completely (its source is quiet).
        match self
            .buckets
            .iter_mut()
            .find(|b| refill(b.tokens, b.at, now, RATE_PER_SEC, BURST) == BURST * COST)
        {
            Some(b) => {
                *b = fresh;
                true
            }
            None => false,
        }
    }

    /// Number of sources tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The global handshake bucket: `rate` initiations a second with bursts of `rate`; once empty, the
/// responder is under load and requires cookies.
#[derive(Debug, Clone, Copy)]
pub struct LoadMeter {
    rate: u64,
    tokens: u64,
    at: Instant,
}

impl LoadMeter {
    /// A meter allowing `rate` DH-bearing initiations a second before declaring load.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = u64::from(rate.max(1));
        Self { rate, tokens: rate * COST, at: now }
    }

    /// Whether the responder is under load (the bucket holds less than one token).
    pub fn under_load(&self, now: Instant) -> bool {
        refill(self.tokens, self.at, now, self.rate, self.rate) < COST
    }

    /// Record one initiation that reached DH.
    pub fn record(&mut self, now: Instant) {
        self.tokens = refill(self.tokens, self.at, now, self.rate, self.rate).saturating_sub(COST);
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn bursts_then_rate_then_table_full() {
        let mut l = RateLimiter::<2>::default();
        let t = Instant::from_secs(1);
        for _ in 0..BURST {
            assert!(l.allow(t, ip(1)));
        }
        assert!(!l.allow(t, ip(1)), "burst spent");
        assert!(l.allow(t + smoltcp::time::Duration::from_millis(50), ip(1)), "one token in 1/20 s");
        assert!(l.allow(t, ip(2)));
        assert!(!l.allow(t, ip(3)), "table full of busy buckets");
        assert!(l.allow(t + smoltcp::time::Duration::from_secs(1), ip(3)), "a refilled bucket is reused");
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn load_meter_trips_and_recovers() {
        let t = Instant::from_secs(1);
        let mut m = LoadMeter::new(3, t);
        for _ in 0..3 {
            assert!(!m.under_load(t));
            m.record(t);
        }
        assert!(m.under_load(t));
        assert!(!m.under_load(t + smoltcp::time::Duration::from_millis(334)));
    }
}
