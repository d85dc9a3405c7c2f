//! The overlay socket's demultiplexing (RFC 7983) and the overlay data message (DESIGN.md "wire",
//! "encap").
//!
//! One UDP socket carries everything. The first byte decides, as RFC 7983 §7 lays out: 0..=3 is STUN
//! (confirmed by the RFC 5389 magic cookie and length), vngate's own message types are 0xC0..=0xFF
//! (above RTP/RTCP's 128..=191), anything else is dropped.
//!
//! The data message carries one Ethernet frame. All integers are big-endian:
//! ```text
//!  0       1          2        4                 8                        16          len-16     len
//! +-------+----------+--------+-----------------+------------------------+-----------+----------+
//! | 0xC0  | ver|flags| 0    0 | receiver session| counter (64 bits)      | Ethernet  | AEAD tag |
//! | type  | 4b | 4b  |reserved| index (32 bits) |                        | frame     | 16 bytes |
//! +-------+----------+--------+-----------------+------------------------+-----------+----------+
//! ```
//! The session index names the receiver's session (WireGuard's receiver index), the counter is the AEAD
//! nonce and the replay window's input, the tag authenticates the frame. P3 fills those three; in P1 they
//! are carried as given and the tag is zeros. Reserved bytes are written as zero and ignored on receipt.

use super::{Error, Result};

/// The RFC 5389 magic cookie in bytes 4..8 of every STUN message.
pub const STUN_MAGIC_COOKIE: u32 = 0x2112_A442;
/// The STUN header length.
pub const STUN_HEADER_LEN: usize = 20;
/// Data message header length (type to counter).
pub const HEADER_LEN: usize = 16;
/// AEAD tag length (ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// Bytes a data message adds to the Ethernet frame it carries.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The data message version this code writes and reads.
pub const VERSION: u8 = 1;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const VER_FLAGS: usize = 1;
    pub const RESERVED: Field = 2..4;
    pub const RECEIVER: Field = 4..8;
    pub const COUNTER: Field = 8..16;
    pub const PAYLOAD: usize = 16;
}

macro_rules! enum_with_unknown_u8 {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
            /// A value this version does not know.
            Unknown(u8),
        }
        impl From<u8> for $name {
            fn from(n: u8) -> Self {
                match n { $($n => Self::$v,)+ other => Self::Unknown(other) }
            }
        }
        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v { $($name::$v => $n,)+ $name::Unknown(n) => n }
            }
        }
    };
}

enum_with_unknown_u8! {
    /// vngate's message types on the overlay socket (first byte, always >= 0xC0).
    pub enum MessageType {
        /// An Ethernet frame between two nodes.
        Data = 0xC0,
        /// A control message (hello, RTT probe, DHT): [`super::control`].
        Control = 0xC1,
        /// A handshake initiation (Noise IK, first message): [`super::handshake`].
        Handshake = 0xC2,
        /// A handshake response (Noise IK, second message): [`super::handshake`].
        HandshakeResponse = 0xC3,
        /// A cookie reply to a handshake initiation under load: [`super::handshake`].
        CookieReply = 0xC4,
    }
}

/// What a datagram on the overlay socket is (RFC 7983 demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A STUN message (RFC 5389): header with the magic cookie, length matching the datagram.
    Stun,
    /// One of vngate's messages.
    Vngate(MessageType),
    /// Neither: drop it (including a first byte of 0..=3 without a valid STUN header).
    Other,
}

/// Classify a datagram from the overlay socket by its first byte (RFC 7983 §7).
// HOT PATH
pub fn classify(datagram: &[u8]) -> Class {
    match datagram.first() {
        Some(0..=3) if is_stun(datagram) => Class::Stun,
        Some(&b) if b >= 0xC0 => Class::Vngate(MessageType::from(b)),
        _ => Class::Other,
    }
}

/// Whether `d` has a valid STUN header: top two bits zero, the magic cookie, and a length that is a
/// multiple of 4 and accounts for the whole datagram (RFC 5389 §6).
fn is_stun(d: &[u8]) -> bool {
    let Some(h) = d.get(..STUN_HEADER_LEN) else {
        return false;
    };
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    h[0] & 0xC0 == 0
        && u32::from_be_bytes([h[4], h[5], h[6], h[7]]) == STUN_MAGIC_COOKIE
        && len % 4 == 0
        && STUN_HEADER_LEN + len == d.len()
}

/// Data message flags (the low nibble of byte 1). Unknown bits are carried as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// A frame forwarded by an address's previous owner during a migration's grace period
    /// (DESIGN.md "routes": exempt from source-address validation).
    pub const FORWARDED: Flags = Flags(0x01);
    /// A LAN broadcast or multicast frame fanned out to the namespace's `bcast` members (DESIGN.md
    /// "bcast"): the payload starts with a [`BcastTag`] before the Ethernet frame.
    pub const BROADCAST: Flags = Flags(0x02);

    /// Flags from the low four bits of `bits`.
    pub const fn from_bits(bits: u8) -> Self {
        Flags(bits & 0x0F)
    }
    /// The four flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A read/write view of a data message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking the length (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap after checking that the header and tag fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err` when the buffer is shorter than the header plus the tag.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < OVERHEAD {
            return Err(Error);
        }
        Ok(())
    }

    /// Consume the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (byte 0).
    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Version (high nibble of byte 1).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] >> 4
    }

    /// Flags (low nibble of byte 1).
    pub fn flags(&self) -> Flags {
        Flags::from_bits(self.buffer.as_ref()[field::VER_FLAGS])
    }

    /// The receiver's session index.
    pub fn receiver(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RECEIVER];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The message counter (AEAD nonce).
    pub fn counter(&self) -> u64 {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.buffer.as_ref()[field::COUNTER]);
        u64::from_be_bytes(c)
    }

    /// The carried frame (between header and tag).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::PAYLOAD..b.len() - TAG_LEN]
    }

    /// The AEAD tag.
    pub fn tag(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the message type.
    pub fn set_msg_type(&mut self, t: MessageType) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }
    /// Set version and flags.
    pub fn set_version_flags(&mut self, version: u8, flags: Flags) {
        self.buffer.as_mut()[field::VER_FLAGS] = (version << 4) | flags.bits();
    }
    /// Zero the reserved bytes.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }
    /// Set the receiver's session index.
    pub fn set_receiver(&mut self, v: u32) {
        self.buffer.as_mut()[field::RECEIVER].copy_from_slice(&v.to_be_bytes());
    }
    /// Set the counter.
    pub fn set_counter(&mut self, v: u64) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&v.to_be_bytes());
    }
    /// The carried frame, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = b.len() - TAG_LEN;
        &mut b[field::PAYLOAD..end]
    }
    /// The AEAD tag, mutable.
    pub fn tag_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let start = b.len() - TAG_LEN;
        &mut b[start..]
    }
}

/// The header of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr {
    /// Flags.
    pub flags: Flags,
    /// The receiver's session index.
    pub receiver: u32,
    /// The message counter.
    pub counter: u64,
    /// Length of the carried frame.
    pub payload_len: usize,
}

impl DataRepr {
    /// Parse a data message header. `Err` for another message type or version.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        p.check_len()?;
        if p.msg_type() != MessageType::Data || p.version() != VERSION {
            return Err(Error);
        }
        Ok(Self {
            flags: p.flags(),
            receiver: p.receiver(),
            counter: p.counter(),
            payload_len: p.payload().len(),
        })
    }

    /// Length of the whole message: header, frame, tag.
    pub const fn buffer_len(&self) -> usize {
        OVERHEAD + self.payload_len
    }

    /// Write the header (not the frame nor the tag) into a buffer of [`DataRepr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_msg_type(MessageType::Data);
        p.set_version_flags(VERSION, self.flags);
        p.clear_reserved();
        p.set_receiver(self.receiver);
        p.set_counter(self.counter);
    }
}

/// Length of a [`BcastTag`].
pub const BCAST_TAG_LEN: usize = 16;

/// The tag in front of the Ethernet frame of a data message flagged [`Flags::BROADCAST`]: who sent
/// the broadcast first and its sequence number, for deduplication at receivers. Big-endian:
/// ```text
///  0                        8                        16
/// +------------------------+------------------------+---------------
/// | origin (node id's first| sequence (64 bits)     | Ethernet frame
/// | 8 bytes)               |                        |
/// +------------------------+------------------------+---------------
/// ```
/// The origin is the sending node's id prefix: a receiver drops a tag whose origin is not the
/// authenticated sender's (no relaying). 16 bytes rather than the whole id keep a frame of
/// 1488 bytes within one queue slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BcastTag {
    /// The first 8 bytes of the origin's node id.
    pub origin: [u8; 8],
    /// The origin's broadcast sequence number.
    pub seq: u64,
}

impl BcastTag {
    /// Parses the tag at the start of a data message's payload: the tag and the frame after it.
    pub fn parse(payload: &[u8]) -> Result<(Self, &[u8])> {
        let (head, frame) = payload.split_at_checked(BCAST_TAG_LEN).ok_or(Error)?;
        let mut origin = [0u8; 8];
        origin.copy_from_slice(&head[..8]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[8..]);
        Ok((BcastTag { origin, seq: u64::from_be_bytes(seq) }, frame))
    }

    /// Always [`BCAST_TAG_LEN`].
    pub const fn buffer_len(&self) -> usize {
        BCAST_TAG_LEN
    }

    /// Writes the tag into the first [`BCAST_TAG_LEN`] bytes of `out`; `Err` when shorter.
    pub fn emit(&self, out: &mut [u8]) -> Result<()> {
        let head = out.get_mut(..BCAST_TAG_LEN).ok_or(Error)?;
        head[..8].copy_from_slice(&self.origin);
        head[8..].copy_from_slice(&self.seq.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A broadcast data message: receiver 0, counter 7, BROADCAST, origin 07 07 .. 07, sequence
    /// 0x0102030405060708, a 4-byte frame "EFGH", zero tag. Written out by hand from the layouts above.
    static BCAST_BYTES: [u8; 52] = [
        0xC0, 0x12, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 2, 3, 4, 5, 6,
        7, 8, b'E', b'F', b'G', b'H', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn parses_and_emits_the_golden_broadcast_message() {
        let p = Packet::new_checked(&BCAST_BYTES[..]).unwrap();
        let r = DataRepr::parse(&p).unwrap();
        assert!(r.flags.contains(Flags::BROADCAST) && !r.flags.contains(Flags::FORWARDED));
        let (tag, frame) = BcastTag::parse(p.payload()).unwrap();
        assert_eq!(tag, BcastTag { origin: [7; 8], seq: 0x0102_0304_0506_0708 });
        assert_eq!(frame, b"EFGH");

        let mut buf = [0xa5u8; 52];
        let mut q = Packet::new_unchecked(&mut buf[..]);
        DataRepr { flags: Flags::BROADCAST, receiver: 0, counter: 7, payload_len: 20 }.emit(&mut q);
        tag.emit(q.payload_mut()).unwrap();
        q.payload_mut()[BCAST_TAG_LEN..].copy_from_slice(b"EFGH");
        q.tag_mut().fill(0);
        assert_eq!(buf, BCAST_BYTES);
        assert_eq!(BcastTag::parse(&BCAST_BYTES[16..31]), Err(Error), "a payload shorter than the tag");
        assert_eq!(tag.emit(&mut [0u8; 15]), Err(Error));
    }

    /// A data message as the P1 encoder writes it: receiver 0x01020304, counter 0x1122334455667788,
    /// FORWARDED, a 4-byte payload "ABCD", zero tag. Written out by hand from the layout above.
    static DATA_BYTES: [u8; 36] = [
        0xC0, 0x11, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, b'A',
        b'B', b'C', b'D', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// The RFC 5769 §2.1 sample STUN Binding request (with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    /// MESSAGE-INTEGRITY and FINGERPRINT): 20-byte header, 88 bytes of attributes.
    static STUN_RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa,
        0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20,
        0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00,
        0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a,
        0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf,
        0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28,
        0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
    ];

    fn repr() -> DataRepr {
        DataRepr {
            flags: Flags::FORWARDED,
            receiver: 0x0102_0304,
            counter: 0x1122_3344_5566_7788,
            payload_len: 4,
        }
    }

    #[test]
    fn parses_the_golden_data_message() {
        let p = Packet::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(DataRepr::parse(&p), Ok(repr()));
        assert_eq!(p.payload(), b"ABCD");
        assert_eq!(p.tag(), &[0u8; 16]);
        assert!(p.flags().contains(Flags::FORWARDED));
    }

    #[test]
    fn emits_the_golden_header_exactly() {
        let mut buf = [0xa5u8; 36];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(b"ABCD");
        p.tag_mut().fill(0);
        assert_eq!(buf, DATA_BYTES);
        assert_eq!(repr().buffer_len(), 36);
    }

    #[test]
    fn refuses_short_wrong_type_and_wrong_version() {
        assert_eq!(Packet::new_checked(&DATA_BYTES[..31]).err(), Some(Error));
        let mut b = DATA_BYTES;
        b[0] = 0xC1;
        assert_eq!(DataRepr::parse(&Packet::new_unchecked(&b[..])), Err(Error));
        let mut b = DATA_BYTES;
        b[1] = 0x21;
        assert_eq!(DataRepr::parse(&Packet::new_unchecked(&b[..])), Err(Error));
        // Too short for new_checked is also refused by parse on an unchecked view.
        assert_eq!(DataRepr::parse(&Packet::new_unchecked(&DATA_BYTES[..10])), Err(Error));
        // Reserved bytes are ignored on receipt.
        let mut b = DATA_BYTES;
        b[2] = 0xff;
        assert_eq!(DataRepr::parse(&Packet::new_unchecked(&b[..])), Ok(repr()));
    }

    #[test]
    fn classifies_per_rfc7983() {
        assert_eq!(classify(&STUN_RFC5769_REQUEST), Class::Stun);
        assert_eq!(classify(&DATA_BYTES), Class::Vngate(MessageType::Data));
        assert_eq!(classify(&[0xC7, 0, 0]), Class::Vngate(MessageType::Unknown(0xC7)));
        assert_eq!(classify(&[]), Class::Other);
        // STUN's first byte but a wrong cookie, a wrong length, or a truncated header.
        let mut s = STUN_RFC5769_REQUEST;
        s[4] = 0x20;
        assert_eq!(classify(&s), Class::Other);
        assert_eq!(classify(&STUN_RFC5769_REQUEST[..100]), Class::Other);
        assert_eq!(classify(&STUN_RFC5769_REQUEST[..19]), Class::Other);
        // DTLS (20..=63), TURN channels (64..=79), RTP (128..=191): not ours.
        for b in [20u8, 64, 128, 191] {
            assert_eq!(classify(&[b; 40]), Class::Other);
        }
    }

    proptest! {
        #[test]
        fn data_repr_round_trips(flags in 0u8..16, receiver: u32, counter: u64, payload_len in 0usize..64) {
            let r = DataRepr { flags: Flags::from_bits(flags), receiver, counter, payload_len };
            let mut buf = std::vec![0xa5u8; r.buffer_len()];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            r.emit(&mut p);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(DataRepr::parse(&p), Ok(r));
            prop_assert_eq!(classify(&buf), Class::Vngate(MessageType::Data));
        }

        #[test]
        fn bcast_tag_round_trips(origin: [u8; 8], seq: u64, rest in proptest::collection::vec(any::<u8>(), 0..8)) {
            let t = BcastTag { origin, seq };
            let mut buf = std::vec![0xa5u8; t.buffer_len() + rest.len()];
            t.emit(&mut buf).unwrap();
            buf[BCAST_TAG_LEN..].copy_from_slice(&rest);
            prop_assert_eq!(BcastTag::parse(&buf), Ok((t, &rest[..])));
        }
    }
}
