//! mac1, mac2 and cookies as WireGuard has them (WireGuard paper §5.4.4, §5.4.7), checked before any DH.
//!
//! - mac1 = BLAKE2s-128 keyed with BLAKE2s-256("mac1----" || responder static key), over the message up
//!   to mac1: only someone who knows the responder's public key can make the responder spend a DH.
//! - Under load the responder answers an initiation whose mac2 is not valid with a cookie reply: cookie =
//!   BLAKE2s-128 keyed with a random secret (rotated every [`COOKIE_SECRET_LIFE`]) over the source IP
//!   address and port, sealed with XChaCha20-Poly1305 under BLAKE2s-256("cookie--" || responder static
//!   key), a random 24-byte nonce, and the initiation's mac1 as associated data (so only the sender of
//!   that initiation can use it). XChaCha20-Poly1305 as WireGuard: a random nonce of 192 bits never
//!   repeats in practice, and the cipher is already in the firmware (chacha20poly1305 0.10).
//! - The initiator then puts mac2 = BLAKE2s-128 keyed with the cookie, over the message up to mac2, in
//!   its next initiations while the cookie is younger than [`COOKIE_SECRET_LIFE`].

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use core::net::{IpAddr, SocketAddr};
use rand_core::{CryptoRng, RngCore};
use smoltcp::time::{Duration, Instant};

use crate::wire::handshake::{CookieReplyRepr, MAC_LEN};

/// How long a cookie secret (and so a cookie) lives.
pub const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(120);

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

/// BLAKE2s-256(label || key): the mac1 key or the cookie sealing key of a static key.
pub fn derive_key(label: &[u8], static_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, label);
    Digest::update(&mut h, static_key);
    h.finalize().into()
}

/// The mac1 key of a responder's static key.
pub fn mac1_key(static_key: &[u8; 32]) -> [u8; 32] {
    derive_key(LABEL_MAC1, static_key)
}

/// The cookie sealing key of a responder's static key.
pub fn cookie_key(static_key: &[u8; 32]) -> [u8; 32] {
    derive_key(LABEL_COOKIE, static_key)
}

/// BLAKE2s-128 keyed with `key` (16 or 32 bytes) over the concatenation of `parts`.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // Keys of 1..=32 bytes are valid BLAKE2s keys; ours are 16 or 32 bytes long.
    let Ok(mut m) = <Blake2sMac<U16> as KeyInit>::new_from_slice(key) else {
        return [0; MAC_LEN];
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

/// Constant-time comparison of two macs.
pub fn mac_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn addr_bytes(src: &SocketAddr, out: &mut [u8; 18]) -> usize {
    let port = src.port().to_be_bytes();
    match src.ip() {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            out[4..6].copy_from_slice(&port);
            6
        }
        IpAddr::V6(a) => {
            out[..16].copy_from_slice(&a.octets());
            out[16..].copy_from_slice(&port);
            18
        }
    }
}

/// The responder side: checks mac1 and mac2, makes cookie replies.
#[derive(Clone)]
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    /// When the secret was drawn (`None`: never yet, every mac2 is invalid).
    born: Option<Instant>,
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker").field("born", &self.born).finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// The checker of the responder whose static public key is `our_static`.
    pub fn new(our_static: &[u8; 32]) -> Self {
        Self {
            mac1_key: mac1_key(our_static),
            cookie_key: cookie_key(our_static),
            secret: [0; 32],
            born: None,
        }
    }

    /// Whether `mac` is the mac1 of `input` (the message up to mac1).
    pub fn check_mac1(&self, input: &[u8], mac1: &[u8; MAC_LEN]) -> bool {
        mac_eq(&mac(&self.mac1_key, &[input]), mac1)
    }

    fn secret_valid(&self, now: Instant) -> bool {
        self.born.is_some_and(|b| now >= b && now - b < COOKIE_SECRET_LIFE)
    }

    fn cookie(&self, src: &SocketAddr) -> [u8; MAC_LEN] {
        let mut a = [0u8; 18];
        let n = addr_bytes(src, &mut a);
        mac(&self.secret, &[&a[..n]])
    }

    /// Whether `mac2` over `input` (the message up to mac2) is made with the current cookie of `src`.
    pub fn check_mac2(&self, now: Instant, src: &SocketAddr, input: &[u8], mac2: &[u8; MAC_LEN]) -> bool {
        self.secret_valid(now) && mac_eq(&mac(&self.cookie(src), &[input]), mac2)
    }

    /// A cookie reply for the initiation from `src` with sender index `receiver` and mac1 `mac1`
    /// (rotating the secret first when it is older than [`COOKIE_SECRET_LIFE`]).
    pub fn reply<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &SocketAddr,
        receiver: u32,
        mac1: &[u8; MAC_LEN],
    ) -> CookieReplyRepr {
        if !self.secret_valid(now) {
            rng.fill_bytes(&mut self.secret);
            self.born = Some(now);
        }
        let cookie = self.cookie(src);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let mut sealed = [0u8; 32];
        sealed[..16].copy_from_slice(&cookie);
        let cipher = XChaCha20Poly1305::new((&self.cookie_key).into());
        // Encrypting 16 bytes cannot exceed the cipher's length limit.
        if let Ok(tag) = cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), mac1, &mut sealed[..16])
        {
            sealed[16..].copy_from_slice(&tag);
        }
        CookieReplyRepr { receiver, nonce, sealed }
    }
}

/// The initiator side: open a cookie reply from the responder whose cookie key is `cookie_key`, to the
/// initiation whose mac1 was `mac1`. `None` when it does not authenticate.
pub fn open_reply(
    cookie_key: &[u8; 32],
    reply: &CookieReplyRepr,
    mac1: &[u8; MAC_LEN],
) -> Option<[u8; MAC_LEN]> {
    let cipher = XChaCha20Poly1305::new(cookie_key.into());
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&reply.sealed[..16]);
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&reply.nonce),
            mac1,
            &mut cookie,
            reply.sealed[16..].into(),
        )
        .ok()?;
    Some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip_and_rotation() {
        let resp_pub = [9u8; 32];
        let mut checker = CookieChecker::new(&resp_pub);
        let mut rng = crate::session::tests::TestRng::new(1);
        let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let t0 = Instant::from_secs(10);
        let msg = b"initiation up to mac2";
        assert!(!checker.check_mac2(t0, &src, msg, &[0; 16]), "no secret yet");
        let reply = checker.reply(t0, &mut rng, &src, 7, &[1; 16]);
        assert_eq!(open_reply(&cookie_key(&resp_pub), &reply, &[2; 16]), None, "bound to mac1");
        let cookie = open_reply(&cookie_key(&resp_pub), &reply, &[1; 16]).unwrap();
        let mac2 = mac(&cookie, &[msg]);
        assert!(checker.check_mac2(t0, &src, msg, &mac2));
        let other: SocketAddr = "192.0.2.1:51821".parse().unwrap();
        assert!(!checker.check_mac2(t0, &other, msg, &mac2), "bound to the source port");
        let later = t0 + COOKIE_SECRET_LIFE;
        assert!(!checker.check_mac2(later, &src, msg, &mac2), "the secret expired");
        let _ = checker.reply(later, &mut rng, &src, 7, &[1; 16]);
        assert!(!checker.check_mac2(later, &src, msg, &mac2), "a new secret, the old cookie is void");
    }
}
