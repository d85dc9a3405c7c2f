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
