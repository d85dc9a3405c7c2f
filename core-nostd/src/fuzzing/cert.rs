//! Fuzz entry point for signed objects and SNTP: every parser and verifier of `cert` and `wire::ntp`
//! runs on the same bytes and must never panic. What verifies must be consistent: a verified
//! certificate's body re-encodes to the exact bytes that were signed (postcard is canonical for what
//! it emits, and the signature pins the bytes), and its node id is the id of its key. The keys are
//! those of the seed corpus (the golden objects of `cert`'s tests: CA seed 0x11.., node seed 0x22..),
//! so mutations of real signed objects reach the verification paths.

use crate::cert::{
    CaKey, CertBody, Certificate, NamespaceDoc, RecordSig, RevocationList, Signed, CERT_BODY_MAX_LEN,
};
use crate::clock::{Reading, UnixTime};
use crate::id::NodeId;
use crate::wire::ntp;

/// The public key of the corpus's CA (Ed25519 seed `[0x11; 32]`).
pub const CA_PUBLIC: [u8; 32] = [
    0xd0, 0x4a, 0xb2, 0x32, 0x74, 0x2b, 0xb4, 0xab, 0x3a, 0x13, 0x68, 0xbd, 0x46, 0x15, 0xe4, 0xe6, 0xd0,
    0x22, 0x4a, 0xb7, 0x1a, 0x01, 0x6b, 0xaf, 0x85, 0x20, 0xa3, 0x32, 0xc9, 0x77, 0x87, 0x37,
];
/// The public key of the corpus's node (Ed25519 seed `[0x22; 32]`).
pub const NODE_PUBLIC: [u8; 32] = [
    0xa0, 0x9a, 0xa5, 0xf4, 0x7a, 0x67, 0x59, 0x80, 0x2f, 0xf9, 0x55, 0xf8, 0xdc, 0x2d, 0x2a, 0x14, 0xa5,
    0xc9, 0x9d, 0x23, 0xbe, 0x97, 0xf8, 0x64, 0x12, 0x7f, 0xf9, 0x38, 0x34, 0x55, 0xa4, 0xf0,
];

/// Fuzz entry point (see the module doc).
pub fn cert(data: &[u8]) {
    let Ok(ca) = CaKey::from_bytes(&CA_PUBLIC) else {
        panic!("the corpus CA key is valid");
    };
    let ns = ca.namespace_id("lab");

    // Several objects back to back, as a handshake payload may carry them.
    let mut rest = data;
    while let Ok((s, after)) = Signed::split(rest) {
        assert_eq!(s.bytes().len(), s.body().len() + crate::cert::OVERHEAD);
        assert!(after.len() < rest.len());
        let _ = s.verify(&NODE_PUBLIC);
        rest = after;
    }

    let revoked = RevocationList::parse_verified(data, &ca, &ns).ok();
    if let Some(list) = &revoked {
        assert_eq!(list.namespace, ns);
    }
    if let Ok(c) = Certificate::parse(data) {
        assert_eq!(c.bytes(), data);
        for now in [
            Reading::synced(UnixTime(1_795_000_000)),
            Reading::unsynced(UnixTime(0)),
            Reading::synced(UnixTime(u64::MAX)),
        ] {
            if let Ok(info) = c.verify(&ca, &ns, now, revoked.as_ref()) {
                assert_eq!(info.node_id, NodeId::from_public_key(&info.ed25519));
                assert!(now.latest <= info.not_after);
                reencodes_exactly(c.body(), data);
                let _ = info.require(0xff);
            }
        }
    }
    if let Ok(doc) = NamespaceDoc::parse_verified(data, &ca) {
        assert_eq!(doc.ca, CA_PUBLIC);
        assert_eq!(doc.id, ca.namespace_id(&doc.name));
    }
    if let Ok(record) = RecordSig::verify_framed(data, &NODE_PUBLIC) {
        assert_eq!(record.len() + crate::cert::OVERHEAD, data.len());
    }

    if let Ok(r) = ntp::Repr::parse_bytes(data) {
        let mut buf = [0xa5u8; ntp::HEADER_LEN];
        assert_eq!(r.emit_into(&mut buf), Some(ntp::HEADER_LEN));
        assert_eq!(&buf[..], &data[..ntp::HEADER_LEN]);
        if let Ok(t) = r.check_reply(r.origin_ts.0) {
            assert_eq!(t, r.transmit_ts.to_unix());
        }
    }
}

fn reencodes_exactly(body: &CertBody, data: &[u8]) {
    let mut buf = [0u8; CERT_BODY_MAX_LEN];
    let Ok(enc) = postcard::to_slice(body, &mut buf) else {
        panic!("a certificate body always fits CERT_BODY_MAX_LEN");
    };
    // A verified certificate was signed by the CA, which only emits canonical postcard; mutations
    // that make a varint over-long break the signature first.
    assert_eq!(Some(&enc[..]), data.get(crate::cert::HEADER_LEN..crate::cert::HEADER_LEN + enc.len()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn corpus_keys_are_the_seeds_keys() {
        assert_eq!(SigningKey::from_bytes(&[0x11; 32]).verifying_key().to_bytes(), CA_PUBLIC);
        assert_eq!(SigningKey::from_bytes(&[0x22; 32]).verifying_key().to_bytes(), NODE_PUBLIC);
    }
}
