//! The daemon's TOML configuration. Every error names the file and line, whether it is a syntax error,
//! an unknown key, a bad value or a rule of the namespace (pool outside the subnet, MTU too small, ...).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use vn_core::config::{AddrRange, ConfigError, NamespaceParams};
use vn_core::{Duration, Ipv4Cidr};

/// What the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The VN's parameters.
    pub params: NamespaceParams,
    /// Name of the TAP device on the site's dedicated bridge; `None` for a standalone DHT storage node.
    pub tap: Option<String>,
    /// The TUN device packets to destinations outside the VN leave through (a router of a namespace
    /// with `egress = true`); the OS routes and masquerades it to the WAN.
    pub egress_tun: Option<String>,
    /// Router (a TAP on the site's bridge) or interface mode (the host's own TAP, one VN address).
    pub role: vn_core::config::NodeRole,
    /// The overlay, when the node joins other sites (P2); `None` serves one site alone (P1).
    pub overlay: Option<Overlay>,
    /// Where bindings are persisted.
    pub state_dir: PathBuf,
    /// The certificate, CA and namespace document (P3).
    pub security: Security,
}

/// The `[security]` section: where the node's certificate and what checks it are. Relative paths are
/// relative to the configuration file's directory (so a bundle from `hostctl node sign` works wherever
/// it is copied); absent ones default to the files of that name in the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// The node's certificate (`node.cert`).
    pub cert: PathBuf,
    /// The CA's public key (`ca.pub`).
    pub ca: PathBuf,
    /// The signed namespace document (`namespace.doc`).
    pub namespace_doc: PathBuf,
    /// The newest signed revocation list (`revoked`; optional).
    pub revoked: PathBuf,
    /// Refuse to start without a certificate. A certificate that is present is always checked, and a
    /// bad one always stops the daemon; without one (and `require = false`) the node runs unsigned, as
    /// in P2, with a warning.
    pub require: bool,
    /// SNTP servers (IP:port) whose time the node checks certificates against (RFC 4330; none by
    /// default: the OS clock, and the times certified peers put in their handshakes).
    pub ntp: Vec<SocketAddr>,
}

/// Most SNTP servers accepted (the core asks the first 4 in turn).
pub const MAX_NTP: usize = 4;

/// The `[overlay]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Where the overlay's UDP socket listens.
    pub listen: SocketAddr,
    /// The endpoint other nodes reach us at.
    pub advertise: Option<SocketAddr>,
    /// Endpoints to introduce ourselves to at start.
    pub peers: Vec<SocketAddr>,
    /// The `dht` role: store records.
    pub storage: bool,
    /// One of the namespace's founding storage nodes: on the very first start of its state
    /// directory it votes at once (there is nothing to copy yet). Every other storage node, and
    /// every later start, copies its key range from the other replicas before it votes.
    pub founding: bool,
    /// Free addresses kept claimed in the DHT ahead of DHCP (0 = claim when a DISCOVER comes: the
    /// client's retransmission then gets the OFFER).
    pub preclaim: usize,
}

/// Most free addresses `preclaim` may keep claimed.
pub const MAX_PRECLAIM: usize = 32;

/// Most bootstrap peers accepted (the core keeps 8).
pub const MAX_PEERS: usize = 8;

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when the error has a place.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigFileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    namespace: Spanned<RawNamespace>,
    overlay: Option<Spanned<RawOverlay>>,
    daemon: Spanned<RawDaemon>,
    security: Option<RawSecurity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    cert: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    namespace_doc: Option<Spanned<String>>,
    revoked: Option<Spanned<String>>,
    require: Option<bool>,
    #[serde(default)]
    ntp: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    listen: Spanned<String>,
    advertise: Option<Spanned<String>>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    storage: Option<Spanned<bool>>,
    founding: Option<Spanned<bool>>,
    preclaim: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    id: Spanned<String>,
    name: Spanned<String>,
    subnet: Spanned<String>,
    pool: Option<Spanned<String>>,
    #[serde(rename = "static")]
    static_range: Option<Spanned<String>>,
    lease_time: Option<Spanned<u64>>,
    domain: Option<Spanned<String>>,
    mtu: Option<Spanned<u16>>,
    egress: Option<Spanned<bool>>,
    upstream_dns: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    tap: Option<Spanned<String>>,
    egress_tun: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    state_dir: Spanned<String>,
}

/// Read and check the configuration at `path`: TOML, or OpenWrt's UCI (see [`crate::uci`]).
pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
    let text = read(path)?;
    if crate::uci::looks_like_uci(path, &text) {
        return crate::uci::parse(path, &text);
    }
    parse(path, &text)
}

/// The text of the configuration file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigFileError> {
    std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        path: path.to_owned(),
        line: None,
        message: format!("cannot read the configuration: {e}"),
    })
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Parse configuration `text` (read from `path`, which only labels errors).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigFileError> {
    let err = |span: Option<Range<usize>>, message: String| ConfigFileError {
        path: path.to_owned(),
        line: span.map(|s| line_of(text, s)),
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
    let ns = raw.namespace.get_ref();
    let at = |s: &Spanned<String>| Some(s.span());

    let id_hex = ns.id.get_ref();
    let id: [u8; 16] = hex::decode(id_hex).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| {
        err(
            at(&ns.id),
            "`id` must be 32 hex digits (16 random bytes, e.g. from `openssl rand -hex 16`)".into(),
        )
    })?;
    let subnet = parse_cidr(ns.subnet.get_ref()).ok_or_else(|| {
        err(
            at(&ns.subnet),
            format!("`subnet` {:?} is not an IPv4 prefix like 10.250.0.0/16", ns.subnet.get_ref()),
        )
    })?;
    let mut params = NamespaceParams::new(id, ns.name.get_ref(), subnet).map_err(|e| {
        let span = match e {
            ConfigError::BadName | ConfigError::BadDomain => ns.name.span(),
            _ => ns.subnet.span(),
        };
        err(Some(span), e.to_string())
    })?;
    if let Some(p) = &ns.pool {
        params.pool = parse_range(p.get_ref()).ok_or_else(|| {
            err(at(p), format!("`pool` {:?} is not a range like 10.250.1.10-10.250.1.200", p.get_ref()))
        })?;
    }
    if let Some(s) = &ns.static_range {
        params.static_range = Some(parse_range(s.get_ref()).ok_or_else(|| {
            err(at(s), format!("`static` {:?} is not a range like 10.250.2.1-10.250.2.254", s.get_ref()))
        })?);
    }
    if let Some(l) = &ns.lease_time {
        params.lease_time = Duration::from_secs(*l.get_ref());
    }
    if let Some(d) = &ns.domain {
        let d = d.get_ref().trim_end_matches('.');
        params.domain.clear();
        params.domain.push_str(&d.to_ascii_lowercase()).map_err(|_| {
            err(at(ns.domain.as_ref().unwrap_or(&ns.name)), "`domain` is longer than 253 characters".into())
        })?;
    }
    if let Some(m) = &ns.mtu {
        params.mtu = *m.get_ref();
    }
    if let Some(e) = &ns.egress {
        params.egress = *e.get_ref();
    }
    if let Some(u) = &ns.upstream_dns {
        params.upstream_dns =
            Some(u.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                err(at(u), format!("`upstream_dns` {:?} is not an IPv4 address", u.get_ref()))
            })?);
    }
    params.validate().map_err(|e| {
        let span = match e {
            ConfigError::PoolOutsideSubnet | ConfigError::PoolOverlapsStatic => {
                ns.pool.as_ref().map(Spanned::span)
            }
            ConfigError::OverlapsServiceBlock => {
                ns.pool.as_ref().map(Spanned::span).or(ns.static_range.as_ref().map(Spanned::span))
            }
            ConfigError::StaticOutsideSubnet => ns.static_range.as_ref().map(Spanned::span),
            ConfigError::MtuOutOfRange => ns.mtu.as_ref().map(Spanned::span),
            ConfigError::LeaseTimeOutOfRange => ns.lease_time.as_ref().map(Spanned::span),
            ConfigError::BadDomain => ns.domain.as_ref().map(Spanned::span).or(Some(ns.name.span())),
            ConfigError::BadName => Some(ns.name.span()),
            ConfigError::SubnetTooSmall | ConfigError::SubnetNotNetwork => Some(ns.subnet.span()),
        }
        .or(Some(raw.namespace.span()));
        err(span, e.to_string())
    })?;

    let d = raw.daemon.get_ref();
    let ifname = |key: &str, t: &Spanned<String>| {
        let name = t.get_ref().clone();
        if name.is_empty()
            || name.len() > 15
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(err(
                at(t),
                format!("`{key}` {name:?} is not a valid interface name (1-15 of a-z, 0-9, - _ .)"),
            ));
        }
        Ok(name)
    };
    let tap = d.tap.as_ref().map(|t| ifname("tap", t)).transpose()?;
    let egress_tun = d.egress_tun.as_ref().map(|t| ifname("egress_tun", t)).transpose()?;
    if let Some(t) = &d.egress_tun {
        if !params.egress {
            return Err(err(
                at(t),
                "`egress_tun` needs `egress = true` in [namespace] (hosts get no default route without it)"
                    .into(),
            ));
        }
    }
    let role = match d.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "router")) => vn_core::config::NodeRole::Router,
        Some((_, "interface")) => vn_core::config::NodeRole::Interface,
        Some((m, other)) => {
            return Err(err(at(m), format!("`mode` {other:?} is not \"router\" or \"interface\"")));
        }
    };
    if role == vn_core::config::NodeRole::Interface && tap.is_none() {
        return Err(err(
            Some(raw.daemon.span()),
            "interface mode needs `tap` (the host's own TAP device)".into(),
        ));
    }
    let overlay = match &raw.overlay {
        None => None,
        Some(o) => {
            let o = o.get_ref();
            let sock = |s: &Spanned<String>, what: &str| {
                s.get_ref().parse::<SocketAddr>().map_err(|_| {
                    err(
                        at(s),
                        format!("`{what}` {:?} is not an IP:port endpoint like 10.99.0.1:4789", s.get_ref()),
                    )
                })
            };
            let listen = sock(&o.listen, "listen")?;
            let advertise = o.advertise.as_ref().map(|a| sock(a, "advertise")).transpose()?;
            if advertise.is_none() && listen.ip().is_unspecified() {
                return Err(err(
                    at(&o.listen),
                    "`listen` is a wildcard address: add `advertise = \"IP:port\"` so other nodes can reach this one"
                        .into(),
                ));
            }
            if o.peers.len() > MAX_PEERS {
                return Err(err(at(&o.peers[MAX_PEERS]), format!("at most {MAX_PEERS} bootstrap `peers`")));
            }
            let peers = o.peers.iter().map(|p| sock(p, "peers")).collect::<Result<Vec<_>, _>>()?;
            let preclaim = match &o.preclaim {
                None => vn_core::overlay::POOL_FREE,
                Some(p) => {
                    usize::try_from(*p.get_ref()).ok().filter(|n| *n <= MAX_PRECLAIM).ok_or_else(|| {
                        err(
                            Some(p.span()),
                            format!("`preclaim` must be 0..={MAX_PRECLAIM} (free addresses claimed ahead)"),
                        )
                    })?
                }
            };
            Some(Overlay {
                listen,
                advertise,
                peers,
                storage: o.storage.as_ref().is_none_or(|s| *s.get_ref()),
                founding: o.founding.as_ref().is_some_and(|f| *f.get_ref()),
                preclaim,
            })
        }
    };
    if tap.is_none() && overlay.is_none() {
        return Err(err(
            Some(raw.daemon.span()),
            "`tap` is required unless an [overlay] section makes this a standalone DHT storage node".into(),
        ));
    }
    if tap.is_none() && overlay.as_ref().is_some_and(|o| !o.storage) {
        return Err(err(
            Some(raw.daemon.span()),
            "a node without `tap` only stores DHT records: it needs `storage = true` in [overlay]".into(),
        ));
    }
    let state_dir = PathBuf::from(d.state_dir.get_ref());
    if !state_dir.is_absolute() {
        return Err(err(at(&d.state_dir), "`state_dir` must be an absolute path".into()));
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let sec = raw.security.as_ref();
    let file = |v: Option<&Spanned<String>>, default: &str| -> Result<PathBuf, ConfigFileError> {
        match v {
            None => Ok(state_dir.join(default)),
            Some(s) if s.get_ref().is_empty() => {
                Err(err(at(s), "an empty path: remove the key to use the default".into()))
            }
            Some(s) => {
                let p = Path::new(s.get_ref());
                Ok(if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
            }
        }
    };
    let security = Security {
        cert: file(sec.and_then(|s| s.cert.as_ref()), "node.cert")?,
        ca: file(sec.and_then(|s| s.ca.as_ref()), "ca.pub")?,
        namespace_doc: file(sec.and_then(|s| s.namespace_doc.as_ref()), "namespace.doc")?,
        revoked: file(sec.and_then(|s| s.revoked.as_ref()), "revoked")?,
        require: sec.and_then(|s| s.require).unwrap_or(false),
        ntp: match sec {
            None => Vec::new(),
            Some(s) => {
                if s.ntp.len() > MAX_NTP {
                    return Err(err(at(&s.ntp[MAX_NTP]), format!("at most {MAX_NTP} `ntp` servers")));
                }
                s.ntp
                    .iter()
                    .map(|n| {
                        n.get_ref().parse::<SocketAddr>().map_err(|_| {
                            err(at(n), "`ntp` entries are IP:port (e.g. \"192.0.2.123:123\")".into())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        },
    };
    Ok(Config { params, tap, egress_tun, role, overlay, state_dir, security })
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (a, p) = s.trim().split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    Some(Ipv4Cidr::new(a.parse().ok()?, prefix))
}

fn parse_range(s: &str) -> Option<AddrRange> {
    let (a, b) = s.trim().split_once('-')?;
    let r = AddrRange::new(a.trim().parse().ok()?, b.trim().parse().ok()?);
    (!r.is_empty()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[namespace]
id = "00112233445566778899aabbccddeeff"
name = "demo"
subnet = "10.250.0.0/16"
pool = "10.250.1.10-10.250.1.200"
lease_time = 600
mtu = 1400
egress = true
upstream_dns = "10.99.0.53"

[daemon]
tap = "vn0"
state_dir = "/var/lib/vngate"
"#;

    fn p(text: &str) -> Result<Config, ConfigFileError> {
        parse(Path::new("t.toml"), text)
    }

    #[test]
    fn good_config_parses_with_defaults_filled() {
        let c = p(GOOD).unwrap();
        assert_eq!(c.params.domain.as_str(), "demo.home.arpa");
        assert_eq!(c.params.mtu, 1400);
        assert_eq!(c.params.lease_time.secs(), 600);
        assert!(c.params.egress);
        assert_eq!(c.params.pool.first, Ipv4Addr::new(10, 250, 1, 10));
        assert_eq!(c.tap.as_deref(), Some("vn0"));
        assert_eq!(c.overlay, None);
    }

    #[test]
    fn each_error_names_its_line() {
        let cases = [
            ("mtu = 1400", "mtu = 1200", 8, "1280"),
            ("pool = \"10.250.1.10-10.250.1.200\"", "pool = \"10.250.0.1-10.250.1.200\"", 6, "service block"),
            ("pool = \"10.250.1.10-10.250.1.200\"", "pool = \"10.251.0.10-10.251.0.20\"", 6, "pool"),
            ("subnet = \"10.250.0.0/16\"", "subnet = \"10.250.0.0/33\"", 5, "IPv4 prefix"),
            ("id = \"00112233445566778899aabbccddeeff\"", "id = \"0011\"", 3, "32 hex"),
            ("lease_time = 600", "lease_time = 5", 7, "lease time"),
            ("egress = true", "egress = maybe", 9, ""),
            ("tap = \"vn0\"", "tap = \"a very long name\"", 13, "interface name"),
            ("egress = true", "egress = true\ncolour = \"red\"", 10, "colour"),
            ("upstream_dns = \"10.99.0.53\"", "upstream_dns = \"resolver\"", 10, "IPv4 address"),
        ];
        for (from, to, line, needle) in cases {
            let text = GOOD.replace(from, to);
            let e = p(&text).expect_err(to);
            assert_eq!(e.line, Some(line), "{to}: {e}");
            assert!(e.to_string().contains(needle), "{to}: {e}");
            assert!(e.to_string().starts_with(&format!("t.toml:{line}: ")), "{e}");
        }
    }

    #[test]
    fn overlay_section_parses_and_names_its_errors() {
        let with = |overlay: &str, daemon: &str| {
            let text = GOOD.replace("[daemon]\ntap = \"vn0\"\n", &format!("{overlay}\n[daemon]\n{daemon}"));
            p(&text)
        };
        let c = with(
            "[overlay]\nlisten = \"0.0.0.0:4789\"\nadvertise = \"10.99.0.2:4789\"\npeers = [\"10.99.0.11:4789\"]\n",
            "tap = \"vn0\"\n",
        )
        .unwrap();
        let o = c.overlay.unwrap();
        assert_eq!(o.peers, vec!["10.99.0.11:4789".parse::<SocketAddr>().unwrap()]);
        assert!(o.storage, "the dht role is the default");
        assert_eq!(o.preclaim, vn_core::overlay::POOL_FREE);
        let c = with("[overlay]\nlisten = \"10.99.0.11:4789\"\npreclaim = 0\n", "").unwrap();
        assert_eq!(c.overlay.unwrap().preclaim, 0);
        let e = with("[overlay]\nlisten = \"10.99.0.11:4789\"\npreclaim = 99\n", "").unwrap_err();
        assert_eq!(e.line, Some(14), "{e}");
        assert!(e.message.contains("preclaim"), "{e}");
        // A standalone storage node: no tap.
        let c = with("[overlay]\nlisten = \"10.99.0.11:4789\"\n", "").unwrap();
        assert_eq!(c.tap, None);
        // Errors name their line (the [overlay] section starts on line 12).
        let e = with("[overlay]\nlisten = \"0.0.0.0:4789\"\n", "tap = \"vn0\"\n").unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("advertise"), "{e}");
        let e = with("[overlay]\nlisten = \"10.99.0.1:4789\"\npeers = [\"nowhere\"]\n", "tap = \"vn0\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(14), "{e}");
        let e = with("", "").unwrap_err();
        assert!(e.message.contains("`tap` is required"), "{e}");
        let e = with("[overlay]\nlisten = \"10.99.0.1:4789\"\nstorage = false\n", "").unwrap_err();
        assert!(e.message.contains("storage = true"), "{e}");
        // Interface mode: the host's own TAP.
        let c = with("", "tap = \"vn0\"\nmode = \"interface\"\n").unwrap();
        assert_eq!(c.role, vn_core::config::NodeRole::Interface);
        let e = with("", "tap = \"vn0\"\nmode = \"bridge\"\n").unwrap_err();
        assert_eq!(e.line, Some(15), "{e}");
    }

    #[test]
    fn security_paths_default_to_the_state_dir_and_resolve_against_the_file() {
        let c = parse(Path::new("/etc/x/vngate.toml"), GOOD).unwrap();
        assert_eq!(c.security.cert, Path::new("/var/lib/vngate/node.cert"));
        assert_eq!(c.security.revoked, Path::new("/var/lib/vngate/revoked"));
        assert!(!c.security.require);
        let text = format!(
            "{GOOD}\n[security]\ncert = \"node.cert\"\nca = \"/k/ca.pub\"\nnamespace_doc = \"d/ns.doc\"\nrequire = true\n"
        );
        let c = parse(Path::new("/etc/x/vngate.toml"), &text).unwrap();
        assert_eq!(c.security.cert, Path::new("/etc/x/node.cert"));
        assert_eq!(c.security.ca, Path::new("/k/ca.pub"));
        assert_eq!(c.security.namespace_doc, Path::new("/etc/x/d/ns.doc"));
        assert_eq!(c.security.revoked, Path::new("/var/lib/vngate/revoked"));
        assert!(c.security.require);
        let e = parse(Path::new("t.toml"), &format!("{GOOD}\n[security]\nkey = \"x\"\n")).unwrap_err();
        assert!(e.message.contains("key"), "{e}");
        assert!(c.security.ntp.is_empty());
        let c = parse(Path::new("t.toml"), &format!("{GOOD}\n[security]\nntp = [\"192.0.2.123:123\"]\n"))
            .unwrap();
        assert_eq!(c.security.ntp, vec!["192.0.2.123:123".parse::<SocketAddr>().unwrap()]);
        let e = parse(Path::new("t.toml"), &format!("{GOOD}\n[security]\nntp = [\"pool.ntp.org\"]\n"))
            .unwrap_err();
        assert!(e.message.contains("IP:port") && e.line.is_some(), "{e}");
    }

    #[test]
    fn missing_section_is_an_error_not_a_panic() {
        let e = p("[namespace]\nid = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
