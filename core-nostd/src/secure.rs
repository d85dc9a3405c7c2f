//! Only certified members talk on the overlay (DESIGN.md "Security"): the glue between the node's
//! overlay socket and [`crate::session`] (Noise IK sessions) and [`crate::cert`] (the namespace's CA).
//!
//! With a [`SecurityConfig`] every data and control message between nodes travels inside a session,
//! and nothing else is accepted from the overlay but the handshake and introduction messages that
//! set sessions up:
//! - **Introduction** ([`crate::wire::intro`]): the first time the node has something for an
//!   endpoint whose X25519 static key it does not know (a bootstrap peer, a storage member named in a
//!   member list), it asks that endpoint for its certificate (a padded request, retried every
//!   [`INTRO_RETRY`] up to [`INTRO_TRIES`] times) and checks the answer against the CA exactly as a
//!   handshake's: signed by the CA, this namespace, valid (the clock rule of [`crate::clock`]), not
//!   revoked. Requests are answered at most [`INTRO_RATE`] per second per source address.
//! - **Handshake**: then a Noise IK handshake with that static key ([`crate::session::Sessions`]);
//!   each side's certificate rides in its handshake payload and is checked again by [`CertCheck`],
//!   which also binds it to the static key that completed the handshake.
//! - **Stash**: outputs for an endpoint without a session wait (at most [`STASH`], [`STASH_WAIT`];
//!   the oldest goes first, counted in `secure_stash_dropped`) and leave, sealed, once the session is
//!   up. An initiator sends an empty data message (a keepalive) at once when its handshake completes
//!   with nothing waiting, so the responder may send too (key confirmation).
//! - **Transport**: outputs are sealed in place on their way out ([`Secure::seal`]): a data message
//!   already has room for the header and the tag; a control message is moved 16 bytes up. Inputs are
//!   opened in a copy ([`Secure::open`]) and handed on with the sender's certified identity.
//!
//! What the handshake authenticates is kept: the certified roles of every peer
//! ([`Secure::identity_of`]); the overlay takes a peer's roles from its certificate, never from what
//! the peer says.

use core::net::SocketAddr;

use heapless::Vec;
use smoltcp::time::{Duration, Instant};

use crate::cert::{
    self, CaKey, CertError, CertInfo, Certificate, RevocationList, CERT_MAX_LEN, REVOCATION_LIST_MAX_LEN,
};
use crate::clock::{Reading, UnixTime, WallClock};
use crate::csprng::CsRng;
use crate::id::NodeId;
use crate::queue::{Dest, Out, FRAME_CAP};
use crate::session::limiter::RateLimiter;
use crate::session::{
    HandshakeOutcome, Opened, PeerIdentity, Reject, SendError, Sessions, StaticKeys, Verifier,
    DEFAULT_LOAD_RATE,
};
use crate::stats::Stats;
use crate::wire::control::ControlRepr;
use crate::wire::handshake::MAX_HANDSHAKE_LEN;
use crate::wire::intro::{self, REQUEST_LEN};
use crate::wire::overlay::{Flags, MessageType, HEADER_LEN, OVERHEAD};

/// Peers with a session slot (the overlay's peer table holds as many).
pub const SESSIONS: usize = crate::overlay::PEERS;
/// Endpoints whose static key (from a checked certificate) or introduction is kept; when full the
/// entry without a session that was used longest ago is replaced.
pub const CONTACTS: usize = 64;
/// Outputs waiting for a session; when full the oldest is dropped.
pub const STASH: usize = 32;
/// How long an output waits for its session.
pub const STASH_WAIT: Duration = Duration::from_secs(10);
/// Interval between introduction requests to one endpoint.
pub const INTRO_RETRY: Duration = Duration::from_secs(1);
/// Introduction requests to one endpoint before its waiting outputs are dropped (it is asked again
/// when something new is sent to it).
pub const INTRO_TRIES: u8 = 5;
/// Introduction answers per second per source address (bursts of [`INTRO_RATE`]).
pub const INTRO_RATE: u32 = 5;

/// Interval between SNTP queries until one is answered.
pub const SNTP_RETRY: Duration = Duration::from_secs(16);
/// Interval between SNTP queries once the clock is set.
pub const SNTP_INTERVAL: Duration = Duration::from_secs(3600);
/// SNTP servers kept.
pub const SNTP_SERVERS: usize = 4;

/// What a node needs to take part in a secured overlay. Keys are made on the device; the entropy
/// comes from the runtime's RNG (never from configuration).
#[derive(Clone)]
pub struct SecurityConfig {
    /// The node's X25519 static secret (`noise.key`).
    pub noise_secret: [u8; 32],
    /// The node's certificate (`node.cert`), exact bytes.
    pub cert: Vec<u8, CERT_MAX_LEN>,
    /// The namespace CA's public key (`ca.pub`).
    pub ca: [u8; 32],
    /// The newest revocation list (`revoked`), exact signed bytes (checked against the CA here).
    pub revoked: Option<Vec<u8, REVOCATION_LIST_MAX_LEN>>,
    /// The boot counter, persisted and advanced by the runtime at each start.
    pub boot: u64,
    /// 32 bytes from the runtime's RNG: seeds [`CsRng`].
    pub entropy: [u8; 32],
    /// A lower bound on the wall time: the firmware's build time, or the OS clock when the runtime
    /// trusts it.
    pub wall: UnixTime,
    /// Whether `wall` is known to be right (an OS clock synchronised by NTP): `not_before` is then
    /// checked from the start.
    pub synced: bool,
}

impl core::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecurityConfig").field("boot", &self.boot).finish_non_exhaustive()
    }
}

/// Why a node could not start secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityError {
    /// Our own certificate does not verify against the CA for this namespace now.
    Certificate(CertError),
    /// Our certificate names another X25519 key than `noise_secret`'s.
    KeyMismatch,
    /// The certificate does not fit a handshake.
    CertificateTooLong,
    /// The revocation list does not verify against the CA for this namespace.
    Revocation(CertError),
}

impl core::fmt::Display for SecurityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SecurityError::Certificate(e) => write!(f, "this node's certificate: {e}"),
            SecurityError::KeyMismatch => f.write_str(
                "this node's certificate is for another noise key: sign the node.pub of this device's keys",
            ),
            SecurityError::CertificateTooLong => f.write_str("this node's certificate is too long"),
            SecurityError::Revocation(e) => write!(f, "the revocation list: {e}"),
        }
    }
}

impl core::error::Error for SecurityError {}

/// Checks a peer's certificate (from a handshake or an introduction) against the CA.
pub struct CertCheck<'a> {
    ca: &'a CaKey,
    namespace: &'a [u8; 16],
    reading: Reading,
    revoked: Option<&'a RevocationList>,
    /// The last certificate accepted, the wall time its holder claimed and the version of the
    /// revocation list it holds.
    accepted: Option<(CertInfo, Option<u64>, u64)>,
}

/// Length of the revocation list version that leads our handshake credentials.
const CRED_VERSION_LEN: usize = 8;

impl<'a> CertCheck<'a> {
    fn new(
        ca: &'a CaKey,
        namespace: &'a [u8; 16],
        reading: Reading,
        revoked: Option<&'a RevocationList>,
    ) -> Self {
        CertCheck { ca, namespace, reading, revoked, accepted: None }
    }

    fn check(&mut self, credentials: &[u8]) -> Result<CertInfo, Reject> {
        let c = Certificate::parse(credentials).map_err(|_| Reject::BadCredentials)?;
        c.verify(self.ca, self.namespace, self.reading, self.revoked).map_err(|e| match e {
            CertError::Expired { .. } | CertError::NotYetValid { .. } => Reject::Expired,
            CertError::Revoked { .. } => Reject::Revoked,
            CertError::WrongNamespace { .. } | CertError::WrongIssuer { .. } => Reject::WrongNamespace,
            _ => Reject::BadCredentials,
        })
    }
}

impl Verifier for CertCheck<'_> {
    fn verify(
        &mut self,
        credentials: &[u8],
        remote_static: &[u8; 32],
        wall: Option<u64>,
    ) -> Result<PeerIdentity, Reject> {
        // Our credentials: the holder's revocation list version, then its certificate.
        let (version, cert) = credentials.split_at_checked(CRED_VERSION_LEN).ok_or(Reject::BadCredentials)?;
        let version = u64::from_be_bytes(version.try_into().map_err(|_| Reject::BadCredentials)?);
        let info = self.check(cert)?;
        if info.x25519 != *remote_static {
            return Err(Reject::KeyMismatch);
        }
        if info.roles == 0 {
            return Err(Reject::NotAllowed);
        }
        self.accepted = Some((info, wall, version));
        Ok(PeerIdentity { node_id: info.node_id, roles: info.roles })
    }
}

#[derive(Debug, Clone, Copy)]
struct Intro {
    nonce: u64,
    next: Instant,
    tries: u8,
}

#[derive(Debug, Clone)]
struct Contact {
    endpoint: SocketAddr,
    /// The static key of a checked certificate (introduction or handshake).
    remote: Option<[u8; 32]>,
    intro: Option<Intro>,
    used: Instant,
    /// The serial of the certificate its session was made with (what a revocation names).
    serial: Option<u64>,
}

struct Stashed {
    to: SocketAddr,
    at: Instant,
    len: usize,
    buf: [u8; FRAME_CAP],
}

/// Something the node must act on after a handshake or introduction message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    /// Nothing.
    None,
    /// A session with `identity` at `endpoint` came up.
    Session {
        /// Where the peer is.
        endpoint: SocketAddr,
        /// Who it is (certified).
        identity: PeerIdentity,
        /// Whether we initiated the handshake.
        initiator: bool,
    },
}

/// The secured side of a node: see the module doc.
pub struct Secure {
    sessions: Sessions<SESSIONS>,
    ca: CaKey,
    namespace: [u8; 16],
    revoked: Option<RevocationList>,
    /// The exact signed bytes of `revoked`, to pass on.
    revoked_bytes: Vec<u8, REVOCATION_LIST_MAX_LEN>,
    /// Our certificate (introduction replies).
    cert: Vec<u8, CERT_MAX_LEN>,
    me: CertInfo,
    rng: CsRng,
    clock: WallClock,
    contacts: Vec<Contact, CONTACTS>,
    stash: Vec<Stashed, STASH>,
    intro_limit: RateLimiter<64>,
    sntp: Sntp,
}

/// SNTP (RFC 4330) queries for the wall clock, sent through the node's upstream path.
#[derive(Debug, Default)]
struct Sntp {
    servers: Vec<SocketAddr, SNTP_SERVERS>,
    next: Option<Instant>,
    turn: usize,
    /// The query in flight: (local port, nonce, server).
    pending: Option<(u16, u64, SocketAddr)>,
}

impl Secure {
    /// The secured side for a node of `namespace`, started at `now`; our own certificate must verify.
    pub fn new(namespace: &[u8; 16], config: SecurityConfig, now: Instant) -> Result<Self, SecurityError> {
        let ca = CaKey::from_bytes(&config.ca).map_err(SecurityError::Certificate)?;
        let mut clock = WallClock::new(config.wall, now);
        if config.synced {
            // A clock the runtime knows is right (an NTP-synced OS clock) counts as an SNTP answer.
            clock.on_sntp(now, config.wall);
        }
        let reading = Reading { latest: config.wall, synced: config.synced };
        let revoked = match &config.revoked {
            Some(b) => {
                Some(RevocationList::parse_verified(b, &ca, namespace).map_err(SecurityError::Revocation)?)
            }
            None => None,
        };
        let me = Certificate::parse(&config.cert)
            .and_then(|c| c.verify(&ca, namespace, reading, revoked.as_ref()))
            .map_err(SecurityError::Certificate)?;
        let keys = StaticKeys::from_secret(config.noise_secret);
        if *keys.public() != me.x25519 {
            return Err(SecurityError::KeyMismatch);
        }
        let version = revoked.as_ref().map_or(0, |r| r.list_version);
        let creds = credentials(version, &config.cert).ok_or(SecurityError::CertificateTooLong)?;
        let sessions = Sessions::new(keys, namespace, config.boot, &creds, DEFAULT_LOAD_RATE, now)
            .map_err(|_| SecurityError::CertificateTooLong)?;
        Ok(Secure {
            sessions,
            ca,
            namespace: *namespace,
            revoked,
            revoked_bytes: config.revoked.unwrap_or_default(),
            cert: config.cert,
            me,
            rng: CsRng::new(config.entropy),
            clock,
            contacts: Vec::new(),
            stash: Vec::new(),
            intro_limit: RateLimiter::default(),
            sntp: Sntp::default(),
        })
    }

    /// What our certificate says.
    pub fn me(&self) -> &CertInfo {
        &self.me
    }

    /// The certified identity of the peer at `endpoint`, when a session with it is up.
    pub fn identity_of(&self, now: Instant, endpoint: SocketAddr) -> Option<PeerIdentity> {
        let remote = self.contact(endpoint).and_then(|c| c.remote)?;
        self.sessions.has_session(now, &remote).then(|| self.sessions.identity(&remote)).flatten()
    }

    /// Mixes fresh entropy from the runtime into the CSPRNG.
    pub fn reseed(&mut self, entropy: &[u8; 32]) {
        self.rng.reseed(entropy);
    }

    /// The exact signed bytes of the revocation list we hold (empty: none), for the runtime to keep.
    pub fn revocation_bytes(&self) -> &[u8] {
        &self.revoked_bytes
    }

    /// The version of the revocation list we hold (0: none).
    pub fn revocation_version(&self) -> u64 {
        self.revoked.as_ref().map_or(0, |r| r.list_version)
    }

    /// Takes a revocation list (exact signed bytes) when the CA signed it for this namespace and it is
    /// newer than ours: sessions with holders of certificates it revokes are closed, our handshakes
    /// carry its version from now on, and it is passed to every peer we have a session with (each
    /// passes it on once: a list spreads through the VN in a few round trips). Returns its version, or
    /// `Ok(ours)` when it is not newer.
    pub fn set_revocation_list(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        bytes: &[u8],
        from: Option<SocketAddr>,
    ) -> Result<u64, CertError> {
        let list = RevocationList::parse_verified(bytes, &self.ca, &self.namespace)?;
        if list.list_version <= self.revocation_version() {
            return Ok(self.revocation_version());
        }
        let Ok(raw) = Vec::from_slice(bytes) else { return Err(CertError::Malformed) };
        let Some(creds) = credentials(list.list_version, &self.cert) else {
            return Err(CertError::Malformed);
        };
        let _ = self.sessions.set_credentials(&creds);
        for c in self.contacts.iter_mut() {
            if c.serial.is_some_and(|s| list.contains(s)) {
                if let Some(r) = c.remote.take() {
                    self.sessions.remove(&r);
                }
                c.serial = None;
                stats.secure_revoked_closed += 1;
            }
        }
        info!("secure: revocation list version {} ({} serials)", list.list_version, list.serials.len());
        let version = list.list_version;
        self.revoked = Some(list);
        self.revoked_bytes = raw;
        stats.secure_revocations_taken += 1;
        let peers: Vec<SocketAddr, CONTACTS> = self
            .contacts
            .iter()
            .filter(|c| {
                Some(c.endpoint) != from && c.remote.is_some_and(|r| self.sessions.has_session(now, &r))
            })
            .map(|c| c.endpoint)
            .collect();
        for to in peers {
            self.send_revocation(stats, out, to);
        }
        Ok(version)
    }

    fn send_revocation(&self, stats: &mut Stats, out: &mut dyn Out, to: SocketAddr) {
        if self.revoked_bytes.is_empty() {
            return;
        }
        let m = ControlRepr::Revocation(&self.revoked_bytes);
        // Room is left for the session header and tag the message gets on its way out.
        let room = |b: &mut [u8]| b.len().checked_sub(OVERHEAD).and_then(|n| m.emit_into(b.get_mut(..n)?));
        if !out.push(stats, Dest::Overlay(to), false, &mut |b| room(b)) {
            stats.secure_unsendable += 1;
        }
    }

    /// A revocation control message from `from` (through a session): a newer list is taken and passed
    /// on; a peer asking for ours (it saw a newer version in our handshake) gets it.
    pub fn handle_revocation(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        from: SocketAddr,
        message: &ControlRepr<'_>,
    ) {
        match message {
            ControlRepr::RevocationWanted(have) if *have < self.revocation_version() => {
                self.send_revocation(stats, out, from)
            }
            ControlRepr::Revocation(bytes) => {
                if let Err(e) = self.set_revocation_list(now, stats, out, bytes, Some(from)) {
                    debug!("secure: a revocation list from {} refused: {}", from, e);
                    stats.secure_revocations_refused += 1;
                }
            }
            _ => {}
        }
    }

    fn reading(&self, now: Instant) -> Reading {
        self.clock.reading(now)
    }

    fn wall(&self, now: Instant) -> Option<u64> {
        self.clock.now(now).map(|t| t.0)
    }

    fn contact(&self, endpoint: SocketAddr) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.endpoint == endpoint)
    }

    fn contact_mut(&mut self, now: Instant, endpoint: SocketAddr) -> Option<&mut Contact> {
        if let Some(i) = self.contacts.iter().position(|c| c.endpoint == endpoint) {
            return self.contacts.get_mut(i);
        }
        let fresh = Contact { endpoint, remote: None, intro: None, used: now, serial: None };
        if self.contacts.push(fresh.clone()).is_err() {
            let sessions = &self.sessions;
            let victim = self
                .contacts
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.remote.is_some_and(|r| sessions.has_session(now, &r)))
                .min_by_key(|(_, c)| c.used)
                .map(|(i, _)| i)?;
            self.contacts[victim] = fresh;
            return self.contacts.get_mut(victim);
        }
        self.contacts.last_mut()
    }

    /// Binds `remote` (a checked static key) to `endpoint`, dropping any other endpoint's claim to it.
    fn bind(&mut self, now: Instant, endpoint: SocketAddr, remote: [u8; 32]) {
        for c in self.contacts.iter_mut().filter(|c| c.endpoint != endpoint && c.remote == Some(remote)) {
            c.remote = None;
        }
        if let Some(c) = self.contact_mut(now, endpoint) {
            c.remote = Some(remote);
            c.intro = None;
            c.used = now;
        }
    }

    fn endpoint_of(&self, remote: &[u8; 32]) -> Option<SocketAddr> {
        self.contacts.iter().find(|c| c.remote.as_ref() == Some(remote)).map(|c| c.endpoint)
    }

    /// Seals the overlay datagram `buf[..len]` (plaintext data or control message) for `to` in place;
    /// its new length, or `None` when it was stashed or dropped (handshake or introduction started).
    // HOT PATH
    pub fn seal(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        to: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let &first = buf.first()?;
        if !matches!(MessageType::from(first), MessageType::Data | MessageType::Control) {
            // Handshake and introduction messages leave as written.
            return Some(len);
        }
        let at = self.contacts.iter().position(|c| c.endpoint == to);
        let Some((at, remote)) = at.and_then(|i| Some((i, self.contacts[i].remote?))) else {
            self.park(now, stats, to, &buf[..len]);
            self.introduce(now, stats, out, to);
            return None;
        };
        let sealed = match MessageType::from(first) {
            MessageType::Data => {
                let Some(payload) = len.checked_sub(OVERHEAD) else {
                    stats.malformed += 1;
                    return None;
                };
                let flags = Flags::from_bits(buf.get(1).copied().unwrap_or(0));
                self.sessions.encrypt(now, &remote, MessageType::Data, flags, buf, payload, stats)
            }
            MessageType::Control => {
                if buf.len() < len + OVERHEAD {
                    stats.malformed += 1;
                    return None;
                }
                buf.copy_within(..len, HEADER_LEN);
                let r =
                    self.sessions.encrypt(now, &remote, MessageType::Control, Flags::NONE, buf, len, stats);
                if r.is_err() {
                    buf.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
                }
                r
            }
            // Handshake, introduction and anything else the node wrote whole.
            _ => return Some(len),
        };
        match sealed {
            Ok(n) => {
                // A rekey this send asked for is due in `Sessions::poll_at`, so the node's next
                // `handle_timeout` sends it: no scan of the session table per packet here.
                self.contacts[at].used = now;
                Some(n)
            }
            Err(SendError::NoSession) => {
                self.park(now, stats, to, &buf[..len]);
                self.pump(now, stats, out);
                None
            }
            Err(_) => {
                stats.secure_unsendable += 1;
                None
            }
        }
    }

    fn park(&mut self, now: Instant, stats: &mut Stats, to: SocketAddr, bytes: &[u8]) {
        if bytes.len() > FRAME_CAP {
            return;
        }
        if self.stash.is_full() {
            self.stash.remove(0);
            stats.secure_stash_dropped += 1;
        }
        let mut s = Stashed { to, at: now, len: bytes.len(), buf: [0; FRAME_CAP] };
        s.buf[..bytes.len()].copy_from_slice(bytes);
        let _ = self.stash.push(s);
    }

    /// Starts (or keeps going) the introduction of `to`.
    fn introduce(&mut self, now: Instant, stats: &mut Stats, out: &mut dyn Out, to: SocketAddr) {
        let nonce = self.rng_u64();
        let Some(c) = self.contact_mut(now, to) else {
            stats.secure_contacts_full += 1;
            return;
        };
        c.used = now;
        if c.intro.is_some() {
            return;
        }
        c.intro = Some(Intro { nonce, next: now + INTRO_RETRY, tries: 1 });
        send_intro(stats, out, to, nonce, &self.namespace);
    }

    fn rng_u64(&mut self) -> u64 {
        rand_core::RngCore::next_u64(&mut self.rng)
    }

    /// Writes due handshake initiations into `out`.
    fn pump(&mut self, now: Instant, stats: &mut Stats, out: &mut dyn Out) {
        let wall = self.wall(now);
        loop {
            let mut buf = [0u8; MAX_HANDSHAKE_LEN];
            let Some((len, remote)) = self.sessions.poll_initiation(now, &mut self.rng, wall, &mut buf)
            else {
                break;
            };
            match self.endpoint_of(&remote) {
                Some(to) => {
                    out.push_bytes(stats, Dest::Overlay(to), &buf[..len]);
                }
                None => self.sessions.remove(&remote),
            }
        }
    }

    /// A handshake (0xC2..=0xC4) or introduction (0xC5, 0xC6) datagram from `from`.
    pub fn handle(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Up {
        match datagram.first() {
            Some(&intro::REQUEST_TYPE) | Some(&intro::REPLY_TYPE) => {
                self.handle_intro(now, stats, out, from, datagram);
                Up::None
            }
            _ => self.handle_handshake(now, stats, out, from, datagram),
        }
    }

    fn handle_intro(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        from: SocketAddr,
        d: &[u8],
    ) {
        match intro::Repr::parse(d) {
            Ok(intro::Repr::Request { nonce, namespace }) => {
                if namespace != self.namespace {
                    stats.overlay_wrong_namespace += 1;
                    return;
                }
                if !self.intro_limit.allow(now, from.ip()) {
                    stats.secure_intro_limited += 1;
                    return;
                }
                let reply = intro::Repr::Reply { nonce, cert: &self.cert };
                out.push(stats, Dest::Overlay(from), false, &mut |b| reply.emit(b));
            }
            Ok(intro::Repr::Reply { nonce, cert }) => {
                let expected = self.contact(from).and_then(|c| c.intro).is_some_and(|i| i.nonce == nonce);
                if !expected {
                    stats.secure_intro_unexpected += 1;
                    return;
                }
                let mut check =
                    CertCheck::new(&self.ca, &self.namespace, self.reading(now), self.revoked.as_ref());
                let info = match check.check(cert) {
                    Ok(i) => i,
                    Err(e) => {
                        debug!("secure: {} introduced a refused certificate: {}", from, e);
                        stats.handshake_rejected += 1;
                        return;
                    }
                };
                if info.node_id == self.me.node_id {
                    return;
                }
                self.bind(now, from, info.x25519);
                if self.sessions.connect(now, &info.x25519, stats).is_ok() {
                    self.pump(now, stats, out);
                }
            }
            Err(_) => stats.malformed += 1,
        }
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        from: SocketAddr,
        d: &[u8],
    ) -> Up {
        let wall = self.wall(now);
        let mut check = CertCheck::new(&self.ca, &self.namespace, self.reading(now), self.revoked.as_ref());
        let mut reply = [0u8; MAX_HANDSHAKE_LEN];
        let outcome =
            self.sessions.handle_handshake(now, from, d, wall, &mut self.rng, &mut check, stats, &mut reply);
        let accepted = check.accepted;
        if let Some((info, Some(t), _)) = accepted {
            self.clock.on_peer_time(now, &info.node_id, UnixTime(t));
        }
        let established = match outcome {
            HandshakeOutcome::Reply { len, established } => {
                out.push_bytes(stats, Dest::Overlay(from), &reply[..len]);
                established
            }
            HandshakeOutcome::Established(e) => Some(e),
            HandshakeOutcome::CookieAccepted => {
                self.pump(now, stats, out);
                None
            }
            HandshakeOutcome::Dropped => None,
        };
        let Some(e) = established else { return Up::None };
        self.bind(now, from, e.remote);
        if let Some((info, _, version)) = accepted {
            if let Some(c) = self.contacts.iter_mut().find(|c| c.endpoint == from) {
                c.serial = Some(info.serial);
            }
            // Revocation lists spread with handshakes: whoever holds the older one hears of it.
            let ours = self.revocation_version();
            if version > ours {
                let m = ControlRepr::RevocationWanted(ours);
                out.push(stats, Dest::Overlay(from), false, &mut |b| m.emit_into(b));
            } else if version < ours {
                self.send_revocation(stats, out, from);
            }
        }
        if e.initiator {
            self.flush(now, stats, out, from, true);
        }
        Up::Session { endpoint: from, identity: e.identity, initiator: e.initiator }
    }

    /// Re-queues the outputs stashed for `to` (they are sealed on their way out); with `keepalive`,
    /// sends an empty data message when nothing was waiting.
    fn flush(&mut self, now: Instant, stats: &mut Stats, out: &mut dyn Out, to: SocketAddr, keepalive: bool) {
        let mut any = false;
        let mut i = 0;
        while i < self.stash.len() {
            if self.stash[i].to != to {
                i += 1;
                continue;
            }
            let s = self.stash.remove(i);
            any = true;
            if now - s.at > STASH_WAIT {
                stats.secure_stash_dropped += 1;
                continue;
            }
            out.push_bytes(stats, Dest::Overlay(to), &s.buf[..s.len]);
        }
        if keepalive && !any {
            out.push(stats, Dest::Overlay(to), false, &mut |b| {
                let m = b.get_mut(..OVERHEAD)?;
                m.fill(0);
                m[0] = MessageType::Data.into();
                Some(OVERHEAD)
            });
        }
    }

    /// Opens a transport message (0xC0/0xC1) from `from` in `buf` (a copy of the datagram).
    // HOT PATH
    pub fn open(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        out: &mut dyn Out,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Option<Opened> {
        let opened = self.sessions.decrypt(now, buf, stats)?;
        // The peer may have moved (a NAT rebinding): its sessions say who it is, not its address.
        if self.contact(from).and_then(|c| c.remote) != Some(opened.remote) {
            self.bind(now, from, opened.remote);
        }
        // A session we answered is usable once the initiator's first message arrived: what waited
        // for it leaves now.
        if self.stash.iter().any(|s| s.to == from) {
            self.flush(now, stats, out, from, false);
        }
        Some(opened)
    }

    /// When [`Secure::handle_timeout`] should run next.
    pub fn poll_at(&self) -> Option<Instant> {
        let intro = self.contacts.iter().filter_map(|c| c.intro.map(|i| i.next)).min();
        let stash = self.stash.iter().map(|s| s.at + STASH_WAIT).min();
        [self.sessions.poll_at(), intro, stash, self.sntp.next].into_iter().flatten().min()
    }

    /// SNTP servers to set the wall clock from (the first [`SNTP_SERVERS`]; asked in turn, the first
    /// query at once). Their answers are what `synced` means for certificates' `not_before`.
    pub fn set_sntp_servers(&mut self, now: Instant, servers: &[SocketAddr]) {
        self.sntp.servers = servers.iter().take(SNTP_SERVERS).copied().collect();
        self.sntp.next = (!self.sntp.servers.is_empty()).then_some(now);
    }

    fn sntp_query(&mut self, now: Instant, stats: &mut Stats, out: &mut dyn Out) {
        let Some(next) = self.sntp.next else { return };
        if next > now || self.sntp.servers.is_empty() {
            return;
        }
        let server = self.sntp.servers[self.sntp.turn % self.sntp.servers.len()];
        self.sntp.turn = self.sntp.turn.wrapping_add(1);
        let nonce = self.rng_u64();
        let port = 49152 + (rand_core::RngCore::next_u32(&mut self.rng) % 16384) as u16;
        let req = crate::wire::ntp::Repr::client_request(nonce);
        out.push(stats, Dest::Upstream { to: server, local_port: port }, false, &mut |b| req.emit_into(b));
        self.sntp.pending = Some((port, nonce, server));
        self.sntp.next = Some(now + SNTP_RETRY);
        stats.sntp_queries += 1;
    }

    /// An upstream datagram on `local_port`: `true` when it was the answer to our SNTP query (taken,
    /// whatever it says). An empty datagram is the runtime's "no answer".
    pub fn handle_upstream(
        &mut self,
        now: Instant,
        stats: &mut Stats,
        from: SocketAddr,
        local_port: u16,
        datagram: &[u8],
    ) -> bool {
        let Some((port, nonce, server)) = self.sntp.pending else { return false };
        if port != local_port {
            return false;
        }
        if datagram.is_empty() {
            self.sntp.pending = None;
            return true;
        }
        let time = (from == server)
            .then(|| crate::wire::ntp::Repr::parse_bytes(datagram).ok())
            .flatten()
            .and_then(|r| r.check_reply(nonce).ok());
        match time {
            Some(t) => {
                self.sntp.pending = None;
                self.clock.on_sntp(now, t);
                self.sntp.next = Some(now + SNTP_INTERVAL);
                stats.sntp_answers += 1;
                info!("secure: the wall clock is {} (SNTP {})", t, from);
            }
            None => stats.sntp_refused += 1,
        }
        true
    }

    /// Timers: introduction retries, handshake retries and rekeys, expired stash entries.
    pub fn handle_timeout(&mut self, now: Instant, stats: &mut Stats, out: &mut dyn Out) {
        self.sessions.handle_timeout(now, stats);
        self.pump(now, stats, out);
        self.sntp_query(now, stats, out);
        let ns = self.namespace;
        let mut gave_up: Vec<SocketAddr, CONTACTS> = Vec::new();
        for c in self.contacts.iter_mut() {
            let Some(i) = c.intro.as_mut() else { continue };
            if i.next > now {
                continue;
            }
            if i.tries >= INTRO_TRIES {
                c.intro = None;
                let _ = gave_up.push(c.endpoint);
                continue;
            }
            i.tries += 1;
            i.next = now + INTRO_RETRY;
            send_intro(stats, out, c.endpoint, i.nonce, &ns);
        }
        for to in gave_up {
            stats.secure_intro_failed += 1;
            let before = self.stash.len();
            self.stash.retain(|s| s.to != to);
            stats.secure_stash_dropped += (before - self.stash.len()) as u64;
        }
        let before = self.stash.len();
        self.stash.retain(|s| now - s.at <= STASH_WAIT);
        stats.secure_stash_dropped += (before - self.stash.len()) as u64;
    }

    /// The node's own wall clock reading (for certificates and status).
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Whether `roles` (certificate role bits) includes `role`.
    pub fn has_role(roles: u8, role: u8) -> bool {
        roles & role == role
    }
}

fn send_intro(stats: &mut Stats, out: &mut dyn Out, to: SocketAddr, nonce: u64, namespace: &[u8; 16]) {
    let req = intro::Repr::Request { nonce, namespace: *namespace };
    out.push(stats, Dest::Overlay(to), false, &mut |b| {
        let n = req.emit(b)?;
        debug_assert_eq!(n, REQUEST_LEN);
        Some(n)
    });
}

/// Certificate role bits of the overlay's [`crate::wire::control::Roles`] claim, kept only where the
/// certificate has them.
pub fn certified_roles(claimed: crate::wire::control::Roles, certified: u8) -> crate::wire::control::Roles {
    use crate::wire::control::Roles;
    let mut r = Roles::NONE;
    if claimed.contains(Roles::DHT) && certified & cert::roles::DHT != 0 {
        r = r.union(Roles::DHT);
    }
    if claimed.contains(Roles::ROUTER) && certified & (cert::roles::ROUTER | cert::roles::HOST) != 0 {
        r = r.union(Roles::ROUTER);
    }
    r
}

/// The node id a certificate in `bytes` names, unchecked (logs).
pub fn cert_node_id(bytes: &[u8]) -> Option<NodeId> {
    Certificate::parse(bytes).ok().map(|c| NodeId(c.body().node_id))
}

/// Our handshake credentials: the version of the revocation list we hold, then our certificate.
fn credentials(version: u64, cert: &[u8]) -> Option<Vec<u8, { CRED_VERSION_LEN + CERT_MAX_LEN }>> {
    let mut c = Vec::new();
    c.extend_from_slice(&version.to_be_bytes()).ok()?;
    c.extend_from_slice(cert).ok()?;
    Some(c)
}
