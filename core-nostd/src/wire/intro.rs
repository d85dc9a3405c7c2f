//! The introduction exchange (DESIGN.md "Security"): how a node learns the certificate, and so the
//! X25519 static key, of a node it knows only by endpoint (a bootstrap peer, or a storage member named
//! in a member list) before it can start a Noise IK handshake, in which the initiator must already
//! know the responder's static key.
//!
//! ```text
//! request (0xC5), always REQUEST_LEN bytes:
//!  0      1     2      4            12               28
//! +------+-----+------+------------+----------------+------------------------+
//! | 0xC5 | ver | 0  0 | nonce (64) | namespace (16) | zero padding .. 512    |
//! +------+-----+------+------------+----------------+------------------------+
//! reply (0xC6):
//! +------+-----+------+------------+-----------------+-------------------------+
//! | 0xC6 | ver | 0  0 | nonce (64) | cert len (16)   | certificate (CA-signed) |
//! +------+-----+------+------------+-----------------+-------------------------+
//! ```
//! Integers are big-endian. Nothing here is trusted: the certificate is checked against the CA like
//! one in a handshake, and the nonce (random per request) ties a reply to our request, so an off-path
//! sender cannot make us handshake with the wrong key. The request is padded to [`REQUEST_LEN`] and a
//! reply is never longer than the request it answers ([`MAX_CERT`] fits), so the exchange cannot
//! amplify a spoofed source's traffic; answers are also rate-limited per source by the caller.

use super::{Error, Result};

/// Type byte of a request.
pub const REQUEST_TYPE: u8 = 0xC5;
/// Type byte of a reply.
pub const REPLY_TYPE: u8 = 0xC6;
/// The version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of every request (padding included).
pub const REQUEST_LEN: usize = 512;
/// Reply header length (before the certificate).
pub const REPLY_HEADER_LEN: usize = 14;
/// Longest certificate a reply carries: a reply never outgrows the request.
pub const MAX_CERT: usize = REQUEST_LEN - REPLY_HEADER_LEN;

/// An introduction message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// "Who are you?": asks the receiver for its certificate.
    Request {
        /// Echoed in the reply.
        nonce: u64,
        /// The namespace the requester belongs to (a node of another namespace does not answer).
        namespace: [u8; 16],
    },
    /// The receiver's certificate, answering the request with `nonce`.
    Reply {
        /// The request's nonce.
        nonce: u64,
        /// The certificate bytes (checked by the caller against the CA).
        cert: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parse a request or reply. Requests of another length and replies whose certificate length does
    /// not match the datagram are refused.
    pub fn parse(d: &'a [u8]) -> Result<Self> {
        let h = d.get(..12).ok_or(Error)?;
        if h[1] != VERSION {
            return Err(Error);
        }
        let nonce = u64::from_be_bytes(h[4..12].try_into().map_err(|_| Error)?);
        match h[0] {
            REQUEST_TYPE if d.len() == REQUEST_LEN => {
                let namespace = d[12..28].try_into().map_err(|_| Error)?;
                Ok(Repr::Request { nonce, namespace })
            }
            REPLY_TYPE => {
                let len =
                    d.get(12..14).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).ok_or(Error)?;
                let cert =
                    d.get(REPLY_HEADER_LEN..).filter(|c| c.len() == len && len <= MAX_CERT).ok_or(Error)?;
                Ok(Repr::Reply { nonce, cert })
            }
            _ => Err(Error),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Request { .. } => REQUEST_LEN,
            Repr::Reply { cert, .. } => REPLY_HEADER_LEN + cert.len(),
        }
    }

    /// Write the message into `buf`; its length, or `None` when it does not fit or the certificate is
    /// longer than [`MAX_CERT`].
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let n = self.buffer_len();
        let out = buf.get_mut(..n)?;
        out[1] = VERSION;
        out[2..4].fill(0);
        match self {
            Repr::Request { nonce, namespace } => {
                out[0] = REQUEST_TYPE;
                out[4..12].copy_from_slice(&nonce.to_be_bytes());
                out[12..28].copy_from_slice(namespace);
                out[28..].fill(0);
            }
            Repr::Reply { nonce, cert } => {
                if cert.len() > MAX_CERT {
                    return None;
                }
                out[0] = REPLY_TYPE;
                out[4..12].copy_from_slice(&nonce.to_be_bytes());
                out[12..14].copy_from_slice(&(cert.len() as u16).to_be_bytes());
                out[REPLY_HEADER_LEN..].copy_from_slice(cert);
            }
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_request_and_reply() {
        let mut buf = [0xa5u8; 600];
        let n = Repr::Request { nonce: 0x0102_0304_0506_0708, namespace: [9; 16] }.emit(&mut buf).unwrap();
        assert_eq!(n, 512);
        assert_eq!(&buf[..12], &[0xC5, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[12..28], &[9; 16]);
        assert!(buf[28..512].iter().all(|&b| b == 0), "padding is zeros");
        let mut buf = [0xa5u8; 32];
        let n = Repr::Reply { nonce: 7, cert: b"CERT" }.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0xC6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 4, b'C', b'E', b'R', b'T']);
    }

    #[test]
    fn short_requests_lying_lengths_and_other_versions_are_refused() {
        let mut buf = [0u8; 600];
        let n = Repr::Request { nonce: 1, namespace: [1; 16] }.emit(&mut buf).unwrap();
        assert!(Repr::parse(&buf[..n - 1]).is_err(), "an unpadded request could amplify");
        assert!(Repr::parse(&buf[..n + 1]).is_err());
        let mut v = buf;
        v[1] = 2;
        assert!(Repr::parse(&v[..n]).is_err());
        let n = Repr::Reply { nonce: 1, cert: &[7; 40] }.emit(&mut buf).unwrap();
        assert!(Repr::parse(&buf[..n - 1]).is_err());
        assert!(Repr::parse(&buf[..n + 1]).is_err());
        assert!(Repr::parse(&buf[..3]).is_err());
        assert_eq!(Repr::Reply { nonce: 1, cert: &[0; MAX_CERT + 1] }.emit(&mut [0u8; 1024]), None);
        assert!(
            Repr::Reply { nonce: 1, cert: &[0; MAX_CERT] }.buffer_len() <= REQUEST_LEN,
            "no amplification"
        );
    }

    proptest! {
        #[test]
        fn round_trip(nonce: u64, ns: [u8; 16], cert in proptest::collection::vec(any::<u8>(), 0..MAX_CERT)) {
            let mut buf = [0xa5u8; REQUEST_LEN];
            for r in [Repr::Request { nonce, namespace: ns }, Repr::Reply { nonce, cert: &cert }] {
                let n = r.emit(&mut buf).unwrap();
                prop_assert_eq!(Repr::parse(&buf[..n]).unwrap(), r);
            }
        }

        #[test]
        fn parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Repr::parse(&d);
        }
    }
}
