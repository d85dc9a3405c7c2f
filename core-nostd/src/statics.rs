//! Static addresses (DESIGN.md "static claims"): hosts configured by hand with an address of the
//! namespace's static range (disjoint from the DHCP pool).
//!
//! - A frame (IPv4 or ARP) from a LAN host whose source is in the static range, not bound by DHCP
//!   here and not in this table, starts a **check**: the router's unicast ARP request to `(ip, mac)`
//!   ([`crate::arp::ArpProxy::check_at`]). Only a reply from the same MAC to the router within
//!   [`CHECK_WAIT`] confirms it; then the node claims `ip:<addr>` in the DHT, the same record the
//!   pool's claims write (value: our endpoint, TTL [`crate::overlay::IP_TTL`], renewed by the
//!   engine), so routes and source validation work unchanged. An unanswered check is dropped and
//!   counted (`static_unconfirmed`); the next frame may check again, within the rate limit.
//! - **Bounds**: at most [`PER_MAC`] addresses per MAC (beyond: counted `static_capped`, not
//!   checked); checks per MAC come from a token bucket ([`CHECK_BURST`], one more every
//!   [`CHECK_REFILL`]; empty: `static_rate_limited`). The table holds [`STATICS`] addresses (full: a
//!   new address is not checked, `static_table_full`); the buckets [`MACS`] MACs (full: a bucket that
//!   has refilled completely is reused, since forgetting it loses nothing; if none has, the check is
//!   refused as rate-limited).
//! - A claim refused because another node owns the address, or lost later (a quorum yielded it to
//!   another owner, or the lease lapsed), is [`crate::Event::StaticConflict`]; the address stays in
//!   the table as refused for [`CONFLICT_HOLD`] (no new check meanwhile) and frames from it are not
//!   tunnelled ([`Statics::allows`]).
//! - **Release**: a held address whose host sent nothing for [`STATIC_IDLE`] (30 min, the ARP
//!   index's host lifetime) is deleted from the DHT.
//! - Without an overlay (P1) the static range is only validated with the namespace; nothing is
//!   checked or claimed, and this table is not used.

use heapless::Vec;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Address};

use crate::arp::TokenBucket;
use crate::stats::Stats;

/// Static addresses tracked (checking, claiming, held or refused).
pub const STATICS: usize = 32;
/// Static addresses one MAC may hold (or have checked or claimed) at once.
pub const PER_MAC: usize = 2;
/// MACs whose check buckets are kept.
pub const MACS: usize = 32;
/// Checks a MAC may start at once.
pub const CHECK_BURST: u32 = 3;
/// One more check per MAC every this long.
pub const CHECK_REFILL: Duration = Duration::from_secs(20);
/// How long a check waits for the host's reply.
pub const CHECK_WAIT: Duration = Duration::from_secs(1);
/// A held address whose host is silent this long is released.
pub const STATIC_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a refused or lost address is left alone before a frame may check it again.
pub const CONFLICT_HOLD: Duration = Duration::from_secs(60);

/// Where one static address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A check was sent; the reply is due by `until`.
    Checking {
        /// Deadline of the reply.
        until: Instant,
    },
    /// Confirmed; the DHT Create runs.
    Claiming,
    /// Ours in the DHT (renewed by the engine).
    Held,
    /// Another node owns it; left alone until `until`.
    Refused {
        /// End of the hold.
        until: Instant,
    },
}

/// One static address and its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The address.
    pub ip: Ipv4Address,
    /// The host's MAC.
    pub mac: EthernetAddress,
    /// Where it stands.
    pub state: State,
    /// The host's last frame from this address.
    pub last_seen: Instant,
}

/// What [`Statics::handle_timeout`] found for the overlay to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A held address whose host went silent: delete its record.
    Release(Ipv4Address),
}

/// The static-address table.
#[derive(Debug, Default)]
pub struct Statics {
    entries: Vec<Entry, STATICS>,
    buckets: Vec<(EthernetAddress, TokenBucket), MACS>,
}

impl Statics {
    /// A frame from `(ip, mac)` with `ip` in the static range, not bound by DHCP: `true` when a check
    /// must be sent now (the entry is then [`State::Checking`]).
    pub fn seen(&mut self, now: Instant, stats: &mut Stats, ip: Ipv4Address, mac: EthernetAddress) -> bool {
        if let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) {
            if e.mac == mac {
                e.last_seen = now;
            }
            return false;
        }
        if self.entries.iter().filter(|e| e.mac == mac).count() >= PER_MAC {
            stats.static_capped += 1;
            return false;
        }
        if self.entries.is_full() {
            stats.static_table_full += 1;
            return false;
        }
        if !self.take_token(now, mac) {
            stats.static_rate_limited += 1;
            return false;
        }
        let _ = self.entries.push(Entry {
            ip,
            mac,
            state: State::Checking { until: now + CHECK_WAIT },
            last_seen: now,
        });
        stats.static_checks += 1;
        true
    }

    fn take_token(&mut self, now: Instant, mac: EthernetAddress) -> bool {
        if let Some((_, b)) = self.buckets.iter_mut().find(|(m, _)| *m == mac) {
            return b.take(now);
        }
        let mut b = TokenBucket::new(now, CHECK_BURST, CHECK_REFILL);
        let ok = b.take(now);
        if self.buckets.push((mac, b)).is_err() {
            let Some(slot) = self.buckets.iter_mut().find(|(_, b)| b.is_full(now)) else { return false };
            *slot = (mac, b);
        }
        ok
    }

    /// A reply to our check from `(ip, mac)`: `true` when it confirms a running check (the entry is
    /// then [`State::Claiming`] and the caller starts the DHT Create).
    pub fn confirmed(&mut self, now: Instant, ip: Ipv4Address, mac: EthernetAddress) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip && e.mac == mac) else { return false };
        match e.state {
            State::Checking { until } if now <= until => {
                e.state = State::Claiming;
                e.last_seen = now;
                true
            }
            _ => false,
        }
    }

    /// The Create of `ip` succeeded.
    pub fn held(&mut self, ip: Ipv4Address) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip && e.state == State::Claiming) {
            e.state = State::Held;
        }
    }

    /// Another node owns `ip` (refused or lost): the host's MAC, if `ip` was ours to claim or hold.
    pub fn refused(&mut self, now: Instant, ip: Ipv4Address) -> Option<EthernetAddress> {
        let e = self.entries.iter_mut().find(|e| e.ip == ip)?;
        if matches!(e.state, State::Refused { .. } | State::Checking { .. }) {
            return None;
        }
        e.state = State::Refused { until: now + CONFLICT_HOLD };
        Some(e.mac)
    }

    /// The claim of `ip` failed otherwise: forget it (the next frame checks again).
    pub fn failed(&mut self, ip: Ipv4Address) {
        self.entries.retain(|e| e.ip != ip);
    }

    /// Whether `ip` is held for `mac` (frames from it may be tunnelled).
    pub fn allows(&self, ip: Ipv4Address, mac: EthernetAddress) -> bool {
        self.entries.iter().any(|e| e.ip == ip && e.mac == mac && e.state == State::Held)
    }

    /// Addresses being claimed or held.
    pub fn held_ips(&self) -> impl Iterator<Item = Ipv4Address> + '_ {
        self.entries.iter().filter(|e| matches!(e.state, State::Held | State::Claiming)).map(|e| e.ip)
    }

    /// Whether `ip` is in the table (any state).
    pub fn tracks(&self, ip: Ipv4Address) -> bool {
        self.entries.iter().any(|e| e.ip == ip)
    }

    /// The entry of `ip`.
    pub fn get(&self, ip: Ipv4Address) -> Option<&Entry> {
        self.entries.iter().find(|e| e.ip == ip)
    }

    /// Ends unanswered checks and refusal holds; hands out one silent held address per call (call
    /// until `None`).
    pub fn handle_timeout(&mut self, now: Instant, stats: &mut Stats) -> Option<Expired> {
        self.entries.retain(|e| match e.state {
            State::Checking { until } if now > until => {
                stats.static_unconfirmed += 1;
                false
            }
            State::Refused { until } => now < until,
            _ => true,
        });
        let i =
            self.entries.iter().position(|e| e.state == State::Held && now >= e.last_seen + STATIC_IDLE)?;
        let e = self.entries.swap_remove(i);
        stats.static_released += 1;
        Some(Expired::Release(e.ip))
    }

    /// The next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::Checking { until } => Some(until + Duration::from_millis(1)),
                State::Refused { until } => Some(until),
                State::Held => Some(e.last_seen + STATIC_IDLE),
                // Waits for the DHT result, which comes with the engine's own deadlines.
                State::Claiming => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const OTHER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);

    fn ip(n: u8) -> Ipv4Address {
        Ipv4Address::new(10, 250, 200, n)
    }

    #[test]
    fn a_claim_needs_a_reply_from_the_same_mac_in_time() {
        let mut s = Statics::default();
        let mut st = Stats::default();
        let t0 = Instant::from_secs(10);
        assert!(s.seen(t0, &mut st, ip(1), MAC), "first sight checks");
        assert!(!s.seen(t0, &mut st, ip(1), MAC), "a running check is not repeated");
        assert!(!s.confirmed(t0, ip(1), OTHER), "another MAC does not confirm");
        assert!(!s.allows(ip(1), MAC), "nothing is tunnelled before the claim");
        assert!(s.confirmed(t0 + Duration::from_millis(300), ip(1), MAC));
        assert!(!s.confirmed(t0 + Duration::from_millis(300), ip(1), MAC), "confirmed once");
        assert!(!s.allows(ip(1), MAC), "not before the DHT says yes");
        s.held(ip(1));
        assert!(s.allows(ip(1), MAC) && !s.allows(ip(1), OTHER));

        // An unanswered check lapses and is counted; a late reply confirms nothing.
        assert!(s.seen(t0, &mut st, ip(2), MAC));
        let late = t0 + CHECK_WAIT + Duration::from_millis(2);
        assert!(!s.confirmed(late, ip(2), MAC));
        assert_eq!(s.handle_timeout(late, &mut st), None);
        assert_eq!(st.static_unconfirmed, 1);
        assert!(!s.tracks(ip(2)) && s.tracks(ip(1)));
    }

    #[test]
    fn two_addresses_per_mac_and_a_bucket_of_checks() {
        let mut s = Statics::default();
        let mut st = Stats::default();
        let t0 = Instant::from_secs(10);
        assert!(s.seen(t0, &mut st, ip(1), MAC));
        assert!(s.seen(t0, &mut st, ip(2), MAC));
        assert!(!s.seen(t0, &mut st, ip(3), MAC), "a third address for one MAC is capped");
        assert_eq!(st.static_capped, 1);
        assert!(s.seen(t0, &mut st, ip(3), OTHER), "the cap is per MAC");

        // The checks lapse; the MAC has one token left of three, then waits for the refill.
        let t1 = t0 + CHECK_WAIT + Duration::from_millis(2);
        assert_eq!(s.handle_timeout(t1, &mut st), None);
        assert!(s.seen(t1, &mut st, ip(4), MAC));
        assert!(!s.seen(t1, &mut st, ip(5), MAC));
        assert_eq!(st.static_rate_limited, 1);
        let t2 = t1 + CHECK_WAIT + Duration::from_millis(2);
        let _ = s.handle_timeout(t2, &mut st);
        assert!(!s.seen(t2, &mut st, ip(5), MAC), "still empty before the refill");
        assert!(s.seen(t0 + CHECK_REFILL, &mut st, ip(5), MAC), "one more after the refill");
        assert_eq!(st.static_checks, 5);
    }

    #[test]
    fn a_full_table_refuses_and_counts() {
        let mut s = Statics::default();
        let mut st = Stats::default();
        let t0 = Instant::from_secs(10);
        for i in 0..STATICS as u8 {
            assert!(s.seen(t0, &mut st, ip(i), EthernetAddress([0x02, 1, 0, 0, 0, i])));
        }
        assert!(!s.seen(t0, &mut st, ip(250), MAC));
        assert_eq!(st.static_table_full, 1);
    }

    #[test]
    fn refused_addresses_are_held_off_and_silent_hosts_released() {
        let mut s = Statics::default();
        let mut st = Stats::default();
        let t0 = Instant::from_secs(10);
        assert!(s.seen(t0, &mut st, ip(1), MAC) && s.confirmed(t0, ip(1), MAC));
        assert_eq!(s.refused(t0, ip(1)), Some(MAC));
        assert!(!s.allows(ip(1), MAC));
        assert!(!s.seen(t0 + Duration::from_secs(5), &mut st, ip(1), MAC), "no new check while refused");
        let _ = s.handle_timeout(t0 + CONFLICT_HOLD, &mut st);
        assert!(!s.tracks(ip(1)));

        let t1 = t0 + CONFLICT_HOLD;
        assert!(s.seen(t1, &mut st, ip(2), OTHER) && s.confirmed(t1, ip(2), OTHER));
        s.held(ip(2));
        let t2 = t1 + Duration::from_secs(600);
        assert!(!s.seen(t2, &mut st, ip(2), OTHER), "a frame refreshes the host");
        assert_eq!(s.handle_timeout(t1 + STATIC_IDLE, &mut st), None, "seen 10 min ago");
        assert_eq!(s.poll_at(), Some(t2 + STATIC_IDLE));
        assert_eq!(s.handle_timeout(t2 + STATIC_IDLE, &mut st), Some(Expired::Release(ip(2))));
        assert_eq!(st.static_released, 1);
    }
}
