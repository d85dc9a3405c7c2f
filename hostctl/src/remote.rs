//! hostctl over the overlay (DESIGN.md "hostctl"): from an admin's laptop, `hostctl --via IP:PORT`
//! joins the namespace's secured overlay as a client — its own keys, a certificate with the admin
//! role — and sends the request line the control socket would get as a [`ControlRepr::Admin`]
//! message inside a Noise session with the daemon at IP:PORT; the daemon executes it only for an
//! admin certificate and answers with the same JSON as its control socket.
//!
//! The credentials directory (`--cert-dir`) is a bundle of `hostctl node sign NAME --role admin`
//! (node.cert, ca.pub, namespace.doc, and revoked when there is one) plus the X25519 key `noise.key`
//! of the keys that were signed: `hostctl admin init NAME` makes both (keys in NS/keys/NAME, found
//! from the bundle NS/bundles/NAME); with keys made elsewhere (`vngate keygen`, then `hostctl node
//! sign NAME --role admin`), `--key-dir DIR` says where noise.key is. The client node serves no LAN and
//! stores nothing; it lives for one request.
//!
//! [`ControlRepr::Admin`]: vn_core::wire::control::ControlRepr::Admin

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};
use vn_core::cert::{CaKey, NamespaceDoc, RevocationList};
use vn_core::clock::UnixTime;
use vn_core::secure::SecurityConfig;
use vn_core::wire::control::AdminStatus;
use vn_core::{Instant, Ipv4Address, Ipv4Cidr, NamespaceParams, OverlayConfig, Site, Transmit};

use crate::ns::{CA_PUB, NODE_CERT, NS_DOC, REVOKED};

/// The X25519 key file `vngate keygen` writes.
pub const NOISE_KEY: &str = "noise.key";
/// 2026-01-01T00:00:00Z: a clock that reads earlier is not synchronised (as the daemon's rule).
const CLOCK_FLOOR: u64 = 1_767_225_600;
/// How long to wait for the session with the daemon.
pub const SESSION_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the answer once the session is up (the daemon's commands time out first).
pub const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// Where the overlay client finds its target and credentials.
#[derive(Debug, Clone)]
pub struct Via {
    /// The daemon's overlay endpoint.
    pub target: SocketAddr,
    /// The admin bundle.
    pub cert_dir: PathBuf,
    /// Where `noise.key` is (default: `cert_dir`).
    pub key_dir: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read {} (is --cert-dir an admin bundle? make one with `hostctl admin init NAME`)",
            path.display()
        )
    })
}

/// Parse a `vngate-<what>-key 1` / hex file.
fn parse_key_file(path: &Path, header: &str) -> Result<[u8; 32]> {
    let text = String::from_utf8(read(path)?).ok().unwrap_or_default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(header) {
        bail!("{} is not a key file (its first line is not `{header}`)", path.display());
    }
    let mut key = [0u8; 32];
    let hex_key = lines.next().unwrap_or_default();
    hex::decode_to_slice(hex_key, &mut key)
        .map_err(|_| anyhow::anyhow!("{}: the key is not 64 hex digits", path.display()))?;
    Ok(key)
}

/// Parse `ca.pub` (`vngate-ca-pub 1` / `ed25519 <hex>`).
fn parse_ca(path: &Path) -> Result<CaKey> {
    let text = String::from_utf8(read(path)?).ok().unwrap_or_default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let key = match (lines.next(), lines.next().and_then(|l| l.strip_prefix("ed25519 "))) {
        (Some("vngate-ca-pub 1"), Some(k)) => k.trim(),
        _ => {
            bail!("{} is not a CA public key file: copy ca.pub from the namespace directory", path.display())
        }
    };
    let mut b = [0u8; 32];
    hex::decode_to_slice(key, &mut b)
        .map_err(|_| anyhow::anyhow!("{}: the key is not 64 hex digits", path.display()))?;
    CaKey::from_bytes(&b).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Where `admin init NAME` keeps the admin's keys in the namespace directory `ns_dir`.
pub fn key_dir_of(ns_dir: &Path, name: &str) -> PathBuf {
    ns_dir.join("keys").join(name)
}

/// Write a private key file (`header`, hex) with mode 0600; never replaces one.
fn write_secret(path: &Path, header: &str, secret: &[u8; 32]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(
            || format!("cannot create {} (it exists? keys are never replaced)", path.display()),
        )?;
    f.write_all(format!("{header}\n{}\n", hex::encode(secret)).as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// `hostctl admin init NAME`: the admin's keys made here, in `ns_dir/keys/NAME` (as `vngate keygen`
/// makes a node's: node.key, noise.key 0600, node.pub); returns the node.pub path for the signing.
/// Existing keys are kept (a new certificate for the same keys).
pub fn admin_keys(ns_dir: &Path, name: &str) -> Result<PathBuf> {
    let dir = key_dir_of(ns_dir, name);
    let pub_path = dir.join("node.pub");
    if pub_path.exists() && dir.join(NOISE_KEY).exists() {
        return Ok(pub_path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let seed: [u8; 32] = random()?;
    let noise: [u8; 32] = random()?;
    let ed = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let x = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(noise)).to_bytes();
    write_secret(&dir.join("node.key"), "vngate-ed25519-key 1", &seed)?;
    write_secret(&dir.join(NOISE_KEY), "vngate-x25519-key 1", &noise)?;
    let id = vn_core::NodeId::from_public_key(&ed);
    let text = format!(
        "vngate-node-pub 1\ned25519 {}\nx25519 {}\nnode-id {}\n",
        hex::encode(ed),
        hex::encode(x),
        hex::encode(id.0)
    );
    std::fs::write(&pub_path, text).with_context(|| format!("cannot write {}", pub_path.display()))?;
    Ok(pub_path)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    Ok(b)
}

/// Send `request` (a control-socket request line) to the daemon at `via.target` over the overlay
/// and return its answer.
pub fn ask(via: &Via, request: &str) -> Result<String> {
    let via = via.clone();
    let request = request.to_owned();
    // A node is large (its tables are fixed-size arrays): give it a big stack.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || ask_inner(&via, &request))
        .context("cannot start the overlay client thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the overlay client thread panicked"))?
}

fn ask_inner(via: &Via, request: &str) -> Result<String> {
    let dir = &via.cert_dir;
    let ca = parse_ca(&dir.join(CA_PUB))?;
    let doc_path = dir.join(NS_DOC);
    let doc = NamespaceDoc::parse_verified(&read(&doc_path)?, &ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", doc_path.display()))?;
    let cert_path = dir.join(NODE_CERT);
    let cert_bytes = read(&cert_path)?;
    let id = vn_core::secure::cert_node_id(&cert_bytes)
        .with_context(|| format!("{} is not a certificate", cert_path.display()))?;
    let revoked = match std::fs::read(dir.join(REVOKED)) {
        Ok(b) => {
            RevocationList::parse_verified(&b, &ca, &doc.id)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(REVOKED).display()))?;
            Some(heapless::Vec::from_slice(&b).map_err(|_| {
                anyhow::anyhow!("{} is too long for a revocation list", dir.join(REVOKED).display())
            })?)
        }
        Err(_) => None,
    };
    let key_path = match &via.key_dir {
        Some(k) => k.join(NOISE_KEY),
        // A bundle of `admin init`: NS/bundles/NAME, its keys in NS/keys/NAME.
        None if !dir.join(NOISE_KEY).exists() => match (dir.parent().and_then(Path::parent), dir.file_name())
        {
            (Some(ns), Some(name)) => key_dir_of(ns, &name.to_string_lossy()).join(NOISE_KEY),
            _ => dir.join(NOISE_KEY),
        },
        None => dir.join(NOISE_KEY),
    };
    let noise_secret = parse_key_file(&key_path, "vngate-x25519-key 1")?;
    let cidr = Ipv4Cidr::new(Ipv4Address::from(doc.subnet), doc.prefix);
    let params = NamespaceParams::new(doc.id, doc.name.as_str(), cidr)
        .map_err(|e| anyhow::anyhow!("{}: {e}", doc_path.display()))?;
    let site = Site::new(params).map_err(|e| anyhow::anyhow!("{}: {e}", doc_path.display()))?;
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut bootstrap = heapless::Vec::new();
    let _ = bootstrap.push(via.target);
    // The admin writes no records of its own: nothing to sign with.
    let overlay = OverlayConfig {
        id,
        storage: false,
        fresh: false,
        lan: false,
        advertise: None,
        bootstrap,
        signing_key: None,
    };
    let security = SecurityConfig {
        noise_secret,
        cert: heapless::Vec::from_slice(&cert_bytes)
            .map_err(|_| anyhow::anyhow!("{} is too long for a certificate", cert_path.display()))?,
        ca: ca.public(),
        revoked,
        // Each run is a boot: the time in microseconds only grows, as the handshake's replay check needs.
        boot: unix.as_micros() as u64,
        entropy: random()?,
        wall: UnixTime(unix.as_secs()),
        synced: unix.as_secs() >= CLOCK_FLOOR,
    };
    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as i64);
    let mut node = vn_core::node::DefaultNode::with_security(
        site,
        u64::from_le_bytes(random()?),
        overlay,
        security,
        now(),
    )
    .map_err(|e| anyhow::anyhow!("{e} ({})", cert_path.display()))?;
    let sock = UdpSocket::bind(if via.target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .context("cannot open a UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let call: u32 = u32::from_le_bytes(random()?);
    if !node.admin_ask(now(), via.target, call, request.as_bytes()) {
        bail!("the request is too long for the overlay ({} bytes)", request.len());
    }
    let mut buf = vec![0u8; vn_core::queue::FRAME_CAP];
    let mut rx = vec![0u8; 65536];
    let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
    let mut session_at: Option<StdInstant> = None;
    loop {
        while let Some(t) = node.poll_transmit(now(), &mut buf) {
            if let Transmit::Overlay { to, len } = t {
                // A lost datagram is retried by the node's timers.
                let _ = sock.send_to(&buf[..len], to);
            }
        }
        match sock.recv_from(&mut rx) {
            Ok((n, from)) => node.handle_overlay(now(), from, &rx[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => bail!("overlay socket: {e}"),
        }
        if node.poll_at().is_some_and(|at| at <= now()) {
            node.handle_timeout(now());
        }
        while let Some(p) = node.poll_admin_part() {
            if p.id != call || p.from != via.target {
                continue;
            }
            match p.status {
                AdminStatus::Done => {}
                AdminStatus::Refused => bail!(
                    "the daemon at {} refused the request: the certificate in {} has no admin role \
                     (make one with `hostctl admin init NAME`)",
                    via.target,
                    dir.display()
                ),
                AdminStatus::Busy => {
                    bail!("the daemon at {} is busy with other admin requests: try again", via.target)
                }
                AdminStatus::Unknown(s) => {
                    bail!("the daemon at {} answered with unknown status {s}", via.target)
                }
            }
            if parts.len() != usize::from(p.parts) {
                parts = vec![None; usize::from(p.parts)];
            }
            if let Some(slot) = parts.get_mut(usize::from(p.part)) {
                *slot = Some(p.body.to_vec());
            }
            if parts.iter().all(Option::is_some) {
                let whole: Vec<u8> = parts.iter().flatten().flatten().copied().collect();
                return String::from_utf8(whole).context("the daemon's answer is not text");
            }
        }
        let up = node.secure().and_then(|s| s.identity_of(now(), via.target)).is_some();
        match session_at {
            None if up => session_at = Some(StdInstant::now()),
            None if start.elapsed() > SESSION_WAIT => bail!(
                "no session with {} after {} s: is the daemon running there, and does it know this \
                 namespace's CA ({})?",
                via.target,
                SESSION_WAIT.as_secs(),
                dir.join(CA_PUB).display()
            ),
            Some(at) if at.elapsed() > ANSWER_WAIT => {
                bail!("no answer from {} after {} s", via.target, ANSWER_WAIT.as_secs())
            }
            _ => {}
        }
    }
}
