//! Provisioning (DESIGN.md "hostctl", "Security"): a namespace's CA and signed document, certificates for
//! keys made on the devices (`vngate keygen`; the private keys never travel, as `nebula-cert sign
//! -in-pub`), config bundles the daemon takes as they are, and revocation lists.
//!
//! A namespace lives in one directory (`--dir`, default `$XDG_CONFIG_HOME/vngate/<name>`):
//! ```text
//! ca.key          the CA's Ed25519 key, sealed under the admin's passphrase (cakey.rs), 0600
//! ca.pub          `vngate-ca-pub 1` / `ed25519 <hex32>`
//! namespace.doc   the signed namespace document (vn_core::cert, kind 2)
//! ns.json         hostctl's own record: parameters, the next serial, every certificate issued
//! certs/<serial>-<name>.cert   every certificate issued
//! revoked         the newest signed revocation list (kind 3), once a node was revoked
//! bundles/<name>/ vngate.toml, node.cert, ca.pub, namespace.doc (and revoked): copy to the node
//! ```
//! Serials are recorded in ns.json before a certificate is written, so one is never issued twice.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use vn_core::cert::{self, roles, CaKey, CertBody, NamespaceDoc, RevocationList};
use vn_core::config::NamespaceParams;
use vn_core::{Ipv4Address, Ipv4Cidr, NodeId};

use crate::cakey;

/// File names inside a namespace directory (and, for the node's files, in a bundle).
pub const CA_KEY: &str = "ca.key";
/// The CA's public key.
pub const CA_PUB: &str = "ca.pub";
/// The signed namespace document.
pub const NS_DOC: &str = "namespace.doc";
/// hostctl's record of the namespace.
pub const STATE: &str = "ns.json";
/// The newest signed revocation list.
pub const REVOKED: &str = "revoked";
/// A node's certificate in its bundle.
pub const NODE_CERT: &str = "node.cert";
/// The daemon's configuration in a bundle.
pub const BUNDLE_CONFIG: &str = "vngate.toml";

/// A certificate starts this long before it is signed, so a node whose clock is a little behind the
/// admin's accepts it at once.
pub const BACKDATE_SECS: u64 = 3600;

/// hostctl's record of a namespace (`ns.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NsState {
    /// Format version of this file (1).
    pub version: u32,
    /// The namespace's name.
    pub name: String,
    /// The namespace id, hex.
    pub id: String,
    /// The subnet, e.g. 10.250.0.0/16.
    pub subnet: String,
    /// The DNS domain.
    pub domain: String,
    /// Internet egress through `.2`.
    pub egress: bool,
    /// The daemon mode written into router bundles: `router` or `interface`.
    pub mode: String,
    /// DHCP pool FIRST-LAST, when not the default.
    pub pool: Option<String>,
    /// Upstream resolver for names outside the VN.
    pub upstream_dns: Option<String>,
    /// The namespace document's version.
    pub doc_version: u64,
    /// The serial the next certificate gets.
    pub next_serial: u64,
    /// The newest revocation list's version (0: none yet).
    pub revocation_version: u64,
    /// Every certificate issued, oldest first.
    pub nodes: Vec<Issued>,
}

/// One certificate issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    /// The node's name.
    pub name: String,
    /// The serial.
    pub serial: u64,
    /// The node id, hex.
    pub node_id: String,
    /// Role names, comma-separated.
    pub roles: String,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub not_after: u64,
    /// The certificate file, relative to the namespace directory.
    pub cert: String,
    /// Revoked (in the newest revocation list).
    pub revoked: bool,
}

/// The directory all namespaces live under: `$XDG_CONFIG_HOME/vngate` or `~/.config/vngate`.
pub fn base_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("vngate"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_CONFIG_HOME nor HOME is set: name the namespace's directory with --dir")?;
    Ok(PathBuf::from(home).join(".config").join("vngate"))
}

/// The directory of an existing namespace: `--dir`, else `--ns NAME` under [`base_dir`], else the only
/// namespace there.
pub fn existing_dir(dir: Option<PathBuf>, ns: Option<&str>) -> Result<PathBuf> {
    let dir = match (dir, ns) {
        (Some(d), _) => d,
        (None, Some(n)) => base_dir()?.join(n),
        (None, None) => {
            let base = base_dir()?;
            let found: Vec<PathBuf> = fs::read_dir(&base)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join(STATE).is_file()).collect()
                })
                .unwrap_or_default();
            match found.as_slice() {
                [one] => one.clone(),
                [] => bail!(
                    "no namespace under {}: create one with `hostctl ns create NAME --subnet CIDR`, \
                     or name its directory with --dir",
                    base.display()
                ),
                _ => bail!("several namespaces under {}: choose one with --ns NAME or --dir", base.display()),
            }
        }
    };
    if !dir.join(STATE).is_file() {
        bail!(
            "{} is not a namespace directory (no {STATE}): check --dir or --ns, or create it with `hostctl ns create`",
            dir.display()
        );
    }
    Ok(dir)
}

/// The current time in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SSZ` of Unix seconds (proleptic Gregorian, UTC).
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Role bits of a comma-separated list of names.
pub fn parse_roles(s: &str) -> Result<u8> {
    let mut bits = 0;
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let bit = roles::NAMES.iter().find(|(_, n)| *n == name).map(|(b, _)| *b).with_context(|| {
            let all: Vec<&str> = roles::NAMES.iter().map(|(_, n)| *n).collect();
            format!("`{name}` is not a role: use some of {}", all.join(","))
        })?;
        bits |= bit;
    }
    if bits == 0 {
        bail!("--role is empty: give at least one role, e.g. --role router,dht");
    }
    Ok(bits)
}

/// The text of `ca.pub`.
pub fn ca_pub_text(public: &[u8; 32]) -> String {
    format!("vngate-ca-pub 1\ned25519 {}\n", hex::encode(public))
}

/// A node's public keys, as `vngate keygen` writes them to `node.pub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePub {
    /// Ed25519 public key.
    pub ed25519: [u8; 32],
    /// X25519 public key.
    pub x25519: [u8; 32],
    /// Node id (checked to be the Ed25519 key's).
    pub node_id: [u8; 32],
}

/// Parse `node.pub` (read from `path`, which only labels errors).
pub fn parse_node_pub(path: &Path, text: &str) -> Result<NodePub> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "{} is not a node.pub file ({why}): copy the node.pub that `vngate keygen` wrote on the node",
            path.display()
        )
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("vngate-node-pub 1") {
        return Err(bad("the first line is not `vngate-node-pub 1`"));
    }
    let mut get = |name: &str| -> Result<[u8; 32]> {
        let line = lines.next().ok_or_else(|| bad(&format!("the `{name}` line is missing")))?;
        let hex_part = line
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| bad(&format!("expected the `{name}` line")))?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part.trim(), &mut out)
            .map_err(|_| bad(&format!("the `{name}` value is not 64 hex digits")))?;
        Ok(out)
    };
    let p = NodePub { ed25519: get("ed25519")?, x25519: get("x25519")?, node_id: get("node-id")? };
    if NodeId::from_public_key(&p.ed25519).0 != p.node_id {
        return Err(bad("its node id is not the id of its Ed25519 key; it was changed"));
    }
    Ok(p)
}

fn parse_cidr(s: &str) -> Result<Ipv4Cidr> {
    let (a, p) = s.split_once('/').context("--subnet must look like 10.250.0.0/16")?;
    let addr: Ipv4Address =
        a.parse().context("--subnet: the address is not IPv4, write e.g. 10.250.0.0/16")?;
    let prefix: u8 = p.parse().context("--subnet: the prefix length is not a number")?;
    if prefix > 32 {
        bail!("--subnet: the prefix length must be at most 32");
    }
    Ok(Ipv4Cidr::new(addr, prefix))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Load `ns.json`.
pub fn load_state(dir: &Path) -> Result<NsState> {
    let path = dir.join(STATE);
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let s: NsState = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged: restore it from your backup", path.display()))?;
    if s.version != 1 {
        bail!("{} has format version {}; this hostctl reads version 1", path.display(), s.version);
    }
    Ok(s)
}

fn save_state(dir: &Path, s: &NsState) -> Result<()> {
    let mut text = serde_json::to_string_pretty(s)?;
    text.push('\n');
    write_atomic(&dir.join(STATE), text.as_bytes())
}

/// Open the CA key of the namespace in `dir` and check it is the CA of its `ca.pub`.
fn open_ca(dir: &Path, pass: &[u8]) -> Result<SigningKey> {
    let key = cakey::load(&dir.join(CA_KEY), pass)?;
    let pub_text = fs::read_to_string(dir.join(CA_PUB))
        .with_context(|| format!("cannot read {}", dir.join(CA_PUB).display()))?;
    if pub_text != ca_pub_text(&key.verifying_key().to_bytes()) {
        bail!(
            "{} does not hold the public key of {}: one of them was replaced; restore both from your backup",
            dir.join(CA_PUB).display(),
            dir.join(CA_KEY).display()
        );
    }
    Ok(key)
}

/// What `ns create` takes.
pub struct CreateArgs {
    /// The namespace's name.
    pub name: String,
    /// The subnet.
    pub subnet: String,
    /// The domain (default NAME.home.arpa).
    pub domain: Option<String>,
    /// Internet egress.
    pub egress: bool,
    /// `router` or `interface`.
    pub mode: String,
    /// DHCP pool FIRST-LAST.
    pub pool: Option<String>,
    /// Upstream resolver.
    pub upstream_dns: Option<Ipv4Address>,
    /// The namespace directory.
    pub dir: PathBuf,
    /// Replace an existing namespace.
    pub force: bool,
}

/// `hostctl ns create`: a new CA (sealed), `ca.pub`, the signed namespace document and `ns.json`.
pub fn create(a: &CreateArgs, pass: &[u8]) -> Result<serde_json::Value> {
    if !matches!(a.mode.as_str(), "router" | "interface") {
        bail!("--mode must be router or interface");
    }
    if pass.len() < cakey::MIN_PASSPHRASE {
        bail!("the passphrase is shorter than {} characters: choose a longer one", cakey::MIN_PASSPHRASE);
    }
    if (a.dir.join(STATE).exists() || a.dir.join(CA_KEY).exists()) && !a.force {
        bail!(
            "a namespace already exists in {}: its CA signed every node's certificate, so it is kept; \
             pass --force to replace it (every node then needs a new certificate), or choose another --dir",
            a.dir.display()
        );
    }
    // The parameters are checked with the daemon's own rules, with a placeholder id (the real one
    // derives from the CA key).
    let subnet = parse_cidr(&a.subnet)?;
    let mut params = NamespaceParams::new([0; 16], &a.name, subnet)
        .map_err(|e| anyhow::anyhow!("{e}; fix the name or --subnet"))?;
    if let Some(d) = &a.domain {
        params.domain.clear();
        params
            .domain
            .push_str(&d.trim_end_matches('.').to_ascii_lowercase())
            .map_err(|_| anyhow::anyhow!("--domain is too long"))?;
    }
    if let Some(p) = &a.pool {
        let (x, y) = p.split_once('-').context("--pool must look like 10.250.1.10-10.250.1.200")?;
        params.pool = vn_core::config::AddrRange::new(
            x.trim().parse().context("--pool: bad first address")?,
            y.trim().parse().context("--pool: bad last address")?,
        );
    }
    params.egress = a.egress;
    params.upstream_dns = a.upstream_dns;
    params.validate().map_err(|e| anyhow::anyhow!("{e}; fix the options and try again"))?;
    let name: heapless::String<32> = a
        .name
        .as_str()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the namespace name is longer than 32 characters"))?;
    let domain: heapless::String<64> = params.domain.as_str().try_into().map_err(|_| {
        anyhow::anyhow!("the domain is longer than the 64 characters a namespace document holds")
    })?;

    let ca = cakey::generate()?;
    let ca_pub = ca.verifying_key().to_bytes();
    let id = cert::namespace_id(&ca_pub, &a.name);
    let net = params.subnet.network().address();
    let doc = NamespaceDoc {
        version: cert::VERSION,
        id,
        name,
        subnet: net.octets(),
        prefix: params.subnet.prefix_len(),
        domain,
        ca: ca_pub,
        doc_version: 1,
        mode: NamespaceDoc::MODE_PROXY,
        egress: params.egress,
    };
    let mut buf = [0u8; cert::NAMESPACE_DOC_MAX_LEN];
    let n = cert::sign_namespace_doc(&doc, &ca, &mut buf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sealed = cakey::seal(&ca, pass, cakey::DEFAULT_KDF)?;

    fs::create_dir_all(&a.dir).with_context(|| format!("cannot create {}", a.dir.display()))?;
    fs::set_permissions(&a.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", a.dir.display()))?;
    if a.force {
        // A replaced namespace starts clean: its old certificates and bundles are of another CA.
        for sub in ["certs", "bundles"] {
            let p = a.dir.join(sub);
            if p.exists() {
                fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let _ = fs::remove_file(a.dir.join(REVOKED));
        // The replaced CA key is kept aside (still sealed), in case --force was a mistake.
        let old = a.dir.join(CA_KEY);
        if old.exists() {
            fs::rename(&old, a.dir.join("ca.key.old"))
                .with_context(|| format!("cannot move {} aside", old.display()))?;
        }
    }
    cakey::write_secret(&a.dir.join(CA_KEY), &sealed, a.force)?;
    write_atomic(&a.dir.join(CA_PUB), ca_pub_text(&ca_pub).as_bytes())?;
    write_atomic(&a.dir.join(NS_DOC), &buf[..n])?;
    let state = NsState {
        version: 1,
        name: a.name.clone(),
        id: hex::encode(id),
        subnet: params.subnet.to_string(),
        domain: params.domain.to_string(),
        egress: params.egress,
        mode: a.mode.clone(),
        pool: a.pool.as_ref().map(|_| format!("{}-{}", params.pool.first, params.pool.last)),
        upstream_dns: params.upstream_dns.map(|u| u.to_string()),
        doc_version: 1,
        next_serial: 1,
        revocation_version: 0,
        nodes: Vec::new(),
    };
    save_state(&a.dir, &state)?;
    Ok(serde_json::json!({
        "dir": a.dir.display().to_string(),
        "name": a.name,
        "id": hex::encode(id),
        "ca": hex::encode(ca_pub),
        "subnet": state.subnet,
        "domain": state.domain,
        "kdf": format!("argon2id m={} t={} p={}", cakey::DEFAULT_KDF.m, cakey::DEFAULT_KDF.t, cakey::DEFAULT_KDF.p),
    }))
}

/// What `node sign` takes.
pub struct SignArgs {
    /// The node's name (a DNS label).
    pub name: String,
    /// The node's node.pub.
    pub pub_file: PathBuf,
    /// Role names.
    pub roles: String,
    /// Days of validity.
    pub days: u32,
    /// A founding storage node.
    pub founding: bool,
    /// The endpoint other nodes reach this one at.
    pub endpoint: Option<String>,
    /// Bootstrap peers.
    pub peers: Vec<String>,
    /// The node's state directory (where `vngate keygen` put its keys).
    pub state_dir: String,
    /// The node's TAP device.
    pub tap: String,
    /// Replace an existing bundle of that name.
    pub force: bool,
}

fn endpoint(s: &str, what: &str) -> Result<SocketAddr> {
    s.parse().with_context(|| {
        format!("{what} `{s}` is not IP:PORT (e.g. 192.0.2.7:4789); write the address, not a name")
    })
}

/// The bundle's `vngate.toml`.
fn bundle_toml(st: &NsState, a: &SignArgs, roles_bits: u8, serial: u64) -> Result<String> {
    let mut t = format!(
        "# vngate configuration of node {} in namespace {}, made by `hostctl node sign` (certificate serial {serial}).\n\
         # Copy this directory to the node (e.g. to {}) and run `vngate --config vngate.toml`.\n",
        a.name, st.name, a.state_dir
    );
    t.push_str(&format!(
        "[namespace]\nid = \"{}\"\nname = \"{}\"\nsubnet = \"{}\"\ndomain = \"{}\"\negress = {}\n",
        st.id, st.name, st.subnet, st.domain, st.egress
    ));
    if let Some(p) = &st.pool {
        t.push_str(&format!("pool = \"{p}\"\n"));
    }
    if let Some(u) = &st.upstream_dns {
        t.push_str(&format!("upstream_dns = \"{u}\"\n"));
    }
    let storage = roles_bits & roles::DHT != 0;
    if a.founding && !storage {
        bail!("--founding is for storage nodes: add the dht role");
    }
    match &a.endpoint {
        Some(e) => {
            let e = endpoint(e, "--endpoint")?;
            let listen = SocketAddr::new(
                if e.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                },
                e.port(),
            );
            t.push_str(&format!("\n[overlay]\nlisten = \"{listen}\"\nadvertise = \"{e}\"\n"));
            let peers = a.peers.iter().map(|p| endpoint(p, "--peer")).collect::<Result<Vec<_>>>()?;
            let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
            t.push_str(&format!(
                "peers = [{}]\nstorage = {storage}\nfounding = {}\n",
                list.join(", "),
                a.founding
            ));
        }
        None if !a.peers.is_empty() || storage => {
            bail!("a node in the overlay (a --peer or the dht role) needs --endpoint IP:PORT, where other nodes reach it")
        }
        None => {}
    }
    if roles_bits & (roles::ROUTER | roles::HOST | roles::DHT) == 0
        && roles_bits & roles::ADMIN != 0
        && a.endpoint.is_none()
    {
        // An admin's laptop runs no daemon: the bundle is its credentials for `hostctl --via`.
        t.push_str(&format!(
            "\n# An admin client, not a daemon: run `hostctl --via IP:PORT --cert-dir {} --key-dir <where noise.key is> \
             status` (or any verb) against a daemon of this namespace.\n",
            a.name
        ));
        return Ok(t);
    }
    t.push_str("\n[daemon]\n");
    if roles_bits & roles::ROUTER != 0 {
        t.push_str(&format!("tap = \"{}\"\nmode = \"{}\"\n", a.tap, st.mode));
    } else if roles_bits & roles::HOST != 0 {
        t.push_str(&format!("tap = \"{}\"\nmode = \"interface\"\n", a.tap));
    } else if a.endpoint.is_none() {
        bail!("a node without the router or host role is a standalone DHT node: give it the dht role and --endpoint");
    }
    t.push_str(&format!("state_dir = \"{}\"\n", a.state_dir));
    t.push_str(&format!(
        "\n# Paths relative to this file's directory.\n[security]\ncert = \"{NODE_CERT}\"\nca = \"{CA_PUB}\"\nnamespace_doc = \"{NS_DOC}\"\nrevoked = \"{REVOKED}\"\nrequire = true\n"
    ));
    Ok(t)
}

fn check_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!("the node name `{name}` is not a DNS label of at most 32 characters (a-z, 0-9, - inside)");
    }
    Ok(())
}

/// `hostctl node sign`: a certificate for the node's keys, and its bundle.
pub fn sign(
    dir: &Path,
    a: &SignArgs,
    pass_of: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>>,
) -> Result<serde_json::Value> {
    check_node_name(&a.name)?;
    let roles_bits = parse_roles(&a.roles)?;
    if a.days == 0 || a.days > 3650 * 3 {
        bail!("--days must be between 1 and 10950");
    }
    let pub_text =
        fs::read_to_string(&a.pub_file).with_context(|| format!("cannot read {}", a.pub_file.display()))?;
    let node = parse_node_pub(&a.pub_file, &pub_text)?;
    let mut st = load_state(dir)?;
    let bundle = dir.join("bundles").join(&a.name);
    if bundle.exists() && !a.force {
        bail!(
            "a bundle for `{}` exists in {}: pass --force to issue a new certificate and replace it \
             (the old certificate stays valid until it expires or `hostctl node revoke` names it)",
            a.name,
            bundle.display()
        );
    }
    // Checked before the passphrase is asked for, so a typo costs no KDF run.
    bundle_toml(&st, a, roles_bits, st.next_serial)?;
    let pass = pass_of()?;
    let ca = open_ca(dir, &pass)?;
    let ca_key = CaKey::from_signing_key(&ca);
    let mut ns_id = [0u8; 16];
    hex::decode_to_slice(&st.id, &mut ns_id).context("ns.json: the namespace id is damaged")?;
    if ns_id != ca_key.namespace_id(&st.name) {
        bail!("ns.json names another namespace than the CA's: restore the directory from your backup");
    }
    let serial = st.next_serial;
    let now = unix_now();
    let body = CertBody {
        version: cert::VERSION,
        namespace: ns_id,
        name: a.name.as_str().try_into().map_err(|_| anyhow::anyhow!("the node name is too long"))?,
        node_id: node.node_id,
        ed25519: node.ed25519,
        x25519: node.x25519,
        roles: roles_bits,
        serial,
        not_before: now.saturating_sub(BACKDATE_SECS),
        not_after: now + u64::from(a.days) * 86400,
        issuer: ca_key.id(),
    };
    let mut buf = [0u8; cert::CERT_MAX_LEN];
    let n = cert::sign_cert(&body, &ca, &mut buf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cert_bytes = &buf[..n];
    let text = bundle_toml(&st, a, roles_bits, serial)?;

    // The serial is spent first: a crash below leaves a gap, never a reuse.
    let cert_rel = format!("certs/{serial}-{}.cert", a.name);
    st.next_serial += 1;
    st.nodes.push(Issued {
        name: a.name.clone(),
        serial,
        node_id: hex::encode(node.node_id),
        roles: cert::RoleNames(roles_bits).to_string(),
        not_before: body.not_before,
        not_after: body.not_after,
        cert: cert_rel.clone(),
        revoked: false,
    });
    save_state(dir, &st)?;
    fs::create_dir_all(dir.join("certs"))?;
    write_atomic(&dir.join(&cert_rel), cert_bytes)?;
    fs::create_dir_all(&bundle).with_context(|| format!("cannot create {}", bundle.display()))?;
    write_atomic(&bundle.join(NODE_CERT), cert_bytes)?;
    fs::copy(dir.join(CA_PUB), bundle.join(CA_PUB))?;
    fs::copy(dir.join(NS_DOC), bundle.join(NS_DOC))?;
    if dir.join(REVOKED).exists() {
        fs::copy(dir.join(REVOKED), bundle.join(REVOKED))?;
    } else {
        let _ = fs::remove_file(bundle.join(REVOKED));
    }
    write_atomic(&bundle.join(BUNDLE_CONFIG), text.as_bytes())?;
    Ok(serde_json::json!({
        "name": a.name,
        "serial": serial,
        "node_id": hex::encode(node.node_id),
        "roles": cert::RoleNames(roles_bits).to_string(),
        "not_before": body.not_before,
        "not_after": body.not_after,
        "cert": dir.join(&cert_rel).display().to_string(),
        "bundle": bundle.display().to_string(),
    }))
}

/// `hostctl node revoke`: the next revocation list, with every serial of `name` (or just `serial`).
pub fn revoke(
    dir: &Path,
    name: &str,
    only: Option<u64>,
    pass_of: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>>,
) -> Result<serde_json::Value> {
    let mut st = load_state(dir)?;
    let targets: Vec<u64> = st
        .nodes
        .iter()
        .filter(|n| n.name == name && !n.revoked && only.is_none_or(|s| s == n.serial))
        .map(|n| n.serial)
        .collect();
    if targets.is_empty() {
        bail!(
            "no unrevoked certificate of `{name}`{}: `hostctl node list` shows them",
            only.map(|s| format!(" with serial {s}")).unwrap_or_default()
        );
    }
    let mut serials: Vec<u64> = st.nodes.iter().filter(|n| n.revoked).map(|n| n.serial).collect();
    serials.extend(&targets);
    serials.sort_unstable();
    serials.dedup();
    if serials.len() > cert::MAX_REVOKED {
        bail!(
            "a revocation list holds at most {} serials: let old certificates expire, or start a new namespace",
            cert::MAX_REVOKED
        );
    }
    let pass = pass_of()?;
    let ca = open_ca(dir, &pass)?;
    let mut ns_id = [0u8; 16];
    hex::decode_to_slice(&st.id, &mut ns_id).context("ns.json: the namespace id is damaged")?;
    let list_version = st.revocation_version + 1;
    let list = RevocationList {
        version: cert::VERSION,
        namespace: ns_id,
        list_version,
        serials: serials.iter().copied().collect(),
        issued: unix_now(),
    };
    let mut buf = vec![0u8; cert::REVOCATION_LIST_MAX_LEN];
    let n = cert::sign_revocation_list(&list, &ca, &mut buf).map_err(|e| anyhow::anyhow!("{e}"))?;
    st.revocation_version = list_version;
    for node in st.nodes.iter_mut() {
        if targets.contains(&node.serial) {
            node.revoked = true;
        }
    }
    write_atomic(&dir.join(REVOKED), &buf[..n])?;
    save_state(dir, &st)?;
    Ok(serde_json::json!({
        "name": name,
        "revoked": targets,
        "list_version": list_version,
        "serials": serials,
        "file": dir.join(REVOKED).display().to_string(),
    }))
}

/// `hostctl node list`.
pub fn list(dir: &Path) -> Result<NsState> {
    load_state(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_roles() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day), from `date -u -d @951827696`.
        assert_eq!(format_time(951_827_696), "2000-02-29 12:34:56Z");
        assert_eq!(format_time(4_102_444_800), "2100-01-01 00:00:00Z");
        assert_eq!(parse_roles("router,dht").unwrap(), roles::ROUTER | roles::DHT);
        assert_eq!(parse_roles(" admin , host ").unwrap(), roles::ADMIN | roles::HOST);
        assert!(parse_roles("router,boss").unwrap_err().to_string().contains("`boss` is not a role"));
        assert!(parse_roles(",").is_err());
        assert!(check_node_name("alpha-1").is_ok());
        assert!(
            check_node_name("Alpha").is_err()
                && check_node_name("-a").is_err()
                && check_node_name("").is_err()
        );
    }

    #[test]
    fn node_pub_parses_and_refuses_a_changed_id() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let ed = key.verifying_key().to_bytes();
        let id = NodeId::from_public_key(&ed).0;
        let text = format!(
            "vngate-node-pub 1\ned25519 {}\nx25519 {}\nnode-id {}\n",
            hex::encode(ed),
            hex::encode([9u8; 32]),
            hex::encode(id)
        );
        let p = parse_node_pub(Path::new("n.pub"), &text).unwrap();
        assert_eq!((p.ed25519, p.x25519, p.node_id), (ed, [9u8; 32], id));
        let changed = text.replace(&hex::encode(id), &hex::encode([0u8; 32]));
        let e = parse_node_pub(Path::new("n.pub"), &changed).unwrap_err().to_string();
        assert!(e.contains("node id is not the id"), "{e}");
        let e = parse_node_pub(Path::new("n.pub"), "vngate-ed25519-key 1\n00\n").unwrap_err().to_string();
        assert!(e.contains("vngate keygen"), "{e}");
    }
}
