//! Per-peer state (DESIGN.md "peers"): where a peer is, over which path, its measured RTT, whether it is
//! alive, and the NAT keepalive pulses (WAVNet §II.B's CONNECT_PULSE).
//!
//! Sans-IO: [`Peers::poll_at`] says when the table next needs to run, [`Peers::handle_timeout`] sends what
//! is due (pings, pulses) through [`Cx`], and the node feeds what it receives into
//! [`Peers::handle_ping`], [`Peers::handle_pong`] and [`Peers::on_receive`].
//!
//! - **RTT**: a probe round sends a [`Ping`] and times the [`Pong`]; SRTT and RTTVAR follow RFC 6298 §2,
//!   and the probe's retransmission timeout is its RTO (initially 1 s, doubled per retry, §5.5). The ping
//!   carries our send time and the pong echoes it, so a retransmitted probe still gives a true sample.
//! - **Liveness**: a peer is up from its first counted receive until a probe round of [`PROBE_TRIES`]
//!   pings goes unanswered. Only peers the node is actively using are probed: when they have been
//!   silent for [`PING_INTERVAL`], and every [`RTT_REFRESH`] for a fresh RTT; an idle peer costs nothing
//!   and keeps its last known state until it is used again.
//! - **Authentication**: P3 authenticates sessions. Until then, [`PeersConfig::trust_unauthenticated`]
//!   (on in P2) lets unauthenticated pings, pongs and traffic count as liveness; P3 turns it off. An
//!   unauthenticated pulse never counts, whatever the flag.
//! - **Keepalive**: only a node behind NAT sends pulses, only to active peers, and only when it has sent
//!   them nothing else for the keepalive interval. The interval starts at 25 s (WireGuard's advice) and
//!   adapts to the NAT's mapping timeout: it grows by [`KEEPALIVE_STEP`] after [`KEEPALIVE_CONFIRMS`]
//!   pulse cycles during which the peer was heard, up to [`KEEPALIVE_MAX`] (RFC 4787 REQ-5 asks NATs
//!   for at least 2 minutes); when a peer we kept alive only by pulses goes down, the interval falls back
//!   to the last one that worked and stops growing.

use core::net::SocketAddr;

use smoltcp::time::{Duration, Instant};

use crate::event::Event;
use crate::id::NodeId;
use crate::queue::{Cx, Dest};
use crate::wire::control::{ControlRepr, Ping, Pong};
use crate::wire::overlay::{DataRepr, Flags, Packet as DataPacket};

/// Peers kept by default (sessions, not DHT members: the member table is the DHT's).
pub const DEFAULT_PEERS: usize = 64;
/// A table with the default capacity.
pub type DefaultPeers = Peers<DEFAULT_PEERS>;

/// An active peer silent for this long is probed.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// An active peer's RTT is measured again after this long, even while traffic flows.
pub const RTT_REFRESH: Duration = Duration::from_secs(60);
/// How often an active peer that is down is probed again.
pub const DOWN_RETRY: Duration = Duration::from_secs(30);
/// Pings in a probe round before the peer is declared down.
pub const PROBE_TRIES: u8 = 3;
/// A peer is active while the node sent or received traffic for it within this window.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(120);
/// RTO before the first RTT sample (RFC 6298 §2.1).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Lower bound of the RTO (RFC 6298 §2.4).
pub const MIN_RTO: Duration = Duration::from_secs(1);
/// Upper bound of the RTO, also after backoff (RFC 6298 §2.5 allows 60 s).
pub const MAX_RTO: Duration = Duration::from_secs(60);
/// Clock granularity G of RFC 6298.
const GRANULARITY: Duration = Duration::from_millis(1);
/// The keepalive interval a node behind NAT starts with.
pub const KEEPALIVE_START: Duration = Duration::from_secs(25);
/// The keepalive interval never falls below this.
pub const KEEPALIVE_MIN: Duration = Duration::from_secs(10);
/// The keepalive interval never grows beyond this (under RFC 4787's 2-minute mapping timeout).
pub const KEEPALIVE_MAX: Duration = Duration::from_secs(115);
/// How much the keepalive interval grows at a time.
pub const KEEPALIVE_STEP: Duration = Duration::from_secs(5);
/// Confirmed pulse cycles before the keepalive interval grows.
pub const KEEPALIVE_CONFIRMS: u8 = 3;

/// How the table treats what it receives and whether it sends keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeersConfig {
    /// This node is behind a NAT (configured, or learned from STUN later): send keepalive pulses.
    pub behind_nat: bool,
    /// Count unauthenticated pings, pongs and traffic as liveness (P2, before sessions exist).
    pub trust_unauthenticated: bool,
}

impl Default for PeersConfig {
    /// P2's defaults: not behind NAT, nothing authenticated yet so unauthenticated receives count.
    fn default() -> Self {
        Self { behind_nat: false, trust_unauthenticated: true }
    }
}

/// How a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Straight to its endpoint.
    Direct,
    /// Through a hole punched with a rendezvous node's help (later phases).
    Punched,
    /// Through a relay (later phases).
    Relayed,
}

/// Whether a received message was authenticated (by a session, P3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// It came through an authenticated session.
    Authenticated,
    /// It did not (everything in P2).
    Unauthenticated,
}

/// What the node received from a peer, for [`Peers::on_receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A keepalive pulse (an empty data message).
    Pulse,
    /// A data frame, a hello or a DHT message: real traffic, which also marks the peer active.
    Traffic,
}

/// [`Peers::insert`] found the table full of peers that are up or in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeersFull;

impl core::fmt::Display for PeersFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("peer table full")
    }
}

impl core::error::Error for PeersFull {}

/// A smoothed RTT estimate (RFC 6298 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    /// Take one RTT measurement `r`.
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let err = if srtt > r { srtt - r } else { r - srtt };
                // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT <- 7/8 SRTT + 1/8 R
                self.rttvar = (self.rttvar * 3 + err) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The retransmission timeout: SRTT + max(G, 4 RTTVAR), within [`MIN_RTO`]..=[`MAX_RTO`].
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => {
                let var = self.rttvar * 4;
                let rto = srtt + if var > GRANULARITY { var } else { GRANULARITY };
                clamp(rto, MIN_RTO, MAX_RTO)
            }
        }
    }
}

fn clamp(d: Duration, lo: Duration, hi: Duration) -> Duration {
    if d < lo {
        lo
    } else if d > hi {
        hi
    } else {
        d
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    nonce: u64,
    /// When the round's first ping left: an echo older than this is not ours.
    started: Instant,
    tries: u8,
    deadline: Instant,
}

/// One peer.
#[derive(Debug, Clone)]
pub struct Peer {
    id: NodeId,
    endpoint: SocketAddr,
    path: PathKind,
    rtt: Rtt,
    up: bool,
    last_auth_rx: Option<Instant>,
    last_activity: Instant,
    last_tx: Option<Instant>,
    /// Only pulses (and probes) went out since the node last sent traffic: a loss of contact then
    /// blames the NAT's mapping timeout.
    pulses_only: bool,
    last_sample: Option<Instant>,
    probe: Option<Probe>,
    next_probe: Option<Instant>,
    /// Its certified roles (`cert::roles` bits), 0 until [`Peers::set_roles`].
    roles: u8,
}

impl Peer {
    /// Its certified roles (`cert::roles` bits): what the DHT's storage side authorizes its writes by.
    pub fn roles(&self) -> u8 {
        self.roles
    }
    /// The peer's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// Where it is reached.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }
    /// How it is reached.
    pub fn path(&self) -> PathKind {
        self.path
    }
    /// Its RTT estimate.
    pub fn rtt(&self) -> &Rtt {
        &self.rtt
    }
    /// Whether it answered recently.
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// When it was last heard in a way that counts as liveness.
    pub fn last_authenticated_receive(&self) -> Option<Instant> {
        self.last_auth_rx
    }
    fn active(&self, now: Instant) -> bool {
        now < self.last_activity + ACTIVE_WINDOW
    }
}

/// The node-wide keepalive interval (one NAT, so one mapping timeout to learn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keepalive {
    interval: Duration,
    /// The longest interval known to have kept a mapping.
    good: Duration,
    ceiling: Duration,
    confirms: u8,
}

/// The peer table: at most `N` peers.
///
/// When full, [`Peers::insert`] replaces the down peer that was used least recently; if every peer is
/// up, the new one is refused with [`PeersFull`] and counted in `Stats::peers_full` (a peer that works
/// is never dropped for one that might).
#[derive(Debug, Clone)]
pub struct Peers<const N: usize> {
    config: PeersConfig,
    peers: heapless::Vec<Peer, N>,
    keepalive: Keepalive,
}

impl<const N: usize> Peers<N> {
    /// An empty table.
    pub fn new(config: PeersConfig) -> Self {
        Self {
            config,
            peers: heapless::Vec::new(),
            keepalive: Keepalive {
                interval: KEEPALIVE_START,
                good: KEEPALIVE_START,
                ceiling: KEEPALIVE_MAX,
                confirms: 0,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> PeersConfig {
        self.config
    }

    /// Change the configuration (P3 turns `trust_unauthenticated` off; STUN may find a NAT).
    pub fn set_config(&mut self, config: PeersConfig) {
        self.config = config;
    }

    /// The current keepalive interval.
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive.interval
    }

    /// The peers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer with node id `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == *id)
    }

    fn index_of_endpoint(&self, from: SocketAddr) -> Option<usize> {
        self.peers.iter().position(|p| p.endpoint == from)
    }

    /// The id of the peer at `endpoint`.
    pub fn id_at(&self, endpoint: SocketAddr) -> Option<NodeId> {
        self.index_of_endpoint(endpoint).map(|i| self.peers[i].id)
    }

    /// Add a peer at `endpoint`, or move a known one there (its RTT is then measured afresh). The node
    /// wants to talk to it: it is active and probed at once. See [`Peers`] for what happens when full.
    pub fn insert(&mut self, cx: &mut Cx<'_>, id: NodeId, endpoint: SocketAddr) -> Result<(), PeersFull> {
        let now = cx.now;
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == id) {
            p.last_activity = now;
            if p.endpoint != endpoint {
                p.endpoint = endpoint;
                p.rtt = Rtt::default();
                p.last_sample = None;
                p.probe = None;
                p.next_probe = Some(now);
            }
            return Ok(());
        }
        let peer = Peer {
            id,
            endpoint,
            path: PathKind::Direct,
            rtt: Rtt::default(),
            up: false,
            last_auth_rx: None,
            last_activity: now,
            last_tx: None,
            pulses_only: false,
            last_sample: None,
            probe: None,
            next_probe: Some(now),
            roles: 0,
        };
        if self.peers.is_full() {
            let victim = self
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.up)
                .min_by_key(|(_, p)| p.last_activity)
                .map(|(i, _)| i);
            match victim {
                Some(i) => {
                    debug!("peer table full: replacing down peer {}", self.peers[i].id);
                    self.peers.swap_remove(i);
                }
                None => {
                    cx.stats.peers_full += 1;
                    return Err(PeersFull);
                }
            }
        }
        // Room was made above.
        let _ = self.peers.push(peer);
        Ok(())
    }

    /// Set the certified roles of peer `id` (`cert::roles` bits); false when it is not in the table.
    /// The one place a peer's roles change: the overlay sets them from its hello (P3: intersected
    /// with the roles of the certificate its session presented).
    pub fn set_roles(&mut self, id: &NodeId, roles: u8) -> bool {
        match self.peers.iter_mut().find(|p| p.id == *id) {
            Some(p) => {
                p.roles = roles;
                true
            }
            None => false,
        }
    }

    /// Forget a peer. A peer that was up reports [`Event::PeerDown`], so ups and downs always pair.
    pub fn remove(&mut self, cx: &mut Cx<'_>, id: &NodeId) -> bool {
        let Some(i) = self.peers.iter().position(|p| p.id == *id) else {
            return false;
        };
        let p = self.peers.swap_remove(i);
        if p.up {
            cx.event(Event::PeerDown { id: p.id });
        }
        true
    }

    /// The node sent traffic (a frame, a DHT message) to `id`: the peer is active, and the datagram
    /// refreshed the NAT mapping towards it.
    pub fn note_sent(&mut self, now: Instant, id: &NodeId) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == *id) {
            p.last_activity = now;
            p.last_tx = Some(now);
            p.pulses_only = false;
            if p.next_probe.is_none() && p.probe.is_none() {
                p.next_probe = Some(now);
            }
        }
    }

    fn counts(&self, auth: Auth, pulse: bool) -> bool {
        match auth {
            Auth::Authenticated => true,
            Auth::Unauthenticated => self.config.trust_unauthenticated && !pulse,
        }
    }

    /// Liveness bookkeeping for a receive that counts.
    fn heard(p: &mut Peer, cx: &mut Cx<'_>) {
        p.last_auth_rx = Some(cx.now);
        if !p.up {
            p.up = true;
            cx.event(Event::PeerUp { id: p.id, endpoint: p.endpoint });
        }
    }

    /// Something arrived from `from` (not a ping or pong: those have their handlers). Returns the
    /// sender's id when `from` is a known peer's endpoint.
    pub fn on_receive(
        &mut self,
        cx: &mut Cx<'_>,
        from: SocketAddr,
        auth: Auth,
        what: Received,
    ) -> Option<NodeId> {
        let i = self.index_of_endpoint(from)?;
        if self.counts(auth, what == Received::Pulse) {
            let p = &mut self.peers[i];
            Self::heard(p, cx);
            if what == Received::Traffic {
                p.last_activity = cx.now;
                if p.next_probe.is_none() && p.probe.is_none() {
                    p.next_probe = Some(cx.now + PING_INTERVAL);
                }
            }
        }
        Some(self.peers[i].id)
    }

    /// A ping arrived: answer it (a pong is no larger than the ping, so this amplifies nothing), and
    /// count it as liveness if it comes from a known peer.
    pub fn handle_ping(&mut self, cx: &mut Cx<'_>, from: SocketAddr, auth: Auth, ping: &Ping) {
        let pong = ControlRepr::Pong(Pong { nonce: ping.nonce, echo: ping.sent });
        cx.out.push(cx.stats, Dest::Overlay(from), false, &mut |buf| pong.emit_into(buf));
        if let Some(i) = self.index_of_endpoint(from) {
            if self.counts(auth, false) {
                Self::heard(&mut self.peers[i], cx);
            }
        }
    }

    /// A pong arrived: if it answers the probe in flight to that endpoint, take an RTT sample and
    /// count it as liveness. Anything else is counted in `Stats::pongs_unmatched` and dropped.
    pub fn handle_pong(&mut self, cx: &mut Cx<'_>, from: SocketAddr, auth: Auth, pong: &Pong) {
        let now = cx.now;
        let counts = self.counts(auth, false);
        let matched = self.index_of_endpoint(from).filter(|&i| {
            let p = &self.peers[i];
            counts
                && p.probe.is_some_and(|pr| {
                    pr.nonce == pong.nonce && pong.echo >= micros(pr.started) && pong.echo <= micros(now)
                })
        });
        let Some(i) = matched else {
            cx.stats.pongs_unmatched += 1;
            return;
        };
        let p = &mut self.peers[i];
        p.rtt.sample(Duration::from_micros(micros(now) - pong.echo));
        p.last_sample = Some(now);
        p.probe = None;
        p.next_probe = Some(now + PING_INTERVAL);
        Self::heard(p, cx);
    }

    /// When [`Peers::handle_timeout`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|p| self.deadline(p)).min()
    }

    fn pulse_due(&self, p: &Peer) -> Option<Instant> {
        if !self.config.behind_nat {
            return None;
        }
        let due = p.last_tx.unwrap_or(p.last_activity) + self.keepalive.interval;
        // No pulse once the peer has gone idle.
        (due < p.last_activity + ACTIVE_WINDOW).then_some(due)
    }

    fn deadline(&self, p: &Peer) -> Option<Instant> {
        let probe = match p.probe {
            Some(pr) => Some(pr.deadline),
            None => p.next_probe,
        };
        match (probe, self.pulse_due(p)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Send what is due: probes, their retries, keepalive pulses; declare silent peers down. Safe to
    /// call at any time.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        for i in 0..self.peers.len() {
            self.probe_timer(cx, i);
            if self.pulse_due(&self.peers[i]).is_some_and(|due| due <= now) {
                self.pulse(cx, i);
            }
        }
    }

    fn probe_timer(&mut self, cx: &mut Cx<'_>, i: usize) {
        let now = cx.now;
        let behind_nat = self.config.behind_nat;
        let p = &mut self.peers[i];
        match p.probe {
            Some(mut pr) if now >= pr.deadline => {
                if pr.tries < PROBE_TRIES {
                    // RFC 6298 §5.5: back off the timer for each retry.
                    let backoff = clamp(p.rtt.rto() * (1u32 << pr.tries), MIN_RTO, MAX_RTO);
                    pr.tries += 1;
                    pr.deadline = now + backoff;
                    p.probe = Some(pr);
                    send_ping(cx, p, pr.nonce);
                } else {
                    p.probe = None;
                    p.next_probe = Some(now + DOWN_RETRY);
                    if p.up {
                        p.up = false;
                        cx.event(Event::PeerDown { id: p.id });
                        if behind_nat && p.pulses_only {
                            self.keepalive_failed();
                        }
                    }
                }
            }
            Some(_) => {}
            None => {
                if p.next_probe.is_some_and(|t| now >= t) {
                    let heard_lately = p.last_auth_rx.is_some_and(|t| now < t + PING_INTERVAL);
                    let rtt_fresh = p.last_sample.is_some_and(|t| now < t + RTT_REFRESH);
                    if p.up && heard_lately && rtt_fresh {
                        // Traffic shows it is alive and the RTT is recent: no probe needed yet.
                        let next = p.last_auth_rx.map_or(now, |t| t + PING_INTERVAL);
                        p.next_probe = Some(next.min(p.last_sample.map_or(now, |t| t + RTT_REFRESH)));
                    } else if p.active(now) {
                        let nonce = u64::from(cx.rng.next_u32()) << 32 | u64::from(cx.rng.next_u32());
                        p.probe = Some(Probe { nonce, started: now, tries: 1, deadline: now + p.rtt.rto() });
                        p.next_probe = None;
                        send_ping(cx, p, nonce);
                    } else {
                        // Idle: no probes until the node uses the peer again (note_sent, on_receive).
                        p.next_probe = None;
                    }
                }
            }
        }
    }

    fn pulse(&mut self, cx: &mut Cx<'_>, i: usize) {
        let now = cx.now;
        let p = &mut self.peers[i];
        let heard = match (p.last_auth_rx, p.last_tx) {
            (Some(rx), Some(tx)) => rx > tx,
            _ => false,
        };
        let endpoint = p.endpoint;
        p.last_tx = Some(now);
        p.pulses_only = true;
        cx.out.push(cx.stats, Dest::Overlay(endpoint), false, &mut emit_pulse);
        if heard {
            self.keepalive_confirmed();
        }
    }

    fn keepalive_confirmed(&mut self) {
        let k = &mut self.keepalive;
        if k.interval > k.good {
            k.good = k.interval;
        }
        k.confirms += 1;
        if k.confirms >= KEEPALIVE_CONFIRMS {
            k.confirms = 0;
            let grown = k.interval + KEEPALIVE_STEP;
            k.interval = if grown > k.ceiling { k.ceiling } else { grown };
        }
    }

    fn keepalive_failed(&mut self) {
        let k = &mut self.keepalive;
        let fallback = if k.good < k.interval { k.good } else { k.interval / 2 };
        k.interval = clamp(fallback, KEEPALIVE_MIN, KEEPALIVE_MAX);
        k.good = k.interval;
        k.ceiling = k.interval;
        k.confirms = 0;
        info!("keepalive: a peer kept only by pulses went down; interval now {}s", k.interval.secs());
    }
}

fn micros(t: Instant) -> u64 {
    t.total_micros().max(0) as u64
}

fn send_ping(cx: &mut Cx<'_>, p: &mut Peer, nonce: u64) {
    let ping = ControlRepr::Ping(Ping { nonce, sent: micros(cx.now) });
    p.last_tx = Some(cx.now);
    cx.out.push(cx.stats, Dest::Overlay(p.endpoint), false, &mut |buf| ping.emit_into(buf));
}

/// A keepalive pulse: an empty data message (WireGuard's keepalive shape). P3's session fills the
/// receiver index, counter and tag; until then they are zero and the pulse authenticates nothing.
fn emit_pulse(buf: &mut [u8]) -> Option<usize> {
    let r = DataRepr { flags: Flags::NONE, receiver: 0, counter: 0, payload_len: 0 };
    let buf = buf.get_mut(..r.buffer_len())?;
    let mut p = DataPacket::new_unchecked(buf);
    r.emit(&mut p);
    p.tag_mut().fill(0);
    Some(r.buffer_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Outbox, Transmit};
    use crate::rand::Rng;
    use crate::stats::Stats;
    use crate::wire::overlay::{classify, Class, MessageType};
    use std::vec::Vec;

    struct H {
        rng: Rng,
        stats: Stats,
        out: Outbox<64, 64>,
    }

    impl H {
        fn new() -> Self {
            Self { rng: Rng::new(7), stats: Stats::default(), out: Outbox::default() }
        }
        fn cx(&mut self, now: Instant) -> Cx<'_> {
            Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out }
        }
        fn sent(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
            let mut v = Vec::new();
            let mut buf = [0u8; 2048];
            while let Some(t) = self.out.pop(&mut self.stats, &mut buf) {
                let Transmit::Overlay { to, len } = t else { panic!("not overlay: {t:?}") };
                v.push((to, buf[..len].to_vec()));
            }
            v
        }
        fn events(&mut self) -> Vec<Event> {
            core::iter::from_fn(|| self.out.events.pop_front()).collect()
        }
    }

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }
    fn ep(n: u8) -> SocketAddr {
        SocketAddr::new(core::net::IpAddr::V4([192, 0, 2, n].into()), 51820)
    }
    fn t(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }
    fn ping_of(bytes: &[u8]) -> Ping {
        match ControlRepr::parse_bytes(bytes) {
            Ok(ControlRepr::Ping(p)) => p,
            other => panic!("not a ping: {other:?}"),
        }
    }
    fn is_pulse(bytes: &[u8]) -> bool {
        classify(bytes) == Class::Vngate(MessageType::Data) && bytes.len() == 32
    }

    /// Insert peer 1 at t=0, answer its first ping after 40 ms: the peer is up.
    fn up_peer<const N: usize>(h: &mut H, peers: &mut Peers<N>) {
        peers.insert(&mut h.cx(t(0)), id(1), ep(1)).unwrap();
        peers.handle_timeout(&mut h.cx(t(0)));
        let sent = h.sent();
        let ping = ping_of(&sent[0].1);
        peers.handle_pong(
            &mut h.cx(t(40)),
            ep(1),
            Auth::Unauthenticated,
            &Pong { nonce: ping.nonce, echo: ping.sent },
        );
    }

    #[test]
    fn rtt_follows_rfc6298() {
        let mut r = Rtt::default();
        assert_eq!(r.rto(), INITIAL_RTO);
        r.sample(Duration::from_millis(100));
        assert_eq!((r.srtt(), r.rttvar()), (Some(Duration::from_millis(100)), Duration::from_millis(50)));
        assert_eq!(r.rto(), MIN_RTO, "100 ms + 4 x 50 ms is under the 1 s floor");
        r.sample(Duration::from_millis(300));
        // RTTVAR = (3 x 50 + |100 - 300|) / 4 = 87.5 ms; SRTT = (7 x 100 + 300) / 8 = 125 ms
        assert_eq!(r.rttvar(), Duration::from_micros(87_500));
        assert_eq!(r.srtt(), Some(Duration::from_millis(125)));
        let mut slow = Rtt::default();
        slow.sample(Duration::from_secs(2));
        assert_eq!(slow.rto(), Duration::from_secs(6), "2 s + 4 x 1 s");
        slow.sample(Duration::from_secs(100));
        assert_eq!(slow.rto(), MAX_RTO);
    }

    #[test]
    fn a_new_peer_is_probed_at_once_and_comes_up_on_the_pong() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        peers.insert(&mut h.cx(t(0)), id(1), ep(1)).unwrap();
        assert_eq!(peers.poll_at(), Some(t(0)));
        peers.handle_timeout(&mut h.cx(t(0)));
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, ep(1));
        let ping = ping_of(&sent[0].1);
        assert_eq!(ping.sent, 0);
        assert!(h.events().is_empty());
        peers.handle_pong(
            &mut h.cx(t(40)),
            ep(1),
            Auth::Unauthenticated,
            &Pong { nonce: ping.nonce, echo: 0 },
        );
        assert_eq!(h.events(), [Event::PeerUp { id: id(1), endpoint: ep(1) }]);
        let p = peers.get(&id(1)).unwrap();
        assert!(p.is_up());
        assert_eq!(p.rtt().srtt(), Some(Duration::from_millis(40)));
        assert_eq!(p.last_authenticated_receive(), Some(t(40)));
        assert_eq!(p.path(), PathKind::Direct);
        assert_eq!(peers.poll_at(), Some(t(40) + PING_INTERVAL));
        // A second pong for the same round is no longer matched.
        peers.handle_pong(
            &mut h.cx(t(50)),
            ep(1),
            Auth::Unauthenticated,
            &Pong { nonce: ping.nonce, echo: 0 },
        );
        assert_eq!(h.stats.pongs_unmatched, 1);
    }

    #[test]
    fn a_silent_peer_gets_backed_off_retries_then_goes_down() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        up_peer(&mut h, &mut peers);
        h.events();
        let mut pings = Vec::new();
        let mut now = t(40);
        while let Some(at) = peers.poll_at() {
            if at > t(60_000) {
                break;
            }
            now = at;
            peers.handle_timeout(&mut h.cx(now));
            for (_, b) in h.sent() {
                pings.push((now, ping_of(&b)));
            }
            if !h.events().is_empty() {
                break;
            }
        }
        let times: Vec<i64> = pings.iter().map(|(t, _)| t.total_millis()).collect();
        // Silent for 15 s: probe; RTO 1 s, then backed off to 2 s and 4 s.
        assert_eq!(times, [15_040, 16_040, 18_040]);
        assert!(pings.iter().all(|(_, p)| p.nonce == pings[0].1.nonce), "one nonce per round");
        assert_eq!(now, t(22_040));
        assert!(!peers.get(&id(1)).unwrap().is_up());
        // A late pong to the last retry is no longer matched; the peer is probed again later.
        assert_eq!(peers.poll_at(), Some(t(22_040) + DOWN_RETRY));
    }

    #[test]
    fn a_late_pong_within_the_round_still_gives_a_true_rtt() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        peers.insert(&mut h.cx(t(0)), id(1), ep(1)).unwrap();
        peers.handle_timeout(&mut h.cx(t(0)));
        let first = ping_of(&h.sent()[0].1);
        peers.handle_timeout(&mut h.cx(t(1000)));
        let retry = ping_of(&h.sent()[0].1);
        assert_eq!(retry.sent, 1_000_000);
        // The answer to the retry arrives 30 ms after it: the RTT is 30 ms, not 1030 ms (Karn's problem).
        peers.handle_pong(
            &mut h.cx(t(1030)),
            ep(1),
            Auth::Unauthenticated,
            &Pong { nonce: first.nonce, echo: retry.sent },
        );
        assert_eq!(peers.get(&id(1)).unwrap().rtt().srtt(), Some(Duration::from_millis(30)));
    }

    #[test]
    fn pongs_with_a_wrong_nonce_echo_or_endpoint_are_dropped() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        peers.insert(&mut h.cx(t(1000)), id(1), ep(1)).unwrap();
        peers.handle_timeout(&mut h.cx(t(1000)));
        let ping = ping_of(&h.sent()[0].1);
        let good = Pong { nonce: ping.nonce, echo: ping.sent };
        let cx_at = t(1010);
        peers.handle_pong(
            &mut h.cx(cx_at),
            ep(1),
            Auth::Unauthenticated,
            &Pong { nonce: ping.nonce ^ 1, ..good },
        );
        peers.handle_pong(&mut h.cx(cx_at), ep(1), Auth::Unauthenticated, &Pong { echo: 999_999, ..good });
        peers.handle_pong(&mut h.cx(cx_at), ep(1), Auth::Unauthenticated, &Pong { echo: 2_000_000, ..good });
        peers.handle_pong(&mut h.cx(cx_at), ep(2), Auth::Unauthenticated, &good);
        assert_eq!(h.stats.pongs_unmatched, 4);
        assert!(h.events().is_empty());
        assert!(!peers.get(&id(1)).unwrap().is_up());
        peers.handle_pong(&mut h.cx(cx_at), ep(1), Auth::Unauthenticated, &good);
        assert!(peers.get(&id(1)).unwrap().is_up());
    }

    #[test]
    fn an_unauthenticated_pulse_never_counts_as_liveness() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        peers.insert(&mut h.cx(t(0)), id(1), ep(1)).unwrap();
        assert_eq!(
            peers.on_receive(&mut h.cx(t(5)), ep(1), Auth::Unauthenticated, Received::Pulse),
            Some(id(1))
        );
        assert!(h.events().is_empty());
        assert_eq!(peers.get(&id(1)).unwrap().last_authenticated_receive(), None);
        // P2 trusts unauthenticated traffic; an authenticated pulse counts.
        peers.on_receive(&mut h.cx(t(6)), ep(1), Auth::Unauthenticated, Received::Traffic);
        assert_eq!(h.events(), [Event::PeerUp { id: id(1), endpoint: ep(1) }]);
        let mut p3 = Peers::<4>::new(PeersConfig { trust_unauthenticated: false, ..PeersConfig::default() });
        p3.insert(&mut h.cx(t(0)), id(1), ep(1)).unwrap();
        p3.handle_timeout(&mut h.cx(t(0)));
        let ping = ping_of(&h.sent()[0].1);
        p3.on_receive(&mut h.cx(t(5)), ep(1), Auth::Unauthenticated, Received::Traffic);
        p3.handle_pong(&mut h.cx(t(5)), ep(1), Auth::Unauthenticated, &Pong { nonce: ping.nonce, echo: 0 });
        p3.handle_ping(&mut h.cx(t(5)), ep(1), Auth::Unauthenticated, &Ping { nonce: 9, sent: 9 });
        assert!(h.events().is_empty(), "nothing unauthenticated counts once sessions exist");
        p3.on_receive(&mut h.cx(t(7)), ep(1), Auth::Authenticated, Received::Pulse);
        assert_eq!(h.events(), [Event::PeerUp { id: id(1), endpoint: ep(1) }]);
        // Unknown endpoints are not peers.
        assert_eq!(p3.on_receive(&mut h.cx(t(8)), ep(9), Auth::Authenticated, Received::Traffic), None);
    }

    #[test]
    fn a_ping_is_answered_with_its_nonce_and_time() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        peers.handle_ping(&mut h.cx(t(3)), ep(7), Auth::Unauthenticated, &Ping { nonce: 0xabc, sent: 77 });
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, ep(7));
        assert_eq!(
            ControlRepr::parse_bytes(&sent[0].1),
            Ok(ControlRepr::Pong(Pong { nonce: 0xabc, echo: 77 }))
        );
        assert!(h.events().is_empty(), "an unknown sender is not a peer");
    }

    #[test]
    fn an_idle_peer_is_not_probed() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        up_peer(&mut h, &mut peers);
        let mut pings = 0;
        while let Some(at) = peers.poll_at() {
            assert!(at < t(400_000), "kept probing an idle peer");
            peers.handle_timeout(&mut h.cx(at));
            pings += h.sent().len();
            // The peer answers every probe at once.
            if let Some(pr) = peers.peers[0].probe {
                peers.handle_pong(
                    &mut h.cx(at),
                    ep(1),
                    Auth::Unauthenticated,
                    &Pong { nonce: pr.nonce, echo: micros(at) },
                );
            }
        }
        // Active for 120 s after insert: probed every 15 s of silence (15.04 s .. 105.04 s), then left alone.
        assert_eq!(pings, 7);
        assert!(peers.get(&id(1)).unwrap().is_up());
        // Using it again schedules a probe.
        peers.note_sent(t(500_000), &id(1));
        assert_eq!(peers.poll_at(), Some(t(500_000)));
    }

    #[test]
    fn a_full_table_replaces_the_least_used_down_peer_and_never_an_up_one() {
        let mut h = H::new();
        let mut peers = Peers::<2>::new(PeersConfig::default());
        up_peer(&mut h, &mut peers);
        peers.insert(&mut h.cx(t(100)), id(2), ep(2)).unwrap();
        peers.insert(&mut h.cx(t(200)), id(3), ep(3)).unwrap();
        assert!(peers.get(&id(2)).is_none(), "the down peer made room");
        assert!(peers.get(&id(1)).is_some() && peers.get(&id(3)).is_some());
        peers.on_receive(&mut h.cx(t(300)), ep(3), Auth::Unauthenticated, Received::Traffic);
        h.events();
        assert_eq!(peers.insert(&mut h.cx(t(400)), id(4), ep(4)), Err(PeersFull));
        assert_eq!(h.stats.peers_full, 1);
        assert_eq!(peers.len(), 2);
        // Re-inserting a known peer never needs room; a new endpoint resets its RTT.
        peers.insert(&mut h.cx(t(500)), id(1), ep(5)).unwrap();
        assert_eq!(peers.get(&id(1)).unwrap().endpoint(), ep(5));
        assert_eq!(peers.get(&id(1)).unwrap().rtt().srtt(), None);
        // Removing an up peer reports it down.
        assert!(peers.remove(&mut h.cx(t(600)), &id(3)));
        assert_eq!(h.events(), [Event::PeerDown { id: id(3) }]);
        assert!(!peers.remove(&mut h.cx(t(600)), &id(3)));
    }

    #[test]
    fn no_pulses_unless_behind_nat() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig::default());
        up_peer(&mut h, &mut peers);
        for s in 1..200 {
            peers.on_receive(&mut h.cx(t(s * 1000)), ep(1), Auth::Unauthenticated, Received::Traffic);
            peers.handle_timeout(&mut h.cx(t(s * 1000)));
            assert!(!h.sent().iter().any(|(_, b)| is_pulse(b)), "pulse at {s} s");
        }
    }

    /// Drive a peer behind NAT for `secs` seconds: the peer sends traffic every second while `alive`,
    /// and answers probes. Returns the times of the pulses sent.
    fn drive(h: &mut H, peers: &mut Peers<4>, from_s: i64, secs: i64, alive: bool) -> Vec<i64> {
        let mut pulses = Vec::new();
        for s in from_s..from_s + secs {
            let now = t(s * 1000);
            if alive {
                peers.on_receive(&mut h.cx(now), ep(1), Auth::Authenticated, Received::Traffic);
            }
            peers.handle_timeout(&mut h.cx(now));
            for (_, b) in h.sent() {
                if is_pulse(&b) {
                    pulses.push(s);
                } else if alive {
                    let p = ping_of(&b);
                    peers.handle_pong(
                        &mut h.cx(now),
                        ep(1),
                        Auth::Authenticated,
                        &Pong { nonce: p.nonce, echo: p.sent },
                    );
                }
            }
        }
        pulses
    }

    #[test]
    fn behind_nat_pulses_adapt_to_the_mapping_timeout() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig { behind_nat: true, ..PeersConfig::default() });
        up_peer(&mut h, &mut peers);
        let pulses = drive(&mut h, &mut peers, 1, 100, true);
        // 25 s after our last ping (t = 0), then every 25 s of our silence; the RTT refresh ping at
        // 61 s also refreshed the mapping, so the third pulse waits until 86 s.
        assert_eq!(pulses[..3], [25, 50, 86]);
        assert_eq!(peers.keepalive_interval(), KEEPALIVE_START + KEEPALIVE_STEP, "three heard cycles: grow");
        let _ = drive(&mut h, &mut peers, 101, 2000, true);
        // The RTT refresh pings every 60 s refresh the mapping too, so no silence is longer than that:
        // the interval grows while pulses still happen, up to the RTT refresh period.
        assert_eq!(peers.keepalive_interval(), RTT_REFRESH);
        // The peer goes silent while only pulses kept the mapping: down, and the interval falls back.
        let before = peers.keepalive_interval();
        let _ = drive(&mut h, &mut peers, 2101, 60, false);
        assert!(!peers.get(&id(1)).unwrap().is_up());
        let after = peers.keepalive_interval();
        assert!(after < before, "{after:?} < {before:?}");
        // Heard again: it no longer grows past the interval that failed.
        let _ = drive(&mut h, &mut peers, 2161, 1000, true);
        assert_eq!(peers.keepalive_interval(), after);
    }

    #[test]
    fn the_keepalive_interval_never_grows_past_its_cap() {
        let mut peers = Peers::<1>::new(PeersConfig { behind_nat: true, ..PeersConfig::default() });
        for _ in 0..200 {
            peers.keepalive_confirmed();
        }
        assert_eq!(peers.keepalive_interval(), KEEPALIVE_MAX);
        for _ in 0..10 {
            peers.keepalive_failed();
        }
        assert_eq!(peers.keepalive_interval(), KEEPALIVE_MIN);
    }

    #[test]
    fn an_active_peer_that_we_send_to_gets_no_pulses() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig { behind_nat: true, ..PeersConfig::default() });
        up_peer(&mut h, &mut peers);
        for s in 1..100 {
            peers.note_sent(t(s * 1000), &id(1));
            peers.handle_timeout(&mut h.cx(t(s * 1000)));
            assert!(!h.sent().iter().any(|(_, b)| is_pulse(b)), "pulse at {s} s");
        }
    }

    #[test]
    fn pulses_stop_when_the_peer_goes_idle() {
        let mut h = H::new();
        let mut peers = Peers::<4>::new(PeersConfig { behind_nat: true, ..PeersConfig::default() });
        up_peer(&mut h, &mut peers);
        let pulses = drive(&mut h, &mut peers, 1, 400, false);
        assert!(pulses.iter().all(|&s| s < 120), "{pulses:?}");
        assert!(!pulses.is_empty());
    }
}
