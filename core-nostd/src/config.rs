//! The namespace parameters (DESIGN.md "The namespace"): one VN's subnet, pools, lease time, domain,
//! MTU and egress policy, plus what derives from them: the service block and the router MAC.
//!
//! Until P3 signs a namespace document these come from the daemon's configuration; `validate` is the
//! one place that decides whether a set of parameters is usable, so every runtime refuses the same mistakes.

use core::fmt;

use blake2::{Blake2s256, Digest};
use heapless::String;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

/// Longest namespace name accepted.
pub const MAX_NAME_LEN: usize = 32;
/// Longest DNS domain accepted (RFC 1035 limits a name to 253 text characters).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Default VN MTU (DESIGN.md): leaves room for UDP, the overlay header and the AEAD tag in a 1500-byte path.
pub const DEFAULT_MTU: u16 = 1380;
/// Smallest VN MTU: Linux removes IPv6 from a link under 1280.
pub const MIN_MTU: u16 = 1280;
/// Largest VN MTU that still fits an Ethernet frame on the LAN.
pub const MAX_MTU: u16 = 1500;
/// Default lease time: one hour.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);

/// How the namespace joins LANs (DESIGN.md "Modes"). A namespace has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IPOP's L3 model: routers answer ARP for remote addresses with the router MAC.
    Proxy,
    /// WAVNet's L2 model: the overlay is one Ethernet switch.
    Switch,
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    /// First address in the range.
    pub first: Ipv4Address,
    /// Last address in the range (inclusive).
    pub last: Ipv4Address,
}

impl AddrRange {
    /// A range from `first` to `last`, both included.
    pub const fn new(first: Ipv4Address, last: Ipv4Address) -> Self {
        Self { first, last }
    }
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Address) -> bool {
        let v = u32::from(ip);
        u32::from(self.first) <= v && v <= u32::from(self.last)
    }
    /// Number of addresses in the range (0 when `last < first`).
    pub fn len(&self) -> u32 {
        let (a, b) = (u32::from(self.first), u32::from(self.last));
        if b < a {
            0
        } else {
            b - a + 1
        }
    }
    /// Whether the range holds no address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `i`th address of the range, if there is one.
    pub fn nth(&self, i: u32) -> Option<Ipv4Address> {
        (i < self.len()).then(|| Ipv4Address::from(u32::from(self.first) + i))
    }
    /// Position of `ip` in the range.
    pub fn index_of(&self, ip: Ipv4Address) -> Option<u32> {
        self.contains(ip).then(|| u32::from(ip) - u32::from(self.first))
    }
    fn overlaps(&self, other: &AddrRange) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && u32::from(self.first) <= u32::from(other.last)
            && u32::from(other.first) <= u32::from(self.last)
    }
}

/// One VN's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceParams {
    /// 16 random bytes chosen when the VN is created; never changes.
    pub id: [u8; 16],
    /// Short name of the VN (used for the default domain).
    pub name: String<MAX_NAME_LEN>,
    /// The VN's one flat subnet, e.g. 10.250.0.0/16.
    pub subnet: Ipv4Cidr,
    /// L3 proxy or L2 switch.
    pub mode: Mode,
    /// Addresses DHCP hands out.
    pub pool: AddrRange,
    /// Addresses hosts may configure statically (claimed after an ARP round trip, P2).
    pub static_range: Option<AddrRange>,
    /// How long a DHCP lease lasts.
    pub lease_time: Duration,
    /// DNS domain of the VN, without a trailing dot.
    pub domain: String<MAX_DOMAIN_LEN>,
    /// VN MTU (option 26), constant for the namespace.
    pub mtu: u16,
    /// Whether routers hand out a default route and forward to the Internet.
    pub egress: bool,
    /// Resolver that names outside the VN are forwarded to; `None` answers them REFUSED.
    pub upstream_dns: Option<Ipv4Address>,
}

/// Why a set of namespace parameters was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The subnet is too small for the service block plus one host (needs a prefix of /29 or shorter).
    SubnetTooSmall,
    /// The subnet's host bits are not zero (write 10.250.0.0/16, not 10.250.3.1/16).
    SubnetNotNetwork,
    /// The pool is empty or lies partly outside the subnet.
    PoolOutsideSubnet,
    /// The pool or static range overlaps the service block (.0, .1, .2) or the broadcast address.
    OverlapsServiceBlock,
    /// The static range is empty or lies partly outside the subnet.
    StaticOutsideSubnet,
    /// The pool and the static range overlap.
    PoolOverlapsStatic,
    /// The MTU is outside 1280..=1500.
    MtuOutOfRange,
    /// The lease time is under 60 s or over 30 days.
    LeaseTimeOutOfRange,
    /// The domain is not a valid DNS name, or is `local` (RFC 6762 reserves it for mDNS).
    BadDomain,
    /// The name is empty or not a valid DNS label.
    BadName,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SubnetTooSmall => "the subnet is too small: use a prefix of /29 or shorter",
            Self::SubnetNotNetwork => {
                "the subnet has host bits set: give the network address (e.g. 10.250.0.0/16)"
            }
            Self::PoolOutsideSubnet => "the DHCP pool is empty or not inside the subnet",
            Self::OverlapsServiceBlock => {
                "the pool or static range overlaps the service block (.0-.2) or the broadcast address"
            }
            Self::StaticOutsideSubnet => "the static range is empty or not inside the subnet",
            Self::PoolOverlapsStatic => "the DHCP pool and the static range overlap",
            Self::MtuOutOfRange => "the VN MTU must be between 1280 and 1500",
            Self::LeaseTimeOutOfRange => "the lease time must be between 60 s and 30 days",
            Self::BadDomain => "the domain is not a valid DNS name (and may not be .local)",
            Self::BadName => "the namespace name must be a DNS label: letters, digits and '-', at most 32",
        })
    }
}

impl core::error::Error for ConfigError {}

/// Whether `label` is an RFC 1123 host label (letters, digits, inner hyphens, 1..=63 characters).
pub fn is_hostname_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.split('.').all(is_hostname_label)
        && !domain.eq_ignore_ascii_case("local")
        && !domain.rsplit('.').next().is_some_and(|tld| tld.eq_ignore_ascii_case("local"))
}

impl NamespaceParams {
    /// Parameters with the documented defaults: pool = the subnet minus the service block and broadcast,
    /// lease 1 h, domain `<name>.home.arpa`, MTU 1380, no egress, no upstream DNS.
    pub fn new(id: [u8; 16], name: &str, subnet: Ipv4Cidr) -> Result<Self, ConfigError> {
        let mut n = String::new();
        n.push_str(name).map_err(|_| ConfigError::BadName)?;
        let mut domain = String::new();
        domain.push_str(name).map_err(|_| ConfigError::BadName)?;
        domain.push_str(".home.arpa").map_err(|_| ConfigError::BadName)?;
        let subnet_net = subnet.network();
        let first = Ipv4Address::from(u32::from(subnet_net.address()).wrapping_add(3));
        let last = Ipv4Address::from(u32::from(Self::broadcast_of(subnet)).wrapping_sub(1));
        let p = Self {
            id,
            name: n,
            subnet,
            mode: Mode::Proxy,
            pool: AddrRange::new(first, last),
            static_range: None,
            lease_time: DEFAULT_LEASE,
            domain,
            mtu: DEFAULT_MTU,
            egress: false,
            upstream_dns: None,
        };
        p.validate()?;
        Ok(p)
    }

    fn broadcast_of(subnet: Ipv4Cidr) -> Ipv4Address {
        let host_bits = 32 - u32::from(subnet.prefix_len());
        let mask = if host_bits >= 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
        Ipv4Address::from(u32::from(subnet.address()) | mask)
    }

    /// Check every rule of DESIGN.md "The namespace"; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_hostname_label(&self.name) {
            return Err(ConfigError::BadName);
        }
        if self.subnet.prefix_len() > 29 {
            return Err(ConfigError::SubnetTooSmall);
        }
        if self.subnet.network().address() != self.subnet.address() {
            return Err(ConfigError::SubnetNotNetwork);
        }
        let inside = |r: &AddrRange| {
            !r.is_empty() && self.subnet.contains_addr(&r.first) && self.subnet.contains_addr(&r.last)
        };
        let reserved = AddrRange::new(self.subnet.address(), self.gateway_addr());
        let bcast = AddrRange::new(self.broadcast(), self.broadcast());
        if !inside(&self.pool) {
            return Err(ConfigError::PoolOutsideSubnet);
        }
        if self.pool.overlaps(&reserved) || self.pool.overlaps(&bcast) {
            return Err(ConfigError::OverlapsServiceBlock);
        }
        if let Some(s) = &self.static_range {
            if !inside(s) {
                return Err(ConfigError::StaticOutsideSubnet);
            }
            if s.overlaps(&reserved) || s.overlaps(&bcast) {
                return Err(ConfigError::OverlapsServiceBlock);
            }
            if s.overlaps(&self.pool) {
                return Err(ConfigError::PoolOverlapsStatic);
            }
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::MtuOutOfRange);
        }
        let secs = self.lease_time.secs();
        if !(60..=30 * 86400).contains(&secs) {
            return Err(ConfigError::LeaseTimeOutOfRange);
        }
        if !is_domain(&self.domain) {
            return Err(ConfigError::BadDomain);
        }
        Ok(())
    }

    /// `.1`: the DNS server and the DHCP server identifier, at every site.
    pub fn dns_addr(&self) -> Ipv4Address {
        Ipv4Address::from(u32::from(self.subnet.address()) + 1)
    }

    /// `.2`: the default gateway where egress is on.
    pub fn gateway_addr(&self) -> Ipv4Address {
        Ipv4Address::from(u32::from(self.subnet.address()) + 2)
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Address {
        Self::broadcast_of(self.subnet)
    }

    /// The subnet mask (option 1).
    pub fn netmask(&self) -> Ipv4Address {
        let p = u32::from(self.subnet.prefix_len());
        Ipv4Address::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
    }

    /// Whether `ip` is one of the service addresses answered locally by every router.
    pub fn is_service_addr(&self, ip: Ipv4Address) -> bool {
        ip == self.dns_addr() || ip == self.gateway_addr()
    }

    /// Whether `ip` is a host address of the VN (inside the subnet, not network, service or broadcast).
    pub fn is_vn_host(&self, ip: Ipv4Address) -> bool {
        self.subnet.contains_addr(&ip)
            && u32::from(ip) > u32::from(self.gateway_addr())
            && ip != self.broadcast()
    }

    /// The router MAC: one unicast, locally administered address per namespace, the same at every
    /// site (an anycast gateway), so a host that moves keeps a correct ARP cache.
    pub fn router_mac(&self) -> EthernetAddress {
        let mut h = Blake2s256::new();
        h.update(b"vngate router mac v1");
        h.update(self.id);
        let d = h.finalize();
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[..6]);
        mac[0] = (mac[0] & 0xfc) | 0x02; // unicast, locally administered
        EthernetAddress(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> NamespaceParams {
        NamespaceParams::new([7; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16)).unwrap()
    }

    #[test]
    fn defaults_follow_the_design() {
        let p = params();
        assert_eq!(p.dns_addr(), Ipv4Address::new(10, 250, 0, 1));
        assert_eq!(p.gateway_addr(), Ipv4Address::new(10, 250, 0, 2));
        assert_eq!(p.pool.first, Ipv4Address::new(10, 250, 0, 3));
        assert_eq!(p.pool.last, Ipv4Address::new(10, 250, 255, 254));
        assert_eq!(p.domain.as_str(), "demo.home.arpa");
        assert_eq!(p.mtu, 1380);
        assert_eq!(p.lease_time, Duration::from_secs(3600));
        assert_eq!(p.netmask(), Ipv4Address::new(255, 255, 0, 0));
    }

    #[test]
    fn router_mac_is_unicast_local_and_stable() {
        let a = params().router_mac();
        assert_eq!(a.0[0] & 0x01, 0, "unicast");
        assert_eq!(a.0[0] & 0x02, 0x02, "locally administered");
        assert_eq!(a, params().router_mac());
        let mut other = params();
        other.id[0] ^= 1;
        assert_ne!(a, other.router_mac());
    }

    #[test]
    fn validate_refuses_each_mistake() {
        let mut p = params();
        p.mtu = 1279;
        assert_eq!(p.validate(), Err(ConfigError::MtuOutOfRange));
        let mut p = params();
        p.pool.first = Ipv4Address::new(10, 250, 0, 2);
        assert_eq!(p.validate(), Err(ConfigError::OverlapsServiceBlock));
        let mut p = params();
        p.static_range =
            Some(AddrRange::new(Ipv4Address::new(10, 250, 0, 10), Ipv4Address::new(10, 250, 0, 20)));
        assert_eq!(p.validate(), Err(ConfigError::PoolOverlapsStatic));
        let mut p = params();
        p.pool = AddrRange::new(Ipv4Address::new(10, 250, 1, 0), Ipv4Address::new(10, 250, 1, 255));
        p.static_range =
            Some(AddrRange::new(Ipv4Address::new(10, 250, 2, 0), Ipv4Address::new(10, 250, 2, 255)));
        assert_eq!(p.validate(), Ok(()));
        p.domain.clear();
        p.domain.push_str("local").unwrap();
        assert_eq!(p.validate(), Err(ConfigError::BadDomain));
        let mut p = params();
        p.subnet = Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 1), 16);
        assert_eq!(p.validate(), Err(ConfigError::SubnetNotNetwork));
        let mut p = params();
        p.lease_time = Duration::from_secs(10);
        assert_eq!(p.validate(), Err(ConfigError::LeaseTimeOutOfRange));
    }
}

/// How this node joins its LAN (DESIGN.md "Modes"): the namespace's parameters are the same at every
/// node, the role is each node's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    /// IPOP's VN router: a TAP on a dedicated bridge with the LAN's hosts behind it.
    #[default]
    Router,
    /// IPOP's VN interface: the host's own TAP and one VN address. Never hands out a default route
    /// (option 3 or a 0/0 in 121): it would pull the overlay's own traffic into the TAP.
    Interface,
}

/// The parameters plus what derives from them, computed once: what every component gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The namespace parameters.
    pub params: NamespaceParams,
    /// This node's role on its LAN.
    pub role: NodeRole,
    /// [`NamespaceParams::router_mac`].
    pub router_mac: EthernetAddress,
    /// [`NamespaceParams::dns_addr`] (`.1`).
    pub dns_addr: Ipv4Address,
    /// [`NamespaceParams::gateway_addr`] (`.2`).
    pub gateway_addr: Ipv4Address,
}

impl Site {
    /// Validate `params` and derive the rest, for a router.
    pub fn new(params: NamespaceParams) -> Result<Self, ConfigError> {
        Self::with_role(params, NodeRole::Router)
    }

    /// Validate `params` and derive the rest, for a node in `role`.
    pub fn with_role(params: NamespaceParams, role: NodeRole) -> Result<Self, ConfigError> {
        params.validate()?;
        Ok(Self {
            role,
            router_mac: params.router_mac(),
            dns_addr: params.dns_addr(),
            gateway_addr: params.gateway_addr(),
            params,
        })
    }

    /// Whether DHCP hands out a default route via `.2`: only a router of a namespace with egress.
    pub fn default_route(&self) -> bool {
        self.params.egress && self.role == NodeRole::Router
    }
}
