//! The node's Ed25519 identity key (DESIGN.md "Security"): generated on the device from the OS RNG at
//! first start, kept 0600 in the state directory, never overwritten, never sent anywhere. The node id
//! is `vn_core::NodeId::from_public_key` of its public key.
//!
//! File format (`node.key`): the line `vngate-ed25519-key 1`, then the 32-byte secret seed in hex on
//! the second line. A file that is unreadable, malformed, or readable by anyone but its owner stops
//! the daemon with an error saying what to do: a key is an identity, so it is never silently replaced.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use vn_core::NodeId;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "node.key";
const HEADER: &str = "vngate-ed25519-key 1";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read, created or written.
    #[error("cannot {action} the node key {}: {source}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Group or others may read or write the key.
    #[error(
        "the node key {} has mode {mode:04o}: only its owner may read it. \
         Run `chmod 600 {}` if you trust that nobody copied it; otherwise move it away to make a new identity",
        path.display(),
        path.display()
    )]
    LoosePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a key this daemon wrote.
    #[error(
        "the node key {} is malformed ({reason}); it is never overwritten: restore it from a backup, \
         or move it away to make a new identity (the node id changes)",
        path.display()
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The node's key pair and id.
pub struct Identity {
    key: SigningKey,
    /// The node id derived from the public key.
    pub node_id: NodeId,
}

impl Identity {
    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key (for P3's certificates and records).
    #[allow(dead_code)]
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn from_key(key: SigningKey) -> Self {
        let node_id = NodeId::from_public_key(&key.verifying_key().to_bytes());
        Self { key, node_id }
    }
}

/// Load the key from `dir`, or create it on first start. Returns the identity and whether it was
/// created now.
pub fn load_or_create(dir: &Path) -> Result<(Identity, bool), IdentityError> {
    let path = dir.join(KEY_FILE);
    match fs::symlink_metadata(&path) {
        Ok(_) => load(&path).map(|id| (id, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(&path).map(|id| (id, true)),
        Err(source) => Err(IdentityError::Io { action: "inspect", path, source }),
    }
}

fn load(path: &Path) -> Result<Identity, IdentityError> {
    let io_err = |action, source| IdentityError::Io { action, path: path.to_owned(), source };
    let meta = fs::metadata(path).map_err(|e| io_err("inspect", e))?;
    if !meta.is_file() {
        return Err(IdentityError::Malformed { path: path.to_owned(), reason: "not a regular file" });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::LoosePermissions { path: path.to_owned(), mode });
    }
    let text = fs::read_to_string(path).map_err(|e| io_err("read", e))?;
    let malformed = |reason| IdentityError::Malformed { path: path.to_owned(), reason };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(malformed("the first line is not `vngate-ed25519-key 1`"));
    }
    let hex_seed = lines.next().ok_or_else(|| malformed("the key line is missing"))?.trim();
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed("unexpected lines after the key"));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed, &mut seed).map_err(|_| malformed("the key is not 64 hex digits"))?;
    Ok(Identity::from_key(SigningKey::from_bytes(&seed)))
}

fn create(path: &Path) -> Result<Identity, IdentityError> {
    let io_err = |action, source| IdentityError::Io { action, path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
    }
    let key = SigningKey::generate(&mut OsRng);
    let text = format!("{HEADER}\n{}\n", hex::encode(key.to_bytes()));
    // create_new: if another process made the file in between, fail rather than overwrite it.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("create", e))?;
    // The umask can only remove bits, but make the mode exact anyway.
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| io_err("set permissions on", e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err("write", e))?;
    f.sync_all().map_err(|e| io_err("sync", e))?;
    Ok(Identity::from_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_a_0600_key_and_later_starts_load_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, created) = load_or_create(&state).unwrap();
        assert!(created);
        let mode = fs::metadata(state.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = load_or_create(&state).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.node_id, b.node_id);
        assert_eq!(a.node_id, NodeId::from_public_key(&a.public_key()));
        // Another directory: another key.
        let (c, _) = load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(a.node_id, c.node_id);
    }

    #[test]
    fn loads_a_known_key_to_its_rfc8032_public_key() {
        // RFC 8032 §7.1 TEST 1: secret key and public key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        fs::write(&path, format!("{HEADER}\n{seed}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (id, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(
            hex::encode(id.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn refuses_a_key_others_can_read_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let before = fs::read(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create(dir.path()).err().expect("refused");
            assert!(matches!(err, IdentityError::LoosePermissions { mode: m, .. } if m == mode), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn refuses_a_malformed_key_and_never_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let cases: [(&str, &str); 5] = [
            ("", "first line"),
            ("vngate-ed25519-key 2\n00\n", "first line"),
            (&format!("{HEADER}\n"), "missing"),
            (&format!("{HEADER}\nzz{}\n", "0".repeat(62)), "64 hex digits"),
            (&format!("{HEADER}\n{}\nmore\n", "0".repeat(64)), "unexpected lines"),
        ];
        for (text, why) in cases {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_or_create(dir.path()).err().expect("refused");
            assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text, "never overwritten");
        }
        // A directory in the key's place is refused too.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(matches!(load_or_create(dir.path()), Err(IdentityError::Malformed { .. })));
    }
}
