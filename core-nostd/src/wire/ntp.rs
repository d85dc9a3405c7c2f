//! SNTP (RFC 4330) client messages: the request a node sends upstream to learn the wall time
//! ([`crate::clock`]) and the checks of the server's reply.
//!
//! The request is mode 3 with every field zero except the transmit timestamp, which is a random nonce
//! (RFC 4330 §6 allows any value; a server copies it into the reply's originate timestamp). A reply
//! is accepted only in mode 4, with stratum 1..=15, leap indicator other than 3 (unsynchronized), a
//! non-zero transmit timestamp, and its originate timestamp equal to the nonce, which keeps off-path
//! senders from setting the clock. The time is the reply's transmit timestamp, in whole seconds (the
//! certificates' resolution; the round-trip time is not corrected for).

use super::{Error, Result};
use crate::clock::UnixTime;

/// The NTP port.
pub const PORT: u16 = 123;
/// The length of an NTP header without extension fields or MAC.
pub const HEADER_LEN: usize = 48;
/// Seconds from the NTP era 0 epoch (1900) to the Unix epoch (1970).
pub const UNIX_OFFSET: u64 = 2_208_988_800;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Field = 4..8;
    pub const ROOT_DISPERSION: Field = 8..12;
    pub const REFERENCE_ID: Field = 12..16;
    pub const REFERENCE_TS: Field = 16..24;
    pub const ORIGIN_TS: Field = 24..32;
    pub const RECEIVE_TS: Field = 32..40;
    pub const TRANSMIT_TS: Field = 40..48;
}

/// The leap indicator (2 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leap {
    /// No warning.
    NoWarning,
    /// The last minute of the day has 61 seconds.
    AddSecond,
    /// The last minute of the day has 59 seconds.
    DeleteSecond,
    /// The server's clock is not synchronized (3).
    Unsynchronized,
}

impl From<u8> for Leap {
    fn from(b: u8) -> Self {
        match b & 3 {
            0 => Leap::NoWarning,
            1 => Leap::AddSecond,
            2 => Leap::DeleteSecond,
            _ => Leap::Unsynchronized,
        }
    }
}

impl From<Leap> for u8 {
    fn from(l: Leap) -> u8 {
        match l {
            Leap::NoWarning => 0,
            Leap::AddSecond => 1,
            Leap::DeleteSecond => 2,
            Leap::Unsynchronized => 3,
        }
    }
}

/// The association mode (3 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 3: a client's request.
    Client,
    /// 4: a server's reply.
    Server,
    /// 5: a broadcast server.
    Broadcast,
    /// Any other mode.
    Unknown(u8),
}

impl From<u8> for Mode {
    fn from(b: u8) -> Self {
        match b & 7 {
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            n => Mode::Unknown(n),
        }
    }
}

impl From<Mode> for u8 {
    fn from(m: Mode) -> u8 {
        match m {
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Broadcast => 5,
            Mode::Unknown(n) => n & 7,
        }
    }
}

/// An NTP timestamp: seconds since 1900 (era-relative) in the high 32 bits, fraction in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The Unix time in whole seconds. Per RFC 4330 §3, a timestamp whose top bit is clear is in era 1
    /// (from 2036-02-07); one whose top bit is set is in era 0 (1968..2036).
    pub fn to_unix(self) -> UnixTime {
        let secs = self.0 >> 32;
        let secs = if secs & 0x8000_0000 != 0 { secs } else { secs + (1 << 32) };
        UnixTime(secs.saturating_sub(UNIX_OFFSET))
    }

    /// The timestamp of a Unix time (whole seconds, fraction zero), wrapping into the era.
    pub fn from_unix(t: UnixTime) -> Self {
        Self((t.0.wrapping_add(UNIX_OFFSET) & 0xffff_ffff) << 32)
    }
}

/// A read/write view of an NTP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checking the length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer at least [`HEADER_LEN`] long (extension fields and MAC after it are ignored).
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(Self { buffer })
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref()[i]
    }

    fn u32_at(&self, f: field::Field) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.buffer.as_ref()[f]);
        u32::from_be_bytes(b)
    }

    fn ts_at(&self, f: field::Field) -> Timestamp {
        let mut b = [0; 8];
        b.copy_from_slice(&self.buffer.as_ref()[f]);
        Timestamp(u64::from_be_bytes(b))
    }

    /// The leap indicator.
    pub fn leap(&self) -> Leap {
        Leap::from(self.byte(field::LI_VN_MODE) >> 6)
    }

    /// The version number.
    pub fn version(&self) -> u8 {
        (self.byte(field::LI_VN_MODE) >> 3) & 7
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        Mode::from(self.byte(field::LI_VN_MODE))
    }

    /// The stratum (0 = kiss-o'-death, 1 = primary, 2..=15 secondary, 16+ unsynchronized).
    pub fn stratum(&self) -> u8 {
        self.byte(field::STRATUM)
    }

    /// The poll interval (log2 seconds).
    pub fn poll(&self) -> i8 {
        self.byte(field::POLL) as i8
    }

    /// The precision (log2 seconds).
    pub fn precision(&self) -> i8 {
        self.byte(field::PRECISION) as i8
    }

    /// The root delay (16.16 seconds).
    pub fn root_delay(&self) -> u32 {
        self.u32_at(field::ROOT_DELAY)
    }

    /// The root dispersion (16.16 seconds).
    pub fn root_dispersion(&self) -> u32 {
        self.u32_at(field::ROOT_DISPERSION)
    }

    /// The reference id (a kiss code when the stratum is 0).
    pub fn reference_id(&self) -> [u8; 4] {
        let mut b = [0; 4];
        b.copy_from_slice(&self.buffer.as_ref()[field::REFERENCE_ID]);
        b
    }

    /// When the server's clock was last set.
    pub fn reference_ts(&self) -> Timestamp {
        self.ts_at(field::REFERENCE_TS)
    }

    /// The client's transmit timestamp, copied by the server.
    pub fn origin_ts(&self) -> Timestamp {
        self.ts_at(field::ORIGIN_TS)
    }

    /// When the request arrived at the server.
    pub fn receive_ts(&self) -> Timestamp {
        self.ts_at(field::RECEIVE_TS)
    }

    /// When the packet left its sender.
    pub fn transmit_ts(&self) -> Timestamp {
        self.ts_at(field::TRANSMIT_TS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u32(&mut self, f: field::Field, v: u32) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    fn set_ts(&mut self, f: field::Field, v: Timestamp) {
        self.buffer.as_mut()[f].copy_from_slice(&v.0.to_be_bytes());
    }
}

/// The fields of an NTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Leap indicator.
    pub leap: Leap,
    /// Version (4; 3 is accepted).
    pub version: u8,
    /// Mode.
    pub mode: Mode,
    /// Stratum.
    pub stratum: u8,
    /// Poll interval (log2 s).
    pub poll: i8,
    /// Precision (log2 s).
    pub precision: i8,
    /// Root delay (16.16 s).
    pub root_delay: u32,
    /// Root dispersion (16.16 s).
    pub root_dispersion: u32,
    /// Reference id or kiss code.
    pub reference_id: [u8; 4],
    /// Reference timestamp.
    pub reference_ts: Timestamp,
    /// Originate timestamp.
    pub origin_ts: Timestamp,
    /// Receive timestamp.
    pub receive_ts: Timestamp,
    /// Transmit timestamp.
    pub transmit_ts: Timestamp,
}

impl Repr {
    /// A client request (version 4, mode 3) whose transmit timestamp is `nonce` (random, from `cx.rng`).
    pub fn client_request(nonce: u64) -> Self {
        Self {
            leap: Leap::NoWarning,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: [0; 4],
            reference_ts: Timestamp(0),
            origin_ts: Timestamp(0),
            receive_ts: Timestamp(0),
            transmit_ts: Timestamp(nonce),
        }
    }

    /// Parse a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        Ok(Self {
            leap: p.leap(),
            version: p.version(),
            mode: p.mode(),
            stratum: p.stratum(),
            poll: p.poll(),
            precision: p.precision(),
            root_delay: p.root_delay(),
            root_dispersion: p.root_dispersion(),
            reference_id: p.reference_id(),
            reference_ts: p.reference_ts(),
            origin_ts: p.origin_ts(),
            receive_ts: p.receive_ts(),
            transmit_ts: p.transmit_ts(),
        })
    }

    /// Parse bytes (at least [`HEADER_LEN`]).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(&Packet::new_checked(bytes)?)
    }

    /// The emitted length: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into a packet of at least [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        b[field::LI_VN_MODE] = (u8::from(self.leap) << 6) | ((self.version & 7) << 3) | u8::from(self.mode);
        b[field::STRATUM] = self.stratum;
        b[field::POLL] = self.poll as u8;
        b[field::PRECISION] = self.precision as u8;
        b[field::REFERENCE_ID].copy_from_slice(&self.reference_id);
        p.set_u32(field::ROOT_DELAY, self.root_delay);
        p.set_u32(field::ROOT_DISPERSION, self.root_dispersion);
        p.set_ts(field::REFERENCE_TS, self.reference_ts);
        p.set_ts(field::ORIGIN_TS, self.origin_ts);
        p.set_ts(field::RECEIVE_TS, self.receive_ts);
        p.set_ts(field::TRANSMIT_TS, self.transmit_ts);
    }

    /// Emit into `buf`; `None` if it is shorter than [`HEADER_LEN`].
    pub fn emit_into(&self, buf: &mut [u8]) -> Option<usize> {
        let buf = buf.get_mut(..HEADER_LEN)?;
        self.emit(&mut Packet::new_unchecked(buf));
        Some(HEADER_LEN)
    }

    /// Check a server's reply to the request whose transmit timestamp was `nonce`; the server's time.
    pub fn check_reply(&self, nonce: u64) -> core::result::Result<UnixTime, SntpError> {
        if self.mode != Mode::Server {
            return Err(SntpError::NotServer(u8::from(self.mode)));
        }
        if !(3..=4).contains(&self.version) {
            return Err(SntpError::BadVersion(self.version));
        }
        if self.origin_ts != Timestamp(nonce) {
            return Err(SntpError::OriginMismatch);
        }
        if self.stratum == 0 {
            return Err(SntpError::KissOfDeath(self.reference_id));
        }
        if self.stratum > 15 || self.leap == Leap::Unsynchronized {
            return Err(SntpError::Unsynchronized);
        }
        if self.transmit_ts.0 == 0 {
            return Err(SntpError::ZeroTransmit);
        }
        Ok(self.transmit_ts.to_unix())
    }
}

/// Why an SNTP reply was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SntpError {
    /// Not a server reply (mode 4); the mode found.
    NotServer(u8),
    /// A version other than 3 or 4.
    BadVersion(u8),
    /// The originate timestamp is not our nonce: a stale, duplicated or forged reply.
    OriginMismatch,
    /// Stratum 0: the server asks us to go away (kiss code, e.g. `RATE`, `DENY`).
    KissOfDeath([u8; 4]),
    /// The server is not synchronized (leap indicator 3 or stratum 16 and above).
    Unsynchronized,
    /// The transmit timestamp is zero.
    ZeroTransmit,
}

impl core::fmt::Display for SntpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SntpError::NotServer(m) => write!(f, "the NTP reply has mode {m}, not 4 (server); ignored"),
            SntpError::BadVersion(v) => write!(f, "the NTP reply has version {v}; only 3 and 4 are taken"),
            SntpError::OriginMismatch => {
                f.write_str("the NTP reply does not answer our request (originate timestamp); ignored")
            }
            SntpError::KissOfDeath(code) => {
                f.write_str("the NTP server refused us (kiss code ")?;
                for c in code {
                    let c = if c.is_ascii_graphic() { char::from(*c) } else { '?' };
                    write!(f, "{c}")?;
                }
                f.write_str("); configure another upstream NTP server")
            }
            SntpError::Unsynchronized => f.write_str(
                "the NTP server is not synchronized itself; configure another upstream NTP server",
            ),
            SntpError::ZeroTransmit => f.write_str("the NTP reply has no transmit time; ignored"),
        }
    }
}

impl core::error::Error for SntpError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Captured with tcpdump on loopback in a network namespace: `sntp 127.0.0.1` (sntp 4.2.8p15,
    /// Debian bookworm) asking chronyd 4.3 (`local stratum 3`, `-x`) on 2026-11-23. The request's
    /// transmit timestamp is sntp's own clock reading; it serves as the nonce.
    static REQUEST_BYTES: [u8; 48] = [
        0xe3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xee, 0xaf, 0x0f, 0x9a, 0xa2, 0x19, 0xf8, 0x00,
    ];
    /// chronyd's reply to [`REQUEST_BYTES`] (same capture).
    static REPLY_BYTES: [u8; 48] = [
        0x24, 0x03, 0x00, 0xe6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x7f, 0x01, 0x01, 0xee,
        0xaf, 0x0f, 0x98, 0xbb, 0x5c, 0x6d, 0x71, 0xee, 0xaf, 0x0f, 0x9a, 0xa2, 0x19, 0xf8, 0x00, 0xee, 0xaf,
        0x0f, 0x9a, 0xa2, 0x2a, 0x35, 0xab, 0xee, 0xaf, 0x0f, 0x9a, 0xa2, 0x33, 0x21, 0x0c,
    ];
    const NONCE: u64 = 0xeeaf_0f9a_a219_f800;

    #[test]
    fn chrony_reply_gives_the_capture_time() {
        let r = Repr::parse_bytes(&REPLY_BYTES).unwrap();
        assert_eq!((r.leap, r.version, r.mode, r.stratum), (Leap::NoWarning, 4, Mode::Server, 3));
        assert_eq!(r.precision, -26);
        assert_eq!(r.reference_id, [127, 127, 1, 1]);
        let t = r.check_reply(NONCE).unwrap();
        // tshark: Transmit Timestamp: Nov 23, 2026 19:16:42.633592667 UTC
        assert_eq!(t, UnixTime(1_795_461_402));
        extern crate std;
        use std::string::ToString;
        assert_eq!(t.to_string(), "2026-11-23T19:16:42Z");
        // The reply re-emits to the same bytes.
        let mut buf = [0xa5u8; 64];
        assert_eq!(r.emit_into(&mut buf), Some(HEADER_LEN));
        assert_eq!(buf[..HEADER_LEN], REPLY_BYTES);
        assert_eq!(buf[HEADER_LEN], 0xa5);
    }

    #[test]
    fn our_request_is_sntp_s_request_but_for_the_leap_bits() {
        let mut buf = [0xa5u8; HEADER_LEN];
        Repr::client_request(NONCE).emit_into(&mut buf).unwrap();
        let mut want = REQUEST_BYTES;
        want[0] = 0x23; // sntp sets LI = 3 in requests; RFC 4330 says 0 for a client.
        assert_eq!(buf, want);
        let r = Repr::parse_bytes(&REQUEST_BYTES).unwrap();
        assert_eq!((r.mode, r.transmit_ts), (Mode::Client, Timestamp(NONCE)));
        assert_eq!(r.check_reply(NONCE), Err(SntpError::NotServer(3)));
    }

    #[test]
    fn replies_that_must_not_set_the_clock_are_refused() {
        let good = Repr::parse_bytes(&REPLY_BYTES).unwrap();
        assert_eq!(good.check_reply(NONCE ^ 1), Err(SntpError::OriginMismatch));
        let r = Repr { stratum: 0, reference_id: *b"RATE", ..good };
        assert_eq!(r.check_reply(NONCE), Err(SntpError::KissOfDeath(*b"RATE")));
        extern crate std;
        use std::string::ToString;
        assert!(SntpError::KissOfDeath(*b"RATE").to_string().contains("RATE"));
        assert_eq!(Repr { stratum: 16, ..good }.check_reply(NONCE), Err(SntpError::Unsynchronized));
        assert_eq!(Repr { stratum: 15, ..good }.check_reply(NONCE), Ok(UnixTime(1_795_461_402)));
        let r = Repr { leap: Leap::Unsynchronized, ..good };
        assert_eq!(r.check_reply(NONCE), Err(SntpError::Unsynchronized));
        assert_eq!(Repr { version: 2, ..good }.check_reply(NONCE), Err(SntpError::BadVersion(2)));
        assert_eq!(Repr { version: 3, ..good }.check_reply(NONCE), Ok(UnixTime(1_795_461_402)));
        let r = Repr { transmit_ts: Timestamp(0), ..good };
        assert_eq!(r.check_reply(NONCE), Err(SntpError::ZeroTransmit));
        assert_eq!(Repr { mode: Mode::Broadcast, ..good }.check_reply(NONCE), Err(SntpError::NotServer(5)));
    }

    #[test]
    fn short_packets_are_refused_and_extensions_ignored() {
        assert_eq!(Repr::parse_bytes(&REPLY_BYTES[..47]), Err(Error));
        let mut long = [0u8; 68];
        long[..48].copy_from_slice(&REPLY_BYTES);
        long[48..].fill(0x77); // a MAC after the header
        assert_eq!(Repr::parse_bytes(&long), Repr::parse_bytes(&REPLY_BYTES));
        assert_eq!(Repr::client_request(1).emit_into(&mut [0u8; 47]), None);
    }

    #[test]
    fn eras_follow_rfc_4330() {
        // 1900-based seconds with the top bit set: era 0.
        assert_eq!(Timestamp(0xeeaf_0f9a << 32).to_unix(), UnixTime(1_795_461_402));
        // Top bit clear: era 1, after 2036-02-07T06:28:16Z.
        assert_eq!(Timestamp(0).to_unix(), UnixTime((1 << 32) - UNIX_OFFSET));
        assert_eq!(Timestamp(5 << 32).to_unix(), UnixTime((1 << 32) + 5 - UNIX_OFFSET));
        // Before 1970 (era 0, top bit set): no wrap-around.
        assert_eq!(Timestamp(0x8000_0000 << 32).to_unix(), UnixTime(0));
        for t in [0, 1_795_461_402, (1 << 32) - UNIX_OFFSET, 4_000_000_000] {
            assert_eq!(Timestamp::from_unix(UnixTime(t)).to_unix(), UnixTime(t));
        }
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            (0u8..4, 0u8..8, 0u8..8, any::<u8>(), any::<i8>(), any::<i8>()),
            (any::<u32>(), any::<u32>(), any::<[u8; 4]>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |((li, vn, mode, stratum, poll, precision), (rd, rdisp, rid), (a, b, c, d))| Repr {
                    leap: Leap::from(li),
                    version: vn,
                    mode: Mode::from(mode),
                    stratum,
                    poll,
                    precision,
                    root_delay: rd,
                    root_dispersion: rdisp,
                    reference_id: rid,
                    reference_ts: Timestamp(a),
                    origin_ts: Timestamp(b),
                    receive_ts: Timestamp(c),
                    transmit_ts: Timestamp(d),
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in any_repr()) {
            let mut buf = [0xa5u8; HEADER_LEN];
            prop_assert_eq!(r.emit_into(&mut buf), Some(r.buffer_len()));
            prop_assert_eq!(Repr::parse_bytes(&buf), Ok(r));
        }
    }
}
