//! Tests of the session layer: handshakes both ways, the defences, transport, timers, interop with snow.

use super::*;

/// A seeded generator for tests (never for real keys): xoshiro via [`crate::rand::Rng`].
pub(crate) struct TestRng(crate::rand::Rng);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(crate::rand::Rng::new(seed))
    }
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.0.next_u32()) << 32 | u64::from(self.0.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.0.next_u32() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

use crate::wire::handshake::COOKIE_REPLY_LEN;
use std::vec::Vec as StdVec;

pub(crate) const NS: [u8; 16] = [0x4e; 16];
const ROLES: u8 = 0x01;

/// The tests' credentials: the holder's X25519 key and a role byte; the verifier checks the key is the
/// one that made the handshake (as a certificate's x25519 field is checked).
pub(crate) fn creds(public: &[u8; 32]) -> [u8; 33] {
    let mut c = [ROLES; 33];
    c[..32].copy_from_slice(public);
    c
}

#[derive(Default)]
pub(crate) struct TestVerifier {
    pub(crate) refuse: bool,
    /// Accept any credentials (as the fuzz target does).
    pub(crate) any: bool,
}

impl Verifier for TestVerifier {
    fn verify(&mut self, c: &[u8], remote: &[u8; 32], _wall: Option<u64>) -> Result<PeerIdentity, Reject> {
        if self.refuse {
            return Err(Reject::NotAllowed);
        }
        if self.any {
            return Ok(PeerIdentity { node_id: NodeId(*remote), roles: 0 });
        }
        let (key, roles) = c.split_at_checked(32).ok_or(Reject::BadCredentials)?;
        if key != remote {
            return Err(Reject::KeyMismatch);
        }
        Ok(PeerIdentity { node_id: NodeId(*remote), roles: roles.first().copied().unwrap_or(0) })
    }
}

pub(crate) struct Side {
    pub(crate) s: Sessions<4, 8>,
    pub(crate) stats: Stats,
    pub(crate) rng: TestRng,
    pub(crate) addr: SocketAddr,
    pub(crate) v: TestVerifier,
}

impl Side {
    pub(crate) fn new(seed: u64, boot: u64) -> Self {
        Self::with_load(seed, boot, DEFAULT_LOAD_RATE)
    }

    pub(crate) fn with_load(seed: u64, boot: u64, load: u32) -> Self {
        let mut rng = TestRng::new(seed);
        let keys = StaticKeys::generate(&mut rng);
        let c = creds(keys.public());
        let s = Sessions::new(keys, &NS, boot, &c, load, Instant::ZERO).unwrap();
        let addr = SocketAddr::from(([192, 0, 2, seed as u8], 51000 + seed as u16));
        Self { s, stats: Stats::default(), rng, addr, v: TestVerifier::default() }
    }

    pub(crate) fn public(&self) -> [u8; 32] {
        *self.s.public_key()
    }

    /// The next initiation this side sends.
    pub(crate) fn initiation(&mut self, now: Instant) -> Option<StdVec<u8>> {
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let (n, _) = self.s.poll_initiation(now, &mut self.rng, Some(1_700_000_000), &mut out)?;
        Some(out[..n].to_vec())
    }

    /// Feed a handshake message from `from`; the reply bytes if any.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &[u8],
    ) -> (HandshakeOutcome, StdVec<u8>) {
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let o = self.s.handle_handshake(
            now,
            from,
            msg,
            None,
            &mut self.rng,
            &mut self.v,
            &mut self.stats,
            &mut out,
        );
        let len = match o {
            HandshakeOutcome::Reply { len, .. } => len,
            _ => 0,
        };
        (o, out[..len].to_vec())
    }

    pub(crate) fn seal(
        &mut self,
        now: Instant,
        to: &[u8; 32],
        payload: &[u8],
    ) -> Result<StdVec<u8>, SendError> {
        let mut buf = [0xa5u8; 1600];
        buf[16..16 + payload.len()].copy_from_slice(payload);
        let n = self.s.encrypt(
            now,
            to,
            MessageType::Data,
            Flags::NONE,
            &mut buf,
            payload.len(),
            &mut self.stats,
        )?;
        Ok(buf[..n].to_vec())
    }

    pub(crate) fn open(&mut self, now: Instant, msg: &[u8]) -> Option<(Opened, StdVec<u8>)> {
        let mut buf = msg.to_vec();
        let o = self.s.decrypt(now, &mut buf, &mut self.stats)?;
        let plain = buf[o.payload.clone()].to_vec();
        Some((o, plain))
    }
}

pub(crate) fn t(secs: u64) -> Instant {
    Instant::from_secs(secs as i64 + 1000)
}

/// A full handshake a -> b at `now`; a's first message confirms b's session.
pub(crate) fn handshake(a: &mut Side, b: &mut Side, now: Instant) -> (Established, Established) {
    a.s.connect(now, &b.public(), &mut a.stats).unwrap();
    let init = a.initiation(now).expect("an initiation is due");
    let (o, resp) = b.handle(now, a.addr, &init);
    let HandshakeOutcome::Reply { established: Some(eb), .. } = o else { panic!("no response: {o:?}") };
    let (o, _) = a.handle(now, b.addr, &resp);
    let HandshakeOutcome::Established(ea) = o else { panic!("not established: {o:?}") };
    (ea, eb)
}

#[test]
fn good_handshake_both_roles_and_transport_both_ways() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    let now = t(0);
    let (ea, eb) = handshake(&mut a, &mut b, now);
    assert!(ea.initiator && !eb.initiator);
    assert_eq!(ea.remote, b.public());
    assert_eq!(eb.remote, a.public());
    assert_eq!(ea.identity, PeerIdentity { node_id: NodeId(b.public()), roles: ROLES });
    assert_eq!(eb.identity.node_id, NodeId(a.public()));
    assert_eq!(
        b.seal(now, &a.public(), b"early"),
        Err(SendError::NoSession),
        "the responder waits for confirmation"
    );

    let msg = a.seal(now, &b.public(), b"hello from a").unwrap();
    assert_eq!(msg.len(), 16 + 12 + 16);
    assert_eq!(msg[0], 0xC0);
    assert_ne!(&msg[16..28], b"hello from a", "encrypted");
    let (o, plain) = b.open(now, &msg).unwrap();
    assert_eq!(plain, b"hello from a");
    assert_eq!((o.remote, o.msg_type, o.flags), (a.public(), MessageType::Data, Flags::NONE));
    assert_eq!(o.identity.node_id, NodeId(a.public()));

    let back = b.seal(now, &a.public(), b"hello from b").unwrap();
    let (o, plain) = a.open(now, &back).unwrap();
    assert_eq!((o.remote, &plain[..]), (b.public(), &b"hello from b"[..]));
    assert!(a.s.has_session(now, &b.public()) && b.s.has_session(now, &a.public()));
    assert_eq!(a.stats.sessions_established + b.stats.sessions_established, 2);
    assert_eq!(a.s.identity(&b.public()).map(|i| i.roles), Some(ROLES));
}

#[test]
fn control_messages_and_flags_are_authenticated() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let mut buf = [0u8; 64];
    buf[16..20].copy_from_slice(b"ping");
    let n =
        a.s.encrypt(t(0), &b.public(), MessageType::Control, Flags::BROADCAST, &mut buf, 4, &mut a.stats)
            .unwrap();
    let (o, plain) = b.open(t(0), &buf[..n]).unwrap();
    assert_eq!((o.msg_type, o.flags, &plain[..]), (MessageType::Control, Flags::BROADCAST, &b"ping"[..]));
    let mut small = [0u8; 35];
    assert_eq!(
        a.s.encrypt(t(0), &b.public(), MessageType::Data, Flags::NONE, &mut small, 4, &mut a.stats),
        Err(SendError::BufferTooSmall)
    );
}

#[test]
fn replayed_initiation_is_rejected() {
    let (mut a, mut b) = (Side::new(1, 7), Side::new(2, 1));
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    assert!(matches!(b.handle(t(0), a.addr, &init).0, HandshakeOutcome::Reply { established: Some(_), .. }));
    assert_eq!(b.handle(t(1), a.addr, &init).0, HandshakeOutcome::Dropped);
    assert_eq!(b.stats.handshake_replayed, 1);

    // The same key after a restart with an older boot counter: refused; with a newer one: accepted
    // although its monotonic clock started again from zero.
    let keys = StaticKeys::from_secret(a.s.keys.secret);
    let c = creds(keys.public());
    for (boot, ok) in [(6, false), (8, true)] {
        let mut a2 = Side::new(1, boot);
        a2.s = Sessions::new(keys.clone(), &NS, boot, &c, DEFAULT_LOAD_RATE, Instant::ZERO).unwrap();
        a2.s.connect(Instant::from_secs(1), &b.public(), &mut a2.stats).unwrap();
        let init = a2.initiation(Instant::from_secs(1)).unwrap();
        let (o, _) = b.handle(t(2), a.addr, &init);
        assert_eq!(matches!(o, HandshakeOutcome::Reply { .. }), ok, "boot {boot}");
    }
    assert_eq!(b.stats.handshake_replayed, 2);
}

#[test]
fn bit_flipped_transport_is_dropped_and_counted() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let msg = a.seal(t(0), &b.public(), b"some frame bytes").unwrap();
    // A flip in the header (associated data: flags), the ciphertext, the tag.
    for i in [1, 20, msg.len() - 1] {
        let mut m = msg.clone();
        m[i] ^= 0x04;
        assert!(b.open(t(0), &m).is_none(), "flip at {i}");
    }
    assert_eq!(b.stats.transport_auth_failed, 3);
    assert!(b.open(t(0), &msg).is_some(), "the window did not move on failures");
    let mut m = msg.clone();
    m[5] ^= 0x80; // another receiver index
    assert!(b.open(t(0), &m).is_none());
    assert_eq!(b.stats.transport_no_session, 1);
    assert!(b.open(t(0), &msg[..31]).is_none());
    assert_eq!(b.stats.malformed, 1);
}

#[test]
fn replayed_transport_counter_is_dropped() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let msg = a.seal(t(0), &b.public(), b"x").unwrap();
    assert!(b.open(t(0), &msg).is_some());
    assert!(b.open(t(0), &msg).is_none());
    assert_eq!(b.stats.transport_replayed, 1);
}

#[test]
fn window_edges_at_2048_and_out_of_order() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let msgs: StdVec<StdVec<u8>> = (0..2050).map(|_| a.seal(t(0), &b.public(), b"f").unwrap()).collect();
    assert!(b.open(t(0), &msgs[2049]).is_some(), "the newest first");
    assert!(b.open(t(0), &msgs[1000]).is_some(), "out of order, inside the window");
    assert!(b.open(t(0), &msgs[2]).is_some(), "2049 - 2047: the oldest in the window");
    assert!(b.open(t(0), &msgs[1]).is_none(), "2049 - 2048: outside");
    assert!(b.open(t(0), &msgs[2048]).is_some());
    assert!(b.open(t(0), &msgs[1000]).is_none());
    assert_eq!(b.stats.transport_replayed, 2);
}

#[test]
fn wrong_mac1_is_dropped_before_dh() {
    let (mut a, mut b, mut c) = (Side::new(1, 1), Side::new(2, 1), Side::new(3, 1));
    a.s.connect(t(0), &c.public(), &mut a.stats).unwrap();
    let to_c = a.initiation(t(0)).unwrap();
    assert_eq!(b.handle(t(0), a.addr, &to_c).0, HandshakeOutcome::Dropped, "meant for another key");
    let mut flipped = to_c.clone();
    let n = flipped.len();
    flipped[n - 20] ^= 1;
    assert_eq!(c.handle(t(0), a.addr, &flipped).0, HandshakeOutcome::Dropped);
    assert_eq!((b.stats.handshake_mac1_invalid, c.stats.handshake_mac1_invalid), (1, 1));
    // Before DH: nothing reached the rate limiter (which precedes Noise) nor Noise itself.
    assert!(b.s.limiter.is_empty() && c.s.limiter.is_empty());
    assert_eq!(b.stats.handshake_failed + c.stats.handshake_failed, 0);
    // A flip inside the Noise part with a recomputed mac1 passes mac1 and fails in Noise.
    let mut bad = to_c.clone();
    bad[100] ^= 1;
    let m = cookie::mac(&cookie::mac1_key(&c.public()), &[&bad[..n - 32]]);
    bad[n - 32..n - 16].copy_from_slice(&m);
    assert_eq!(c.handle(t(0), a.addr, &bad).0, HandshakeOutcome::Dropped);
    assert_eq!(c.stats.handshake_failed, 1);
    assert!(matches!(c.handle(t(0), a.addr, &to_c).0, HandshakeOutcome::Reply { .. }));
}

#[test]
fn cookie_round_trip_under_load() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    b.s.set_under_load(true);
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    let (o, reply) = b.handle(t(0), a.addr, &init);
    assert_eq!(o, HandshakeOutcome::Reply { len: COOKIE_REPLY_LEN, established: None });
    assert_eq!(reply[0], 0xC4);
    assert_eq!(b.stats.handshake_cookies_sent, 1);
    assert!(b.s.limiter.is_empty(), "no DH, no bucket taken");
    let mut forged = reply.clone();
    forged[40] ^= 1;
    assert_eq!(a.handle(t(0), b.addr, &forged).0, HandshakeOutcome::Dropped);
    assert_eq!(a.stats.handshake_cookie_invalid, 1);
    assert_eq!(a.handle(t(0), b.addr, &reply).0, HandshakeOutcome::CookieAccepted);
    assert!(a.initiation(t(1)).is_none(), "no retry before REKEY_TIMEOUT");
    let retry = a.initiation(t(6)).unwrap();
    // The cookie is bound to the source address and port.
    let elsewhere = SocketAddr::from(([192, 0, 2, 99], 4000));
    assert_eq!(b.handle(t(6), elsewhere, &retry).0, HandshakeOutcome::Reply { len: 64, established: None });
    let (o, resp) = b.handle(t(6), a.addr, &retry);
    assert!(matches!(o, HandshakeOutcome::Reply { established: Some(_), .. }));
    assert!(matches!(a.handle(t(6), b.addr, &resp).0, HandshakeOutcome::Established(_)));
}

#[test]
fn a_handshake_rate_above_the_threshold_means_load() {
    let mut b = Side::with_load(2, 1, 1);
    let (mut a1, mut a2) = (Side::new(3, 1), Side::new(4, 1));
    for a in [&mut a1, &mut a2] {
        a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    }
    let i1 = a1.initiation(t(0)).unwrap();
    let i2 = a2.initiation(t(0)).unwrap();
    assert!(matches!(b.handle(t(0), a1.addr, &i1).0, HandshakeOutcome::Reply { established: Some(_), .. }));
    assert_eq!(b.handle(t(0), a2.addr, &i2).0, HandshakeOutcome::Reply { len: 64, established: None });
    assert_eq!(b.stats.handshake_cookies_sent, 1);
}

#[test]
fn per_source_rate_limit_before_dh() {
    let mut b = Side::with_load(2, 1, 1000);
    let mut a = Side::new(1, 1);
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let mut replies = 0;
    for k in 0..7 {
        // Retries every 6 s from a, all delivered at the same instant at b.
        let init = a.initiation(t(6 * k)).unwrap();
        if matches!(b.handle(t(0), a.addr, &init).0, HandshakeOutcome::Reply { .. }) {
            replies += 1;
        }
    }
    assert_eq!(replies, limiter::BURST);
    assert_eq!(b.stats.handshake_rate_limited, 7 - limiter::BURST);
}

#[test]
fn rekey_after_time_keeps_the_previous_session_and_rejects_after_180s() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let first = a.seal(t(0), &b.public(), b"confirm").unwrap();
    b.open(t(0), &first).unwrap();
    assert!(a.initiation(t(100)).is_none(), "no rekey before 120 s");
    let in_flight = a.seal(t(121), &b.public(), b"old session").unwrap();
    let init = a.initiation(t(121)).expect("sending on a 121 s old session starts a handshake");
    let (_, resp) = b.handle(t(121), a.addr, &init);
    assert!(matches!(a.handle(t(121), b.addr, &resp).0, HandshakeOutcome::Established(_)));
    let new = a.seal(t(121), &b.public(), b"new session").unwrap();
    assert_ne!(new[4..8], in_flight[4..8], "another receiver index");
    assert_eq!(b.open(t(121), &new).unwrap().1, b"new session");
    assert_eq!(b.open(t(122), &in_flight).unwrap().1, b"old session", "the previous session still opens");

    // Without any rekey: nothing is sent after REJECT_AFTER_TIME, and old messages are refused.
    let (mut c, mut d) = (Side::new(3, 1), Side::new(4, 1));
    handshake(&mut c, &mut d, t(0));
    let m = c.seal(t(179), &d.public(), b"late").unwrap();
    assert!(d.open(t(180), &m).is_none());
    assert_eq!(d.stats.transport_expired, 1);
    assert_eq!(c.seal(t(180), &d.public(), b"x"), Err(SendError::NoSession));
}

#[test]
fn receive_side_rekey_and_key_erasure() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    handshake(&mut a, &mut b, t(0));
    let m = a.seal(t(0), &b.public(), b"c").unwrap();
    b.open(t(0), &m).unwrap();
    let back = b.seal(t(166), &a.public(), b"r").unwrap();
    assert!(a.initiation(t(166)).is_none());
    a.open(t(166), &back).unwrap();
    assert!(a.initiation(t(166)).is_some(), "receiving on a 165 s old session as initiator rekeys");
    assert!(a.s.poll_at().is_some());
    a.s.handle_timeout(t(540), &mut a.stats);
    assert!(!a.s.has_session(t(540), &b.public()));
    assert!(a.s.peers.iter().flatten().all(|p| p.current.is_none() && p.previous.is_none()), "keys erased");
}

#[test]
fn handshake_retries_then_gives_up() {
    let (mut a, b) = (Side::new(1, 1), Side::new(2, 1));
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let first = a.initiation(t(0)).unwrap();
    assert!(a.initiation(t(4)).is_none());
    let at = a.s.poll_at().unwrap();
    assert!(at >= t(5) && at < t(6), "retry after REKEY_TIMEOUT plus jitter");
    let second = a.initiation(t(6)).unwrap();
    assert_ne!(first[4..40], second[4..40], "a new index and a new ephemeral key");
    a.s.handle_timeout(t(89), &mut a.stats);
    assert_eq!(a.stats.handshake_timeouts, 0);
    a.s.handle_timeout(t(90), &mut a.stats);
    assert_eq!(a.stats.handshake_timeouts, 1);
    assert!(a.initiation(t(100)).is_none());
}

#[test]
fn refused_credentials_and_unexpected_messages_are_counted() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    b.v.refuse = true;
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    assert_eq!(b.handle(t(0), a.addr, &init).0, HandshakeOutcome::Dropped);
    assert_eq!(b.stats.handshake_rejected, 1);
    // The initiator refuses a responder whose credentials name another key.
    b.v.refuse = false;
    let mut b2 = Side::new(2, 1);
    b2.s.set_credentials(&creds(&[9; 32])).unwrap();
    let (_, resp) = b2.handle(t(0), a.addr, &init);
    assert_eq!(a.handle(t(0), b.addr, &resp).0, HandshakeOutcome::Dropped);
    assert_eq!(a.stats.handshake_rejected, 1);
    // A response nobody waits for: the handshake was answered already.
    let (_, resp) = b.handle(t(1), a.addr, &a.initiation(t(6)).unwrap());
    assert!(matches!(a.handle(t(6), b.addr, &resp).0, HandshakeOutcome::Established(_)));
    assert_eq!(a.handle(t(6), b.addr, &resp).0, HandshakeOutcome::Dropped);
    assert_eq!(a.stats.handshake_unexpected, 1);
    assert_eq!(a.handle(t(6), b.addr, &[0xC5, 0x10]).0, HandshakeOutcome::Dropped);
    assert_eq!(a.handle(t(6), b.addr, &[0xC2, 0x10]).0, HandshakeOutcome::Dropped);
    assert_eq!(a.stats.malformed, 2);
    assert!(b.s.set_credentials(&[0; MAX_CREDENTIALS + 1]).is_err());
}

#[test]
fn the_table_full_refuses_new_peers_but_reuses_dead_slots() {
    let mut a = Side::new(1, 1);
    let mut others: StdVec<Side> = (2..7).map(|i| Side::new(i, 1)).collect();
    for o in others.iter_mut().take(4) {
        handshake(&mut a, o, t(0));
    }
    let fifth = others[4].public();
    assert_eq!(a.s.connect(t(1), &fifth, &mut a.stats), Err(SendError::Full));
    assert_eq!(a.stats.sessions_full, 1);
    assert_eq!(a.seal(t(1), &fifth, b"x"), Err(SendError::Full));
    // Once the sessions are dead, a slot is reused.
    assert_eq!(a.s.connect(t(200), &fifth, &mut a.stats), Ok(()));
}

#[test]
fn prologue_binds_the_namespace() {
    let (mut a, mut b) = (Side::new(1, 1), Side::new(2, 1));
    let keys = StaticKeys::from_secret(b.s.keys.secret);
    b.s = Sessions::new(keys, &[0x99; 16], 1, &creds(&b.public()), DEFAULT_LOAD_RATE, Instant::ZERO).unwrap();
    a.s.connect(t(0), &b.public(), &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    assert_eq!(b.handle(t(0), a.addr, &init).0, HandshakeOutcome::Dropped);
    assert_eq!(b.stats.handshake_failed, 1);
}

// Interop with snow 0.10 (another Noise implementation) on the same IK pattern and prologue, both ways.
// The session framing (indices, macs, payload layout) is ours; the Noise messages go to snow unchanged.

const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// A transport message sealed with a raw key, as the wire format says (header bytes as AD).
fn raw_seal(key: &[u8; 32], receiver: u32, counter: u64, payload: &[u8]) -> StdVec<u8> {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::KeyInit;
    let mut m = std::vec![0xC0, 0x10, 0, 0];
    m.extend_from_slice(&receiver.to_be_bytes());
    m.extend_from_slice(&counter.to_be_bytes());
    let mut body = payload.to_vec();
    let c = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let tag = c.encrypt_in_place_detached(&transport::nonce(counter), &m, &mut body).unwrap();
    m.extend_from_slice(&body);
    m.extend_from_slice(&tag);
    m
}

/// Open a transport message with a raw key.
fn raw_open(key: &[u8; 32], msg: &[u8]) -> Option<StdVec<u8>> {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::KeyInit;
    let (h, rest) = msg.split_at(16);
    let (body, tag) = rest.split_at(rest.len() - 16);
    let counter = u64::from_be_bytes(h[8..16].try_into().unwrap());
    let mut body = body.to_vec();
    let c = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    c.decrypt_in_place_detached(&transport::nonce(counter), h, &mut body, tag.into()).ok()?;
    Some(body)
}

/// snow's own transport (no associated data) gives what our cipher gives with the same key and nonce.
fn snow_transport_matches(snow: snow::StatelessTransportState, key: &[u8; 32], initiator: bool) {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::KeyInit;
    let mut out = [0u8; 64];
    let n = snow.write_message(3, b"same keys", &mut out).unwrap();
    let mut ours = *b"same keys";
    let c = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let tag = c.encrypt_in_place_detached(&transport::nonce(3), b"", &mut ours).unwrap();
    let who = if initiator { "initiator" } else { "responder" };
    assert_eq!((&out[..9], &out[9..n]), (&ours[..], &tag[..]), "snow as {who}");
}

#[test]
fn interop_clatter_initiator_snow_responder() {
    let mut a = Side::new(1, 1);
    let resp_secret = [0x33u8; 32];
    let resp_pub = noise::public_key(&resp_secret);
    a.s.connect(t(0), &resp_pub, &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    let n = init.len();
    assert_eq!(init[n - 32..n - 16], cookie::mac(&cookie::mac1_key(&resp_pub), &[&init[..n - 32]]));

    let prologue = noise::prologue(&NS);
    let mut snow_r = snow::Builder::new(PATTERN.parse().unwrap())
        .local_private_key(&resp_secret)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x44; 32])
        .build_responder()
        .unwrap();
    let mut plain = [0u8; 1024];
    let pn = snow_r.read_message(&init[8..n - 32], &mut plain).expect("snow reads clatter's initiation");
    let p = InitPayload::parse(&plain[..pn]).unwrap();
    assert_eq!((p.boot, p.wall, p.credentials), (1, Some(1_700_000_000), &creds(&a.public())[..]));
    assert_eq!(snow_r.get_remote_static().unwrap(), a.public());

    let c = creds(&resp_pub);
    let rp = RespPayload { wall: Some(5), credentials: &c };
    let plen = rp.emit(&mut plain).unwrap();
    let sender = u32::from_be_bytes(init[4..8].try_into().unwrap());
    let repr =
        HeaderRepr { kind: Kind::Response, sender: 0x0bad_cafe, receiver: sender, noise_len: 32 + plen + 16 };
    let mut resp = std::vec![0u8; repr.buffer_len()];
    let rl = resp.len();
    repr.emit(&mut HsPacket::new_unchecked(&mut resp[..], Kind::Response));
    assert_eq!(snow_r.write_message(&plain[..plen], &mut resp[12..rl - 32]).unwrap(), repr.noise_len);
    let mac1 = cookie::mac(&cookie::mac1_key(&a.public()), &[&resp[..rl - 32]]);
    resp[rl - 32..rl - 16].copy_from_slice(&mac1);
    let (o, _) = a.handle(t(0), SocketAddr::from(([192, 0, 2, 9], 1)), &resp);
    let HandshakeOutcome::Established(e) = o else { panic!("{o:?}") };
    assert_eq!(e.identity.node_id, NodeId(resp_pub));

    let (i2r, r2i) = snow_r.dangerously_get_raw_split();
    let msg = a.seal(t(0), &resp_pub, b"clatter to snow").unwrap();
    assert_eq!(msg[4..8], 0x0bad_cafe_u32.to_be_bytes());
    assert_eq!(raw_open(&i2r, &msg).unwrap(), b"clatter to snow");
    let back = raw_seal(&r2i, sender, 0, b"snow to clatter");
    assert_eq!(a.open(t(0), &back).unwrap().1, b"snow to clatter");
    snow_transport_matches(snow_r.into_stateless_transport_mode().unwrap(), &r2i, false);
}

#[test]
fn interop_snow_initiator_clatter_responder() {
    let mut b = Side::new(2, 1);
    let init_secret = [0x55u8; 32];
    let init_pub = noise::public_key(&init_secret);
    let prologue = noise::prologue(&NS);
    let mut snow_i = snow::Builder::new(PATTERN.parse().unwrap())
        .local_private_key(&init_secret)
        .unwrap()
        .remote_public_key(&b.public())
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x66; 32])
        .build_initiator()
        .unwrap();
    let c = creds(&init_pub);
    let ip = InitPayload { boot: 3, mono_micros: 42, wall: None, credentials: &c };
    let mut plain = [0u8; 1024];
    let plen = ip.emit(&mut plain).unwrap();
    let repr = HeaderRepr {
        kind: Kind::Initiation,
        sender: 0xabcd_0001,
        receiver: 0,
        noise_len: 32 + 48 + plen + 16,
    };
    let mut init = std::vec![0u8; repr.buffer_len()];
    let n = init.len();
    repr.emit(&mut HsPacket::new_unchecked(&mut init[..], Kind::Initiation));
    assert_eq!(snow_i.write_message(&plain[..plen], &mut init[8..n - 32]).unwrap(), repr.noise_len);
    let mac1 = cookie::mac(&cookie::mac1_key(&b.public()), &[&init[..n - 32]]);
    init[n - 32..n - 16].copy_from_slice(&mac1);

    let (o, resp) = b.handle(t(0), SocketAddr::from(([192, 0, 2, 9], 1)), &init);
    let HandshakeOutcome::Reply { established: Some(e), .. } = o else { panic!("{o:?}") };
    assert_eq!((e.remote, e.initiator), (init_pub, false));
    assert_eq!(resp[8..12], 0xabcd_0001_u32.to_be_bytes());
    let rl = resp.len();
    assert_eq!(resp[rl - 32..rl - 16], cookie::mac(&cookie::mac1_key(&init_pub), &[&resp[..rl - 32]]));
    let pn = snow_i.read_message(&resp[12..rl - 32], &mut plain).expect("snow reads clatter's response");
    let rp = RespPayload::parse(&plain[..pn]).unwrap();
    assert_eq!(rp.credentials, &creds(&b.public())[..]);
    assert!(snow_i.is_handshake_finished());

    let (i2r, r2i) = snow_i.dangerously_get_raw_split();
    let b_index = u32::from_be_bytes(resp[4..8].try_into().unwrap());
    let msg = raw_seal(&i2r, b_index, 0, b"snow to clatter");
    let (o, got) = b.open(t(0), &msg).unwrap();
    assert_eq!((o.remote, &got[..]), (init_pub, &b"snow to clatter"[..]));
    let back = b.seal(t(0), &init_pub, b"clatter to snow").unwrap();
    assert_eq!(back[4..8], 0xabcd_0001_u32.to_be_bytes());
    assert_eq!(raw_open(&r2i, &back).unwrap(), b"clatter to snow");
    snow_transport_matches(snow_i.into_stateless_transport_mode().unwrap(), &i2r, true);
}

/// Writes the seed corpus of the `handshake` fuzz target from real handshakes with the target's keys
/// (`cargo test -p vn-core --lib write_handshake_fuzz_corpus -- --ignored`).
#[test]
#[ignore]
fn write_handshake_fuzz_corpus() {
    use crate::fuzzing::{handshake_target, INITIATOR_SECRET, NAMESPACE, RESPONDER_SECRET, SEP};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/handshake");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, ctl: u8, parts: &[&[u8]]| {
        let mut f = std::vec![ctl];
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                f.extend_from_slice(SEP);
            }
            f.extend_from_slice(p);
        }
        std::fs::write(dir.join(name), f).unwrap();
    };
    // The initiator side: INITIATOR_SECRET's key, talking to the target.
    let peer = |boot| {
        let keys = StaticKeys::from_secret(INITIATOR_SECRET);
        let mut side = Side::new(9, boot);
        side.s = Sessions::new(keys, &NAMESPACE, boot, b"cred", 50, Instant::ZERO).unwrap();
        side
    };
    let resp_pub = noise::public_key(&RESPONDER_SECRET);
    let mut a = peer(2);
    a.v.any = true;
    a.s.connect(t(0), &resp_pub, &mut a.stats).unwrap();
    let init = a.initiation(t(0)).unwrap();
    write("initiation", 0x05, &[&init]);
    write("initiation_under_load", 0x85, &[&init]);
    write("initiation_replayed", 0x05, &[&init, &init]);

    // An initiation answered by a replica of the target, then transport from the initiator.
    let (mut replica, mut rrng, mut rstats) = handshake_target(0x06).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let o = replica.handle_handshake(
        t(0),
        a.addr,
        &init,
        Some(1),
        &mut rrng,
        &mut TestVerifier { refuse: false, any: true },
        &mut rstats,
        &mut out,
    );
    let HandshakeOutcome::Reply { len, established: Some(_) } = o else { panic!("{o:?}") };
    assert!(matches!(a.handle(t(0), a.addr, &out[..len]).0, HandshakeOutcome::Established(_)));
    let data = a.seal(t(0), &resp_pub, b"a transport frame").unwrap();
    write("initiation_then_data", 0x06, &[&init, &data, &data]);

    // A response and a cookie reply to the target's own initiation.
    let mut b = peer(3);
    b.v.any = true;
    let (o, resp) = b.handle(t(0), a.addr, &first_initiation(0x07));
    assert!(matches!(o, HandshakeOutcome::Reply { established: Some(_), .. }), "{o:?}");
    write("response_to_pending", 0x07, &[&resp]);
    b.s.set_under_load(true);
    let (_, cookie) = b.handle(t(0), a.addr, &first_initiation(0x08));
    write("cookie_reply_to_pending", 0x08, &[&cookie]);
}

/// The initiation the fuzz target sends at setup with control byte `ctl` (same seed, same steps).
fn first_initiation(ctl: u8) -> StdVec<u8> {
    use crate::fuzzing::{INITIATOR_SECRET, NAMESPACE, RESPONDER_SECRET};
    let mut rng = TestRng::new(u64::from(ctl));
    let mut stats = Stats::default();
    let keys = StaticKeys::from_secret(RESPONDER_SECRET);
    let mut s: Sessions<4, 4> = Sessions::new(keys, &NAMESPACE, 1, b"cred", 50, Instant::ZERO).unwrap();
    let init_pub = noise::public_key(&INITIATOR_SECRET);
    s.connect(Instant::ZERO, &init_pub, &mut stats).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let (n, _) = s.poll_initiation(Instant::ZERO, &mut rng, None, &mut out).unwrap();
    out[..n].to_vec()
}

/// The seed corpus reaches past the cryptography: a response completes the target's handshake and a
/// transport message opens (so the fuzzer starts from deep states).
#[test]
fn fuzz_seeds_reach_established_states() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/handshake");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let f = read("response_to_pending");
    let (mut s, mut rng, mut stats) = crate::fuzzing::handshake_target(f[0]).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let mut v = TestVerifier { refuse: false, any: true };
    let o = s.handle_handshake(
        t(0),
        "192.0.2.1:1".parse().unwrap(),
        &f[1..],
        None,
        &mut rng,
        &mut v,
        &mut stats,
        &mut out,
    );
    assert!(matches!(o, HandshakeOutcome::Established(_)), "{o:?}");
    let f = read("initiation_then_data");
    let sep = f.windows(4).position(|w| w == crate::fuzzing::SEP).unwrap();
    let (mut s, mut rng, mut stats) = crate::fuzzing::handshake_target(f[0]).unwrap();
    let o = s.handle_handshake(
        t(0),
        "192.0.2.1:1".parse().unwrap(),
        &f[1..sep],
        None,
        &mut rng,
        &mut v,
        &mut stats,
        &mut out,
    );
    assert!(matches!(o, HandshakeOutcome::Reply { established: Some(_), .. }), "{o:?}");
    let mut data = f[sep + 4..].split(|_| false).next().unwrap().to_vec();
    let end = data.windows(4).position(|w| w == crate::fuzzing::SEP).unwrap_or(data.len());
    data.truncate(end);
    assert!(s.decrypt(t(0), &mut data, &mut stats).is_some());
    crate::fuzzing::handshake(&read("initiation_then_data"));
}

/// Micro-benchmark, figures only (`cargo test -p vn-core --release --lib bench_sessions -- --ignored
/// --nocapture`): a whole handshake (both sides' work), and seal + open of 1400-byte frames on one core
/// against a plain copy of the same bytes.
#[test]
#[ignore]
fn bench_sessions() {
    use std::hint::black_box;
    use std::time::Instant as Clock;
    const HS: u32 = 300;
    let (mut a, mut b) = (Side::with_load(1, 1, 1_000_000), Side::with_load(2, 1, 1_000_000));
    let start = Clock::now();
    for k in 0..HS {
        // A new initiation each time (as a rekey would), answered and completed.
        let now = t(u64::from(k) * 200);
        let (_, _) = handshake(&mut a, &mut b, now);
        b.s.limiter = RateLimiter::default();
    }
    let hs = start.elapsed() / HS;

    let now = t(u64::from(HS) * 200);
    let (_, _) = handshake(&mut a, &mut b, now);
    let frame = [0x5au8; 1400];
    let mut buf = [0u8; 1400 + OVERHEAD];
    const N: u32 = 200_000;
    let start = Clock::now();
    for _ in 0..N {
        buf[16..16 + 1400].copy_from_slice(&frame);
        let n =
            a.s.encrypt(now, &b.public(), MessageType::Data, Flags::NONE, &mut buf, 1400, &mut a.stats)
                .unwrap();
        let o = b.s.decrypt(now, black_box(&mut buf[..n]), &mut b.stats).unwrap();
        black_box(&buf[o.payload]);
    }
    let crypt = start.elapsed();
    let mut dst = [0u8; 1400 + OVERHEAD];
    let start = Clock::now();
    for _ in 0..N {
        buf[16..16 + 1400].copy_from_slice(black_box(&frame));
        dst.copy_from_slice(black_box(&buf));
        black_box(&dst);
    }
    let copy = start.elapsed();
    let fps = f64::from(N) / crypt.as_secs_f64();
    std::println!(
        "handshake (initiator + responder work): {:.0} µs, {:.0} handshakes/s",
        hs.as_secs_f64() * 1e6,
        1.0 / hs.as_secs_f64()
    );
    std::println!(
        "seal + open 1400-byte frames: {fps:.0} frames/s, {:.1} MB/s; plain copy: {:.0} frames/s; crypto/copy time ratio {:.1}",
        fps * 1400.0 / 1e6,
        f64::from(N) / copy.as_secs_f64(),
        crypt.as_secs_f64() / copy.as_secs_f64()
    );
    assert_eq!(b.stats.transport_auth_failed, 0);
}
