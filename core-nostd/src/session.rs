//! Authenticated sessions between nodes (DESIGN.md "Security"; P3SPEC "session"): Noise IK handshakes
//! (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, clatter, no alloc) framed and timed as WireGuard does, and the
//! transport encryption of data and control messages. Sans-IO: no socket, no clock, no OS randomness;
//! the caller passes `now`, the runtime's cryptographic RNG and buffers, and sends what it is given.
//!
//! # How the overlay uses it
//! One [`Sessions`] per node, made with [`Sessions::new`] from the node's X25519 static key
//! ([`StaticKeys`]), the namespace id, the persisted boot counter (bumped by the runtime at each start)
//! and the node's credentials (its certificate bytes, opaque here). Peers are named by their X25519 static
//! public key (from their signed contact record).
//! - To talk to a peer: [`Sessions::encrypt`] seals a payload written at `buf[16..]` in place into a
//!   0xC0/0xC1 message. [`SendError::NoSession`] means a handshake was requested: the overlay should hold or
//!   drop the frame and drain [`Sessions::poll_initiation`].
//! - [`Sessions::connect`] asks for a handshake explicitly; [`Sessions::poll_initiation`] writes the next
//!   due initiation (0xC2) and says to which peer (the overlay knows the endpoint). Retries every
//!   [`REKEY_TIMEOUT`] (plus jitter), given up after [`REKEY_ATTEMPT_TIME`].
//! - Every 0xC2..=0xC4 datagram goes to [`Sessions::handle_handshake`] with its source address; it may
//!   write a reply (a response 0xC3 or a cookie reply 0xC4) into `out` to send back to that source, and
//!   says when a session came up ([`Established`]: the peer's identity from the [`Verifier`]).
//! - Every 0xC0/0xC1 datagram goes to [`Sessions::decrypt`], which opens it in place and names the peer.
//! - [`Sessions::poll_at`] / [`Sessions::handle_timeout`]: retries, give-ups and key erasure.
//!
//! An initiator that just completed should send something at once (a keepalive control message will do):
//! as in WireGuard, the responder uses a new session for sending only after the first message under it
//! arrived (key confirmation).
//!
//! # Defences, in order, before any DH or signature work (initiations)
//! length and type → mac1 ([`cookie`]) → under load (caller flag or more than `load_rate` initiations a
//! second): a valid mac2 or else a cookie reply → per-source-IP token bucket ([`limiter`]) → Noise (DH) →
//! replay check of (boot counter, monotonic micros) per remote static key → [`Verifier`]. Every drop is
//! counted in [`Stats`].
//!
//! # Timers (WireGuard §6)
//! A session's initiator starts a new handshake when sending on a session older than [`REKEY_AFTER_TIME`]
//! or after [`REKEY_AFTER_MESSAGES`], and when receiving on one older than REJECT_AFTER_TIME - 15 s.
//! Nothing is sent or accepted on a session older than [`REJECT_AFTER_TIME`]; the previous session is kept
//! to open packets still in flight; keys are erased after 3 × REJECT_AFTER_TIME.
//!
//! # Capacity
//! `Sessions<N, IPS>`: N peer slots (default 32, at most 1024), each holding the current, previous and
//! next keypair and one handshake in flight. Receiver indices are random with the slot in their low 10
//! bits, so a transport message finds its keypair in O(1). When the table is full, a new peer takes the
//! slot of the least recently used peer that has no usable session and no handshake in flight; if there
//! is none the new peer is refused ([`Stats::sessions_full`], [`SendError::Full`]). Evicting a peer also
//! forgets its replay record: a replayed initiation of it could then make the responder spend a DH and
//! answer, but never yields a usable session (the replayer lacks the ephemeral key), as in WireGuard.

pub mod cookie;
pub mod limiter;
pub mod noise;
pub mod replay;
pub mod transport;

#[cfg(test)]
pub(crate) mod tests;

use core::net::SocketAddr;
use core::ops::Range;

use clatter::traits::Handshaker;
use heapless::Vec;
use rand_core::{CryptoRng, RngCore};
use smoltcp::time::{Duration, Instant};

use crate::id::NodeId;
use crate::stats::Stats;
use crate::wire::handshake::{
    CookieReplyRepr, HeaderRepr, InitPayload, Kind, Packet as HsPacket, RespPayload, MAC_LEN,
    MAX_CREDENTIALS, MAX_HANDSHAKE_LEN,
};
use crate::wire::overlay::{self, Flags, MessageType, HEADER_LEN, OVERHEAD, VERSION};

use cookie::{CookieChecker, COOKIE_SECRET_LIFE};
use limiter::{LoadMeter, RateLimiter};
use noise::Handshake;
use transport::{Keypair, OpenError};

pub use transport::{REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES};

/// A session's initiator starts a new handshake when sending on a session this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No message is sent or accepted on a session this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// A handshake is retried after this long without a response.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// A handshake is given up after this long of retries.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// WireGuard's keepalive timeout (only used to time the receive-side rekey here).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of peer slots.
pub const DEFAULT_PEERS: usize = 32;
/// Default for [`Sessions::new`]'s `load_rate`: initiations a second handled before cookies are required.
pub const DEFAULT_LOAD_RATE: u32 = 50;

const SLOT_BITS: u32 = 10;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
const RETRY_JITTER_MS: u32 = 333;

/// The node's X25519 static key pair (from `noise.key`).
#[derive(Clone)]
pub struct StaticKeys {
    secret: [u8; 32],
    public: [u8; 32],
}

impl StaticKeys {
    /// The key pair of a 32-byte X25519 secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { public: noise::public_key(&secret), secret }
    }

    /// A fresh key pair from the runtime's cryptographic RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        Self::from_secret(s)
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

impl core::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticKeys").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Who a peer is, as the [`Verifier`] established from its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's node id.
    pub node_id: NodeId,
    /// The peer's role bits (certificate roles: ROUTER 0x01, HOST 0x02, DHT 0x04, ...).
    pub roles: u8,
}

/// Why a [`Verifier`] refused a peer's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The credentials do not parse or their signature does not verify.
    BadCredentials,
    /// The credentials are expired or not yet valid.
    Expired,
    /// The credentials are revoked.
    Revoked,
    /// The credentials are for another namespace or another CA.
    WrongNamespace,
    /// The credentials name another X25519 key than the one that made the handshake.
    KeyMismatch,
    /// The peer lacks a role this node requires.
    NotAllowed,
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Reject::BadCredentials => "the credentials are malformed or badly signed",
            Reject::Expired => "the credentials are expired or not yet valid",
            Reject::Revoked => "the credentials are revoked",
            Reject::WrongNamespace => "the credentials belong to another namespace",
            Reject::KeyMismatch => "the credentials name another static key",
            Reject::NotAllowed => "the peer lacks a required role",
        })
    }
}

impl core::error::Error for Reject {}

/// Checks a peer's credentials (its certificate, opaque to this module) against the X25519 static key
/// that completed the Noise handshake. `wall` is the Unix time the peer put in its payload (authenticated
/// by the handshake), for the caller's clock.
pub trait Verifier {
    /// The peer's identity, or why it is refused.
    fn verify(
        &mut self,
        credentials: &[u8],
        remote_static: &[u8; 32],
        wall: Option<u64>,
    ) -> Result<PeerIdentity, Reject>;
}

/// A session came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    /// The peer's static key.
    pub remote: [u8; 32],
    /// The peer's identity.
    pub identity: PeerIdentity,
    /// Whether we initiated the handshake.
    pub initiator: bool,
}

/// What [`Sessions::handle_handshake`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Dropped (and counted).
    Dropped,
    /// Send `out[..len]` back to the datagram's source: a response (with the session it established)
    /// or a cookie reply (`established` is `None`).
    Reply {
        /// Length of the reply in `out`.
        len: usize,
        /// The session the response established (responder side, used for sending once confirmed).
        established: Option<Established>,
    },
    /// A response completed our handshake.
    Established(Established),
    /// A cookie reply was accepted; the next retry of the initiation carries mac2.
    CookieAccepted,
}

/// Why [`Sessions::encrypt`] did not seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No usable session with that peer: a handshake is requested (drain [`Sessions::poll_initiation`]).
    NoSession,
    /// The peer table is full (see the module doc).
    Full,
    /// The buffer is shorter than header + payload + tag.
    BufferTooSmall,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SendError::NoSession => "no session with the peer yet",
            SendError::Full => "the session table is full",
            SendError::BufferTooSmall => "the buffer cannot hold the message",
        })
    }
}

impl core::error::Error for SendError {}

/// Why [`Sessions::new`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsError {
    /// The credentials are longer than [`MAX_CREDENTIALS`].
    CredentialsTooLong,
}

impl core::fmt::Display for SessionsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the credentials are longer than a handshake can carry")
    }
}

impl core::error::Error for SessionsError {}

/// A transport message opened in place by [`Sessions::decrypt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's static key.
    pub remote: [u8; 32],
    /// The sender's identity.
    pub identity: PeerIdentity,
    /// Data (0xC0) or control (0xC1).
    pub msg_type: MessageType,
    /// The header's flags.
    pub flags: Flags,
    /// Where the plaintext is in the buffer.
    pub payload: Range<usize>,
}

/// Our initiation in flight.
#[derive(Clone)]
struct Pending {
    hs: Handshake,
    local: u32,
    mac1: [u8; MAC_LEN],
}

#[derive(Clone)]
struct Peer {
    remote: [u8; 32],
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    identity: Option<PeerIdentity>,
    current: Option<Keypair>,
    previous: Option<Keypair>,
    next: Option<Keypair>,
    pending: Option<Pending>,
    /// The highest (boot counter, monotonic micros) of an initiation accepted from this peer.
    replay: Option<(u64, u64)>,
    /// A handshake is wanted: since when (for [`REKEY_ATTEMPT_TIME`]) and when to send the next initiation.
    want: Option<(Instant, Instant)>,
    cookie: Option<([u8; MAC_LEN], Instant)>,
    last_used: Instant,
}

impl Peer {
    fn new(remote: &[u8; 32], now: Instant) -> Self {
        Self {
            remote: *remote,
            mac1_key: cookie::mac1_key(remote),
            cookie_key: cookie::cookie_key(remote),
            identity: None,
            current: None,
            previous: None,
            next: None,
            pending: None,
            replay: None,
            want: None,
            cookie: None,
            last_used: now,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        [&self.current, &self.next].into_iter().flatten().any(|k| now - k.born < REJECT_AFTER_TIME)
    }

    fn request_handshake(&mut self, now: Instant) {
        if self.want.is_none() {
            self.want = Some((now, now));
        }
    }
}

/// The node's sessions: see the module doc.
pub struct Sessions<const N: usize = DEFAULT_PEERS, const IPS: usize = { limiter::DEFAULT_SOURCES }> {
    keys: StaticKeys,
    prologue: [u8; noise::PROLOGUE_LEN],
    boot: u64,
    credentials: Vec<u8, MAX_CREDENTIALS>,
    cookies: CookieChecker,
    limiter: RateLimiter<IPS>,
    load: LoadMeter,
    forced_load: bool,
    peers: [Option<Peer>; N],
}

impl<const N: usize, const IPS: usize> core::fmt::Debug for Sessions<N, IPS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sessions")
            .field("public", &self.keys.public)
            .field("boot", &self.boot)
            .field("peers", &self.peers.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

fn micros(now: Instant) -> u64 {
    u64::try_from(now.total_micros()).unwrap_or(0)
}

impl<const N: usize, const IPS: usize> Sessions<N, IPS> {
    const SLOTS_FIT: () = assert!(N >= 1 && N <= (1 << SLOT_BITS), "Sessions holds 1..=1024 peers");

    /// Sessions of a node: its static keys, its namespace, its boot counter (persisted by the runtime and
    /// bumped at each start), its credentials, and the initiation rate per second above which cookies are
    /// required ([`DEFAULT_LOAD_RATE`]).
    pub fn new(
        keys: StaticKeys,
        namespace: &[u8; 16],
        boot_counter: u64,
        credentials: &[u8],
        load_rate: u32,
        now: Instant,
    ) -> Result<Self, SessionsError> {
        let () = Self::SLOTS_FIT;
        let credentials = Vec::from_slice(credentials).map_err(|_| SessionsError::CredentialsTooLong)?;
        Ok(Self {
            cookies: CookieChecker::new(&keys.public),
            keys,
            prologue: noise::prologue(namespace),
            boot: boot_counter,
            credentials,
            limiter: RateLimiter::default(),
            load: LoadMeter::new(load_rate, now),
            forced_load: false,
            peers: core::array::from_fn(|_| None),
        })
    }

    /// Our static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.keys.public
    }

    /// Our credentials (what the handshakes carry).
    pub fn credentials(&self) -> &[u8] {
        &self.credentials
    }

    /// Replace our credentials (a renewed certificate); `Err` when too long.
    pub fn set_credentials(&mut self, credentials: &[u8]) -> Result<(), SessionsError> {
        self.credentials = Vec::from_slice(credentials).map_err(|_| SessionsError::CredentialsTooLong)?;
        Ok(())
    }

    /// Force cookie replies for every initiation without a valid mac2 (the runtime sees overload).
    pub fn set_under_load(&mut self, on: bool) {
        self.forced_load = on;
    }

    /// Whether a usable session with `remote` exists (for sending).
    pub fn has_session(&self, now: Instant, remote: &[u8; 32]) -> bool {
        self.find(remote)
            .and_then(|i| self.peers[i].as_ref())
            .is_some_and(|p| p.current.as_ref().is_some_and(|k| now - k.born < REJECT_AFTER_TIME))
    }

    /// The identity of `remote` once a handshake with it verified.
    pub fn identity(&self, remote: &[u8; 32]) -> Option<PeerIdentity> {
        self.find(remote).and_then(|i| self.peers[i].as_ref()).and_then(|p| p.identity)
    }

    /// Forget a peer (its sessions, handshake and replay record).
    pub fn remove(&mut self, remote: &[u8; 32]) {
        if let Some(i) = self.find(remote) {
            self.peers[i] = None;
        }
    }

    fn find(&self, remote: &[u8; 32]) -> Option<usize> {
        self.peers.iter().position(|p| p.as_ref().is_some_and(|p| &p.remote == remote))
    }

    /// The slot of `remote`, allocating one (see the module doc for the policy when full).
    fn slot(&mut self, now: Instant, remote: &[u8; 32], stats: &mut Stats) -> Option<usize> {
        if let Some(i) = self.find(remote) {
            return Some(i);
        }
        let i = self.peers.iter().position(Option::is_none).or_else(|| {
            self.peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
                .filter(|(_, p)| p.pending.is_none() && !p.usable(now))
                .min_by_key(|(_, p)| p.last_used)
                .map(|(i, _)| i)
        });
        let Some(i) = i else {
            stats.sessions_full += 1;
            return None;
        };
        self.peers[i] = Some(Peer::new(remote, now));
        Some(i)
    }

    fn new_index<R: RngCore + CryptoRng>(&self, rng: &mut R, slot: usize) -> u32 {
        loop {
            let idx = (rng.next_u32() & !SLOT_MASK) | slot as u32;
            let p = self.peers.get(slot).and_then(Option::as_ref);
            let taken = p.is_some_and(|p| {
                [&p.current, &p.previous, &p.next].into_iter().flatten().any(|k| k.local == idx)
                    || p.pending.as_ref().is_some_and(|h| h.local == idx)
            });
            if !taken {
                return idx;
            }
        }
    }

    /// Ask for a handshake with `remote` (no-op when one is already wanted or in flight).
    pub fn connect(&mut self, now: Instant, remote: &[u8; 32], stats: &mut Stats) -> Result<(), SendError> {
        let i = self.slot(now, remote, stats).ok_or(SendError::Full)?;
        if let Some(p) = self.peers[i].as_mut() {
            p.request_handshake(now);
        }
        Ok(())
    }

    /// Write the next due initiation into `out` (at least [`MAX_HANDSHAKE_LEN`] bytes): its
    /// length and the peer to send it to. `wall` is our wall time, if we know it.
    pub fn poll_initiation<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        wall: Option<u64>,
        out: &mut [u8],
    ) -> Option<(usize, [u8; 32])> {
        let i = self
            .peers
            .iter()
            .position(|p| p.as_ref().and_then(|p| p.want).is_some_and(|(_, at)| at <= now))?;
        let local = self.new_index(rng, i);
        let payload =
            InitPayload { boot: self.boot, mono_micros: micros(now), wall, credentials: &self.credentials };
        let jitter = Duration::from_millis(u64::from(rng.next_u32() % RETRY_JITTER_MS));
        let peer = self.peers[i].as_mut()?;
        let mut plain = [0u8; MAX_HANDSHAKE_LEN];
        let plen = payload.emit(&mut plain).ok()?;
        let repr =
            HeaderRepr { kind: Kind::Initiation, sender: local, receiver: 0, noise_len: 32 + 48 + plen + 16 };
        let msg = out.get_mut(..repr.buffer_len())?;
        let mut hs = noise::initiator(&self.prologue, &self.keys.secret, &peer.remote, rng)?;
        let mut p = HsPacket::new_unchecked(&mut *msg, Kind::Initiation);
        repr.emit(&mut p);
        let n = hs.write_message(&plain[..plen], p.noise_mut()).ok()?;
        plain.fill(0);
        if n != repr.noise_len {
            return None;
        }
        let mac1 = cookie::mac(&peer.mac1_key, &[p.mac1_input()]);
        p.set_mac1(&mac1);
        if let Some((c, at)) = peer.cookie {
            if now - at < COOKIE_SECRET_LIFE {
                let mac2 = cookie::mac(&c, &[p.mac2_input()]);
                p.set_mac2(&mac2);
            }
        }
        peer.pending = Some(Pending { hs, local, mac1 });
        if let Some((since, _)) = peer.want {
            peer.want = Some((since, now + REKEY_TIMEOUT + jitter));
        }
        peer.last_used = now;
        Some((repr.buffer_len(), peer.remote))
    }

    /// Handle a handshake datagram (0xC2 initiation, 0xC3 response, 0xC4 cookie reply) from `src`.
    /// `out` (at least [`MAX_HANDSHAKE_LEN`] bytes) receives any reply; `wall` is our wall time.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_handshake<R: RngCore + CryptoRng, V: Verifier>(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8],
        wall: Option<u64>,
        rng: &mut R,
        verifier: &mut V,
        stats: &mut Stats,
        out: &mut [u8],
    ) -> HandshakeOutcome {
        let outcome = match msg.first().map(|&b| MessageType::from(b)) {
            Some(MessageType::Handshake) => self.initiation(now, src, msg, wall, rng, verifier, stats, out),
            Some(MessageType::HandshakeResponse) => self.response(now, msg, verifier, stats),
            Some(MessageType::CookieReply) => self.cookie_reply(now, msg, stats),
            _ => {
                stats.malformed += 1;
                None
            }
        };
        outcome.unwrap_or(HandshakeOutcome::Dropped)
    }

    #[allow(clippy::too_many_arguments)]
    fn initiation<R: RngCore + CryptoRng, V: Verifier>(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8],
        wall: Option<u64>,
        rng: &mut R,
        verifier: &mut V,
        stats: &mut Stats,
        out: &mut [u8],
    ) -> Option<HandshakeOutcome> {
        let Ok(p) = HsPacket::new_checked(msg, Kind::Initiation) else {
            stats.malformed += 1;
            return None;
        };
        if !self.cookies.check_mac1(p.mac1_input(), &p.mac1()) {
            stats.handshake_mac1_invalid += 1;
            return None;
        }
        let under_load = self.forced_load || self.load.under_load(now);
        if under_load && !self.cookies.check_mac2(now, &src, p.mac2_input(), &p.mac2()) {
            let reply = self.cookies.reply(now, rng, &src, p.sender(), &p.mac1());
            stats.handshake_cookies_sent += 1;
            let len = reply.emit(out).ok()?;
            return Some(HandshakeOutcome::Reply { len, established: None });
        }
        if !self.limiter.allow(now, src.ip()) {
            stats.handshake_rate_limited += 1;
            return None;
        }
        self.load.record(now);

        // Noise: DH from here on.
        let mut hs = noise::responder(&self.prologue, &self.keys.secret, rng)?;
        let mut plain = [0u8; MAX_HANDSHAKE_LEN];
        let Ok(n) = hs.read_message(p.noise(), &mut plain) else {
            stats.handshake_failed += 1;
            return None;
        };
        let (Ok(payload), Some(remote)) = (InitPayload::parse(&plain[..n]), hs.get_remote_static()) else {
            stats.handshake_failed += 1;
            return None;
        };
        let stamp = (payload.boot, payload.mono_micros);
        if let Some(i) = self.find(&remote) {
            if self.peers[i].as_ref().and_then(|p| p.replay).is_some_and(|seen| stamp <= seen) {
                stats.handshake_replayed += 1;
                return None;
            }
        }
        let identity = match verifier.verify(payload.credentials, &remote, payload.wall) {
            Ok(id) => id,
            Err(_) => {
                stats.handshake_rejected += 1;
                return None;
            }
        };
        let slot = self.slot(now, &remote, stats)?;
        let local = self.new_index(rng, slot);

        let resp = RespPayload { wall, credentials: &self.credentials };
        let plen = resp.emit(&mut plain).ok()?;
        let repr = HeaderRepr {
            kind: Kind::Response,
            sender: local,
            receiver: p.sender(),
            noise_len: 32 + plen + 16,
        };
        let reply = out.get_mut(..repr.buffer_len())?;
        let mut q = HsPacket::new_unchecked(&mut *reply, Kind::Response);
        repr.emit(&mut q);
        let written = hs.write_message(&plain[..plen], q.noise_mut()).ok();
        plain.fill(0);
        if written != Some(repr.noise_len) {
            stats.handshake_failed += 1;
            return None;
        }
        let peer = self.peers[slot].as_mut()?;
        let mac1 = cookie::mac(&peer.mac1_key, &[q.mac1_input()]);
        q.set_mac1(&mac1);
        let (i2r, r2i) = noise::split(hs)?;
        peer.next = Some(Keypair::new(local, p.sender(), now, false, &i2r, &r2i));
        peer.previous = None;
        peer.replay = Some(stamp);
        peer.identity = Some(identity);
        peer.last_used = now;
        stats.sessions_established += 1;
        let established = Established { remote, identity, initiator: false };
        Some(HandshakeOutcome::Reply { len: repr.buffer_len(), established: Some(established) })
    }

    fn pending_slot(&self, receiver: u32) -> Option<usize> {
        let i = (receiver & SLOT_MASK) as usize;
        let p = self.peers.get(i)?.as_ref()?;
        p.pending.as_ref().is_some_and(|h| h.local == receiver).then_some(i)
    }

    fn response<V: Verifier>(
        &mut self,
        now: Instant,
        msg: &[u8],
        verifier: &mut V,
        stats: &mut Stats,
    ) -> Option<HandshakeOutcome> {
        let Ok(p) = HsPacket::new_checked(msg, Kind::Response) else {
            stats.malformed += 1;
            return None;
        };
        if !self.cookies.check_mac1(p.mac1_input(), &p.mac1()) {
            stats.handshake_mac1_invalid += 1;
            return None;
        }
        let Some(i) = self.pending_slot(p.receiver()) else {
            stats.handshake_unexpected += 1;
            return None;
        };
        let peer = self.peers[i].as_mut()?;
        // Read on a copy: a forged response must not spoil the handshake in flight.
        let mut hs = peer.pending.as_ref()?.hs.clone();
        let mut plain = [0u8; MAX_HANDSHAKE_LEN];
        let Ok(n) = hs.read_message(p.noise(), &mut plain) else {
            stats.handshake_failed += 1;
            return None;
        };
        let Ok(payload) = RespPayload::parse(&plain[..n]) else {
            stats.handshake_failed += 1;
            return None;
        };
        let identity = match verifier.verify(payload.credentials, &peer.remote, payload.wall) {
            Ok(id) => id,
            Err(_) => {
                stats.handshake_rejected += 1;
                return None;
            }
        };
        let local = peer.pending.take()?.local;
        let (i2r, r2i) = noise::split(hs)?;
        let kp = Keypair::new(local, p.sender(), now, true, &i2r, &r2i);
        peer.previous = match peer.next.take() {
            Some(next) => Some(next),
            None => peer.current.take(),
        };
        peer.current = Some(kp);
        peer.want = None;
        peer.identity = Some(identity);
        peer.last_used = now;
        stats.sessions_established += 1;
        Some(HandshakeOutcome::Established(Established { remote: peer.remote, identity, initiator: true }))
    }

    fn cookie_reply(&mut self, now: Instant, msg: &[u8], stats: &mut Stats) -> Option<HandshakeOutcome> {
        let Ok(r) = CookieReplyRepr::parse(msg) else {
            stats.malformed += 1;
            return None;
        };
        let Some(i) = self.pending_slot(r.receiver) else {
            stats.handshake_unexpected += 1;
            return None;
        };
        let peer = self.peers[i].as_mut()?;
        let mac1 = peer.pending.as_ref()?.mac1;
        let Some(c) = cookie::open_reply(&peer.cookie_key, &r, &mac1) else {
            stats.handshake_cookie_invalid += 1;
            return None;
        };
        peer.cookie = Some((c, now));
        Some(HandshakeOutcome::CookieAccepted)
    }

    /// Seal the `payload_len` bytes at `buf[16..]` in place into a transport message of type `msg_type`
    /// (data or control) to `remote`: its length in `buf`.
    // HOT PATH
    #[allow(clippy::too_many_arguments)]
    pub fn encrypt(
        &mut self,
        now: Instant,
        remote: &[u8; 32],
        msg_type: MessageType,
        flags: Flags,
        buf: &mut [u8],
        payload_len: usize,
        stats: &mut Stats,
    ) -> Result<usize, SendError> {
        if buf.len() < OVERHEAD + payload_len {
            return Err(SendError::BufferTooSmall);
        }
        let i = self.slot(now, remote, stats).ok_or(SendError::Full)?;
        let peer = self.peers[i].as_mut().ok_or(SendError::Full)?;
        peer.last_used = now;
        let Some(kp) = peer
            .current
            .as_mut()
            .filter(|k| now - k.born < REJECT_AFTER_TIME && k.send_counter < REJECT_AFTER_MESSAGES)
        else {
            peer.request_handshake(now);
            return Err(SendError::NoSession);
        };
        let rekey =
            kp.initiator && (now - kp.born >= REKEY_AFTER_TIME || kp.send_counter >= REKEY_AFTER_MESSAGES);
        let sealed = kp.seal(msg_type, flags, buf, payload_len);
        if rekey {
            peer.request_handshake(now);
        }
        sealed.ok_or(SendError::NoSession)
    }

    /// Open a transport message (0xC0/0xC1) in place. `None` when dropped (and counted).
    // HOT PATH
    pub fn decrypt(&mut self, now: Instant, buf: &mut [u8], stats: &mut Stats) -> Option<Opened> {
        let p = overlay::Packet::new_checked(&*buf).ok();
        let Some((receiver, counter, msg_type, flags)) = p.and_then(|p| {
            let t = p.msg_type();
            (matches!(t, MessageType::Data | MessageType::Control) && p.version() == VERSION)
                .then(|| (p.receiver(), p.counter(), t, p.flags()))
        }) else {
            stats.malformed += 1;
            return None;
        };
        let i = (receiver & SLOT_MASK) as usize;
        let Some(peer) = self.peers.get_mut(i).and_then(Option::as_mut) else {
            stats.transport_no_session += 1;
            return None;
        };
        let which = [&peer.current, &peer.previous, &peer.next]
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| k.local == receiver));
        let kp = match which {
            Some(0) => peer.current.as_mut(),
            Some(1) => peer.previous.as_mut(),
            Some(2) => peer.next.as_mut(),
            _ => None,
        };
        let Some(kp) = kp else {
            stats.transport_no_session += 1;
            return None;
        };
        if now - kp.born >= REJECT_AFTER_TIME {
            stats.transport_expired += 1;
            return None;
        }
        match kp.open(buf, counter) {
            Ok(()) => {}
            Err(OpenError::Replayed) => {
                stats.transport_replayed += 1;
                return None;
            }
            Err(OpenError::Auth) => {
                stats.transport_auth_failed += 1;
                return None;
            }
        }
        if which == Some(2) {
            // Key confirmation of the responder's new session: it becomes current.
            peer.previous = peer.current.take();
            peer.current = peer.next.take();
        }
        if let Some(k) = peer.current.as_ref() {
            if k.initiator && now - k.born >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT {
                peer.request_handshake(now);
            }
        }
        peer.last_used = now;
        let identity = peer.identity?;
        Some(Opened {
            remote: peer.remote,
            identity,
            msg_type,
            flags,
            payload: HEADER_LEN..buf.len() - overlay::TAG_LEN,
        })
    }

    /// The next time [`Sessions::handle_timeout`] or [`Sessions::poll_initiation`] has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.peers
            .iter()
            .flatten()
            .flat_map(|p| {
                let want = p.want.map(|(since, at)| at.min(since + REKEY_ATTEMPT_TIME));
                let erase = [&p.current, &p.previous, &p.next]
                    .into_iter()
                    .flatten()
                    .map(|k| k.born + REJECT_AFTER_TIME * 3)
                    .min();
                [want, erase]
            })
            .flatten()
            .min()
    }

    /// Give up handshakes tried for [`REKEY_ATTEMPT_TIME`] and erase keys older than 3 × REJECT_AFTER_TIME.
    /// Safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant, stats: &mut Stats) {
        for p in self.peers.iter_mut().flatten() {
            if p.want.is_some_and(|(since, _)| now - since >= REKEY_ATTEMPT_TIME) {
                p.want = None;
                p.pending = None;
                stats.handshake_timeouts += 1;
            }
            for k in [&mut p.current, &mut p.previous, &mut p.next] {
                if k.as_ref().is_some_and(|kp| now - kp.born >= REJECT_AFTER_TIME * 3) {
                    *k = None;
                }
            }
        }
    }
}
