//! The node's certificate checked at start (DESIGN.md "Security"; P3SPEC): the CA's public key
//! (`ca.pub`), the namespace document it signed (whose id and parameters must be the configuration's),
//! the revocation list when there is one, and the certificate: signed by that CA, for this namespace,
//! for this node's Ed25519 and X25519 keys, valid now, not revoked, with the roles this configuration
//! needs. Any failure is a sentence that names the file and what to do.
//!
//! The time is the OS wall clock. A clock earlier than [`CLOCK_FLOOR`] (a router without an RTC before
//! NTP ran) counts as unsynced: not_before is skipped and not_after is checked against the floor.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use vn_core::cert::{roles, CaKey, CertInfo, Certificate, NamespaceDoc, RevocationList, RoleNames};
use vn_core::clock::{Reading, UnixTime};

use crate::config::Config;

/// 2026-01-01T00:00:00Z: no clock that reads earlier is right.
pub const CLOCK_FLOOR: u64 = 1_767_225_600;

/// What a good certificate says, for the logs and the status.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The certificate's contents.
    pub info: CertInfo,
    /// The certificate's exact bytes (what the handshakes carry).
    pub cert: Vec<u8>,
    /// The CA's public key.
    pub ca: [u8; 32],
    /// The checked revocation list, when there is one, and its exact signed bytes.
    pub revoked: Option<(RevocationList, Vec<u8>)>,
    /// The namespace document's version.
    pub doc_version: u64,
    /// The revocation list's version (0: none).
    pub revocation_version: u64,
}

/// The wall clock as a certificate check reads it.
pub fn reading() -> Reading {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if now < CLOCK_FLOOR {
        Reading::unsynced(UnixTime(CLOCK_FLOOR))
    } else {
        Reading::synced(UnixTime(now))
    }
}

/// Parse a `ca.pub` file's text.
pub fn parse_ca_pub(path: &Path, text: &str) -> Result<CaKey> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "{} is not a CA public key file ({why}): copy ca.pub from the namespace's bundle",
            path.display()
        )
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("vngate-ca-pub 1") {
        return Err(bad("the first line is not `vngate-ca-pub 1`"));
    }
    let hex_key = lines
        .next()
        .and_then(|l| l.strip_prefix("ed25519 "))
        .ok_or_else(|| bad("the `ed25519` line is missing"))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| bad("the key is not 64 hex digits"))?;
    if lines.next().is_some() {
        return Err(bad("unexpected lines after the key"));
    }
    CaKey::from_bytes(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The roles a configuration needs: router or host (interface mode) for a TAP, dht for storage.
pub fn required_roles(cfg: &Config) -> u8 {
    let mut r = 0;
    if cfg.tap.is_some() {
        r |= match cfg.role {
            vn_core::config::NodeRole::Router => roles::ROUTER,
            vn_core::config::NodeRole::Interface => roles::HOST,
        };
    }
    if cfg.overlay.as_ref().is_some_and(|o| o.storage) {
        r |= roles::DHT;
    }
    r
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| {
        format!(
            "cannot read the {what} {} (set its path in [security], or copy it from the node's bundle)",
            path.display()
        )
    })
}

/// Check the configuration's certificate. `keys` are the node's Ed25519 and X25519 public keys (`None`
/// when they do not exist yet: `check-config` before the first start). `Ok(None)`: no certificate and
/// `[security] require = false`.
pub fn check(cfg: &Config, keys: Option<([u8; 32], [u8; 32])>, now: Reading) -> Result<Option<Verified>> {
    let s = &cfg.security;
    if !s.cert.exists() {
        if s.require {
            bail!(
                "no certificate at {}: [security] require = true needs one; run `vngate keygen`, have the \
                 admin sign node.pub with `hostctl node sign`, and install the bundle",
                s.cert.display()
            );
        }
        return Ok(None);
    }
    let ca_text = fs::read_to_string(&s.ca).with_context(|| {
        format!("cannot read the CA public key {} (the certificate needs it)", s.ca.display())
    })?;
    let ca = parse_ca_pub(&s.ca, &ca_text)?;
    let doc_bytes = read(&s.namespace_doc, "namespace document")?;
    let doc = NamespaceDoc::parse_verified(&doc_bytes, &ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", s.namespace_doc.display()))?;
    let p = &cfg.params;
    let mismatch = |what: &str, signed: String, ours: String| {
        anyhow::anyhow!(
            "the configuration's [namespace] {what} is {ours} but the signed namespace document {} says {signed}; \
             use the vngate.toml of the same bundle",
            s.namespace_doc.display()
        )
    };
    if doc.id != p.id {
        return Err(mismatch("id", hex::encode(doc.id), hex::encode(p.id)));
    }
    if doc.name.as_str() != p.name.as_str() {
        return Err(mismatch("name", doc.name.to_string(), p.name.to_string()));
    }
    let subnet = format!("{}/{}", std::net::Ipv4Addr::from(doc.subnet), doc.prefix);
    if subnet != p.subnet.to_string() {
        return Err(mismatch("subnet", subnet, p.subnet.to_string()));
    }
    if doc.domain.as_str() != p.domain.as_str() {
        return Err(mismatch("domain", doc.domain.to_string(), p.domain.to_string()));
    }
    if doc.egress != p.egress {
        return Err(mismatch("egress", doc.egress.to_string(), p.egress.to_string()));
    }
    let revoked_bytes = if s.revoked.exists() { Some(read(&s.revoked, "revocation list")?) } else { None };
    let revoked = match &revoked_bytes {
        Some(b) => Some(
            RevocationList::parse_verified(b, &ca, &doc.id)
                .map_err(|e| anyhow::anyhow!("{}: {e}", s.revoked.display()))?,
        ),
        None => None,
    };
    let cert_bytes = read(&s.cert, "certificate")?;
    let cert_err = |e: vn_core::cert::CertError| anyhow::anyhow!("the certificate {}: {e}", s.cert.display());
    let cert = Certificate::parse(&cert_bytes).map_err(cert_err)?;
    let info = cert.verify(&ca, &doc.id, now, revoked.as_ref()).map_err(cert_err)?;
    if let Some((ed, x)) = keys {
        if info.ed25519 != ed || info.x25519 != x {
            bail!(
                "the certificate {} is for another node's keys (node {}), not this node's ({}): have the \
                 admin sign this node's node.pub (`vngate keygen` prints it)",
                s.cert.display(),
                hex::encode(info.node_id.0),
                hex::encode(vn_core::NodeId::from_public_key(&ed).0)
            );
        }
    }
    let need = required_roles(cfg);
    info.require(need).map_err(|e| {
        anyhow::anyhow!(
            "the certificate {}: {e} (this configuration runs as {})",
            s.cert.display(),
            RoleNames(need)
        )
    })?;
    Ok(Some(Verified {
        info,
        cert: cert_bytes.clone(),
        ca: ca.public(),
        doc_version: doc.doc_version,
        revocation_version: revoked.as_ref().map_or(0, |r| r.list_version),
        revoked: revoked.zip(revoked_bytes),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use vn_core::cert::{self, CertBody};

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        dir: tempfile::TempDir,
        ca: SigningKey,
        node: SigningKey,
        x25519: [u8; 32],
    }

    /// A namespace "demo" of a fixed CA, written as a bundle: ca.pub, namespace.doc, vngate.toml.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = SigningKey::from_bytes(&[1u8; 32]);
        let ca_pub = ca.verifying_key().to_bytes();
        let doc = NamespaceDoc {
            version: cert::VERSION,
            id: cert::namespace_id(&ca_pub, "demo"),
            name: "demo".try_into().unwrap(),
            subnet: [10, 250, 0, 0],
            prefix: 16,
            domain: "demo.home.arpa".try_into().unwrap(),
            ca: ca_pub,
            doc_version: 1,
            mode: NamespaceDoc::MODE_PROXY,
            egress: false,
        };
        let mut buf = [0u8; cert::NAMESPACE_DOC_MAX_LEN];
        let n = cert::sign_namespace_doc(&doc, &ca, &mut buf).unwrap();
        fs::write(dir.path().join("namespace.doc"), &buf[..n]).unwrap();
        fs::write(dir.path().join("ca.pub"), format!("vngate-ca-pub 1\ned25519 {}\n", hex::encode(ca_pub)))
            .unwrap();
        let f = Fixture { dir, ca, node: SigningKey::from_bytes(&[2u8; 32]), x25519: [5u8; 32] };
        f.write_config(&hex::encode(doc.id), "10.250.0.0/16");
        f
    }

    impl Fixture {
        fn write_config(&self, id: &str, subnet: &str) {
            let text = format!(
                "[namespace]\nid = \"{id}\"\nname = \"demo\"\nsubnet = \"{subnet}\"\n\n[overlay]\nlisten = \"127.0.0.1:4789\"\n\n[daemon]\ntap = \"vn0\"\nstate_dir = \"/var/lib/vngate\"\n\n[security]\ncert = \"node.cert\"\nca = \"ca.pub\"\nnamespace_doc = \"namespace.doc\"\nrevoked = \"revoked\"\n"
            );
            fs::write(self.dir.path().join("vngate.toml"), text).unwrap();
        }

        fn cfg(&self) -> Config {
            crate::config::load(&self.dir.path().join("vngate.toml")).unwrap()
        }

        fn keys(&self) -> Option<([u8; 32], [u8; 32])> {
            Some((self.node.verifying_key().to_bytes(), self.x25519))
        }

        fn sign(&self, roles: u8, serial: u64, not_after: u64) {
            let ed = self.node.verifying_key().to_bytes();
            let ca_pub = self.ca.verifying_key().to_bytes();
            let body = CertBody {
                version: cert::VERSION,
                namespace: cert::namespace_id(&ca_pub, "demo"),
                name: "alpha".try_into().unwrap(),
                node_id: vn_core::NodeId::from_public_key(&ed).0,
                ed25519: ed,
                x25519: self.x25519,
                roles,
                serial,
                not_before: NOW - 3600,
                not_after,
                issuer: cert::ca_id(&ca_pub),
            };
            let mut buf = [0u8; cert::CERT_MAX_LEN];
            let n = cert::sign_cert(&body, &self.ca, &mut buf).unwrap();
            fs::write(self.dir.path().join("node.cert"), &buf[..n]).unwrap();
        }

        fn check(&self) -> Result<Option<Verified>> {
            check(&self.cfg(), self.keys(), Reading::synced(UnixTime(NOW)))
        }
    }

    fn err(r: Result<Option<Verified>>) -> String {
        format!("{:#}", r.expect_err("refused"))
    }

    #[test]
    fn a_good_certificate_passes_and_its_absence_depends_on_require() {
        let f = fixture();
        assert!(f.check().unwrap().is_none(), "no certificate, require = false: unsigned");
        let mut c = f.cfg();
        c.security.require = true;
        let e = format!("{:#}", check(&c, f.keys(), Reading::synced(UnixTime(NOW))).unwrap_err());
        assert!(e.contains("no certificate at") && e.contains("hostctl node sign"), "{e}");
        f.sign(roles::ROUTER | roles::DHT, 7, NOW + 86400);
        let v = f.check().unwrap().unwrap();
        assert_eq!((v.info.serial, v.doc_version, v.revocation_version), (7, 1, 0));
        // Without the node's keys (check-config before keygen) the rest is still checked.
        assert!(check(&f.cfg(), None, Reading::synced(UnixTime(NOW))).unwrap().is_some());
    }

    #[test]
    fn each_refusal_is_a_sentence() {
        let f = fixture();
        // A role the configuration needs is missing (the overlay stores: dht).
        f.sign(roles::ROUTER, 1, NOW + 86400);
        let e = err(f.check());
        assert!(e.contains("lacks the role(s) dht") && e.contains("runs as router,dht"), "{e}");
        // Expired.
        f.sign(roles::ROUTER | roles::DHT, 1, NOW - 1);
        assert!(err(f.check()).contains("expired"));
        // Another node's keys.
        f.sign(roles::ROUTER | roles::DHT, 1, NOW + 86400);
        let other = Some((SigningKey::from_bytes(&[3u8; 32]).verifying_key().to_bytes(), f.x25519));
        let e = format!("{:#}", check(&f.cfg(), other, Reading::synced(UnixTime(NOW))).unwrap_err());
        assert!(e.contains("another node's keys"), "{e}");
        let e = format!(
            "{:#}",
            check(
                &f.cfg(),
                Some((f.node.verifying_key().to_bytes(), [6u8; 32])),
                Reading::synced(UnixTime(NOW))
            )
            .unwrap_err()
        );
        assert!(e.contains("another node's keys"), "{e}");
        // A flipped byte in the certificate.
        let path = f.dir.path().join("node.cert");
        let mut b = fs::read(&path).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        fs::write(&path, &b).unwrap();
        assert!(err(f.check()).contains("node.cert"), "names the file");
        // The configuration disagrees with the signed document.
        f.sign(roles::ROUTER | roles::DHT, 1, NOW + 86400);
        let id = hex::encode(f.cfg().params.id);
        f.write_config(&id, "10.251.0.0/16");
        let e = err(f.check());
        assert!(e.contains("[namespace] subnet is 10.251.0.0/16") && e.contains("10.250.0.0/16"), "{e}");
        f.write_config("00112233445566778899aabbccddeeff", "10.250.0.0/16");
        assert!(err(f.check()).contains("[namespace] id"));
        f.write_config(&id, "10.250.0.0/16");
        // A CA public key that is not the document's signer.
        let good_ca = fs::read(f.dir.path().join("ca.pub")).unwrap();
        let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key().to_bytes();
        fs::write(f.dir.path().join("ca.pub"), format!("vngate-ca-pub 1\ned25519 {}\n", hex::encode(other)))
            .unwrap();
        assert!(err(f.check()).contains("namespace.doc"));
        fs::write(f.dir.path().join("ca.pub"), "garbage\n").unwrap();
        assert!(err(f.check()).contains("vngate-ca-pub 1"));
        fs::write(f.dir.path().join("ca.pub"), good_ca).unwrap();
        assert!(f.check().unwrap().is_some());
    }

    #[test]
    fn a_revocation_list_revokes() {
        let f = fixture();
        f.sign(roles::ROUTER | roles::DHT, 4, NOW + 86400);
        let ca_pub = f.ca.verifying_key().to_bytes();
        let write_list = |serials: &[u64], version: u64| {
            let list = RevocationList {
                version: cert::VERSION,
                namespace: cert::namespace_id(&ca_pub, "demo"),
                list_version: version,
                serials: serials.iter().copied().collect(),
                issued: NOW,
            };
            let mut buf = vec![0u8; cert::REVOCATION_LIST_MAX_LEN];
            let n = cert::sign_revocation_list(&list, &f.ca, &mut buf).unwrap();
            fs::write(f.dir.path().join("revoked"), &buf[..n]).unwrap();
        };
        write_list(&[1, 2], 1);
        assert_eq!(f.check().unwrap().unwrap().revocation_version, 1);
        write_list(&[1, 2, 4], 2);
        let e = err(f.check());
        assert!(e.contains("serial 4 was revoked"), "{e}");
    }

    #[test]
    fn an_early_clock_is_unsynced() {
        let r = reading();
        assert!(r.latest.0 >= CLOCK_FLOOR);
    }
}
