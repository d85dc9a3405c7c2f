//! Fuzz entry point for the session layer's input side: a responder (that also has a handshake of its
//! own in flight) is fed arbitrary datagrams as handshake messages and as transport messages, at times
//! taken from the input. It must never panic, and nothing must come out of garbage but drops: the only
//! acceptable output of a forged datagram is a cookie reply (under load) or nothing.

use core::net::SocketAddr;
use rand_core::{CryptoRng, RngCore};
use smoltcp::time::Instant;

use crate::session::{HandshakeOutcome, PeerIdentity, Reject, Sessions, StaticKeys, Verifier};
use crate::stats::Stats;
use crate::wire::handshake::{COOKIE_REPLY_LEN, MAX_HANDSHAKE_LEN};
use crate::NodeId;

/// A fixed-seed generator (fuzzing only).
struct FuzzRng(crate::rand::Rng);

impl RngCore for FuzzRng {
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

impl CryptoRng for FuzzRng {}

/// Accepts any credentials (the fuzzer should reach past the verifier when it can).
struct AnyVerifier;

impl Verifier for AnyVerifier {
    fn verify(&mut self, _: &[u8], remote: &[u8; 32], _: Option<u64>) -> Result<PeerIdentity, Reject> {
        Ok(PeerIdentity { node_id: NodeId(*remote), roles: 0 })
    }
}

/// The responder's static secret in the fuzz target; the seed corpus is made against it.
pub const RESPONDER_SECRET: [u8; 32] = [0x52; 32];
/// The initiator's static secret of the seed corpus.
pub const INITIATOR_SECRET: [u8; 32] = [0x49; 32];
/// The namespace of the fuzz target.
pub const NAMESPACE: [u8; 16] = [0x4e; 16];

/// Fuzz entry point (see the module doc). The first byte picks load and time; the rest is one datagram,
/// or several separated by the byte sequence "\n--\n" so a corpus can hold a whole exchange.
pub fn handshake(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((mut s, mut rng, mut stats)) = target(ctl) else {
        return;
    };
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let src = SocketAddr::from(([192, 0, 2, 1], 51820));
    let mut now = Instant::from_millis(i64::from(ctl & 0x7f) * 1000);
    for dgram in Split(rest) {
        let before = stats;
        match s.handle_handshake(now, src, dgram, Some(1), &mut rng, &mut AnyVerifier, &mut stats, &mut out) {
            HandshakeOutcome::Reply { len, established } => {
                assert!(len <= out.len());
                assert!(established.is_some() || len == COOKIE_REPLY_LEN);
            }
            HandshakeOutcome::Dropped => assert_ne!(before, stats, "every drop is counted"),
            HandshakeOutcome::Established(_) | HandshakeOutcome::CookieAccepted => {}
        }
        let mut buf = [0u8; 2048];
        if dgram.len() <= buf.len() {
            let b = &mut buf[..dgram.len()];
            b.copy_from_slice(dgram);
            let before = stats;
            match s.decrypt(now, b, &mut stats) {
                Some(o) => assert!(o.payload.end <= dgram.len()),
                None => assert_ne!(before, stats, "every drop is counted"),
            }
        }
        s.handle_timeout(now, &mut stats);
        if let Some(at) = s.poll_at() {
            assert!(at.total_micros() >= 0);
        }
        now += smoltcp::time::Duration::from_millis(1500);
    }
}

/// The fuzzed responder as it stands before the first datagram (the seed corpus generator makes the same):
/// under load when `ctl & 0x80`, with an initiation of its own to [`INITIATOR_SECRET`]'s key in flight.
pub fn target(ctl: u8) -> Option<(Sessions<4, 4>, impl RngCore + CryptoRng, Stats)> {
    let mut rng = FuzzRng(crate::rand::Rng::new(u64::from(ctl)));
    let mut stats = Stats::default();
    let keys = StaticKeys::from_secret(RESPONDER_SECRET);
    let mut s: Sessions<4, 4> = Sessions::new(keys, &NAMESPACE, 1, b"cred", 50, Instant::ZERO).ok()?;
    s.set_under_load(ctl & 0x80 != 0);
    let init_pub = StaticKeys::from_secret(INITIATOR_SECRET);
    s.connect(Instant::ZERO, init_pub.public(), &mut stats).ok()?;
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    s.poll_initiation(Instant::ZERO, &mut rng, None, &mut out)?;
    Some((s, rng, stats))
}

/// Datagrams separated by "\n--\n".
struct Split<'a>(&'a [u8]);

/// The separator of datagrams in one fuzz input.
pub const SEP: &[u8] = b"\n--\n";

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                let (head, tail) = self.0.split_at(i);
                self.0 = &tail[SEP.len()..];
                Some(head)
            }
            None => Some(core::mem::take(&mut self.0)),
        }
    }
}
