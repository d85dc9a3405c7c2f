//! The Noise IK handshake through clatter's no-alloc core (`NqHandshakeCore`), with key material from
//! the runtime's RNG: both the static key and every ephemeral key are given to clatter ready-made, so
//! clatter's own RNG type parameter ([`NoRng`]) is never asked for a byte.

use clatter::bytearray::SensitiveByteArray;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2s;
use clatter::handshakepattern::noise_ik;
use clatter::traits::{Dh, Handshaker};
use clatter::{KeyPair, NqHandshakeCore};
use rand_core::{CryptoRng, RngCore};

/// The protocol version mixed into the prologue.
pub const PROTOCOL_VERSION: u8 = 1;
/// Length of the prologue: b"vngate" || version || namespace id.
pub const PROLOGUE_LEN: usize = 6 + 1 + 16;

/// The RNG type clatter's handshake is instantiated with. It is never used (every key is passed in),
/// and it refuses to produce bytes rather than produce predictable ones.
#[derive(Debug, Default, Clone)]
pub struct NoRng;

impl RngCore for NoRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("vn-core passes every Noise key to clatter; its RNG is never used")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("vn-core passes every Noise key to clatter; its RNG is never used")
    }
    fn fill_bytes(&mut self, _: &mut [u8]) {
        unreachable!("vn-core passes every Noise key to clatter; its RNG is never used")
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_core::Error> {
        Err(rand_core::Error::from(core::num::NonZeroU32::MIN))
    }
}

impl CryptoRng for NoRng {}

/// Noise_IK_25519_ChaChaPoly_BLAKE2s.
pub type Handshake = NqHandshakeCore<X25519, ChaChaPoly, Blake2s, NoRng>;

type Pair = KeyPair<[u8; 32], SensitiveByteArray<[u8; 32]>>;

/// The prologue of a namespace.
pub fn prologue(namespace: &[u8; 16]) -> [u8; PROLOGUE_LEN] {
    let mut p = [0u8; PROLOGUE_LEN];
    p[..6].copy_from_slice(b"vngate");
    p[6] = PROTOCOL_VERSION;
    p[7..].copy_from_slice(namespace);
    p
}

/// The X25519 public key of a secret.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    X25519::pubkey(&SensitiveByteArray::new(*secret))
}

fn pair(secret: &[u8; 32]) -> Pair {
    let sk = SensitiveByteArray::new(*secret);
    KeyPair::new(X25519::pubkey(&sk), sk)
}

fn ephemeral<R: RngCore + CryptoRng>(rng: &mut R) -> Pair {
    let mut e = [0u8; 32];
    rng.fill_bytes(&mut e);
    let p = pair(&e);
    e.fill(0);
    p
}

/// A handshake as initiator towards `remote`.
pub fn initiator<R: RngCore + CryptoRng>(
    prologue: &[u8],
    secret: &[u8; 32],
    remote: &[u8; 32],
    rng: &mut R,
) -> Option<Handshake> {
    Handshake::new(noise_ik(), prologue, true, Some(pair(secret)), Some(ephemeral(rng)), Some(*remote), None)
        .ok()
}

/// A handshake as responder.
pub fn responder<R: RngCore + CryptoRng>(
    prologue: &[u8],
    secret: &[u8; 32],
    rng: &mut R,
) -> Option<Handshake> {
    Handshake::new(noise_ik(), prologue, false, Some(pair(secret)), Some(ephemeral(rng)), None, None).ok()
}

/// The two transport keys of a finished handshake: (initiator to responder, responder to initiator).
pub fn split(hs: Handshake) -> Option<([u8; 32], [u8; 32])> {
    if !hs.is_finished() {
        return None;
    }
    let cs = hs.finalize().ok()?.take();
    let (i2r, _) = cs.initiator_to_responder.take();
    let (r2i, _) = cs.responder_to_initiator.take();
    Some((*i2r, *r2i))
}
