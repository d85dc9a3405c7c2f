//! DHT keys: a domain-separated, length-prefixed encoding of (namespace id, kind, name), hashed with
//! BLAKE2s, so no two (kind, name) pairs of any namespace can share a key.

use blake2::{Blake2s256, Digest};
use serde::{Deserialize, Serialize};

use crate::id::NodeId;

/// The longest name a key is derived from (a hostname label set, an address, a node id).
pub const MAX_NAME: usize = 255;

/// What a record is about (DESIGN.md "Keys"). Codes are one byte; unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "u8", into = "u8")]
pub enum Kind {
    /// `ip:<addr>` — an address's owner; live only while the owner's `node:` record is.
    Ip,
    /// `mac:<mac>` -> ip.
    Mac,
    /// `host:<name>` -> ip.
    Host,
    /// `node:<id>` — the node's contact record and its liveness (short TTL).
    Node,
    /// `bcast` — the namespace's broadcast member set (Append only).
    Bcast,
    /// `revoked` — the CA-signed revocation list (P3).
    Revoked,
    /// A code this version does not know.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(b: u8) -> Self {
        match b {
            1 => Kind::Ip,
            2 => Kind::Mac,
            3 => Kind::Host,
            4 => Kind::Node,
            5 => Kind::Bcast,
            6 => Kind::Revoked,
            n => Kind::Unknown(n),
        }
    }
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::Ip => 1,
            Kind::Mac => 2,
            Kind::Host => 3,
            Kind::Node => 4,
            Kind::Bcast => 5,
            Kind::Revoked => 6,
            Kind::Unknown(n) => n,
        }
    }
}

impl Kind {
    /// Whether a record of this kind counts as live only while its owner's `node:` record is
    /// (DESIGN.md: an owner's `ip:` records): `ip:`, and the `host:` and `mac:` records a router
    /// keeps for its hosts, so a dead router's names free up with its addresses (about 30 s).
    pub fn node_bound(self) -> bool {
        matches!(self, Kind::Ip | Kind::Host | Kind::Mac)
    }
}

/// A DHT key: 32 bytes, compared by XOR distance with node ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of `name` of `kind` in the namespace `namespace`:
    /// BLAKE2s("vngate dht key v1" || namespace (16) || kind (1) || len(name) (2, big endian) || name).
    /// Names longer than [`MAX_NAME`] are cut there (callers never pass such names).
    pub fn derive(namespace: &[u8; 16], kind: Kind, name: &[u8]) -> Key {
        let name = &name[..name.len().min(MAX_NAME)];
        let mut h = Blake2s256::new();
        h.update(b"vngate dht key v1");
        h.update(namespace);
        h.update([u8::from(kind)]);
        h.update((name.len() as u16).to_be_bytes());
        h.update(name);
        Key(h.finalize().into())
    }

    /// The `node:<id>` key of `id`.
    pub fn node(namespace: &[u8; 16], id: &NodeId) -> Key {
        Key::derive(namespace, Kind::Node, &id.0)
    }

    /// The key as a node id, to measure XOR distance to storage nodes.
    pub fn as_id(&self) -> NodeId {
        NodeId(self.0)
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Key({self})")
    }
}

impl core::fmt::Display for Key {
    /// The first 8 bytes in hex.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::id::fmt_short_hex(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: [u8; 16] = [7; 16];

    #[test]
    fn keys_are_domain_separated_and_length_prefixed() {
        let a = Key::derive(&NS, Kind::Ip, b"10.250.0.3");
        assert_eq!(a, Key::derive(&NS, Kind::Ip, b"10.250.0.3"));
        assert_ne!(a, Key::derive(&NS, Kind::Host, b"10.250.0.3"));
        assert_ne!(a, Key::derive(&[8; 16], Kind::Ip, b"10.250.0.3"));
        // Same concatenated bytes, different split between kind and name: the length prefix and the
        // fixed-width kind keep them apart.
        assert_ne!(Key::derive(&NS, Kind::Ip, b"\x01a"), Key::derive(&NS, Kind::Unknown(0x01), b"a"));
        assert_ne!(Key::derive(&NS, Kind::Host, b""), Key::derive(&NS, Kind::Host, b"\0"));
    }

    #[test]
    fn key_matches_a_hand_computed_digest() {
        let mut h = Blake2s256::new();
        h.update(b"vngate dht key v1");
        h.update(NS);
        h.update([3u8, 0, 3]);
        h.update(b"pc1");
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(Key::derive(&NS, Kind::Host, b"pc1").0, want);
    }

    #[test]
    fn kind_codes_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(b)), b);
        }
        assert!(Kind::Ip.node_bound() && Kind::Host.node_bound() && !Kind::Node.node_bound());
        assert!(!Kind::Bcast.node_bound() && !Kind::Revoked.node_bound());
    }
}
