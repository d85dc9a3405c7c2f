//! Wall time for certificate checks (DESIGN.md "Security", "Clocks"), on devices that may have no
//! real-time clock at boot: routers without an RTC and MCUs.
//!
//! The wall clock is the latest of three sources, each advanced by the monotonic clock since it came in:
//! - the build time of the firmware (a floor: the device cannot be older than its software),
//! - SNTP answers (an Upstream query, [`crate::wire::ntp`]),
//! - the signed wall times that peers put in their Noise handshake payloads.
//!
//! Certificates are checked with a [`Reading`]: `not_before` is skipped while the clock is not synced
//! (a device that booted with only its build time would otherwise refuse every certificate issued
//! after the build), and `not_after` is always checked against the latest known time, the build
//! time at least.
//!
//! # Peers' times: the rule (deviation from P3SPEC, which took any one peer's time)
//! A peer's time is given to [`WallClock::on_peer_time`] only after the handshake that carried it
//! authenticated (the caller's job). Even so, one member may lie (a compromised key, a broken clock). A
//! time far in the future is the dangerous lie: taken as "the latest known time", it makes every
//! certificate look expired, and since peers' times are only accepted from handshakes that passed
//! the certificate check, the node could then never hear an honest peer again. So:
//! - a peer time counts only when a second, distinct peer (by node id) agrees with it within
//!   [`PEER_AGREEMENT`] (10 minutes): the peer estimate is the earlier time of the latest agreeing
//!   pair. One lying peer therefore moves the clock by at most [`PEER_AGREEMENT`]; it takes two
//!   colluding member keys to move it further. A node that has heard a single peer stays on its
//!   build time (and SNTP), which only makes it more lenient (an expired certificate may pass), never
//!   locks it out;
//! - once SNTP has answered, agreeing peers may still move the clock forward (the monotonic clock
//!   drifts) but by at most [`PEER_AGREEMENT`] past the SNTP estimate: SNTP is the authority;
//! - `synced()` is true once SNTP answered or two peers agreed. Times before the build time (a peer
//!   or an SNTP server with a reset clock) are ignored by the "latest of" rule.
//!
//! The table of peers' times holds `PEERS` samples (default 8, one per node id: a newer sample from the
//! same peer replaces its older one); when full, the oldest sample is dropped.

use heapless::Vec;
use smoltcp::time::Instant;

use crate::id::NodeId;

/// Seconds since 1970-01-01 UTC (Unix time, leap seconds not counted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// This time plus `secs` seconds (saturating).
    pub const fn add_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }
}

impl core::fmt::Display for UnixTime {
    /// As an ISO 8601 UTC date and time, e.g. `2026-11-23T10:00:00Z`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let secs = self.0;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// What a certificate check needs to know of the time: the latest known time and whether the clock is
/// synced (see the module doc for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The latest known wall time (the build time at least).
    pub latest: UnixTime,
    /// True once SNTP answered or two peers agreed: `not_before` is checked only then.
    pub synced: bool,
}

impl Reading {
    /// A reading from a clock known to be right (tests, hosts with a synced OS clock, hostctl).
    pub const fn synced(now: UnixTime) -> Self {
        Self { latest: now, synced: true }
    }

    /// A reading from a clock that only knows a floor (e.g. its build time).
    pub const fn unsynced(floor: UnixTime) -> Self {
        Self { latest: floor, synced: false }
    }
}

/// How far apart two peers' times may be and still agree, and how far agreeing peers may move the clock
/// past the SNTP estimate: 10 minutes.
pub const PEER_AGREEMENT: u64 = 600;

/// One peer's time and when it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    peer: NodeId,
    time: UnixTime,
    at: Instant,
}

/// A time that came in at a monotonic instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    time: UnixTime,
    at: Instant,
}

impl Anchor {
    /// The time advanced by the monotonic clock since it came in (never moved backwards).
    fn at(&self, now: Instant) -> UnixTime {
        self.time.add_secs(elapsed_secs(self.at, now))
    }
}

fn elapsed_secs(from: Instant, to: Instant) -> u64 {
    let micros = to.total_micros().saturating_sub(from.total_micros());
    u64::try_from(micros).unwrap_or(0) / 1_000_000
}

/// The wall clock of a node (see the module doc). `PEERS` = how many peers' times are kept.
#[derive(Debug, Clone)]
pub struct WallClock<const PEERS: usize = 8> {
    build: Anchor,
    sntp: Option<Anchor>,
    peers: Vec<Sample, PEERS>,
}

/// The wall clock with its default table of 8 peers' times.
pub type DefaultWallClock = WallClock<8>;

impl<const PEERS: usize> WallClock<PEERS> {
    /// A clock that knows only the firmware's build time, given at monotonic time `now` (boot).
    pub const fn new(build_time: UnixTime, now: Instant) -> Self {
        Self { build: Anchor { time: build_time, at: now }, sntp: None, peers: Vec::new() }
    }

    /// An SNTP answer came in (a checked SNTP reply, `crate::wire::ntp`). The newest
    /// answer replaces the previous one, even if earlier: SNTP is the authority.
    pub fn on_sntp(&mut self, now: Instant, time: UnixTime) {
        self.sntp = Some(Anchor { time, at: now });
    }

    /// The signed wall time of `peer`, from a handshake that authenticated it (the caller's job).
    pub fn on_peer_time(&mut self, now: Instant, peer: &NodeId, time: UnixTime) {
        let sample = Sample { peer: *peer, time, at: now };
        if let Some(s) = self.peers.iter_mut().find(|s| s.peer == *peer) {
            *s = sample;
            return;
        }
        if let Err(sample) = self.peers.push(sample) {
            // Full: drop the oldest sample.
            if let Some(oldest) = self.peers.iter_mut().min_by_key(|s| s.at) {
                *oldest = sample;
            }
        }
    }

    /// The earlier time of the latest pair of peers that agree within [`PEER_AGREEMENT`], at `now`.
    fn peer_estimate(&self, now: Instant) -> Option<UnixTime> {
        let mut times = [0u64; PEERS];
        for (t, s) in times.iter_mut().zip(self.peers.iter()) {
            *t = Anchor { time: s.time, at: s.at }.at(now).0;
        }
        let times = &mut times[..self.peers.len()];
        times.sort_unstable();
        times.windows(2).rev().find(|w| w[1] - w[0] <= PEER_AGREEMENT).map(|w| UnixTime(w[0]))
    }

    /// True once an SNTP answer came in or two peers agreed on the time.
    pub fn synced(&self) -> bool {
        // Peers' estimates all advance at the same rate, so whether two agree does not depend on `now`,
        // as long as it is not before any sample came in.
        let newest = self.peers.iter().map(|s| s.at).max().unwrap_or(Instant::ZERO);
        self.sntp.is_some() || self.peer_estimate(newest).is_some()
    }

    /// The latest known wall time at `now` (the build time at least; see the module doc).
    pub fn latest(&self, now: Instant) -> UnixTime {
        let mut t = self.build.at(now);
        let sntp = self.sntp.map(|a| a.at(now));
        if let Some(s) = sntp {
            t = t.max(s);
        }
        if let Some(p) = self.peer_estimate(now) {
            let p = match sntp {
                Some(s) => p.min(s.add_secs(PEER_AGREEMENT)),
                None => p,
            };
            t = t.max(p);
        }
        t
    }

    /// The wall time at `now` if the clock is synced, else `None` (what a node puts in its handshake).
    pub fn now(&self, now: Instant) -> Option<UnixTime> {
        self.synced().then(|| self.latest(now))
    }

    /// The reading certificate checks take.
    pub fn reading(&self, now: Instant) -> Reading {
        Reading { latest: self.latest(now), synced: self.synced() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: UnixTime = UnixTime(1_750_000_000);

    fn peer(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn at(secs: i64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn build_time_is_the_floor_and_advances_with_the_monotonic_clock() {
        let c = DefaultWallClock::new(BUILD, at(100));
        assert!(!c.synced());
        assert_eq!(c.now(at(100)), None);
        assert_eq!(c.latest(at(100)), BUILD);
        assert_eq!(c.latest(at(160)), BUILD.add_secs(60));
        assert_eq!(c.reading(at(160)), Reading::unsynced(BUILD.add_secs(60)));
        // A monotonic time before the anchor (caller bug) never moves the clock backwards.
        assert_eq!(c.latest(at(0)), BUILD);
    }

    #[test]
    fn sntp_syncs_and_an_earlier_sntp_time_does_not_go_below_the_build_time() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        c.on_sntp(at(10), BUILD.add_secs(86_400));
        assert!(c.synced());
        assert_eq!(c.now(at(20)), Some(BUILD.add_secs(86_410)));
        // A reset server says 1970: the build time stays the floor.
        c.on_sntp(at(30), UnixTime(5));
        assert_eq!(c.latest(at(30)), BUILD.add_secs(30));
    }

    #[test]
    fn a_single_peer_does_not_move_the_clock() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        c.on_peer_time(at(1), &peer(1), UnixTime(4_000_000_000));
        assert!(!c.synced());
        assert_eq!(c.latest(at(1)), BUILD.add_secs(1));
        // The same peer again is still one peer.
        c.on_peer_time(at(2), &peer(1), UnixTime(4_000_000_001));
        assert!(!c.synced());
    }

    #[test]
    fn two_agreeing_peers_sync_and_the_earlier_time_counts() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        let t = BUILD.add_secs(400 * 86_400);
        c.on_peer_time(at(10), &peer(1), t);
        c.on_peer_time(at(10), &peer(2), t.add_secs(PEER_AGREEMENT));
        assert!(c.synced());
        assert_eq!(c.latest(at(20)), t.add_secs(10));
        assert_eq!(c.now(at(20)), Some(t.add_secs(10)));
    }

    #[test]
    fn peers_heard_at_different_times_are_compared_at_the_same_instant() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        let t = BUILD.add_secs(50 * 86_400);
        c.on_peer_time(at(0), &peer(1), t);
        c.on_peer_time(at(1000), &peer(2), t.add_secs(1000));
        assert!(c.synced());
        assert_eq!(c.latest(at(1000)), t.add_secs(1000));
        // The same times heard at the same instant are 1000 s apart: no agreement.
        let mut c = DefaultWallClock::new(BUILD, at(0));
        c.on_peer_time(at(1000), &peer(1), t);
        c.on_peer_time(at(1000), &peer(2), t.add_secs(1000));
        assert!(!c.synced());
    }

    #[test]
    fn a_lying_peer_in_the_future_is_outvoted() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        let t = BUILD.add_secs(100 * 86_400);
        c.on_peer_time(at(0), &peer(1), t);
        c.on_peer_time(at(0), &peer(9), UnixTime(u64::MAX - 5)); // the liar
        c.on_peer_time(at(5), &peer(2), t.add_secs(5));
        assert_eq!(c.latest(at(5)), t.add_secs(5));
        // Peers just outside the agreement window do not agree.
        let mut c = DefaultWallClock::new(BUILD, at(0));
        c.on_peer_time(at(0), &peer(1), t);
        c.on_peer_time(at(0), &peer(2), t.add_secs(PEER_AGREEMENT + 1));
        assert!(!c.synced());
        assert_eq!(c.latest(at(0)), BUILD);
    }

    #[test]
    fn with_sntp_agreeing_peers_move_the_clock_by_at_most_the_bound() {
        let mut c = DefaultWallClock::new(BUILD, at(0));
        let s = BUILD.add_secs(86_400);
        c.on_sntp(at(0), s);
        c.on_peer_time(at(0), &peer(1), s.add_secs(10 * 86_400));
        c.on_peer_time(at(0), &peer(2), s.add_secs(10 * 86_400));
        assert_eq!(c.latest(at(0)), s.add_secs(PEER_AGREEMENT));
        // Peers slightly ahead of SNTP (drift) count as they are.
        let mut c = DefaultWallClock::new(BUILD, at(0));
        c.on_sntp(at(0), s);
        c.on_peer_time(at(0), &peer(1), s.add_secs(30));
        c.on_peer_time(at(0), &peer(2), s.add_secs(40));
        assert_eq!(c.latest(at(0)), s.add_secs(30));
    }

    #[test]
    fn a_full_peer_table_drops_the_oldest_sample() {
        let mut c = WallClock::<2>::new(BUILD, at(0));
        let t = BUILD.add_secs(1000);
        c.on_peer_time(at(1), &peer(1), t);
        c.on_peer_time(at(2), &peer(2), UnixTime(9_000_000_000));
        assert!(!c.synced());
        // peer 3 replaces peer 1 (the oldest): 2 and 3 agree.
        c.on_peer_time(at(3), &peer(3), UnixTime(9_000_000_000));
        assert!(c.synced());
        assert_eq!(c.latest(at(3)), UnixTime(9_000_000_000));
    }

    #[test]
    fn unix_time_displays_as_utc() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(UnixTime(1_795_000_000).to_string(), "2026-11-18T11:06:40Z");
    }
}
