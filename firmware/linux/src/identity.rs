//! The node's keys (DESIGN.md "Security"; P3SPEC "Keys on a node"): an Ed25519 identity key for
//! signatures and an X25519 static key for Noise sessions, both generated on the device from the OS RNG
//! (at first start or by `vngate keygen`), kept 0600 in the state directory, never overwritten, never
//! sent anywhere. The node id is `vn_core::NodeId::from_public_key` of the Ed25519 public key.
//!
//! File formats: `node.key` is the line `vngate-ed25519-key 1`, then the 32-byte secret seed in hex on
//! the second line; `noise.key` is the same with `vngate-x25519-key 1` and the X25519 secret. A file that
//! is unreadable, malformed, or readable by anyone but its owner stops the daemon with an error saying
//! what to do: a key is an identity, so it is never silently replaced.
//!
//! `node.pub` (what `hostctl node sign --pub` reads) is public: the lines `vngate-node-pub 1`,
//! `ed25519 <hex32>`, `x25519 <hex32>`, `node-id <hex32>`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use vn_core::NodeId;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "node.key";
const HEADER: &str = "vngate-ed25519-key 1";
/// The Noise static key's file name in the state directory.
pub const NOISE_KEY_FILE: &str = "noise.key";
const NOISE_HEADER: &str = "vngate-x25519-key 1";
/// The public keys' file name in the state directory.
pub const PUB_FILE: &str = "node.pub";
const PUB_HEADER: &str = "vngate-node-pub 1";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read, created or written.
    #[error("cannot {action} the key file {}: {source}", path.display())]
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
        "the key file {} has mode {mode:04o}: only its owner may read it. \
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
        "the key file {} is malformed ({reason}); it is never overwritten: restore it from a backup, \
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
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn from_key(key: SigningKey) -> Self {
        let node_id = NodeId::from_public_key(&key.verifying_key().to_bytes());
        Self { key, node_id }
    }
}

/// The node's X25519 static key for Noise sessions.
pub struct NoiseKey {
    secret: StaticSecret,
}

impl NoiseKey {
    /// The X25519 public key (what a certificate binds).
    pub fn public_key(&self) -> [u8; 32] {
        X25519Public::from(&self.secret).to_bytes()
    }

    /// The secret, for the session layer.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

/// Load the key from `dir`, or create it on first start. Returns the identity and whether it was
/// created now.
pub fn load_or_create(dir: &Path) -> Result<(Identity, bool), IdentityError> {
    let (seed, created) = secret_load_or_create(&dir.join(KEY_FILE), HEADER)?;
    Ok((Identity::from_key(SigningKey::from_bytes(&seed)), created))
}

/// Load the Noise static key from `dir`, or create it. Returns the key and whether it was created now.
pub fn load_or_create_noise(dir: &Path) -> Result<(NoiseKey, bool), IdentityError> {
    let (secret, created) = secret_load_or_create(&dir.join(NOISE_KEY_FILE), NOISE_HEADER)?;
    Ok((NoiseKey { secret: StaticSecret::from(secret) }, created))
}

/// Load both keys from `dir` without creating anything (`check-config`); `None` when a key file is absent.
pub fn load_existing(dir: &Path) -> Result<Option<(Identity, NoiseKey)>, IdentityError> {
    let (k, n) = (dir.join(KEY_FILE), dir.join(NOISE_KEY_FILE));
    if !exists(&k)? || !exists(&n)? {
        return Ok(None);
    }
    let seed = load_secret(&k, HEADER)?;
    let noise = load_secret(&n, NOISE_HEADER)?;
    Ok(Some((
        Identity::from_key(SigningKey::from_bytes(&seed)),
        NoiseKey { secret: StaticSecret::from(noise) },
    )))
}

/// Replace both keys with fresh ones (`vngate keygen --force`): the old files are kept as `*.old`.
pub fn replace(dir: &Path) -> Result<(), IdentityError> {
    for f in [KEY_FILE, NOISE_KEY_FILE] {
        let path = dir.join(f);
        if exists(&path)? {
            let old = dir.join(format!("{f}.old"));
            fs::rename(&path, &old).map_err(|source| IdentityError::Io {
                action: "move away",
                path,
                source,
            })?;
        }
    }
    Ok(())
}

fn exists(path: &Path) -> Result<bool, IdentityError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(IdentityError::Io { action: "inspect", path: path.to_owned(), source }),
    }
}

/// The public half of a node's keys, as `node.pub` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePub {
    /// The Ed25519 public key.
    pub ed25519: [u8; 32],
    /// The X25519 public key.
    pub x25519: [u8; 32],
    /// The node id (derived from `ed25519`).
    pub node_id: NodeId,
}

impl NodePub {
    /// The public half of these keys.
    pub fn of(id: &Identity, noise: &NoiseKey) -> Self {
        Self { ed25519: id.public_key(), x25519: noise.public_key(), node_id: id.node_id }
    }

    /// The `node.pub` text.
    pub fn to_text(self) -> String {
        format!(
            "{PUB_HEADER}\ned25519 {}\nx25519 {}\nnode-id {}\n",
            hex::encode(self.ed25519),
            hex::encode(self.x25519),
            hex::encode(self.node_id.0)
        )
    }
}

/// Write `node.pub` in `dir` (public; replaced whenever the keys are, mode 0644).
pub fn write_pub(dir: &Path, p: &NodePub) -> Result<PathBuf, IdentityError> {
    let path = dir.join(PUB_FILE);
    let tmp = dir.join(format!("{PUB_FILE}.tmp"));
    let io_err = |action, source| IdentityError::Io { action, path: path.clone(), source };
    fs::write(&tmp, p.to_text()).map_err(|e| io_err("write", e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .map_err(|e| io_err("set permissions on", e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err("write", e))?;
    Ok(path)
}

fn secret_load_or_create(path: &Path, header: &'static str) -> Result<([u8; 32], bool), IdentityError> {
    if exists(path)? {
        load_secret(path, header).map(|s| (s, false))
    } else {
        create_secret(path, header).map(|s| (s, true))
    }
}

fn load_secret(path: &Path, header: &'static str) -> Result<[u8; 32], IdentityError> {
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
    if lines.next() != Some(header) {
        return Err(malformed(if header == HEADER {
            "the first line is not `vngate-ed25519-key 1`"
        } else {
            "the first line is not `vngate-x25519-key 1`"
        }));
    }
    let hex_seed = lines.next().ok_or_else(|| malformed("the key line is missing"))?.trim();
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed("unexpected lines after the key"));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed, &mut seed).map_err(|_| malformed("the key is not 64 hex digits"))?;
    Ok(seed)
}

fn create_secret(path: &Path, header: &'static str) -> Result<[u8; 32], IdentityError> {
    let io_err = |action, source| IdentityError::Io { action, path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
    }
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let text = format!("{header}\n{}\n", hex::encode(secret));
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
    Ok(secret)
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

    #[test]
    fn noise_key_and_node_pub() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_existing(dir.path()).unwrap().is_none(), "nothing is created by a check");
        let (id, _) = load_or_create(dir.path()).unwrap();
        assert!(load_existing(dir.path()).unwrap().is_none(), "noise.key is still absent");
        let (noise, created) = load_or_create_noise(dir.path()).unwrap();
        assert!(created);
        let mode = fs::metadata(dir.path().join(NOISE_KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create_noise(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), noise.public_key());
        let (id2, noise2) = load_existing(dir.path()).unwrap().unwrap();
        assert_eq!((id2.public_key(), noise2.public_key()), (id.public_key(), noise.public_key()));
        // A key file with the other kind's header is refused.
        let text = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        fs::write(dir.path().join(NOISE_KEY_FILE), &text).unwrap();
        let err = load_or_create_noise(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("vngate-x25519-key 1"), "{err}");

        let p = NodePub::of(&id, &noise);
        let path = write_pub(dir.path(), &p).unwrap();
        let text = fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "vngate-node-pub 1");
        assert_eq!(lines[1], format!("ed25519 {}", hex::encode(id.public_key())));
        assert_eq!(lines[2], format!("x25519 {}", hex::encode(noise.public_key())));
        assert_eq!(lines[3], format!("node-id {}", hex::encode(id.node_id.0)));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn x25519_public_key_of_rfc7748_secret() {
        // RFC 7748 §6.1: Alice's private key and public key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NOISE_KEY_FILE);
        let secret = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        fs::write(&path, format!("{NOISE_HEADER}\n{secret}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (k, created) = load_or_create_noise(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(
            hex::encode(k.public_key()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn replace_keeps_the_old_keys_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = load_or_create(dir.path()).unwrap();
        load_or_create_noise(dir.path()).unwrap();
        replace(dir.path()).unwrap();
        assert!(dir.path().join("node.key.old").exists() && dir.path().join("noise.key.old").exists());
        let (b, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_ne!(a.node_id, b.node_id);
    }
}
