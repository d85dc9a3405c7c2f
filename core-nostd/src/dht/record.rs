//! Signed records (DESIGN.md "Security", DHT authorization): the owner signs each record it writes
//! with its Ed25519 node key, and replicas store, copy and answer with the exact bytes it signed.
//!
//! # Format
//! `public key (32) || [4][body length u16 BE][body][Ed25519 signature (64)]`: the owner's Ed25519
//! public key, then a signed object of kind 4 of [`crate::cert`] (a [`RecordSig`] over
//! `b"vngate-sig-v1" || 4 || body`). The body is the postcard encoding of
//! (format version 1, namespace id (16), key (32), kind (1), owner (32), generation (varint),
//! value (length-prefixed, ≤ [`MAX_VALUE`])). The TTL is not signed: it is the replica's business.
//!
//! A record is valid when its body decodes (exactly, nothing left over), its owner is
//! `NodeId::from_public_key(public key)` and the signature verifies with that key. Readers also check
//! that namespace, key and kind are the ones they asked for, so a replica cannot answer with another
//! key's record. An *unsigned* record (public key and signature all zero) is what an engine without a
//! signing key writes; only an engine with [`super::Config::verify`] off accepts it (the simulator).

use ed25519_dalek::SigningKey;
use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::key::{Key, Kind};
use super::msg::{Value, MAX_VALUE};
use crate::cert::{self, RecordSig, Signed};
use crate::id::NodeId;

/// The record body's format version.
pub const RECORD_VERSION: u8 = 1;
/// The longest record body: version, namespace, key, kind, owner, generation (varint), value.
pub const RECORD_BODY_MAX: usize = 1 + 16 + 32 + 1 + 32 + 10 + 1 + MAX_VALUE;
/// The longest signed record: public key, framing and signature around the body.
pub const SIGNED_MAX: usize = 32 + cert::OVERHEAD + RECORD_BODY_MAX;

#[derive(Serialize, Deserialize)]
struct Body {
    version: u8,
    namespace: [u8; 16],
    key: Key,
    kind: Kind,
    owner: [u8; 32],
    gen: u64,
    value: Value,
}

/// What a signed record says (decoded from its exact bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The namespace id.
    pub namespace: [u8; 16],
    /// The key.
    pub key: Key,
    /// The kind.
    pub kind: Kind,
    /// The owner.
    pub owner: NodeId,
    /// The generation.
    pub gen: u64,
    /// The value.
    pub value: Value,
}

/// Why a record is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes are not a record of this format.
    Malformed,
    /// No signature (public key and signature all zero).
    Unsigned,
    /// The owner is not the node id of the public key.
    OwnerKey,
    /// The signature does not verify (or the key is not a valid Ed25519 key).
    Signature,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RecordError::Malformed => "malformed DHT record",
            RecordError::Unsigned => "unsigned DHT record",
            RecordError::OwnerKey => "DHT record owner is not its signer",
            RecordError::Signature => "bad DHT record signature",
        })
    }
}

impl core::error::Error for RecordError {}

/// A record as its owner signed it: the exact bytes (module doc, "Format").
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord(Vec<u8, SIGNED_MAX>);

impl core::fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.parse() {
            Ok(r) => write!(f, "SignedRecord({:?}, signed: {})", r, self.is_signed()),
            Err(_) => write!(f, "SignedRecord(malformed, {} bytes)", self.0.len()),
        }
    }
}

impl SignedRecord {
    /// Encodes and signs a record (`signer` None: unsigned, for engines that do not verify).
    pub fn new(
        namespace: &[u8; 16],
        key: Key,
        kind: Kind,
        owner: NodeId,
        gen: u64,
        value: &Value,
        signer: Option<&SigningKey>,
    ) -> SignedRecord {
        let body = Body {
            version: RECORD_VERSION,
            namespace: *namespace,
            key,
            kind,
            owner: owner.0,
            gen,
            value: value.clone(),
        };
        let mut buf = [0u8; SIGNED_MAX];
        let (public, rest) = buf.split_at_mut(32);
        let (head, tail) = rest.split_at_mut(cert::HEADER_LEN);
        // Cannot fail: the buffer holds the longest body (RECORD_BODY_MAX).
        let n = postcard::to_slice(&body, tail).map(|b| b.len()).unwrap_or(0);
        head[0] = u8::from(cert::Kind::Record);
        head[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        if let Some(k) = signer {
            public.copy_from_slice(k.verifying_key().as_bytes());
            let sig = RecordSig::sign(&tail[..n], k);
            tail[n..n + cert::SIGNATURE_LEN].copy_from_slice(&sig.0);
        }
        let len = 32 + cert::OVERHEAD + n;
        SignedRecord(Vec::from_slice(&buf[..len]).unwrap_or_default())
    }

    /// Takes exact bytes as they came (checked by [`SignedRecord::parse`] and
    /// [`SignedRecord::verify`]); `None` when longer than [`SIGNED_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Option<SignedRecord> {
        Vec::from_slice(bytes).ok().map(SignedRecord)
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn split(&self) -> Result<(&[u8; 32], Signed<'_>), RecordError> {
        let (public, rest) = self.0.split_first_chunk::<32>().ok_or(RecordError::Malformed)?;
        let signed = Signed::parse_kind(rest, cert::Kind::Record).map_err(|_| RecordError::Malformed)?;
        Ok((public, signed))
    }

    /// Whether the record carries a signature (a non-zero public key).
    pub fn is_signed(&self) -> bool {
        self.0.get(..32).is_some_and(|p| p.iter().any(|b| *b != 0))
    }

    /// What the record says, without checking its signature.
    pub fn parse(&self) -> Result<Record, RecordError> {
        let (_, signed) = self.split()?;
        let body: Body = match postcard::take_from_bytes(signed.body()) {
            Ok((b, [])) => b,
            _ => return Err(RecordError::Malformed),
        };
        if body.version != RECORD_VERSION {
            return Err(RecordError::Malformed);
        }
        Ok(Record {
            namespace: body.namespace,
            key: body.key,
            kind: body.kind,
            owner: NodeId(body.owner),
            gen: body.gen,
            value: body.value,
        })
    }

    /// What the record says, once its owner and signature are checked.
    pub fn verify(&self) -> Result<Record, RecordError> {
        let rec = self.parse()?;
        if !self.is_signed() {
            return Err(RecordError::Unsigned);
        }
        let (public, signed) = self.split()?;
        if NodeId::from_public_key(public) != rec.owner {
            return Err(RecordError::OwnerKey);
        }
        signed.verify(public).map_err(|_| RecordError::Signature)?;
        Ok(rec)
    }

    /// [`SignedRecord::verify`] when `verify`, else [`SignedRecord::parse`].
    pub fn check(&self, verify: bool) -> Result<Record, RecordError> {
        if verify {
            self.verify()
        } else {
            self.parse()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: [u8; 16] = [7; 16];

    fn signer() -> SigningKey {
        SigningKey::from_bytes(&[0x42; 32])
    }

    fn owner() -> NodeId {
        NodeId::from_public_key(signer().verifying_key().as_bytes())
    }

    fn rec(value: &[u8]) -> SignedRecord {
        let key = Key::derive(&NS, Kind::Host, b"pc1");
        SignedRecord::new(&NS, key, Kind::Host, owner(), 3, &Vec::from_slice(value).unwrap(), Some(&signer()))
    }

    #[test]
    fn a_signed_record_verifies_and_says_what_was_signed() {
        let r = rec(b"\x0a\xfa\x00\x09").verify().unwrap();
        assert_eq!(
            (r.owner, r.gen, r.kind, &r.value[..]),
            (owner(), 3, Kind::Host, &b"\x0a\xfa\x00\x09"[..])
        );
        assert_eq!(r.namespace, NS);
    }

    #[test]
    fn the_layout_is_public_key_then_a_kind_4_signed_object() {
        let s = rec(b"ab");
        let b = s.as_bytes();
        assert_eq!(&b[..32], signer().verifying_key().as_bytes());
        // Kind 4, body length: version, ns, key, kind, owner, gen 3, len 2 "ab".
        let body_len = 1 + 16 + 32 + 1 + 32 + 1 + 1 + 2;
        assert_eq!(&b[32..35], &[4, 0, body_len as u8]);
        assert_eq!(b.len(), 32 + 3 + body_len + 64);
        assert_eq!(b[35], RECORD_VERSION);
        assert_eq!(&b[36..52], &NS);
        // The signature is cert.rs's RecordSig over the body.
        let sig = RecordSig::sign(&b[35..35 + body_len], &signer());
        assert_eq!(&b[35 + body_len..], &sig.0);
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let s = rec(b"abc");
        for i in 0..s.as_bytes().len() {
            let mut b = s.as_bytes().to_vec();
            b[i] ^= 0x01;
            let t = SignedRecord::from_bytes(&b).unwrap();
            assert!(t.verify().is_err(), "byte {i}");
        }
    }

    #[test]
    fn another_owner_than_the_signer_is_refused() {
        let key = Key::derive(&NS, Kind::Host, b"pc1");
        let s = SignedRecord::new(&NS, key, Kind::Host, NodeId([9; 32]), 1, &Vec::new(), Some(&signer()));
        assert_eq!(s.verify(), Err(RecordError::OwnerKey));
        let u = SignedRecord::new(&NS, key, Kind::Host, owner(), 1, &Vec::new(), None);
        assert_eq!(u.verify(), Err(RecordError::Unsigned));
        assert_eq!(u.parse().unwrap().owner, owner());
        assert_eq!(u.check(false).unwrap().owner, owner());
    }

    #[test]
    fn the_longest_record_fits() {
        let key = Key([0xff; 32]);
        let v = Vec::from_slice(&[0xff; MAX_VALUE]).unwrap();
        let s = SignedRecord::new(&NS, key, Kind::Unknown(255), owner(), u64::MAX, &v, Some(&signer()));
        assert_eq!(s.as_bytes().len(), SIGNED_MAX);
        assert!(s.verify().is_ok());
    }
}
