//! The session handshake messages on the overlay socket (DESIGN.md "Security"; P3SPEC "session"):
//! a Noise IK initiation (0xC2) and response (0xC3) framed as WireGuard frames them (sender and receiver
//! indices, mac1, mac2), and the cookie reply (0xC4) a loaded responder sends instead of doing DH.
//!
//! All integers are big-endian (as the data message in [`super::overlay`]). `noise` is the Noise
//! message exactly as the Noise specification lays it out (rev. 34 §7.5, pattern IK).
//! ```text
//! initiation (0xC2), 161 + credentials bytes:
//!  0     1         2      4            8                 40                 88                      len-32  len-16  len
//! +-----+---------+------+------------+-----------------+------------------+-----------------------+-------+-------+
//! |0xC2 |ver|flags|  0 0 | sender idx | e (32)          | enc s (32 + 16)  | enc payload (+16 tag) | mac1  | mac2  |
//! +-----+---------+------+------------+-----------------+------------------+-----------------------+-------+-------+
//! initiation payload: boot counter u64 | monotonic micros u64 | flags u8 (0x01: wall time present) |
//!                     wall time u64 (Unix seconds, 0 when absent) | credentials (the rest)
//!
//! response (0xC3), 105 + credentials bytes:
//!  0     1         2      4            8              12                44                      len-32  len-16  len
//! +-----+---------+------+------------+--------------+-----------------+-----------------------+-------+-------+
//! |0xC3 |ver|flags|  0 0 | sender idx | receiver idx | e (32)          | enc payload (+16 tag) | mac1  | mac2  |
//! +-----+---------+------+------------+--------------+-----------------+-----------------------+-------+-------+
//! response payload: flags u8 (0x01: wall time present) | wall time u64 | credentials (the rest)
//!
//! cookie reply (0xC4), 64 bytes:
//!  0     1         2      4              8                        32                                  64
//! +-----+---------+------+--------------+------------------------+-----------------------------------+
//! |0xC4 |ver|flags|  0 0 | receiver idx | nonce (24)             | XChaCha20-Poly1305(cookie 16) +16 |
//! +-----+---------+------+--------------+------------------------+-----------------------------------+
//! ```
//! mac1 covers every byte before it, mac2 every byte before it (WireGuard §5.4.4). Reserved bytes are
//! written as zero and ignored on receipt; flags are written as zero.

use super::overlay::{MessageType, VERSION};
use super::{Error, Result};

/// Length of mac1 and of mac2.
pub const MAC_LEN: usize = 16;
/// Length of an X25519 public key.
pub const KEY_LEN: usize = 32;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// The fixed part of an initiation payload (boot counter, monotonic time, flags, wall time).
pub const INIT_PAYLOAD_FIXED: usize = 8 + 8 + 1 + 8;
/// The fixed part of a response payload (flags, wall time).
pub const RESP_PAYLOAD_FIXED: usize = 1 + 8;
/// Bytes of an initiation besides its payload: header, e, encrypted s, payload tag, mac1, mac2.
pub const INITIATION_OVERHEAD: usize = 8 + KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN + 2 * MAC_LEN;
/// Bytes of a response besides its payload: header, e, payload tag, mac1, mac2.
pub const RESPONSE_OVERHEAD: usize = 12 + KEY_LEN + TAG_LEN + 2 * MAC_LEN;
/// The shortest initiation (no credentials).
pub const INITIATION_MIN: usize = INITIATION_OVERHEAD + INIT_PAYLOAD_FIXED;
/// The shortest response (no credentials).
pub const RESPONSE_MIN: usize = RESPONSE_OVERHEAD + RESP_PAYLOAD_FIXED;
/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// The longest credentials carried (a certificate is about 300 bytes): an initiation stays below
/// 1280 bytes (IPv6's minimum MTU) with room for UDP/IP headers.
pub const MAX_CREDENTIALS: usize = 640;
/// The longest handshake message accepted.
pub const MAX_HANDSHAKE_LEN: usize = INITIATION_MIN + MAX_CREDENTIALS;

/// Flag in the payloads' flags byte: the wall time field holds a time.
const WALL_PRESENT: u8 = 0x01;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const VER_FLAGS: usize = 1;
    pub const RESERVED: Field = 2..4;
    pub const SENDER: Field = 4..8;
    /// The response's receiver index.
    pub const RECEIVER: Field = 8..12;
    /// The cookie reply's receiver index.
    pub const COOKIE_RECEIVER: Field = 4..8;
    pub const COOKIE_NONCE: Field = 8..32;
    pub const COOKIE_SEALED: Field = 32..64;
    pub const INIT_NOISE: usize = 8;
    pub const RESP_NOISE: usize = 12;
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// Which handshake message a view holds (it decides the lengths and offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0xC2.
    Initiation,
    /// 0xC3.
    Response,
}

impl Kind {
    const fn noise_start(self) -> usize {
        match self {
            Kind::Initiation => field::INIT_NOISE,
            Kind::Response => field::RESP_NOISE,
        }
    }
    const fn min_len(self) -> usize {
        match self {
            Kind::Initiation => INITIATION_MIN,
            Kind::Response => RESPONSE_MIN,
        }
    }
    const fn msg_type(self) -> MessageType {
        match self {
            Kind::Initiation => MessageType::Handshake,
            Kind::Response => MessageType::HandshakeResponse,
        }
    }
}

/// A read/write view of an initiation or a response.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    kind: Kind,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T, kind: Kind) -> Self {
        Self { buffer, kind }
    }

    /// Wrap after checking the type byte, the version and the length (at least the fixed part, at most
    /// [`MAX_HANDSHAKE_LEN`]).
    pub fn new_checked(buffer: T, kind: Kind) -> Result<Self> {
        let p = Self::new_unchecked(buffer, kind);
        let b = p.buffer.as_ref();
        if b.len() < kind.min_len() || b.len() > MAX_HANDSHAKE_LEN {
            return Err(Error);
        }
        if MessageType::from(b[field::TYPE]) != kind.msg_type() || b[field::VER_FLAGS] >> 4 != VERSION {
            return Err(Error);
        }
        Ok(p)
    }

    /// Which message this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The sender's index (the index the sender wants in the header of what it receives).
    pub fn sender(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SENDER])
    }

    /// The receiver's index (responses only; 0 for an initiation).
    pub fn receiver(&self) -> u32 {
        match self.kind {
            Kind::Initiation => 0,
            Kind::Response => be32(&self.buffer.as_ref()[field::RECEIVER]),
        }
    }

    /// The Noise message.
    pub fn noise(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.kind.noise_start()..b.len() - 2 * MAC_LEN]
    }

    /// The bytes mac1 covers.
    pub fn mac1_input(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - 2 * MAC_LEN]
    }

    /// The bytes mac2 covers.
    pub fn mac2_input(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - MAC_LEN]
    }

    /// mac1.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        let b = self.buffer.as_ref();
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(&b[b.len() - 2 * MAC_LEN..b.len() - MAC_LEN]);
        m
    }

    /// mac2.
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        let b = self.buffer.as_ref();
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(&b[b.len() - MAC_LEN..]);
        m
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The Noise message, mutable (the handshake writes it here).
    pub fn noise_mut(&mut self) -> &mut [u8] {
        let start = self.kind.noise_start();
        let b = self.buffer.as_mut();
        let end = b.len() - 2 * MAC_LEN;
        &mut b[start..end]
    }

    /// Set mac1.
    pub fn set_mac1(&mut self, m: &[u8; MAC_LEN]) {
        let b = self.buffer.as_mut();
        let n = b.len();
        b[n - 2 * MAC_LEN..n - MAC_LEN].copy_from_slice(m);
    }

    /// Set mac2.
    pub fn set_mac2(&mut self, m: &[u8; MAC_LEN]) {
        let b = self.buffer.as_mut();
        let n = b.len();
        b[n - MAC_LEN..].copy_from_slice(m);
    }
}

/// The header of an initiation or response (the Noise message and the macs are written by the session
/// layer into [`Packet::noise_mut`], [`Packet::set_mac1`], [`Packet::set_mac2`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// Initiation or response.
    pub kind: Kind,
    /// The sender's index.
    pub sender: u32,
    /// The receiver's index (responses; ignored for an initiation).
    pub receiver: u32,
    /// Length of the Noise message.
    pub noise_len: usize,
}

impl HeaderRepr {
    /// Parse the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        Ok(Self { kind: p.kind, sender: p.sender(), receiver: p.receiver(), noise_len: p.noise().len() })
    }

    /// Length of the whole message.
    pub const fn buffer_len(&self) -> usize {
        self.kind.noise_start() + self.noise_len + 2 * MAC_LEN
    }

    /// Write the header into a buffer of [`HeaderRepr::buffer_len`] bytes (the macs are zeroed).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        b[field::TYPE] = self.kind.msg_type().into();
        b[field::VER_FLAGS] = VERSION << 4;
        b[field::RESERVED].fill(0);
        b[field::SENDER].copy_from_slice(&self.sender.to_be_bytes());
        if self.kind == Kind::Response {
            b[field::RECEIVER].copy_from_slice(&self.receiver.to_be_bytes());
        }
        p.set_mac1(&[0; MAC_LEN]);
        p.set_mac2(&[0; MAC_LEN]);
    }
}

/// A cookie reply (always [`COOKIE_REPLY_LEN`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReplyRepr {
    /// The index the initiation named as its sender.
    pub receiver: u32,
    /// The XChaCha20-Poly1305 nonce.
    pub nonce: [u8; 24],
    /// The encrypted cookie and its tag.
    pub sealed: [u8; 32],
}

impl CookieReplyRepr {
    /// Parse a cookie reply: type 0xC4, this version, exactly [`COOKIE_REPLY_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() != COOKIE_REPLY_LEN
            || MessageType::from(b[field::TYPE]) != MessageType::CookieReply
            || b[field::VER_FLAGS] >> 4 != VERSION
        {
            return Err(Error);
        }
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&b[field::COOKIE_NONCE]);
        let mut sealed = [0u8; 32];
        sealed.copy_from_slice(&b[field::COOKIE_SEALED]);
        Ok(Self { receiver: be32(&b[field::COOKIE_RECEIVER]), nonce, sealed })
    }

    /// Always [`COOKIE_REPLY_LEN`].
    pub const fn buffer_len(&self) -> usize {
        COOKIE_REPLY_LEN
    }

    /// Write into the first [`COOKIE_REPLY_LEN`] bytes of `out`; `Err` when shorter.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let b = out.get_mut(..COOKIE_REPLY_LEN).ok_or(Error)?;
        b[field::TYPE] = MessageType::CookieReply.into();
        b[field::VER_FLAGS] = VERSION << 4;
        b[field::RESERVED].fill(0);
        b[field::COOKIE_RECEIVER].copy_from_slice(&self.receiver.to_be_bytes());
        b[field::COOKIE_NONCE].copy_from_slice(&self.nonce);
        b[field::COOKIE_SEALED].copy_from_slice(&self.sealed);
        Ok(COOKIE_REPLY_LEN)
    }
}

/// The initiator's handshake payload (inside the Noise encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitPayload<'a> {
    /// The initiator's boot counter (persisted, bumped at each start).
    pub boot: u64,
    /// Microseconds of the initiator's monotonic clock since that start.
    pub mono_micros: u64,
    /// The initiator's wall time (Unix seconds) if it has one.
    pub wall: Option<u64>,
    /// Opaque credentials (the certificate), at most [`MAX_CREDENTIALS`] bytes.
    pub credentials: &'a [u8],
}

impl<'a> InitPayload<'a> {
    /// Parse a decrypted initiation payload.
    pub fn parse(b: &'a [u8]) -> Result<Self> {
        let (fixed, credentials) = b.split_at_checked(INIT_PAYLOAD_FIXED).ok_or(Error)?;
        if credentials.len() > MAX_CREDENTIALS {
            return Err(Error);
        }
        let wall = (fixed[16] & WALL_PRESENT != 0).then(|| be64(&fixed[17..25]));
        Ok(Self { boot: be64(&fixed[..8]), mono_micros: be64(&fixed[8..16]), wall, credentials })
    }

    /// Length when emitted.
    pub const fn buffer_len(&self) -> usize {
        INIT_PAYLOAD_FIXED + self.credentials.len()
    }

    /// Write into the start of `out`; `Err` when shorter than [`InitPayload::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let b = out.get_mut(..n).ok_or(Error)?;
        b[..8].copy_from_slice(&self.boot.to_be_bytes());
        b[8..16].copy_from_slice(&self.mono_micros.to_be_bytes());
        b[16] = if self.wall.is_some() { WALL_PRESENT } else { 0 };
        b[17..25].copy_from_slice(&self.wall.unwrap_or(0).to_be_bytes());
        b[25..].copy_from_slice(self.credentials);
        Ok(n)
    }
}

/// The responder's handshake payload (inside the Noise encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespPayload<'a> {
    /// The responder's wall time (Unix seconds) if it has one.
    pub wall: Option<u64>,
    /// Opaque credentials (the certificate), at most [`MAX_CREDENTIALS`] bytes.
    pub credentials: &'a [u8],
}

impl<'a> RespPayload<'a> {
    /// Parse a decrypted response payload.
    pub fn parse(b: &'a [u8]) -> Result<Self> {
        let (fixed, credentials) = b.split_at_checked(RESP_PAYLOAD_FIXED).ok_or(Error)?;
        if credentials.len() > MAX_CREDENTIALS {
            return Err(Error);
        }
        let wall = (fixed[0] & WALL_PRESENT != 0).then(|| be64(&fixed[1..9]));
        Ok(Self { wall, credentials })
    }

    /// Length when emitted.
    pub const fn buffer_len(&self) -> usize {
        RESP_PAYLOAD_FIXED + self.credentials.len()
    }

    /// Write into the start of `out`; `Err` when shorter than [`RespPayload::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let b = out.get_mut(..n).ok_or(Error)?;
        b[0] = if self.wall.is_some() { WALL_PRESENT } else { 0 };
        b[1..9].copy_from_slice(&self.wall.unwrap_or(0).to_be_bytes());
        b[9..].copy_from_slice(self.credentials);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An initiation with sender index 0x01020304 and 3 bytes of credentials: the header and the macs
    /// as this layout puts them, the Noise part left as 0xa5 (it is random). Written out by hand.
    #[test]
    fn initiation_header_golden_bytes() {
        let repr = HeaderRepr {
            kind: Kind::Initiation,
            sender: 0x0102_0304,
            receiver: 0,
            noise_len: 32 + 48 + INIT_PAYLOAD_FIXED + 3 + 16,
        };
        assert_eq!(repr.buffer_len(), INITIATION_MIN + 3);
        let mut buf = [0xa5u8; INITIATION_MIN + 3];
        let mut p = Packet::new_unchecked(&mut buf[..], Kind::Initiation);
        repr.emit(&mut p);
        p.set_mac1(&[0x11; 16]);
        p.set_mac2(&[0x22; 16]);
        assert_eq!(buf[..8], [0xC2, 0x10, 0, 0, 1, 2, 3, 4]);
        assert!(buf[8..buf.len() - 32].iter().all(|&b| b == 0xa5));
        assert_eq!(buf[buf.len() - 32..buf.len() - 16], [0x11; 16]);
        assert_eq!(buf[buf.len() - 16..], [0x22; 16]);
        let p = Packet::new_checked(&buf[..], Kind::Initiation).unwrap();
        assert_eq!(HeaderRepr::parse(&p), Ok(repr));
        assert_eq!(p.mac1_input().len(), buf.len() - 32);
        assert_eq!(p.mac2_input().len(), buf.len() - 16);
        assert!(Packet::new_checked(&buf[..], Kind::Response).is_err(), "wrong type");
        assert!(Packet::new_checked(&buf[..INITIATION_MIN - 1], Kind::Initiation).is_err(), "short");
    }

    #[test]
    fn response_header_golden_bytes() {
        let repr = HeaderRepr {
            kind: Kind::Response,
            sender: 0xA0B0_C0D0,
            receiver: 0x0102_0304,
            noise_len: 32 + RESP_PAYLOAD_FIXED + 16,
        };
        assert_eq!(repr.buffer_len(), RESPONSE_MIN);
        let mut buf = [0xa5u8; RESPONSE_MIN];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..], Kind::Response));
        assert_eq!(buf[..12], [0xC3, 0x10, 0, 0, 0xA0, 0xB0, 0xC0, 0xD0, 1, 2, 3, 4]);
        assert_eq!(buf[RESPONSE_MIN - 32..], [0; 32]);
        let p = Packet::new_checked(&buf[..], Kind::Response).unwrap();
        assert_eq!(HeaderRepr::parse(&p), Ok(repr));
        buf[1] = 0x20;
        assert!(Packet::new_checked(&buf[..], Kind::Response).is_err(), "another version");
    }

    /// A cookie reply to receiver 7 with nonce 01..18 and sealed bytes 0xEE. Written out by hand.
    static COOKIE_BYTES: [u8; 64] = [
        0xC4, 0x10, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        21, 22, 23, 24, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE,
        0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE,
        0xEE,
    ];

    #[test]
    fn cookie_reply_golden_bytes() {
        let mut nonce = [0u8; 24];
        for (i, b) in nonce.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let r = CookieReplyRepr { receiver: 7, nonce, sealed: [0xEE; 32] };
        let mut buf = [0xa5u8; 64];
        assert_eq!(r.emit(&mut buf), Ok(64));
        assert_eq!(buf, COOKIE_BYTES);
        assert_eq!(CookieReplyRepr::parse(&COOKIE_BYTES), Ok(r));
        assert_eq!(CookieReplyRepr::parse(&COOKIE_BYTES[..63]), Err(Error));
        assert_eq!(r.emit(&mut [0u8; 63]), Err(Error));
    }

    /// Boot 1, 2 µs, wall time 0x5F5E100, credentials "AB". Written out by hand.
    static INIT_PAYLOAD_BYTES: [u8; 27] =
        [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0x05, 0xF5, 0xE1, 0x00, b'A', b'B'];

    #[test]
    fn payload_golden_bytes() {
        let p = InitPayload { boot: 1, mono_micros: 2, wall: Some(100_000_000), credentials: b"AB" };
        let mut buf = [0xa5u8; 27];
        assert_eq!(p.emit(&mut buf), Ok(27));
        assert_eq!(buf, INIT_PAYLOAD_BYTES);
        assert_eq!(InitPayload::parse(&INIT_PAYLOAD_BYTES), Ok(p));
        assert_eq!(InitPayload::parse(&INIT_PAYLOAD_BYTES[..24]), Err(Error));
        let r = RespPayload { wall: None, credentials: b"" };
        let mut buf = [0xa5u8; 9];
        assert_eq!(r.emit(&mut buf), Ok(9));
        assert_eq!(buf, [0; 9]);
        assert_eq!(RespPayload::parse(&buf), Ok(r));
    }

    proptest! {
        #[test]
        fn payloads_round_trip(boot: u64, mono: u64, wall: Option<u64>,
                               cred in proptest::collection::vec(any::<u8>(), 0..MAX_CREDENTIALS + 1)) {
            let p = InitPayload { boot, mono_micros: mono, wall, credentials: &cred };
            let mut buf = [0u8; INIT_PAYLOAD_FIXED + MAX_CREDENTIALS];
            let n = p.emit(&mut buf).unwrap();
            prop_assert_eq!(InitPayload::parse(&buf[..n]), Ok(p));
            let r = RespPayload { wall, credentials: &cred };
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(RespPayload::parse(&buf[..n]), Ok(r));
        }

        #[test]
        fn headers_round_trip(sender: u32, receiver: u32, resp: bool, cred in 0usize..MAX_CREDENTIALS) {
            let kind = if resp { Kind::Response } else { Kind::Initiation };
            let noise_len = kind.min_len() - kind.noise_start() - 2 * MAC_LEN + cred;
            let repr = HeaderRepr { kind, sender, receiver: if resp { receiver } else { 0 }, noise_len };
            let mut buf = [0u8; MAX_HANDSHAKE_LEN];
            let out = &mut buf[..repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut *out, kind));
            let p = Packet::new_checked(&*out, kind).unwrap();
            prop_assert_eq!(HeaderRepr::parse(&p), Ok(repr));
        }
    }
}
