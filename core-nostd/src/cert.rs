//! Certificates, the signed namespace document, revocation lists and signed DHT records (DESIGN.md
//! "Security", "The namespace"; P3SPEC "vn-core cert module").
//!
//! # Changes from P3SPEC
//! - `Certificate::verify` takes `now: clock::Reading` (the latest known time and whether the clock is
//!   synced) instead of `Option<UnixTime>`: the clock rule needs both (not_before is skipped while
//!   unsynced, not_after is always checked against the latest known time, the build time at least).
//! - Peers' handshake times move the [`crate::clock::WallClock`] only when two peers agree (see there).
//!
//! # Framing
//! Every signed object is `[kind u8][body_len u16 BE][body][Ed25519 signature 64]`, the body being the
//! postcard encoding of a struct (or, for kind 4, the DHT record bytes as given), and the signature is
//! over `b"vngate-sig-v1" || kind || body`. Objects are stored, sent and forwarded as their exact
//! bytes: nothing is re-encoded, so the bytes a node checks are the bytes the CA signed.
//!
//! Verification is Ed25519 without a heap (the streaming verifier of ed25519-dalek's `hazmat`): canonical
//! `s`, cofactorless equation, and public keys of small order (weak keys) refused as keys.
//!
//! Certificates are checked in this order, so the error names the first thing to fix: issuer, signature,
//! namespace, node id, validity (the clock rule of [`crate::clock`]), revocation. Roles are checked by
//! the caller with [`CertInfo::require`], since what is required depends on the use.

use blake2::{Blake2s256, Digest as _};
use ed25519_dalek::hazmat::{raw_sign_byupdate, ExpandedSecretKey};
use ed25519_dalek::{Sha512, Signature, SigningKey, VerifyingKey};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::clock::{Reading, UnixTime};
use crate::id::NodeId;

/// The context every signature starts with.
pub const CONTEXT: &[u8] = b"vngate-sig-v1";
/// The kind byte and the body length.
pub const HEADER_LEN: usize = 3;
/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Header and signature: a signed object is its body plus this.
pub const OVERHEAD: usize = HEADER_LEN + SIGNATURE_LEN;
/// The longest body the framing can carry.
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

/// The version of the certificate, namespace document and revocation list bodies.
pub const VERSION: u8 = 1;

/// The longest postcard encoding of a [`CertBody`] (every varint at its longest, the name full).
pub const CERT_BODY_MAX_LEN: usize = 1 + 16 + (1 + 32) + 32 * 3 + 1 + 10 * 3 + 8;
/// The longest signed certificate: a buffer of this size always fits one.
pub const CERT_MAX_LEN: usize = CERT_BODY_MAX_LEN + OVERHEAD;
/// The longest postcard encoding of a [`NamespaceDoc`].
pub const NAMESPACE_DOC_BODY_MAX_LEN: usize = 1 + 16 + (1 + 32) + 4 + 1 + (1 + 64) + 32 + 10 + 1 + 1;
/// The longest signed namespace document.
pub const NAMESPACE_DOC_MAX_LEN: usize = NAMESPACE_DOC_BODY_MAX_LEN + OVERHEAD;
/// How many serials a revocation list holds.
pub const MAX_REVOKED: usize = 256;
/// The longest postcard encoding of a [`RevocationList`].
pub const REVOCATION_LIST_BODY_MAX_LEN: usize = 1 + 16 + 10 + (2 + 10 * MAX_REVOKED) + 10;
/// The longest signed revocation list.
pub const REVOCATION_LIST_MAX_LEN: usize = REVOCATION_LIST_BODY_MAX_LEN + OVERHEAD;

/// Role bits of a certificate ([`CertBody::roles`]).
pub mod roles {
    /// A router: serves a LAN (DHCP, DNS, proxy ARP) and carries its traffic over the overlay.
    pub const ROUTER: u8 = 0x01;
    /// A host: a single machine on the VN (hybrid mode).
    pub const HOST: u8 = 0x02;
    /// Stores DHT records for others.
    pub const DHT: u8 = 0x04;
    /// Relays and introduces peers behind NATs.
    pub const RENDEZVOUS: u8 = 0x08;
    /// May delete or overwrite anyone's DHT records (hostctl's admin identity).
    pub const ADMIN: u8 = 0x10;
    /// Every role bit defined.
    pub const ALL: u8 = ROUTER | HOST | DHT | RENDEZVOUS | ADMIN;

    /// The names of the bits, in order, as `hostctl node sign --roles` takes them.
    pub const NAMES: [(u8, &str); 5] =
        [(ROUTER, "router"), (HOST, "host"), (DHT, "dht"), (RENDEZVOUS, "rendezvous"), (ADMIN, "admin")];
}

/// Displays role bits as their names, comma-separated (`router,dht`); unknown bits in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleNames(pub u8);

impl core::fmt::Display for RoleNames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (bit, name) in roles::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !roles::ALL;
        if unknown != 0 {
            if !first {
                f.write_str(",")?;
            }
            write!(f, "{unknown:#04x}")?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// What a signed object is (its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node certificate ([`CertBody`]).
    Certificate,
    /// The namespace document ([`NamespaceDoc`]).
    NamespaceDoc,
    /// A revocation list ([`RevocationList`]).
    RevocationList,
    /// A DHT record signed by its owner ([`RecordSig`]).
    Record,
    /// Any other byte.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(b: u8) -> Self {
        match b {
            1 => Kind::Certificate,
            2 => Kind::NamespaceDoc,
            3 => Kind::RevocationList,
            4 => Kind::Record,
            n => Kind::Unknown(n),
        }
    }
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::Certificate => 1,
            Kind::NamespaceDoc => 2,
            Kind::RevocationList => 3,
            Kind::Record => 4,
            Kind::Unknown(n) => n,
        }
    }
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Kind::Certificate => f.write_str("certificate"),
            Kind::NamespaceDoc => f.write_str("namespace document"),
            Kind::RevocationList => f.write_str("revocation list"),
            Kind::Record => f.write_str("signed DHT record"),
            Kind::Unknown(n) => write!(f, "unknown object kind {n}"),
        }
    }
}

/// Hex of a short id, for messages.
struct Hex<'a>(&'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a signed object was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// The bytes are not a signed object: too short, a length that disagrees, or a body that does not decode.
    Malformed,
    /// A signed object of another kind than expected.
    WrongKind {
        /// The kind expected.
        expected: Kind,
        /// The kind found.
        found: Kind,
    },
    /// A body version this software does not know.
    UnsupportedVersion(u8),
    /// An Ed25519 public key that is not a point, or of small order.
    BadKey,
    /// The signature does not verify: the bytes were changed or signed by another key.
    BadSignature,
    /// Issued by another CA than the one this node trusts.
    WrongIssuer {
        /// The id of the CA this node trusts.
        expected: [u8; 8],
        /// The issuer named in the object.
        found: [u8; 8],
    },
    /// For another namespace.
    WrongNamespace {
        /// This node's namespace id.
        expected: [u8; 16],
        /// The namespace named in the object.
        found: [u8; 16],
    },
    /// The node id in the certificate is not the id of its Ed25519 key.
    NodeIdMismatch,
    /// The certificate's not_after is before the latest known time.
    Expired {
        /// The end of validity.
        not_after: UnixTime,
        /// The latest known time.
        now: UnixTime,
    },
    /// The certificate's not_before is after the (synced) time.
    NotYetValid {
        /// The start of validity.
        not_before: UnixTime,
        /// The synced time.
        now: UnixTime,
    },
    /// The certificate's serial is in the revocation list.
    Revoked {
        /// The serial.
        serial: u64,
    },
    /// The certificate lacks roles the use requires.
    MissingRole {
        /// The missing role bits.
        missing: u8,
        /// The roles the certificate has.
        have: u8,
    },
}

impl core::fmt::Display for CertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CertError::Malformed => f.write_str(
                "the signed object is malformed (truncated or corrupted); copy it again from what \
                 `hostctl` wrote",
            ),
            CertError::WrongKind { expected, found } => {
                write!(f, "expected a {expected} but found a {found}; check which file was given where")
            }
            CertError::UnsupportedVersion(v) => write!(
                f,
                "the signed object has version {v}, which this software does not know; update vngate \
                 or sign it again with this version's `hostctl`"
            ),
            CertError::BadKey => f.write_str(
                "the Ed25519 public key is invalid (not a curve point, or a weak key); generate the \
                 node's keys again with `vngate keygen`",
            ),
            CertError::BadSignature => f.write_str(
                "the signature does not verify: the bytes were changed or signed by another key; ask \
                 the admin for a fresh copy signed by the namespace's CA",
            ),
            CertError::WrongIssuer { expected, found } => write!(
                f,
                "signed by CA {} but this node trusts CA {}; install the right ca.pub or ask that CA's \
                 admin to sign it with `hostctl node sign`",
                Hex(&found),
                Hex(&expected)
            ),
            CertError::WrongNamespace { expected, found } => write!(
                f,
                "made for namespace {} but this node is in namespace {}; use the files of this \
                 namespace (`hostctl node sign` with its CA)",
                Hex(&found),
                Hex(&expected)
            ),
            CertError::NodeIdMismatch => f.write_str(
                "the certificate's node id is not the id of its Ed25519 key; sign the node's \
                 node.pub again with `hostctl node sign --pub`",
            ),
            CertError::Expired { not_after, now } => write!(
                f,
                "the certificate expired at {not_after} (the time is at least {now}); ask the admin \
                 for a new one with `hostctl node sign`"
            ),
            CertError::NotYetValid { not_before, now } => write!(
                f,
                "the certificate is valid only from {not_before} and the time is {now}; check the \
                 clocks of the admin's machine and of this node, or wait"
            ),
            CertError::Revoked { serial } => write!(
                f,
                "the certificate with serial {serial} was revoked; ask the admin for a new one with \
                 `hostctl node sign`"
            ),
            CertError::MissingRole { missing, have } => write!(
                f,
                "the certificate lacks the role(s) {} (it has {}); ask the admin to sign it again \
                 with `hostctl node sign --roles`",
                RoleNames(missing),
                RoleNames(have)
            ),
        }
    }
}

impl core::error::Error for CertError {}

/// Why an object could not be signed (hostctl's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// The output buffer is too small (the `*_MAX_LEN` constants always fit).
    BufferTooSmall,
    /// The body is longer than the framing's 65535 bytes.
    BodyTooLong,
    /// The body's version is not [`VERSION`].
    UnsupportedVersion(u8),
    /// The certificate's node id is not the id of its Ed25519 key.
    NodeIdMismatch,
    /// The issuer, or the document's CA key, is not the signing key's.
    WrongIssuer,
    /// The namespace document's id is not derived from its CA key and name.
    WrongNamespaceId,
    /// An Ed25519 key in the body is invalid.
    BadKey,
}

impl core::fmt::Display for SignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SignError::BufferTooSmall => f.write_str("the output buffer is too small for the signed object"),
            SignError::BodyTooLong => f.write_str("the body is longer than 65535 bytes"),
            SignError::UnsupportedVersion(v) => write!(f, "refusing to sign version {v}: only 1 is known"),
            SignError::NodeIdMismatch => f.write_str(
                "refusing to sign: the node id is not the id of the Ed25519 key; take both from the \
                 node's node.pub",
            ),
            SignError::WrongIssuer => f.write_str(
                "refusing to sign: the issuer (or CA key) in the body is not the signing CA key's",
            ),
            SignError::WrongNamespaceId => {
                f.write_str("refusing to sign: the namespace id is not derived from the CA key and the name")
            }
            SignError::BadKey => f.write_str(
                "refusing to sign: the node's Ed25519 key is invalid; generate it again with `vngate keygen`",
            ),
        }
    }
}

impl core::error::Error for SignError {}

/// The 8-byte id of a CA: the first 8 bytes of BLAKE2s("vngate ca id v1" || CA public key).
pub fn ca_id(ca_public: &[u8; 32]) -> [u8; 8] {
    let mut h = Blake2s256::new();
    h.update(b"vngate ca id v1");
    h.update(ca_public);
    let d = h.finalize();
    let mut id = [0; 8];
    id.copy_from_slice(&d[..8]);
    id
}

/// A namespace id: the first 16 bytes of BLAKE2s("vngate namespace id v1" || CA public key || name).
pub fn namespace_id(ca_public: &[u8; 32], name: &str) -> [u8; 16] {
    let mut h = Blake2s256::new();
    h.update(b"vngate namespace id v1");
    h.update(ca_public);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// An Ed25519 public key checked to be a point and not of small order.
fn verifying_key(public: &[u8; 32]) -> Result<VerifyingKey, CertError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| CertError::BadKey)?;
    if key.is_weak() {
        return Err(CertError::BadKey);
    }
    Ok(key)
}

/// The CA public key a node trusts (`ca.pub`) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaKey {
    key: VerifyingKey,
    id: [u8; 8],
}

impl CaKey {
    /// The CA of this Ed25519 public key.
    pub fn from_bytes(public: &[u8; 32]) -> Result<Self, CertError> {
        Ok(Self { key: verifying_key(public)?, id: ca_id(public) })
    }

    /// The CA whose private key is `key` (hostctl).
    pub fn from_signing_key(key: &SigningKey) -> Self {
        let public = key.verifying_key();
        Self { key: public, id: ca_id(public.as_bytes()) }
    }

    /// The CA's 8-byte id (the `issuer` of what it signs).
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// The CA's public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The id of the namespace `name` of this CA.
    pub fn namespace_id(&self, name: &str) -> [u8; 16] {
        namespace_id(self.key.as_bytes(), name)
    }
}

/// Sign `CONTEXT || kind || body` without joining them (no heap).
fn sign_parts(key: &SigningKey, kind: u8, body: &[u8]) -> [u8; SIGNATURE_LEN] {
    let esk = ExpandedSecretKey::from(key.as_bytes());
    let sig = raw_sign_byupdate::<Sha512, _>(
        &esk,
        |h: &mut Sha512| {
            ed25519_dalek::Digest::update(h, CONTEXT);
            ed25519_dalek::Digest::update(h, [kind]);
            ed25519_dalek::Digest::update(h, body);
            Ok(())
        },
        &key.verifying_key(),
    );
    // The closure never fails, so neither does signing.
    sig.map(|s| s.to_bytes()).unwrap_or([0; SIGNATURE_LEN])
}

/// Verify a signature over `CONTEXT || kind || body`.
fn verify_parts(
    key: &VerifyingKey,
    kind: u8,
    body: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CertError> {
    let sig = Signature::from_bytes(signature);
    let mut v = key.verify_stream(&sig).map_err(|_| CertError::BadSignature)?;
    v.update(CONTEXT);
    v.update([kind]);
    v.update(body);
    v.finalize_and_verify().map_err(|_| CertError::BadSignature)
}

/// Frame and sign a body that `fill` writes into the slice it is given (returning its length).
fn sign_object(
    kind: Kind,
    key: &SigningKey,
    out: &mut [u8],
    fill: impl FnOnce(&mut [u8]) -> Result<usize, SignError>,
) -> Result<usize, SignError> {
    let room = out.len().checked_sub(OVERHEAD).ok_or(SignError::BufferTooSmall)?.min(MAX_BODY_LEN);
    let n = fill(&mut out[HEADER_LEN..HEADER_LEN + room])?;
    let len = u16::try_from(n).map_err(|_| SignError::BodyTooLong)?;
    if n > room {
        return Err(SignError::BufferTooSmall);
    }
    let kind = u8::from(kind);
    out[0] = kind;
    out[1..3].copy_from_slice(&len.to_be_bytes());
    let sig = sign_parts(key, kind, &out[HEADER_LEN..HEADER_LEN + n]);
    out[HEADER_LEN + n..HEADER_LEN + n + SIGNATURE_LEN].copy_from_slice(&sig);
    Ok(n + OVERHEAD)
}

fn encode<T: Serialize>(value: &T) -> impl FnOnce(&mut [u8]) -> Result<usize, SignError> + '_ {
    move |buf| postcard::to_slice(value, buf).map(|b| b.len()).map_err(|_| SignError::BufferTooSmall)
}

/// Decode a whole body: trailing bytes are refused.
fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, CertError> {
    match postcard::take_from_bytes(body) {
        Ok((v, [])) => Ok(v),
        _ => Err(CertError::Malformed),
    }
}

/// A signed object's parts, borrowed from its exact bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    kind: Kind,
    body: &'a [u8],
    signature: &'a [u8; SIGNATURE_LEN],
    bytes: &'a [u8],
}

impl<'a> Signed<'a> {
    /// Split one signed object off the front of `bytes`; returns it and the bytes after it.
    pub fn split(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), CertError> {
        let [kind, l0, l1, rest @ ..] = bytes else {
            return Err(CertError::Malformed);
        };
        let n = usize::from(u16::from_be_bytes([*l0, *l1]));
        let (body, rest) = rest.split_at_checked(n).ok_or(CertError::Malformed)?;
        let (signature, rest) = rest.split_first_chunk::<SIGNATURE_LEN>().ok_or(CertError::Malformed)?;
        let bytes = &bytes[..OVERHEAD + n];
        Ok((Self { kind: Kind::from(*kind), body, signature, bytes }, rest))
    }

    /// Parse exactly one signed object (trailing bytes are refused).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CertError> {
        match Self::split(bytes)? {
            (s, []) => Ok(s),
            _ => Err(CertError::Malformed),
        }
    }

    /// Parse one signed object of kind `expected`.
    pub fn parse_kind(bytes: &'a [u8], expected: Kind) -> Result<Self, CertError> {
        let s = Self::parse(bytes)?;
        if s.kind != expected {
            return Err(CertError::WrongKind { expected, found: s.kind });
        }
        Ok(s)
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The body as signed.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The signature.
    pub fn signature(&self) -> &'a [u8; SIGNATURE_LEN] {
        self.signature
    }

    /// The exact bytes of the object.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Check the signature with the Ed25519 public key `signer`.
    pub fn verify(&self, signer: &[u8; 32]) -> Result<(), CertError> {
        self.verify_with(&verifying_key(signer)?)
    }

    fn verify_with(&self, key: &VerifyingKey) -> Result<(), CertError> {
        verify_parts(key, u8::from(self.kind), self.body, self.signature)
    }
}

/// What the CA signs about a node (kind 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    /// [`VERSION`].
    pub version: u8,
    /// The namespace id.
    pub namespace: [u8; 16],
    /// The node's name (a DNS label, shown in logs and `hostctl status`).
    pub name: String<32>,
    /// `NodeId::from_public_key(ed25519)`.
    pub node_id: [u8; 32],
    /// The node's Ed25519 public key (signatures).
    pub ed25519: [u8; 32],
    /// The node's X25519 public key (Noise static key).
    pub x25519: [u8; 32],
    /// Role bits ([`roles`]).
    pub roles: u8,
    /// The CA's serial number for this certificate (what revocation names).
    pub serial: u64,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, inclusive).
    pub not_after: u64,
    /// The CA's id ([`ca_id`]).
    pub issuer: [u8; 8],
}

/// What a verified certificate says, small enough to copy around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertInfo {
    /// The node id.
    pub node_id: NodeId,
    /// The Ed25519 public key.
    pub ed25519: [u8; 32],
    /// The X25519 public key.
    pub x25519: [u8; 32],
    /// Role bits ([`roles`]).
    pub roles: u8,
    /// The serial.
    pub serial: u64,
    /// Valid until.
    pub not_after: UnixTime,
}

impl CertInfo {
    /// Ok if the certificate has every role bit of `required`.
    pub fn require(&self, required: u8) -> Result<(), CertError> {
        let missing = required & !self.roles;
        if missing != 0 {
            return Err(CertError::MissingRole { missing, have: self.roles });
        }
        Ok(())
    }
}

/// A parsed certificate, keeping its exact bytes. Parsing checks only the form; [`Certificate::verify`]
/// checks everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate<'a> {
    signed: Signed<'a>,
    body: CertBody,
}

impl<'a> Certificate<'a> {
    /// Parse a signed certificate (kind 1, version 1).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CertError> {
        let signed = Signed::parse_kind(bytes, Kind::Certificate)?;
        let body: CertBody = decode(signed.body)?;
        if body.version != VERSION {
            return Err(CertError::UnsupportedVersion(body.version));
        }
        Ok(Self { signed, body })
    }

    /// The body (not verified until [`Certificate::verify`] says so).
    pub fn body(&self) -> &CertBody {
        &self.body
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.signed.bytes
    }

    /// Check the certificate: issued and signed by `ca`, for `namespace`, node id of its key, valid at
    /// `now` (the clock rule: not_before only when synced, not_after always), not in `revoked` (a list
    /// from [`RevocationList::parse_verified`]; a list of another namespace is ignored).
    pub fn verify(
        &self,
        ca: &CaKey,
        namespace: &[u8; 16],
        now: Reading,
        revoked: Option<&RevocationList>,
    ) -> Result<CertInfo, CertError> {
        let b = &self.body;
        if b.issuer != ca.id {
            return Err(CertError::WrongIssuer { expected: ca.id, found: b.issuer });
        }
        self.signed.verify_with(&ca.key)?;
        if b.namespace != *namespace {
            return Err(CertError::WrongNamespace { expected: *namespace, found: b.namespace });
        }
        if NodeId::from_public_key(&b.ed25519).0 != b.node_id {
            return Err(CertError::NodeIdMismatch);
        }
        verifying_key(&b.ed25519)?;
        if now.latest.0 > b.not_after {
            return Err(CertError::Expired { not_after: UnixTime(b.not_after), now: now.latest });
        }
        if now.synced && now.latest.0 < b.not_before {
            return Err(CertError::NotYetValid { not_before: UnixTime(b.not_before), now: now.latest });
        }
        if let Some(list) = revoked {
            if list.namespace == b.namespace && list.contains(b.serial) {
                return Err(CertError::Revoked { serial: b.serial });
            }
        }
        Ok(CertInfo {
            node_id: NodeId(b.node_id),
            ed25519: b.ed25519,
            x25519: b.x25519,
            roles: b.roles,
            serial: b.serial,
            not_after: UnixTime(b.not_after),
        })
    }
}

/// Sign a certificate into `out` (hostctl `node sign`); returns its length. The body must be version 1,
/// name the signing CA as issuer and carry the node id of its Ed25519 key.
pub fn sign_cert(body: &CertBody, ca: &SigningKey, out: &mut [u8]) -> Result<usize, SignError> {
    if body.version != VERSION {
        return Err(SignError::UnsupportedVersion(body.version));
    }
    if body.issuer != CaKey::from_signing_key(ca).id {
        return Err(SignError::WrongIssuer);
    }
    if NodeId::from_public_key(&body.ed25519).0 != body.node_id {
        return Err(SignError::NodeIdMismatch);
    }
    verifying_key(&body.ed25519).map_err(|_| SignError::BadKey)?;
    sign_object(Kind::Certificate, ca, out, encode(body))
}

/// The namespace's parameters, signed by its CA (kind 2). The full parameter set of DESIGN.md "The
/// namespace" (pool, static range, lease time, MTU, upstream DNS) will extend it in a later version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDoc {
    /// [`VERSION`].
    pub version: u8,
    /// The namespace id ([`namespace_id`] of `ca` and `name`).
    pub id: [u8; 16],
    /// The namespace's name.
    pub name: String<32>,
    /// The VN subnet's network address.
    pub subnet: [u8; 4],
    /// The VN subnet's prefix length.
    pub prefix: u8,
    /// The VN's DNS domain.
    pub domain: String<64>,
    /// The CA's Ed25519 public key.
    pub ca: [u8; 32],
    /// Increases with every change: a node keeps the highest it has seen.
    pub doc_version: u64,
    /// [`NamespaceDoc::MODE_PROXY`] or [`NamespaceDoc::MODE_SWITCH`].
    pub mode: u8,
    /// Internet egress through `.2`.
    pub egress: bool,
}

impl NamespaceDoc {
    /// IPOP's L3 model ([`crate::Mode::Proxy`]).
    pub const MODE_PROXY: u8 = 0;
    /// WAVNet's L2 model ([`crate::Mode::Switch`]).
    pub const MODE_SWITCH: u8 = 1;

    /// Parse and verify a signed namespace document: kind 2, version 1, its CA key is `ca`, signed by
    /// it, and its id derived from the CA key and its name.
    pub fn parse_verified(bytes: &[u8], ca: &CaKey) -> Result<Self, CertError> {
        let signed = Signed::parse_kind(bytes, Kind::NamespaceDoc)?;
        let doc: NamespaceDoc = decode(signed.body)?;
        if doc.version != VERSION {
            return Err(CertError::UnsupportedVersion(doc.version));
        }
        if doc.ca != ca.public() {
            return Err(CertError::WrongIssuer { expected: ca.id, found: ca_id(&doc.ca) });
        }
        signed.verify_with(&ca.key)?;
        let id = ca.namespace_id(&doc.name);
        if doc.id != id {
            return Err(CertError::WrongNamespace { expected: id, found: doc.id });
        }
        Ok(doc)
    }
}

/// Sign a namespace document into `out` (hostctl `ns create`); returns its length.
pub fn sign_namespace_doc(doc: &NamespaceDoc, ca: &SigningKey, out: &mut [u8]) -> Result<usize, SignError> {
    if doc.version != VERSION {
        return Err(SignError::UnsupportedVersion(doc.version));
    }
    if doc.ca != ca.verifying_key().to_bytes() {
        return Err(SignError::WrongIssuer);
    }
    if doc.id != namespace_id(&doc.ca, &doc.name) {
        return Err(SignError::WrongNamespaceId);
    }
    sign_object(Kind::NamespaceDoc, ca, out, encode(doc))
}

/// The serials the CA revoked in a namespace (kind 3). A node keeps the highest `list_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// [`VERSION`].
    pub version: u8,
    /// The namespace id.
    pub namespace: [u8; 16],
    /// Increases with every new list.
    pub list_version: u64,
    /// Revoked serials (at most [`MAX_REVOKED`]; a CA that needs more starts a new namespace or
    /// lets old certificates expire).
    pub serials: Vec<u64, MAX_REVOKED>,
    /// When the list was signed (Unix seconds).
    pub issued: u64,
}

impl RevocationList {
    /// Parse and verify a signed revocation list of `namespace`, signed by `ca`.
    pub fn parse_verified(bytes: &[u8], ca: &CaKey, namespace: &[u8; 16]) -> Result<Self, CertError> {
        let signed = Signed::parse_kind(bytes, Kind::RevocationList)?;
        let list: RevocationList = decode(signed.body)?;
        if list.version != VERSION {
            return Err(CertError::UnsupportedVersion(list.version));
        }
        signed.verify_with(&ca.key)?;
        if list.namespace != *namespace {
            return Err(CertError::WrongNamespace { expected: *namespace, found: list.namespace });
        }
        Ok(list)
    }

    /// True if `serial` is revoked.
    pub fn contains(&self, serial: u64) -> bool {
        self.serials.contains(&serial)
    }
}

/// Sign a revocation list into `out` (hostctl `node revoke`); returns its length.
pub fn sign_revocation_list(
    list: &RevocationList,
    ca: &SigningKey,
    out: &mut [u8],
) -> Result<usize, SignError> {
    if list.version != VERSION {
        return Err(SignError::UnsupportedVersion(list.version));
    }
    sign_object(Kind::RevocationList, ca, out, encode(list))
}

/// A node's signature over a DHT record (kind 4): over `b"vngate-sig-v1" || 4 || record`, the record
/// being the exact bytes given (the DHT stores and forwards them unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSig(pub [u8; SIGNATURE_LEN]);

impl RecordSig {
    /// Sign `record` with the node's key.
    pub fn sign(record: &[u8], key: &SigningKey) -> Self {
        Self(sign_parts(key, u8::from(Kind::Record), record))
    }

    /// Check this signature over `record` with the owner's Ed25519 public key (from its certificate).
    pub fn verify(&self, record: &[u8], owner: &[u8; 32]) -> Result<(), CertError> {
        verify_parts(&verifying_key(owner)?, u8::from(Kind::Record), record, &self.0)
    }

    /// Frame and sign `record` into `out` as a signed object (`[4][len][record][sig]`); returns its length.
    pub fn sign_framed(record: &[u8], key: &SigningKey, out: &mut [u8]) -> Result<usize, SignError> {
        sign_object(Kind::Record, key, out, |buf| {
            let dst = buf.get_mut(..record.len()).ok_or(if record.len() > MAX_BODY_LEN {
                SignError::BodyTooLong
            } else {
                SignError::BufferTooSmall
            })?;
            dst.copy_from_slice(record);
            Ok(record.len())
        })
    }

    /// Parse a framed signed record and check it with `owner`'s key; returns the record bytes.
    pub fn verify_framed<'a>(bytes: &'a [u8], owner: &[u8; 32]) -> Result<&'a [u8], CertError> {
        let signed = Signed::parse_kind(bytes, Kind::Record)?;
        signed.verify(owner)?;
        Ok(signed.body)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use ed25519_dalek::Signer as _;
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    /// Fixed keys from fixed seeds (never OsRng in tests).
    fn ca_key() -> SigningKey {
        SigningKey::from_bytes(&[0x11; 32])
    }
    fn node_key() -> SigningKey {
        SigningKey::from_bytes(&[0x22; 32])
    }
    fn other_key() -> SigningKey {
        SigningKey::from_bytes(&[0x33; 32])
    }

    const NOT_BEFORE: u64 = 1_790_000_000;
    const NOT_AFTER: u64 = 1_800_000_000;
    const MID: UnixTime = UnixTime(1_795_000_000);

    fn ns() -> [u8; 16] {
        namespace_id(&ca_key().verifying_key().to_bytes(), "lab")
    }

    fn body_for(key: &SigningKey) -> CertBody {
        let ed = key.verifying_key().to_bytes();
        CertBody {
            version: VERSION,
            namespace: ns(),
            name: String::try_from("r1").unwrap(),
            node_id: NodeId::from_public_key(&ed).0,
            ed25519: ed,
            x25519: [0x44; 32],
            roles: roles::ROUTER | roles::DHT,
            serial: 7,
            not_before: NOT_BEFORE,
            not_after: NOT_AFTER,
            issuer: ca_id(&ca_key().verifying_key().to_bytes()),
        }
    }

    fn signed_cert(body: &CertBody) -> StdVec<u8> {
        let mut out = [0xa5u8; CERT_MAX_LEN + 8];
        let n = sign_cert(body, &ca_key(), &mut out).unwrap();
        assert_eq!(out[n], 0xa5, "nothing written past the object");
        out[..n].to_vec()
    }

    /// Sign any body, bypassing `sign_cert`'s checks (to test what the verifier does with it).
    fn force_sign<T: Serialize>(kind: Kind, value: &T, key: &SigningKey) -> StdVec<u8> {
        let mut out = [0u8; 4096];
        let n = sign_object(kind, key, &mut out, encode(value)).unwrap();
        out[..n].to_vec()
    }

    fn ca() -> CaKey {
        CaKey::from_signing_key(&ca_key())
    }

    fn verify(bytes: &[u8], now: Reading, revoked: Option<&RevocationList>) -> Result<CertInfo, CertError> {
        Certificate::parse(bytes)?.verify(&ca(), &ns(), now, revoked)
    }

    fn revocations(serials: &[u64], namespace: [u8; 16]) -> RevocationList {
        RevocationList {
            version: VERSION,
            namespace,
            list_version: 3,
            serials: Vec::from_slice(serials).unwrap(),
            issued: NOT_BEFORE + 5,
        }
    }

    fn doc() -> NamespaceDoc {
        NamespaceDoc {
            version: VERSION,
            id: ns(),
            name: String::try_from("lab").unwrap(),
            subnet: [10, 250, 0, 0],
            prefix: 16,
            domain: String::try_from("lab.home.arpa").unwrap(),
            ca: ca_key().verifying_key().to_bytes(),
            doc_version: 1,
            mode: NamespaceDoc::MODE_PROXY,
            egress: true,
        }
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        bytes.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    /// Golden bytes: ed25519 signatures are deterministic, so these change only if the format does.
    /// The body part can be read against the field list of `CertBody`; the signature is checked below
    /// with ed25519-dalek's ordinary `verify_strict` over the joined message.
    const GOLDEN_CERT: &str = concat!(
        "01008801bb30579c9132e9822e3e757cea61598802723159f2ae6011629c787086215d6db1a6936d3036334beb6b72a2",
        "6e4dd3e6f97df8a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0444444444444444444",
        "4444444444444444444444444444444444444444444444050780f7c4d50680a4a7da06d85dfdc4fe097048ae1b042ebe",
        "0e5c20c8d4261942c8f98bb52bc216ecbdf70a0476ac7b60c56cc868d55a8949ad41eb965b710909d0827a06fa9da8f7",
        "3344a15403eff6ef118503"
    );
    const GOLDEN_DOC: &str = concat!(
        "02004b01bb30579c9132e9822e3e757cea615988036c61620afa0000100d6c61622e686f6d652e61727061d04ab23274",
        "2bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370100013474bc215da8dc88ad3b3f96745a6f7e93cc",
        "9f035713067bc1abddf875a895db965830de6315d9dfc6e7d4ac4f2ee9b8598b0e325b67e6b6af466bcef2609e07"
    );
    const GOLDEN_REVOKED: &str = concat!(
        "03001a01bb30579c9132e9822e3e757cea6159880302070985f7c4d5060c294b6b1626064466e85d9a43de4199e5c1bf",
        "c8c26468f8658ce9dabac3416ba57e3385c8eb7abed3438b1f16fa40e7f1dcafdfc847233f3021c16ad3f79b0b"
    );
    const GOLDEN_RECORD: &str = concat!(
        "040011766e6761746520646874207265636f726486fd156821305c9b363dbcde58bb18a430f570646f9677b7d2994e5f",
        "26a7cf5665d0f8b161624d6d93245facdb26d55390fddb1cf90fff098ba6e500cded4e0c"
    );

    fn record_framed() -> StdVec<u8> {
        let mut out = [0u8; 128];
        let n = RecordSig::sign_framed(b"vngate dht record", &node_key(), &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn golden_bytes_of_each_signed_object() {
        let cert = signed_cert(&body_for(&node_key()));
        let mut out = [0u8; NAMESPACE_DOC_MAX_LEN];
        let n = sign_namespace_doc(&doc(), &ca_key(), &mut out).unwrap();
        let d = out[..n].to_vec();
        let mut out = [0u8; REVOCATION_LIST_MAX_LEN];
        let n = sign_revocation_list(&revocations(&[7, 9], ns()), &ca_key(), &mut out).unwrap();
        let r = out[..n].to_vec();
        let rec = record_framed();
        assert_eq!(hex(&cert), GOLDEN_CERT);
        assert_eq!(hex(&d), GOLDEN_DOC);
        assert_eq!(hex(&r), GOLDEN_REVOKED);
        assert_eq!(hex(&rec), GOLDEN_RECORD);
    }

    #[test]
    fn signatures_are_plain_ed25519_over_context_kind_body() {
        let cert = signed_cert(&body_for(&node_key()));
        let s = Signed::parse(&cert).unwrap();
        let mut msg = CONTEXT.to_vec();
        msg.push(1);
        msg.extend_from_slice(s.body());
        let sig = Signature::from_bytes(s.signature());
        ca_key().verifying_key().verify_strict(&msg, &sig).unwrap();
        assert_eq!(ca_key().sign(&msg).to_bytes(), *s.signature());
        // The same for a record's detached signature.
        let rec = b"some exact record bytes";
        let mut msg = CONTEXT.to_vec();
        msg.push(4);
        msg.extend_from_slice(rec);
        assert_eq!(RecordSig::sign(rec, &node_key()).0, node_key().sign(&msg).to_bytes());
    }

    #[test]
    fn a_good_certificate_verifies_and_says_what_it_certifies() {
        let body = body_for(&node_key());
        let cert = signed_cert(&body);
        let c = Certificate::parse(&cert).unwrap();
        assert_eq!(c.body(), &body);
        assert_eq!(c.bytes(), &cert[..]);
        let info = verify(&cert, Reading::synced(MID), None).unwrap();
        assert_eq!(
            info,
            CertInfo {
                node_id: NodeId::from_public_key(&body.ed25519),
                ed25519: body.ed25519,
                x25519: [0x44; 32],
                roles: roles::ROUTER | roles::DHT,
                serial: 7,
                not_after: UnixTime(NOT_AFTER),
            }
        );
        assert_eq!(info.require(roles::ROUTER), Ok(()));
        assert_eq!(info.require(roles::ROUTER | roles::DHT), Ok(()));
        assert_eq!(info.require(0), Ok(()));
        // Both ends of the validity are inclusive.
        assert!(verify(&cert, Reading::synced(UnixTime(NOT_BEFORE)), None).is_ok());
        assert!(verify(&cert, Reading::synced(UnixTime(NOT_AFTER)), None).is_ok());
    }

    #[test]
    fn missing_role_names_what_is_missing() {
        let info = verify(&signed_cert(&body_for(&node_key())), Reading::synced(MID), None).unwrap();
        let e = info.require(roles::ROUTER | roles::ADMIN).unwrap_err();
        assert_eq!(e, CertError::MissingRole { missing: roles::ADMIN, have: roles::ROUTER | roles::DHT });
        let text = e.to_string();
        assert!(text.contains("admin") && text.contains("router,dht") && text.contains("hostctl node sign"));
        assert_eq!(RoleNames(0).to_string(), "none");
        assert_eq!(RoleNames(0x81).to_string(), "router,0x80");
    }

    #[test]
    fn expiry_is_checked_against_the_latest_time_synced_or_not() {
        let cert = signed_cert(&body_for(&node_key()));
        let late = UnixTime(NOT_AFTER + 1);
        let want = CertError::Expired { not_after: UnixTime(NOT_AFTER), now: late };
        assert_eq!(verify(&cert, Reading::synced(late), None), Err(want));
        // An unsynced node whose build time is already past not_after refuses it too.
        assert_eq!(verify(&cert, Reading::unsynced(late), None), Err(want));
        let text = want.to_string();
        assert!(text.contains("2027-01-15T08:00:00Z") && text.contains("hostctl node sign"), "{text}");
    }

    #[test]
    fn not_before_is_checked_only_when_synced() {
        let cert = signed_cert(&body_for(&node_key()));
        let early = UnixTime(NOT_BEFORE - 1);
        assert_eq!(
            verify(&cert, Reading::synced(early), None),
            Err(CertError::NotYetValid { not_before: UnixTime(NOT_BEFORE), now: early })
        );
        // A router that booted with only its (older) build time accepts it.
        assert!(verify(&cert, Reading::unsynced(UnixTime(1_700_000_000)), None).is_ok());
    }

    #[test]
    fn revoked_serials_are_refused_and_other_namespaces_lists_ignored() {
        let cert = signed_cert(&body_for(&node_key()));
        let list = revocations(&[3, 7], ns());
        assert_eq!(verify(&cert, Reading::synced(MID), Some(&list)), Err(CertError::Revoked { serial: 7 }));
        assert!(verify(&cert, Reading::synced(MID), Some(&revocations(&[3, 8], ns()))).is_ok());
        assert!(verify(&cert, Reading::synced(MID), Some(&revocations(&[7], [9; 16]))).is_ok());
        assert!(verify(&cert, Reading::synced(MID), Some(&revocations(&[], ns()))).is_ok());
    }

    #[test]
    fn other_namespace_and_other_ca_are_refused() {
        let mut body = body_for(&node_key());
        body.namespace = [9; 16];
        assert_eq!(
            verify(&signed_cert(&body), Reading::synced(MID), None),
            Err(CertError::WrongNamespace { expected: ns(), found: [9; 16] })
        );
        // Signed by another CA, naming it as issuer.
        let other = CaKey::from_signing_key(&other_key());
        let mut body = body_for(&node_key());
        body.issuer = other.id();
        let mut out = [0u8; CERT_MAX_LEN];
        let n = sign_cert(&body, &other_key(), &mut out).unwrap();
        assert_eq!(
            verify(&out[..n], Reading::synced(MID), None),
            Err(CertError::WrongIssuer { expected: ca().id(), found: other.id() })
        );
        // ... and with the right CA trusted, it verifies.
        let c = Certificate::parse(&out[..n]).unwrap();
        assert!(c.verify(&other, &ns(), Reading::synced(MID), None).is_ok());
        // Another key that claims our CA's id: the signature fails.
        let forged = force_sign(Kind::Certificate, &body_for(&node_key()), &other_key());
        assert_eq!(verify(&forged, Reading::synced(MID), None), Err(CertError::BadSignature));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let cert = signed_cert(&body_for(&node_key()));
        for i in 0..cert.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = cert.clone();
                t[i] ^= bit;
                assert!(verify(&t, Reading::synced(MID), None).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        // A body byte that still decodes (the x25519 key) is caught by the signature.
        let mut t = cert.clone();
        t[HEADER_LEN + 1 + 16 + 3 + 64] ^= 1;
        assert_eq!(verify(&t, Reading::synced(MID), None), Err(CertError::BadSignature));
    }

    #[test]
    fn truncated_or_extended_bytes_are_malformed() {
        let cert = signed_cert(&body_for(&node_key()));
        for n in 0..cert.len() {
            assert_eq!(Certificate::parse(&cert[..n]), Err(CertError::Malformed), "prefix {n}");
        }
        let mut long = cert.clone();
        long.push(0);
        assert_eq!(Certificate::parse(&long), Err(CertError::Malformed));
        // `split` takes one object off the front and leaves the rest.
        let (s, rest) = Signed::split(&long).unwrap();
        assert_eq!((s.bytes(), rest), (&cert[..], &[0u8][..]));
        // A body with a trailing byte inside a correct frame.
        let mut body = [0u8; CERT_BODY_MAX_LEN + 1];
        let n = postcard::to_slice(&body_for(&node_key()), &mut body).unwrap().len();
        let mut out = [0u8; CERT_MAX_LEN + 1];
        let len = sign_object(Kind::Certificate, &ca_key(), &mut out, |b| {
            b[..=n].copy_from_slice(&body[..=n]);
            Ok(n + 1)
        })
        .unwrap();
        assert_eq!(Certificate::parse(&out[..len]), Err(CertError::Malformed));
    }

    #[test]
    fn node_id_mismatch_is_refused_by_signer_and_verifier() {
        let mut body = body_for(&node_key());
        body.node_id[0] ^= 1;
        let mut out = [0u8; CERT_MAX_LEN];
        assert_eq!(sign_cert(&body, &ca_key(), &mut out), Err(SignError::NodeIdMismatch));
        let forced = force_sign(Kind::Certificate, &body, &ca_key());
        assert_eq!(verify(&forced, Reading::synced(MID), None), Err(CertError::NodeIdMismatch));
    }

    #[test]
    fn weak_node_keys_are_refused() {
        // The identity point: a valid encoding of small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let mut body = body_for(&node_key());
        body.ed25519 = weak;
        body.node_id = NodeId::from_public_key(&weak).0;
        let mut out = [0u8; CERT_MAX_LEN];
        assert_eq!(sign_cert(&body, &ca_key(), &mut out), Err(SignError::BadKey));
        let forced = force_sign(Kind::Certificate, &body, &ca_key());
        assert_eq!(verify(&forced, Reading::synced(MID), None), Err(CertError::BadKey));
        assert_eq!(CaKey::from_bytes(&weak), Err(CertError::BadKey));
        assert_eq!(RecordSig([0; 64]).verify(b"x", &weak), Err(CertError::BadKey));
    }

    #[test]
    fn wrong_kind_and_version_are_named() {
        let mut out = [0u8; NAMESPACE_DOC_MAX_LEN];
        let n = sign_namespace_doc(&doc(), &ca_key(), &mut out).unwrap();
        assert_eq!(
            Certificate::parse(&out[..n]),
            Err(CertError::WrongKind { expected: Kind::Certificate, found: Kind::NamespaceDoc })
        );
        let mut body = body_for(&node_key());
        body.version = 2;
        let mut out = [0u8; CERT_MAX_LEN];
        assert_eq!(sign_cert(&body, &ca_key(), &mut out), Err(SignError::UnsupportedVersion(2)));
        let forced = force_sign(Kind::Certificate, &body, &ca_key());
        assert_eq!(Certificate::parse(&forced), Err(CertError::UnsupportedVersion(2)));
        let mut t = forced.clone();
        t[0] = 9;
        assert_eq!(
            Signed::parse_kind(&t, Kind::Certificate),
            Err(CertError::WrongKind { expected: Kind::Certificate, found: Kind::Unknown(9) })
        );
    }

    #[test]
    fn signing_refuses_small_buffers_and_the_max_lengths_fit() {
        let body = body_for(&node_key());
        let need = signed_cert(&body).len();
        for len in 0..need {
            let mut out = std::vec![0u8; len];
            assert_eq!(sign_cert(&body, &ca_key(), &mut out), Err(SignError::BufferTooSmall), "{len}");
        }
        let mut body = body;
        body.name = String::try_from("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        (body.serial, body.not_before, body.not_after, body.roles) = (u64::MAX, u64::MAX, u64::MAX, 0xff);
        let mut out = [0u8; CERT_MAX_LEN];
        assert_eq!(sign_cert(&body, &ca_key(), &mut out), Ok(CERT_MAX_LEN));
        let mut d = doc();
        d.name = String::try_from("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        d.id = namespace_id(&d.ca, &d.name);
        d.domain = String::try_from("a".repeat(64).as_str()).unwrap();
        (d.doc_version, d.mode, d.prefix) = (u64::MAX, 0xff, 0xff);
        let mut out = [0u8; NAMESPACE_DOC_MAX_LEN];
        assert_eq!(sign_namespace_doc(&d, &ca_key(), &mut out), Ok(NAMESPACE_DOC_MAX_LEN));
        let mut list = revocations(&[u64::MAX; MAX_REVOKED], ns());
        (list.list_version, list.issued) = (u64::MAX, u64::MAX);
        let mut out = std::vec![0u8; REVOCATION_LIST_MAX_LEN];
        assert_eq!(sign_revocation_list(&list, &ca_key(), &mut out), Ok(REVOCATION_LIST_MAX_LEN));
        let mut big = std::vec![0u8; MAX_BODY_LEN + OVERHEAD + 10];
        let rec = std::vec![1u8; MAX_BODY_LEN + 1];
        assert_eq!(RecordSig::sign_framed(&rec, &node_key(), &mut big), Err(SignError::BodyTooLong));
        assert_eq!(RecordSig::sign_framed(&rec[..MAX_BODY_LEN], &node_key(), &mut big), Ok(big.len() - 10));
    }

    #[test]
    fn namespace_document_checks() {
        let mut out = [0u8; NAMESPACE_DOC_MAX_LEN];
        let n = sign_namespace_doc(&doc(), &ca_key(), &mut out).unwrap();
        assert_eq!(NamespaceDoc::parse_verified(&out[..n], &ca()), Ok(doc()));
        let other = CaKey::from_signing_key(&other_key());
        assert_eq!(
            NamespaceDoc::parse_verified(&out[..n], &other),
            Err(CertError::WrongIssuer { expected: other.id(), found: ca().id() })
        );
        let mut bad = doc();
        bad.id = [1; 16];
        assert_eq!(sign_namespace_doc(&bad, &ca_key(), &mut out), Err(SignError::WrongNamespaceId));
        let forced = force_sign(Kind::NamespaceDoc, &bad, &ca_key());
        assert_eq!(
            NamespaceDoc::parse_verified(&forced, &ca()),
            Err(CertError::WrongNamespace { expected: ns(), found: [1; 16] })
        );
        assert_eq!(sign_namespace_doc(&doc(), &other_key(), &mut out), Err(SignError::WrongIssuer));
        // The document's CA key claims ours, but another key signed it.
        let forced = force_sign(Kind::NamespaceDoc, &doc(), &other_key());
        assert_eq!(NamespaceDoc::parse_verified(&forced, &ca()), Err(CertError::BadSignature));
    }

    #[test]
    fn revocation_list_checks() {
        let list = revocations(&[1, 2, 3], ns());
        let mut out = [0u8; REVOCATION_LIST_MAX_LEN];
        let n = sign_revocation_list(&list, &ca_key(), &mut out).unwrap();
        assert_eq!(RevocationList::parse_verified(&out[..n], &ca(), &ns()), Ok(list.clone()));
        assert_eq!(
            RevocationList::parse_verified(&out[..n], &ca(), &[5; 16]),
            Err(CertError::WrongNamespace { expected: [5; 16], found: ns() })
        );
        let other = CaKey::from_signing_key(&other_key());
        assert_eq!(RevocationList::parse_verified(&out[..n], &other, &ns()), Err(CertError::BadSignature));
        // More than MAX_REVOKED serials do not decode.
        let many: StdVec<u64> = (0..=MAX_REVOKED as u64).collect();
        let forced =
            force_sign(Kind::RevocationList, &(VERSION, ns(), 1u64, many.as_slice(), 0u64), &ca_key());
        assert_eq!(RevocationList::parse_verified(&forced, &ca(), &ns()), Err(CertError::Malformed));
    }

    #[test]
    fn record_signatures() {
        let owner = node_key().verifying_key().to_bytes();
        let rec = b"vngate dht record";
        let sig = RecordSig::sign(rec, &node_key());
        assert_eq!(sig.verify(rec, &owner), Ok(()));
        assert_eq!(sig.verify(b"vngate dht recorD", &owner), Err(CertError::BadSignature));
        assert_eq!(sig.verify(rec, &other_key().verifying_key().to_bytes()), Err(CertError::BadSignature));
        let framed = record_framed();
        assert_eq!(RecordSig::verify_framed(&framed, &owner), Ok(&rec[..]));
        assert_eq!(&framed[framed.len() - 64..], &sig.0[..]);
        let mut t = framed.clone();
        t[5] ^= 4;
        assert_eq!(RecordSig::verify_framed(&t, &owner), Err(CertError::BadSignature));
        // A certificate's signature does not verify as a record: the kind is signed.
        let cert = signed_cert(&body_for(&node_key()));
        let s = Signed::parse(&cert).unwrap();
        let as_record = RecordSig(*s.signature());
        assert_eq!(
            as_record.verify(s.body(), &ca_key().verifying_key().to_bytes()),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn error_sentences_say_what_to_do() {
        for e in [
            CertError::Malformed,
            CertError::BadSignature,
            CertError::NodeIdMismatch,
            CertError::Revoked { serial: 7 },
            CertError::WrongIssuer { expected: [1; 8], found: [2; 8] },
            CertError::WrongNamespace { expected: [1; 16], found: [2; 16] },
        ] {
            let t = e.to_string();
            assert!(t.contains("hostctl") || t.contains("admin"), "{t}");
        }
        let t = CertError::WrongIssuer { expected: [1; 8], found: [2; 8] }.to_string();
        assert!(t.contains("0202020202020202") && t.contains("0101010101010101"), "{t}");
    }

    fn any_body() -> impl Strategy<Value = CertBody> {
        (
            any::<[u8; 32]>(),
            "[a-z0-9-]{0,32}",
            any::<[u8; 32]>(),
            any::<u8>(),
            any::<u64>(),
            (any::<u64>(), any::<u64>()),
        )
            .prop_map(|(seed, name, x25519, roles, serial, (a, b))| {
                let ed = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
                CertBody {
                    version: VERSION,
                    namespace: ns(),
                    name: String::try_from(name.as_str()).unwrap(),
                    node_id: NodeId::from_public_key(&ed).0,
                    ed25519: ed,
                    x25519,
                    roles,
                    serial,
                    not_before: a.min(b),
                    not_after: a.max(b),
                    issuer: ca().id(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn certificates_round_trip(body in any_body()) {
            let cert = signed_cert(&body);
            let c = Certificate::parse(&cert).unwrap();
            prop_assert_eq!(c.body(), &body);
            let now = Reading::synced(UnixTime(body.not_before));
            let info = c.verify(&ca(), &ns(), now, None).unwrap();
            prop_assert_eq!(info.serial, body.serial);
            prop_assert_eq!(info.node_id.0, body.node_id);
        }

        #[test]
        fn revocation_lists_round_trip(serials in proptest::collection::vec(any::<u64>(), 0..40), v: u64) {
            let mut list = revocations(&serials, ns());
            list.list_version = v;
            let mut out = [0u8; REVOCATION_LIST_MAX_LEN];
            let n = sign_revocation_list(&list, &ca_key(), &mut out).unwrap();
            prop_assert_eq!(RevocationList::parse_verified(&out[..n], &ca(), &ns()), Ok(list));
        }

        #[test]
        fn namespace_docs_round_trip(name in "[a-z]{1,32}", domain in "[a-z.]{0,64}", v: u64, egress: bool) {
            let mut d = doc();
            d.name = String::try_from(name.as_str()).unwrap();
            d.id = ca().namespace_id(&d.name);
            d.domain = String::try_from(domain.as_str()).unwrap();
            (d.doc_version, d.egress) = (v, egress);
            let mut out = [0u8; NAMESPACE_DOC_MAX_LEN];
            let n = sign_namespace_doc(&d, &ca_key(), &mut out).unwrap();
            prop_assert_eq!(NamespaceDoc::parse_verified(&out[..n], &ca()), Ok(d));
        }

        #[test]
        fn records_round_trip(rec in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = [0u8; 400];
            let n = RecordSig::sign_framed(&rec, &node_key(), &mut out).unwrap();
            let owner = node_key().verifying_key().to_bytes();
            prop_assert_eq!(RecordSig::verify_framed(&out[..n], &owner), Ok(&rec[..]));
        }
    }
}
