//! The overlay side of a node (DESIGN.md "vn-core: the node", "routes", "encap", "The DHT and its
//! consistency"): membership by hellos, the DHT engine carried in control messages, the pool of
//! addresses claimed in the DHT that DHCP hands out, and the route cache that proxy ARP and the data
//! plane read.
//!
//! - **Membership**: a node sends a [`Hello`] to each bootstrap endpoint at start and every
//!   [`HELLO_RETRY`] until that endpoint answers. A hello of another namespace is dropped and counted.
//!   A hello adds its sender to the peer table and, when it has the `dht` role, to the DHT member table;
//!   it is answered with our own hello (at most once per [`HELLO_RETRY`] per peer, so two nodes never
//!   ping-pong hellos) and a [`ControlRepr::Members`] list of the storage members we know. A node that
//!   learns a storage member from such a list says hello to it, so every node learns every storage
//!   member from any one it reaches. A DHT message or data frame from an endpoint we do not know is
//!   dropped and counted; we answer it with a hello (rate-limited) so the sender can introduce itself.
//! - **Addresses** ([`DhtPool`]): the node keeps [`POOL_FREE`] addresses claimed (`ip:<addr>`, TTL
//!   [`IP_TTL`], renewed by the engine) that no host uses yet, chosen at random positions of the pool
//!   (never lowest-first, so sites do not race for the same address); DHCP offers only addresses
//!   this node holds (`Dht::holds`), so an OFFER needs no WAN round trip. An address a lease ends on
//!   goes back to the free pool while it has fewer than [`POOL_FREE`] free addresses, else it is
//!   deleted from the DHT. During a partition the engine keeps trying to renew; `owns` stays true until
//!   the DHT lease lapses (about [`IP_TTL`] after the last renewal that reached a quorum, or the node
//!   record's 30 s when that one lapses first) and is false from then on: DHCP then offers nothing and
//!   NAKs what it cannot confirm, rather than risk a duplicate.
//! - **Routes**: a bounded cache of VN address -> (owner, endpoint), filled by reads of `ip:<addr>`
//!   whose value is the owner's endpoint, expiring after [`ROUTE_TTL`] (an absent address after
//!   [`NEGATIVE_ROUTE_TTL`]). Proxy ARP asks it through [`crate::arp::RemoteRoutes`].
//! - **Hostnames** (DESIGN.md "dns"): a lease's hostname (the DHCP server's name table, first
//!   registration wins at the site) is created as `host:<name>` (value: the IPv4 address, 4 bytes;
//!   longer values are read by their first 4, room for a source flag) owned by this node, TTL
//!   [`HOST_TTL`], renewed by the engine with its claims, deleted when the lease ends or the name
//!   changes. First registration wins across the VN: when the Create meets another owner's live record
//!   the name is *lost* here: counted, retried every [`HOST_RETRY`] (it may be freed), and
//!   [`crate::dns::HostLookup::shadowed`] tells DNS not to answer it from the local table, so every
//!   site answers the winner's address. A Create that fails otherwise (no quorum) is retried the same
//!   way and the local table keeps answering meanwhile. [`NameSource::Admin`] is the hook for hostctl
//!   reservations: locally an admin name replaces a lease's of the same name (our own lease record is
//!   deleted and the admin's created: delete + create, no Transfer needed between our own records), and
//!   DNS answers it from the DHT, never from a lease's local entry. Taking it over from another node's
//!   lease is not built (a Transfer needs that owner): the admin's Create is then refused, the name
//!   counts as lost here and is retried every [`HOST_RETRY`] until that lease's record ends.
//!   Admin reads and reserved addresses: see [`admin`]. Reads for DNS ([`Overlay`]'s
//!   [`crate::dns::HostLookup`]) share one DHT read per name in flight; their outcomes are handed out by
//!   [`Overlay::take_host_done`]. A `host:` record, like an `ip:` record, is live only while its
//!   owner's `node:` record is ([`crate::dht::Kind::node_bound`]): a dead router's names can be taken
//!   by another site about 30 s after its death (on that site's next retry), not after [`HOST_TTL`].
//! - **Data**: a frame from the LAN to the router MAC for a remote VN address is tunnelled to the
//!   owner's endpoint only when its source is an address this node holds; a frame from the overlay is
//!   delivered only when its source belongs to the sending node and its destination is held here and
//!   known on the LAN.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use heapless::{String, Vec};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Address;

use crate::arp::{RemoteRoute, RemoteRoutes, TokenBucket};
use crate::bcast::Bcast;
use crate::config::Site;
use crate::dhcp::{Allocator, MAX_HOSTNAME};
use crate::dht::{self, Dht, Key, Kind, Members as _, OpError, OpId, OpResult, Outcome};
use crate::dns::{HostAnswer, HostLookup};
use crate::id::NodeId;
use crate::peers::{Auth, Peers, PeersConfig, Received};
use crate::queue::{Cx, Dest};
use crate::session::PeerIdentity;
use crate::statics::{Expired, Statics};
use crate::wire::control::{ControlRepr, Hello, MemberInfo, Roles, MAX_MEMBERS};

mod admin;
pub use admin::{
    admin_parts, AdminCall, AdminDone, AdminPart, ReserveRefused, ADMIN_DONE, ADMIN_PARTS, ADMIN_REPLIES,
    ADMIN_REQUESTS, RESERVED, RESERVE_RETRY,
};

/// Storage members a node keeps in its one-hop member table: 1024 with the heap (daemons: about a
/// thousand storage nodes, DESIGN.md), 64 without (microcontrollers). Beyond it the table stops being
/// complete and every DHT op looks its key up first ([`dht::kad`], Kademlia).
#[cfg(feature = "alloc")]
pub const MEMBERS: usize = 1024;
/// Storage members a node keeps in its one-hop member table (see the `alloc` build's doc).
#[cfg(not(feature = "alloc"))]
pub const MEMBERS: usize = 64;
/// Overlay peers (sessions) kept; see [`Peers`] for what happens when full.
pub const PEERS: usize = 64;
/// Addresses claimed in the DHT (free ones and those bound to hosts); beyond it no new claim starts.
pub const CLAIMS: usize = 128;
/// Routes cached; when full, the entry closest to expiry is replaced.
pub const ROUTES: usize = 256;
/// DHT operations of the node in flight; beyond it a new one is not started (retried later).
pub const OPS: usize = 32;
/// Free claimed addresses kept ready for DHCP.
pub const POOL_FREE: usize = 4;
/// Quiet time after the last new storage member before the DHT client starts.
pub const SETTLE_QUIET: Duration = Duration::from_millis(1500);
/// Longest wait for the bootstrap endpoints before the DHT client starts anyway.
pub const SETTLE_MAX: Duration = Duration::from_secs(6);
/// Claims started at once while refilling.
const CLAIMS_IN_FLIGHT: usize = 2;
/// Hellos to unanswered bootstrap endpoints, and the shortest interval between hellos to one peer.
pub const HELLO_RETRY: Duration = Duration::from_secs(3);
/// Interval of the anti-entropy hello to one random known node (its answer lists its members).
pub const GOSSIP_INTERVAL: Duration = Duration::from_secs(10);
/// TTL of our `ip:` records.
pub const IP_TTL: Duration = Duration::from_secs(300);
/// How long a route read stays valid.
pub const ROUTE_TTL: Duration = Duration::from_secs(60);
/// How long an address a quorum found absent stays negative.
pub const NEGATIVE_ROUTE_TTL: Duration = Duration::from_secs(5);

/// Hostnames this node registers in the DHT; beyond it a name is not registered (counted in
/// `overlay_names_lost`) and only the local table answers it.
pub const HOST_NAMES: usize = 64;
/// TTL of our `host:` records (renewed at a third of it).
pub const HOST_TTL: Duration = Duration::from_secs(120);
/// Interval between attempts to register a name that failed or was held by another node.
pub const HOST_RETRY: Duration = Duration::from_secs(30);
/// Finished hostname reads kept until [`Overlay::take_host_done`]; beyond it the oldest is dropped
/// (its DNS query then times out to SERVFAIL).
pub const HOST_DONE: usize = 8;

/// The DHT engine a node runs: member table, ops, claims, outbox.
pub type Engine = Dht<dht::kad::FullTable<MEMBERS>, 16, CLAIMS, 64>;

/// How a node takes part in the overlay.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// This node's id.
    pub id: NodeId,
    /// The dht role: store records (needs the `alloc` feature; without it the node runs as a client
    /// and says so in a warning).
    pub storage: bool,
    /// Passed to `dht::Config::fresh`: the first start of this node's state (a new namespace's first
    /// members). Wrong here breaks safety: say false when unsure.
    pub fresh: bool,
    /// Whether the node serves a LAN; false for a standalone storage node (no ARP announce, no DHCP).
    pub lan: bool,
    /// Our endpoint as others should reach it.
    pub advertise: Option<SocketAddr>,
    /// Endpoints to send hellos to at start and until answered.
    pub bootstrap: Vec<SocketAddr, 8>,
    /// This node's Ed25519 secret key (the 32-byte seed whose public key's node id is `id`): the
    /// DHT signs our records with it, and storage nodes then check signatures and writers' roles
    /// (`dht::Config::verify`). None runs the DHT unsigned and unchecked: tests only; the daemon
    /// always passes its key.
    pub signing_key: Option<[u8; 32]>,
}

/// The certificate role bits (`cert::roles`) that the roles of a hello stand for. `Roles::RELAY`
/// has no certificate bit.
pub fn cert_roles(r: Roles) -> u8 {
    use crate::cert::roles;
    [(Roles::DHT, roles::DHT), (Roles::ROUTER, roles::ROUTER), (Roles::RENDEZVOUS, roles::RENDEZVOUS)]
        .iter()
        .filter(|(h, _)| r.contains(*h))
        .fold(0, |acc, (_, c)| acc | c)
}

/// Encodes an endpoint as a record value: family (4 or 6), address, port (big-endian).
pub fn encode_endpoint(e: &SocketAddr, out: &mut [u8; 19]) -> usize {
    match e.ip() {
        IpAddr::V4(ip) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&ip.octets());
            out[5..7].copy_from_slice(&e.port().to_be_bytes());
            7
        }
        IpAddr::V6(ip) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&ip.octets());
            out[17..19].copy_from_slice(&e.port().to_be_bytes());
            19
        }
    }
}

/// Decodes [`encode_endpoint`]'s form; `None` for anything else.
pub fn decode_endpoint(b: &[u8]) -> Option<SocketAddr> {
    match b {
        [4, a, b2, c, d, p0, p1] => {
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(*a, *b2, *c, *d)), u16::from_be_bytes([*p0, *p1])))
        }
        [6, rest @ ..] if rest.len() == 18 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), u16::from_be_bytes([rest[16], rest[17]])))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Claiming,
    Held,
}

#[derive(Debug, Clone, Copy)]
struct PoolEntry {
    ip: Ipv4Address,
    key: Key,
    state: ClaimState,
    /// Bound to a host by DHCP.
    bound: bool,
    /// `Dht::holds` at the last refresh.
    held: bool,
}

/// The addresses this node has claimed in the DHT: the [`Allocator`] DHCP hands addresses from.
#[derive(Default)]
pub struct DhtPool {
    entries: Vec<PoolEntry, CLAIMS>,
    /// DISCOVERs that found no free held address since the last refill (capped at
    /// [`CLAIMS_IN_FLIGHT`]): claims to start on demand.
    wanted: u8,
    /// Nothing is claimed ahead ([`Overlay::set_preclaim`] 0): a miss is a claim, not exhaustion.
    on_demand: bool,
}

impl DhtPool {
    fn find(&self, ip: Ipv4Address) -> Option<usize> {
        self.entries.iter().position(|e| e.ip == ip)
    }

    fn free_count(&self) -> usize {
        self.entries.iter().filter(|e| !e.bound).count()
    }

    fn claiming(&self) -> usize {
        self.entries.iter().filter(|e| e.state == ClaimState::Claiming).count()
    }

    fn refresh(&mut self, now: Instant, dht: &Engine) {
        for e in self.entries.iter_mut() {
            e.held = e.state == ClaimState::Held && dht.holds(now, &e.key);
        }
    }

    /// Addresses held and not bound to a host: what the next OFFERs can use.
    pub fn free_held(&self) -> usize {
        self.entries.iter().filter(|e| e.held && !e.bound).count()
    }

    /// Every address held now.
    pub fn held(&self) -> impl Iterator<Item = Ipv4Address> + '_ {
        self.entries.iter().filter(|e| e.held).map(|e| e.ip)
    }
}

impl Allocator for DhtPool {
    fn owns(&self, ip: Ipv4Address) -> bool {
        self.entries.iter().any(|e| e.ip == ip && e.held)
    }
    fn candidates(&self) -> u32 {
        self.entries.len() as u32
    }
    fn candidate(&self, i: u32) -> Option<Ipv4Address> {
        self.entries.get(i as usize).filter(|e| e.held).map(|e| e.ip)
    }
    fn short(&mut self) -> bool {
        if self.entries.is_full() {
            return false;
        }
        self.wanted = self.wanted.saturating_add(1).min(CLAIMS_IN_FLIGHT as u8);
        self.on_demand
    }
}

#[derive(Debug, Clone, Copy)]
struct Route {
    ip: Ipv4Address,
    /// `None`: a quorum found the address unowned.
    owner: Option<NodeId>,
    endpoint: Option<SocketAddr>,
    expires: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    Claim(Ipv4Address),
    Route(Ipv4Address),
    Delete,
    /// A Create of `host:<name>` (the key).
    Name(Key),
    /// A read of `host:<label>` for DNS.
    HostRead(HostLabel),
    /// A read for an admin command (its number).
    Admin(u32),
    /// A Create of a reserved address.
    Reserve(Ipv4Address),
    /// A Create of a confirmed static address.
    Static(Ipv4Address),
}

/// A hostname label, lowercase.
pub type HostLabel = String<MAX_HOSTNAME>;

/// Who asked for a hostname: an admin's name wins over a lease's (DESIGN.md "dns").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameSource {
    /// A DHCP lease's option 12/81.
    Lease,
    /// An admin reservation (hostctl reserve, [`crate::node::command`]).
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameState {
    /// A Create in flight.
    Registering,
    /// Ours in the DHT (the engine renews it).
    Held,
    /// Not ours: try again at `at`; `lost` when another node holds it.
    Waiting { lost: bool, at: Instant },
}

#[derive(Debug, Clone)]
struct HostName {
    name: HostLabel,
    ip: Ipv4Address,
    key: Key,
    source: NameSource,
    state: NameState,
    /// The highest generation seen for the key (for the next Create).
    after: u64,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    info: MemberInfo,
    hello_sent: Option<Instant>,
}

/// What a finished route read means for proxy ARP: `(ip, found)` to pass to `ArpProxy::lookup_done`.
pub type RouteDone = (Ipv4Address, bool);

/// The overlay state of a node.
pub struct Overlay {
    me: NodeId,
    roles: Roles,
    namespace: [u8; 16],
    advertise: Option<SocketAddr>,
    lan: bool,
    dht: Engine,
    peers: Peers<PEERS>,
    known: Vec<Known, MEMBERS>,
    bootstrap: Vec<(SocketAddr, bool), 8>,
    next_hello: Option<Instant>,
    next_gossip: Instant,
    started: bool,
    /// Whether the DHT client runs (node record, claims): only once membership has settled.
    dht_started: bool,
    /// Earliest start of the DHT client: a quiet moment after the last new storage member.
    settle_at: Instant,
    /// Latest start of the DHT client, even if some bootstrap endpoint never answered.
    settle_deadline: Instant,
    ops: Vec<(OpId, Purpose), OPS>,
    routes: Vec<Route, ROUTES>,
    pool: DhtPool,
    /// Free addresses kept claimed ahead of DHCP ([`Overlay::set_preclaim`]).
    preclaim: usize,
    counter: u64,
    hello_bucket: TokenBucket,
    route_done: Vec<RouteDone, 8>,
    names: Vec<HostName, HOST_NAMES>,
    host_done: Vec<(HostLabel, HostAnswer), HOST_DONE>,
    bcast: Bcast,
    admin: admin::Admin,
    statics: Statics,
}

impl Overlay {
    /// A new overlay for `site`; `seed` drives the DHT's jitter and request ids.
    pub fn new(site: &Site, seed: u64, config: OverlayConfig) -> Self {
        let storage = config.storage && cfg!(feature = "alloc");
        if config.storage && !storage {
            warn!("overlay: the storage role needs the alloc feature: running as a DHT client");
        }
        let mut dc = dht::Config::new(site.params.id);
        dc.storage = storage;
        dc.fresh = config.fresh;
        dc.signing_key = config.signing_key;
        dc.verify = config.signing_key.is_some();
        dc.subnet = Some(site.params.subnet);
        let mut members = dht::kad::FullTable::new();
        if storage {
            dht::Members::insert(&mut members, config.id);
        }
        let mut roles = Roles::NONE;
        if storage {
            roles = roles.union(Roles::DHT);
        }
        if config.lan {
            roles = roles.union(Roles::ROUTER);
        }
        dc.roles = cert_roles(roles);
        Overlay {
            me: config.id,
            roles,
            namespace: site.params.id,
            advertise: config.advertise,
            lan: config.lan,
            dht: Dht::new(Instant::ZERO, config.id, members, &dc, seed),
            peers: Peers::new(PeersConfig::default()),
            known: Vec::new(),
            bootstrap: config.bootstrap.iter().map(|&e| (e, false)).collect(),
            next_hello: None,
            next_gossip: Instant::ZERO,
            started: false,
            dht_started: false,
            settle_at: Instant::ZERO,
            settle_deadline: Instant::ZERO,
            ops: Vec::new(),
            routes: Vec::new(),
            pool: DhtPool::default(),
            preclaim: POOL_FREE,
            counter: 0,
            hello_bucket: TokenBucket::new(Instant::ZERO, 8, Duration::from_millis(500)),
            route_done: Vec::new(),
            names: Vec::new(),
            host_done: Vec::new(),
            bcast: Bcast::new(seed.rotate_left(17)),
            admin: admin::Admin::default(),
            statics: Statics::default(),
        }
    }

    /// The DHT engine.
    pub fn dht(&self) -> &Engine {
        &self.dht
    }

    /// The peer table.
    pub fn peers(&self) -> &Peers<PEERS> {
        &self.peers
    }

    /// The address pool.
    pub fn pool(&self) -> &DhtPool {
        &self.pool
    }

    /// The pool as DHCP's allocator, refreshed for `now`.
    pub fn allocator(&mut self, now: Instant) -> &mut DhtPool {
        self.pool.refresh(now, &self.dht);
        &mut self.pool
    }

    /// Whether the node serves a LAN.
    pub fn lan(&self) -> bool {
        self.lan
    }

    /// Whether this node holds `ip` in the DHT now.
    pub fn holds_ip(&self, now: Instant, ip: Ipv4Address) -> bool {
        self.dht.holds(now, &self.ip_key(ip))
    }

    fn ip_key(&self, ip: Ipv4Address) -> Key {
        self.dht.key(Kind::Ip, &ip.octets())
    }

    fn contact(&self, buf: &mut [u8; 19]) -> usize {
        self.advertise.map_or(0, |e| encode_endpoint(&e, buf))
    }

    fn hello(&self) -> Hello {
        let mut endpoints = Vec::new();
        if let Some(e) = self.advertise {
            let _ = endpoints.push(e);
        }
        Hello { node_id: self.me, roles: self.roles, namespace: self.namespace, endpoints }
    }

    fn send(cx: &mut Cx<'_>, to: SocketAddr, m: &ControlRepr<'_>) -> bool {
        cx.out.push(cx.stats, Dest::Overlay(to), false, &mut |buf| m.emit_into(buf))
    }

    /// First call: start the node record and greet the bootstrap endpoints.
    pub fn start(&mut self, cx: &mut Cx<'_>) {
        if self.started {
            return;
        }
        self.started = true;
        self.settle_at = cx.now + SETTLE_QUIET;
        self.settle_deadline = cx.now + SETTLE_MAX;
        self.greet_bootstrap(cx);
        self.next_gossip = cx.now + GOSSIP_INTERVAL;
        self.pump(cx);
    }

    /// Start the DHT client once the member table has settled: every bootstrap endpoint answered (or
    /// [`SETTLE_MAX`] passed) and no new storage member for [`SETTLE_QUIET`]. A node record or claim
    /// made while the table still grows would sit on a replica set that is not the final one, and
    /// its renewals could fail until the new members' handover copies are done (the engine keeps
    /// changes safe, not free). Founding members vote without copying, so they must also agree
    /// on the table before anything is written.
    fn maybe_start_dht(&mut self, cx: &mut Cx<'_>) {
        if self.dht_started || !self.started || cx.now < self.settle_at {
            return;
        }
        let all_answered = self.bootstrap.iter().all(|&(_, answered)| answered);
        if !all_answered && cx.now < self.settle_deadline {
            return;
        }
        self.dht_started = true;
        let mut c = [0u8; 19];
        let n = self.contact(&mut c);
        let _ = self.dht.start(cx.now, &c[..n]);
        debug!("overlay: DHT client started with {} storage members", self.dht.members().len());
    }

    fn greet_bootstrap(&mut self, cx: &mut Cx<'_>) {
        let hello = ControlRepr::Hello(self.hello());
        let mut any = false;
        for &(e, answered) in self.bootstrap.iter() {
            if !answered {
                Self::send(cx, e, &hello);
                any = true;
            }
        }
        self.next_hello = any.then_some(cx.now + HELLO_RETRY);
    }

    fn endpoint_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.known
            .iter()
            .find(|k| k.info.node_id == *id)
            .map(|k| k.info.endpoint)
            .or_else(|| self.peers.get(id).map(|p| p.endpoint()))
    }

    fn learn(&mut self, cx: &mut Cx<'_>, info: MemberInfo) -> bool {
        if info.node_id == self.me {
            return false;
        }
        let _ = self.peers.insert(cx, info.node_id, info.endpoint);
        if info.roles.contains(Roles::DHT) && self.dht.add_member(cx.now, info.node_id) {
            self.settle_at = self.settle_at.max(cx.now + SETTLE_QUIET);
        }
        if let Some(k) = self.known.iter_mut().find(|k| k.info.node_id == info.node_id) {
            k.info = info;
            return false;
        }
        if self.known.push(Known { info, hello_sent: None }).is_err() {
            cx.stats.peers_full += 1;
        }
        true
    }

    /// A session with `id` at `to` came up (we initiated it): say hello there.
    pub fn greet(&mut self, cx: &mut Cx<'_>, id: NodeId, to: SocketAddr) {
        self.hello_to(cx, id, to);
    }

    fn hello_to(&mut self, cx: &mut Cx<'_>, id: NodeId, to: SocketAddr) {
        let now = cx.now;
        if let Some(k) = self.known.iter_mut().find(|k| k.info.node_id == id) {
            if k.hello_sent.is_some_and(|t| now < t + HELLO_RETRY) {
                return;
            }
            k.hello_sent = Some(now);
        }
        let hello = ControlRepr::Hello(self.hello());
        Self::send(cx, to, &hello);
        let mut list: Vec<MemberInfo, MAX_MEMBERS> = Vec::new();
        for k in self.known.iter().filter(|k| k.info.roles.contains(Roles::DHT) && k.info.node_id != id) {
            if list.push(k.info).is_err() {
                break;
            }
        }
        if self.roles.contains(Roles::DHT) {
            if let Some(e) = self.advertise {
                if list.is_full() {
                    list.pop();
                }
                let _ = list.push(MemberInfo { node_id: self.me, roles: self.roles, endpoint: e });
            }
        }
        if !list.is_empty() {
            Self::send(cx, to, &ControlRepr::Members(list));
        }
    }

    /// A control message from `from` (classified as such by the caller), on an unsecured overlay.
    pub fn handle_control(&mut self, cx: &mut Cx<'_>, from: SocketAddr, datagram: &[u8]) {
        self.handle_control_from(cx, from, None, datagram);
    }

    /// A control message from `from`; `auth` is the sender's certified identity when it came
    /// through a session ([`crate::secure`]). Then a hello must name the certificate's node id, the
    /// roles it claims count only where the certificate has them, and storage members named in a
    /// member list join the DHT member table only once their own authenticated hello arrives.
    pub fn handle_control_from(
        &mut self,
        cx: &mut Cx<'_>,
        from: SocketAddr,
        auth: Option<PeerIdentity>,
        datagram: &[u8],
    ) {
        let a = if auth.is_some() { Auth::Authenticated } else { Auth::Unauthenticated };
        let repr = match ControlRepr::parse_bytes(datagram) {
            Ok(r) => r,
            Err(_) => {
                cx.stats.malformed += 1;
                return;
            }
        };
        match repr {
            ControlRepr::Hello(h) => {
                if h.namespace != self.namespace {
                    cx.stats.overlay_wrong_namespace += 1;
                    return;
                }
                if h.node_id == self.me {
                    return;
                }
                for b in self.bootstrap.iter_mut().filter(|b| b.0 == from) {
                    b.1 = true;
                }
                let roles = match auth {
                    Some(id) if id.node_id != h.node_id => {
                        cx.stats.secure_identity_mismatch += 1;
                        return;
                    }
                    Some(id) => crate::secure::certified_roles(h.roles, id.roles),
                    None => h.roles,
                };
                // The observed source is where the sender's datagrams come from: reach it there.
                let info = MemberInfo { node_id: h.node_id, roles, endpoint: from };
                let new = self.learn(cx, info);
                // The roles the DHT authorizes writes by: the certificate's when the hello came
                // through a session, else the sender's own word.
                let cert = auth.map_or_else(|| cert_roles(h.roles), |id| id.roles);
                self.peers.set_roles(&h.node_id, cert);
                if new && info.roles.contains(Roles::DHT) {
                    // A new storage member: tell every node we know, so it spreads at once.
                    let mut one = Vec::new();
                    let _ = one.push(info);
                    let m = ControlRepr::Members(one);
                    for k in self.known.iter().filter(|k| k.info.node_id != info.node_id) {
                        Self::send(cx, k.info.endpoint, &m);
                    }
                }
                self.peers.on_receive(cx, from, a, Received::Traffic);
                self.hello_to(cx, h.node_id, from);
            }
            ControlRepr::Members(list) => {
                if self.peers.on_receive(cx, from, a, Received::Traffic).is_none() {
                    cx.stats.overlay_unknown_peer += 1;
                    return;
                }
                for m in list.iter().filter(|m| m.roles.contains(Roles::DHT)) {
                    let mut m = *m;
                    if auth.is_some() {
                        // A member list is hearsay: its entries store records once they say so
                        // themselves, under their own certificates.
                        m.roles = Roles(m.roles.0 & !Roles::DHT.0);
                    }
                    if self.learn(cx, m) {
                        self.hello_to(cx, m.node_id, m.endpoint);
                    }
                }
            }
            ControlRepr::Ping(p) => self.peers.handle_ping(cx, from, a, &p),
            ControlRepr::Pong(p) => self.peers.handle_pong(cx, from, a, &p),
            // Revocation lists are the secured side's business (the node hands them there first).
            ControlRepr::RevocationWanted(_) | ControlRepr::Revocation(_) => cx.stats.other_dropped += 1,
            ControlRepr::Dht(bytes) => match self.peers.on_receive(cx, from, a, Received::Traffic) {
                Some(id) => {
                    let roles = self.peers.get(&id).map_or(0, |p| p.roles());
                    self.dht.handle_message(cx.now, id, roles, bytes)
                }
                None => self.unknown_sender(cx, from),
            },
            // hostctl over the overlay: see `admin`.
            ControlRepr::Admin(r) => self.admin_request(cx, from, auth, r),
            ControlRepr::AdminReply(r) => self.admin_reply_part(cx, from, r),
        }
        self.pump(cx);
    }

    /// Something from an endpoint we do not know: dropped, answered by a rate-limited hello.
    pub fn unknown_sender(&mut self, cx: &mut Cx<'_>, from: SocketAddr) {
        cx.stats.overlay_unknown_peer += 1;
        if self.hello_bucket.take(cx.now) {
            Self::send(cx, from, &ControlRepr::Hello(self.hello()));
        }
    }

    /// The id of the peer at `from`, counting the receive as traffic.
    pub fn sender(&mut self, cx: &mut Cx<'_>, from: SocketAddr) -> Option<NodeId> {
        self.peers.on_receive(cx, from, Auth::Unauthenticated, Received::Traffic)
    }

    /// Next data counter (session 0 until P3).
    pub fn next_counter(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        self.counter
    }

    /// How many free addresses to keep claimed ahead of DHCP (default [`POOL_FREE`], at most
    /// [`CLAIMS`]). With 0 nothing is claimed ahead: a DISCOVER that finds no free address is not
    /// answered and starts a claim, so the client's retransmission gets the OFFER (the benchmark's
    /// "without a pre-claimed address").
    pub fn set_preclaim(&mut self, n: usize) {
        self.preclaim = n.min(CLAIMS);
        self.pool.on_demand = n == 0;
    }

    /// A DHCP lease was granted on `ip`.
    pub fn lease_granted(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address) {
        if self.is_reserved(ip) {
            return;
        }
        match self.pool.find(ip) {
            Some(i) => self.pool.entries[i].bound = true,
            None => self.claim(cx, ip, true, 0),
        }
    }

    /// A DHCP lease on `ip` ended: back to the free pool, or given back to the DHT when the pool is full.
    pub fn lease_ended(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address) {
        let Some(i) = self.pool.find(ip) else { return };
        self.pool.entries[i].bound = false;
        if self.pool.free_count() > self.preclaim {
            let e = self.pool.entries.swap_remove(i);
            if let Some(gen) = self.dht.claim_gen(&e.key) {
                if let Ok(op) = self.dht.delete(cx.now, e.key, Kind::Ip, &e.ip.octets(), gen) {
                    let _ = self.ops.push((op, Purpose::Delete));
                }
            }
        }
    }

    fn host_key(&self, name: &str) -> Key {
        self.dht.key(Kind::Host, name.as_bytes())
    }

    /// Registers hostname `name` (lowercase, a valid label) for `ip`: `host:<name>` is created in the
    /// DHT once the DHT client runs, and kept until [`Overlay::unregister_ip`]. A different name
    /// registered for `ip` is given up first. A name already registered here for another address is
    /// kept unless `source` outranks it (an admin's over a lease's).
    pub fn register_name(&mut self, cx: &mut Cx<'_>, name: &str, ip: Ipv4Address, source: NameSource) {
        let Ok(label) = HostLabel::try_from(name) else { return };
        if let Some(e) = self.names.iter_mut().find(|e| e.name == label) {
            if e.ip == ip {
                e.source = e.source.max(source);
                return;
            }
            if e.source >= source {
                debug!("overlay: name {} stays with {}", name, e.ip);
                return;
            }
            // An admin's name over a lease's: ours either way, so only the value changes; give the
            // old record up and create anew (a retry of the Create that meets our own record).
            let old = e.ip;
            self.unregister_ip(cx, old);
        }
        if self.names.iter().any(|e| e.ip == ip) {
            self.unregister_ip(cx, ip);
        }
        let key = self.host_key(name);
        let e = HostName {
            name: label,
            ip,
            key,
            source,
            state: NameState::Waiting { lost: false, at: cx.now },
            after: 0,
        };
        if self.names.push(e).is_err() {
            cx.stats.overlay_names_lost += 1;
            return;
        }
        self.retry_names(cx);
    }

    /// The hostnames registered for `ip` end (its lease ended or changed name): deleted from the DHT.
    pub fn unregister_ip(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address) {
        while let Some(i) = self.names.iter().position(|e| e.ip == ip) {
            let e = self.names.swap_remove(i);
            // A Create still in flight is deleted when its result comes (`on_result`).
            if let Some(gen) = self.dht.claim_gen(&e.key) {
                if let Ok(op) = self.dht.delete(cx.now, e.key, Kind::Host, e.name.as_bytes(), gen) {
                    let _ = self.ops.push((op, Purpose::Delete));
                }
            }
        }
    }

    /// Whether this node holds `host:<name>` now.
    pub fn holds_name(&self, now: Instant, name: &str) -> bool {
        self.names.iter().any(|e| e.name.as_str() == name && e.state == NameState::Held)
            && self.dht.holds(now, &self.host_key(name))
    }

    /// Starts the Creates of the names whose turn has come.
    fn retry_names(&mut self, cx: &mut Cx<'_>) {
        if !self.dht_started {
            return;
        }
        for i in 0..self.names.len() {
            let NameState::Waiting { at, .. } = self.names[i].state else { continue };
            if at > cx.now || self.ops.is_full() {
                continue;
            }
            let e = &self.names[i];
            let ip = e.ip.octets();
            match self.dht.create(cx.now, e.key, Kind::Host, e.name.as_bytes(), &ip, HOST_TTL, e.after) {
                Ok(op) => {
                    let _ = self.ops.push((op, Purpose::Name(e.key)));
                    self.names[i].state = NameState::Registering;
                }
                Err(_) => {
                    let lost = matches!(e.state, NameState::Waiting { lost: true, .. });
                    self.names[i].state = NameState::Waiting { lost, at: cx.now + HOST_RETRY };
                }
            }
        }
    }

    /// Hostname reads that finished since the last call, for DNS.
    pub fn take_host_done(&mut self) -> Option<(HostLabel, HostAnswer)> {
        self.host_done.pop()
    }

    fn name_result(&mut self, cx: &mut Cx<'_>, key: Key, outcome: Result<Outcome, OpError>) {
        let Some(i) = self.names.iter().position(|e| e.key == key && e.state == NameState::Registering)
        else {
            // Unregistered while the Create ran: give the record up.
            if let Ok(Outcome::Created { gen }) = outcome {
                // The name is our claim's (the entry is gone).
                if let Ok(op) = self.dht.delete(cx.now, key, Kind::Host, b"", gen) {
                    let _ = self.ops.push((op, Purpose::Delete));
                }
            }
            return;
        };
        let retry = cx.now + HOST_RETRY;
        match outcome {
            Ok(Outcome::Created { gen }) => {
                info!("overlay: name {} registered", self.names[i].name.as_str());
                self.names[i].after = gen;
                self.names[i].state = NameState::Held;
            }
            Err(OpError::Conflict(s)) if s.owner == self.me => {
                // Our own record from before (a restart): take it at a higher generation.
                self.names[i].after = s.gen;
                self.names[i].state = NameState::Waiting { lost: false, at: cx.now };
                self.retry_names(cx);
            }
            Err(OpError::Conflict(s)) => {
                info!("overlay: name {} is held by {}", self.names[i].name.as_str(), s.owner);
                cx.stats.overlay_names_lost += 1;
                self.names[i].after = self.names[i].after.max(s.gen);
                self.names[i].state = NameState::Waiting { lost: true, at: retry };
            }
            _ => self.names[i].state = NameState::Waiting { lost: false, at: retry },
        }
    }

    /// A restored binding: claim its address again (bound).
    pub fn restore(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address) {
        if self.pool.find(ip).is_none() && !self.is_reserved(ip) {
            self.claim(cx, ip, true, 0);
        }
    }

    fn claim(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address, bound: bool, after: u64) {
        if self.ops.is_full() {
            return;
        }
        let key = self.ip_key(ip);
        let mut c = [0u8; 19];
        let n = self.contact(&mut c);
        let Ok(op) = self.dht.create(cx.now, key, Kind::Ip, &ip.octets(), &c[..n], IP_TTL, after) else {
            return;
        };
        let _ = self.ops.push((op, Purpose::Claim(ip)));
        match self.pool.find(ip) {
            Some(i) => self.pool.entries[i].state = ClaimState::Claiming,
            None => {
                let e = PoolEntry { ip, key, state: ClaimState::Claiming, bound, held: false };
                if self.pool.entries.push(e).is_err() {
                    cx.stats.overlay_pool_full += 1;
                }
            }
        }
    }

    fn refill(&mut self, cx: &mut Cx<'_>, site: &Site) {
        if !self.lan || self.dht.members().is_empty() || self.dht.node_lease().is_none_or(|e| e <= cx.now) {
            return;
        }
        let range = site.params.pool;
        let n = range.len();
        if n == 0 {
            return;
        }
        let want = self.preclaim.max(usize::from(self.pool.wanted));
        self.pool.wanted = 0;
        while self.pool.free_count() < want
            && self.pool.claiming() < CLAIMS_IN_FLIGHT
            && !self.pool.entries.is_full()
            && !self.ops.is_full()
        {
            let mut pick = None;
            for _ in 0..8 {
                let Some(ip) = range.nth(cx.rng.next_u32() % n) else { continue };
                let taken = self.pool.find(ip).is_some()
                    || self.is_reserved(ip)
                    || self.routes.iter().any(|r| r.ip == ip && r.owner.is_some() && cx.now < r.expires);
                if !taken {
                    pick = Some(ip);
                    break;
                }
            }
            let Some(ip) = pick else { return };
            let before = self.pool.entries.len();
            self.claim(cx, ip, false, 0);
            if self.pool.entries.len() == before {
                return;
            }
        }
    }

    fn route_entry(&self, now: Instant, ip: Ipv4Address) -> Option<&Route> {
        self.routes.iter().find(|r| r.ip == ip && now < r.expires)
    }

    /// The owner and endpoint of remote address `ip`, if the cache knows them.
    pub fn route(&self, now: Instant, ip: Ipv4Address) -> Option<(NodeId, SocketAddr)> {
        let r = self.route_entry(now, ip)?;
        let owner = r.owner.filter(|o| *o != self.me)?;
        Some((owner, r.endpoint.or_else(|| self.endpoint_of(&owner))?))
    }

    /// Whether a read of `ip` is in flight.
    fn reading(&self, ip: Ipv4Address) -> bool {
        self.ops.iter().any(|(_, p)| *p == Purpose::Route(ip))
    }

    /// Starts a read of `ip`'s owner unless one is running; false when none could start.
    pub fn resolve(&mut self, now: Instant, ip: Ipv4Address) -> bool {
        if self.reading(ip) {
            return true;
        }
        if self.ops.is_full() {
            return false;
        }
        let key = self.ip_key(ip);
        match self.dht.read(now, key, Kind::Ip) {
            Ok(op) => {
                let _ = self.ops.push((op, Purpose::Route(ip)));
                true
            }
            Err(_) => false,
        }
    }

    fn set_route(
        &mut self,
        now: Instant,
        ip: Ipv4Address,
        owner: Option<NodeId>,
        endpoint: Option<SocketAddr>,
    ) {
        let ttl = if owner.is_some() { ROUTE_TTL } else { NEGATIVE_ROUTE_TTL };
        let r = Route { ip, owner, endpoint, expires: now + ttl };
        if let Some(e) = self.routes.iter_mut().find(|e| e.ip == ip) {
            *e = r;
        } else if let Err(r) = self.routes.push(r) {
            if let Some(e) = self.routes.iter_mut().min_by_key(|e| e.expires) {
                *e = r;
            }
        }
    }

    /// Route reads that finished since the last call, for proxy ARP.
    pub fn take_route_done(&mut self) -> Option<RouteDone> {
        self.route_done.pop()
    }

    fn on_result(&mut self, cx: &mut Cx<'_>, r: OpResult) {
        if self.bcast.on_result(&self.me, &r) {
            self.bcast_meet(cx);
            return;
        }
        let Some(i) = self.ops.iter().position(|(op, _)| *op == r.op) else { return };
        let (_, purpose) = self.ops.swap_remove(i);
        match purpose {
            Purpose::Claim(ip) => {
                let Some(pi) = self.pool.find(ip) else { return };
                match r.outcome {
                    Ok(Outcome::Created { .. }) => self.pool.entries[pi].state = ClaimState::Held,
                    Err(OpError::Conflict(s)) if s.owner == self.me => self.claim(cx, ip, false, s.gen),
                    Err(OpError::Conflict(s)) => {
                        debug!("overlay: {} is taken by {}", ip, s.owner);
                        self.pool.entries.swap_remove(pi);
                        self.set_route(cx.now, ip, Some(s.owner), None);
                    }
                    _ => {
                        cx.stats.overlay_claims_failed += 1;
                        self.pool.entries.swap_remove(pi);
                    }
                }
            }
            Purpose::Route(ip) => {
                let found = match r.outcome {
                    Ok(Outcome::Found(rec)) => {
                        let ep = decode_endpoint(&rec.value);
                        self.set_route(cx.now, ip, Some(rec.owner), ep);
                        if rec.owner != self.me {
                            if let Some(e) = ep.or_else(|| self.endpoint_of(&rec.owner)) {
                                if self.peers.get(&rec.owner).is_none() {
                                    // Introduce ourselves before the first frame, so the owner
                                    // knows where our traffic comes from.
                                    let _ = self.peers.insert(cx, rec.owner, e);
                                    self.hello_to(cx, rec.owner, e);
                                }
                            }
                        }
                        self.route(cx.now, ip).is_some()
                    }
                    Ok(Outcome::Absent) => {
                        self.set_route(cx.now, ip, None, None);
                        false
                    }
                    _ => false,
                };
                if self.route_done.push((ip, found)).is_err() {
                    self.route_done.remove(0);
                    let _ = self.route_done.push((ip, found));
                }
            }
            Purpose::Delete => {}
            Purpose::Admin(cmd) => self.admin_result(cmd, r.outcome),
            Purpose::Reserve(ip) => self.reserve_result(cx, ip, r.outcome),
            Purpose::Static(ip) => self.static_result(cx, ip, r.outcome),
            Purpose::Name(key) => self.name_result(cx, key, r.outcome),
            Purpose::HostRead(label) => {
                let answer = match r.outcome {
                    Ok(Outcome::Found(rec)) => match rec.value.get(..4) {
                        Some(&[a, b, c, d]) => HostAnswer::Found(Ipv4Address::new(a, b, c, d)),
                        _ => HostAnswer::Failed,
                    },
                    Ok(Outcome::Absent) => HostAnswer::Absent,
                    _ => HostAnswer::Failed,
                };
                if self.host_done.is_full() {
                    self.host_done.remove(0);
                }
                let _ = self.host_done.push((label, answer));
            }
        }
    }

    /// Moves the DHT's messages, results and events along; refills the pool.
    pub fn pump_with(&mut self, cx: &mut Cx<'_>, site: &Site) {
        self.maybe_start_dht(cx);
        self.bcast_refresh(cx);
        self.pump(cx);
        self.refill(cx, site);
        self.retry_names(cx);
        self.retry_reserved(cx);
        self.pump(cx);
    }

    fn pump(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        loop {
            let mut progress = false;
            while let Some(r) = self.dht.poll_result() {
                progress = true;
                self.on_result(cx, r);
            }
            while let Some(ev) = self.dht.poll_event() {
                progress = true;
                let key = match ev {
                    dht::DhtEvent::LeaseLost { key } | dht::DhtEvent::Yielded { key, .. } => key,
                };
                if let Some(i) = self.pool.entries.iter().position(|e| e.key == key) {
                    warn!("overlay: lost our claim on {}", self.pool.entries[i].ip);
                    self.pool.entries.swap_remove(i);
                }
                if let Some(e) = self.names.iter_mut().find(|e| e.key == key) {
                    warn!("overlay: lost our name {}", e.name.as_str());
                    let lost = matches!(ev, dht::DhtEvent::Yielded { .. });
                    e.state = NameState::Waiting { lost, at: now + HOST_RETRY };
                }
                self.reserve_lost(now, &key);
                let by = match ev {
                    dht::DhtEvent::Yielded { by, .. } => Some(by.owner),
                    dht::DhtEvent::LeaseLost { .. } => None,
                };
                self.static_lost(cx, &key, by);
            }
            let mut buf = [0u8; dht::MAX_MESSAGE];
            while let Some((to, n)) = self.dht.poll_message(now, &mut buf) {
                progress = true;
                let Some(ep) = self.endpoint_of(&to) else {
                    cx.stats.overlay_unknown_peer += 1;
                    continue;
                };
                let bytes = &buf[..n];
                Self::send(cx, ep, &ControlRepr::Dht(bytes));
                self.peers.note_sent(now, &to);
            }
            if !progress {
                break;
            }
        }
        self.pool.refresh(now, &self.dht);
    }

    /// Runs what is due.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, site: &Site) {
        self.start(cx);
        if self.next_hello.is_some_and(|t| t <= cx.now) {
            self.greet_bootstrap(cx);
        }
        if self.next_gossip <= cx.now && self.started {
            self.next_gossip = cx.now + GOSSIP_INTERVAL;
            let n = self.known.len() as u32;
            if n > 0 {
                let k = self.known[(cx.rng.next_u32() % n) as usize].info;
                self.hello_to(cx, k.node_id, k.endpoint);
            }
        }
        self.peers.handle_timeout(cx);
        self.dht.handle_timeout(cx.now);
        while let Some(Expired::Release(ip)) = self.statics.handle_timeout(cx.now, cx.stats) {
            info!("overlay: static {} released after silence", ip);
            self.release_ip(cx, ip);
        }
        self.pump_with(cx, site);
    }

    /// When [`Overlay::handle_timeout`] should run next.
    pub fn poll_at(&self) -> Option<Instant> {
        let settle = (self.started && !self.dht_started).then(|| {
            if self.bootstrap.iter().all(|&(_, answered)| answered) {
                self.settle_at
            } else {
                self.settle_at.max(self.settle_deadline)
            }
        });
        let names = self
            .names
            .iter()
            .filter_map(|e| match e.state {
                NameState::Waiting { at, .. } if self.dht_started => Some(at),
                _ => None,
            })
            .min();
        let bcast = self.bcast.poll_at().filter(|_| self.dht_started);
        [
            self.dht.poll_at(),
            self.peers.poll_at(),
            self.next_hello,
            Some(self.next_gossip),
            settle,
            names,
            bcast,
            self.reserve_poll_at(),
            self.statics.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Broadcast glue (the logic is in [`crate::bcast`]).
impl Overlay {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The broadcast state.
    pub fn bcast(&self) -> &Bcast {
        &self.bcast
    }

    /// The broadcast state, mutable (groups, buckets, windows).
    pub fn bcast_mut(&mut self) -> &mut Bcast {
        &mut self.bcast
    }

    /// When due: our member record in `bcast` (routers with an advertised endpoint) and a read of
    /// the set. An op that cannot start now is tried at the next refresh.
    fn bcast_refresh(&mut self, cx: &mut Cx<'_>) {
        if !self.dht_started || !self.bcast.refresh_due(cx.now) {
            return;
        }
        let key = self.dht.key(Kind::Bcast, b"");
        let mut ops: Vec<OpId, 2> = Vec::new();
        let mut c = [0u8; 19];
        let n = self.contact(&mut c);
        if self.lan && n > 0 {
            if let Ok(op) = self.dht.append(cx.now, key, &c[..n], crate::bcast::MEMBER_TTL) {
                let _ = ops.push(op);
            }
        }
        if let Ok(op) = self.dht.read(cx.now, key, Kind::Bcast) {
            let _ = ops.push(op);
        }
        self.bcast.refreshed(cx.now, &ops);
    }

    /// Introduce ourselves to the members we have no session with, so their copies are accepted.
    fn bcast_meet(&mut self, cx: &mut Cx<'_>) {
        let mut new: Vec<(NodeId, SocketAddr), { dht::BCAST_MAX }> = Vec::new();
        for &(id, ep) in self.bcast.members() {
            if self.peers.get(&id).is_none() {
                let _ = new.push((id, ep));
            }
        }
        for (id, ep) in new {
            let _ = self.peers.insert(cx, id, ep);
            self.hello_to(cx, id, ep);
        }
    }
}

/// Proxy ARP's view of the route cache: a lookup is a DHT read.
impl RemoteRoutes for Overlay {
    fn route(&self, now: Instant, ip: Ipv4Address) -> RemoteRoute {
        if Overlay::route(self, now, ip).is_some() {
            RemoteRoute::Remote
        } else if self.reading(ip) {
            RemoteRoute::Pending
        } else {
            RemoteRoute::Unknown
        }
    }
    fn begin_lookup(&mut self, now: Instant, ip: Ipv4Address) -> bool {
        self.resolve(now, ip)
    }
}

/// DNS's view of the hostnames: a name another node holds is not answered locally, and a name no
/// table here knows is a DHT read.
impl HostLookup for Overlay {
    fn shadowed(&self, label: &str) -> bool {
        // An admin's name is answered from the DHT, never from a lease's entry in the local table.
        self.names.iter().any(|e| {
            e.name.as_str() == label
                && (e.source == NameSource::Admin || matches!(e.state, NameState::Waiting { lost: true, .. }))
        })
    }

    fn begin_host_lookup(&mut self, now: Instant, label: &str) -> bool {
        let Ok(label) = HostLabel::try_from(label) else { return false };
        if self.ops.iter().any(|(_, p)| matches!(p, Purpose::HostRead(l) if *l == label)) {
            return true;
        }
        if self.ops.is_full() {
            return false;
        }
        let key = self.host_key(&label);
        match self.dht.read(now, key, Kind::Host) {
            Ok(op) => {
                let _ = self.ops.push((op, Purpose::HostRead(label)));
                true
            }
            Err(_) => false,
        }
    }
}

/// Static addresses (DESIGN.md "static claims"; see [`crate::statics`]).
impl Overlay {
    /// A frame from `(ip, mac)`, `ip` in the static range: `true` when the node must send the check
    /// ARP now. `bound` says whether DHCP has bound `ip` here (asked only for a new address).
    pub fn static_seen(
        &mut self,
        cx: &mut Cx<'_>,
        ip: Ipv4Address,
        mac: smoltcp::wire::EthernetAddress,
        bound: &dyn Fn(Ipv4Address) -> bool,
    ) -> bool {
        if !self.lan || !self.dht_started {
            return false;
        }
        if !self.statics.tracks(ip) && (bound(ip) || self.pool.find(ip).is_some() || self.is_reserved(ip)) {
            return false;
        }
        self.statics.seen(cx.now, cx.stats, ip, mac)
    }

    /// A reply to the router's check from `(ip, mac)`: claims `ip` when it confirms a running check.
    pub fn static_confirmed(
        &mut self,
        cx: &mut Cx<'_>,
        ip: Ipv4Address,
        mac: smoltcp::wire::EthernetAddress,
    ) {
        if !self.statics.confirmed(cx.now, ip, mac) {
            return;
        }
        debug!("overlay: static {} confirmed at {}", ip, mac);
        self.static_claim(cx, ip, 0);
    }

    fn static_claim(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address, after: u64) {
        let key = self.ip_key(ip);
        let mut c = [0u8; 19];
        let n = self.contact(&mut c);
        let op = if self.ops.is_full() {
            None
        } else {
            self.dht.create(cx.now, key, Kind::Ip, &ip.octets(), &c[..n], IP_TTL, after).ok()
        };
        match op {
            Some(op) => {
                let _ = self.ops.push((op, Purpose::Static(ip)));
            }
            None => {
                cx.stats.static_claims_failed += 1;
                self.statics.failed(ip);
            }
        }
    }

    fn static_result(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address, outcome: Result<Outcome, OpError>) {
        match outcome {
            Ok(Outcome::Created { .. }) => {
                info!("overlay: static {} claimed", ip);
                self.statics.held(ip);
            }
            Err(OpError::Conflict(s)) if s.owner == self.me => self.static_claim(cx, ip, s.gen),
            Err(OpError::Conflict(s)) => {
                self.set_route(cx.now, ip, Some(s.owner), None);
                if let Some(mac) = self.statics.refused(cx.now, ip) {
                    warn!("overlay: static {} at {} is held by {}", ip, mac, s.owner);
                    cx.stats.static_conflicts += 1;
                    cx.event(crate::event::Event::StaticConflict { ip, mac, owner: Some(s.owner) });
                }
            }
            _ => {
                cx.stats.static_claims_failed += 1;
                self.statics.failed(ip);
            }
        }
    }

    fn static_lost(&mut self, cx: &mut Cx<'_>, key: &Key, by: Option<NodeId>) {
        let Some(ip) = self.statics.held_ips().find(|ip| self.ip_key(*ip) == *key) else { return };
        if let Some(mac) = self.statics.refused(cx.now, ip) {
            warn!("overlay: lost our static claim on {}", ip);
            cx.stats.static_conflicts += 1;
            cx.event(crate::event::Event::StaticConflict { ip, mac, owner: by });
        }
    }

    /// Deletes our `ip:` record of `ip` (a static host went silent).
    fn release_ip(&mut self, cx: &mut Cx<'_>, ip: Ipv4Address) {
        let key = self.ip_key(ip);
        if let Some(gen) = self.dht.claim_gen(&key) {
            if let Ok(op) = self.dht.delete(cx.now, key, Kind::Ip, &ip.octets(), gen) {
                let _ = self.ops.push((op, Purpose::Delete));
            }
        }
    }

    /// Whether frames from static address `ip` at `mac` may be tunnelled: held here for that MAC.
    pub fn static_allows(&self, now: Instant, ip: Ipv4Address, mac: smoltcp::wire::EthernetAddress) -> bool {
        self.statics.allows(ip, mac) && self.holds_ip(now, ip)
    }

    /// The static-address table.
    pub fn statics(&self) -> &Statics {
        &self.statics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_through_record_values() {
        for e in ["192.0.2.1:51820", "[2001:db8::1]:4500"] {
            let e: SocketAddr = e.parse().unwrap();
            let mut b = [0xa5u8; 19];
            let n = encode_endpoint(&e, &mut b);
            assert_eq!(decode_endpoint(&b[..n]), Some(e));
            assert_eq!(decode_endpoint(&b[..n - 1]), None);
        }
        assert_eq!(decode_endpoint(&[]), None);
        assert_eq!(decode_endpoint(&[4, 1, 2, 3, 4, 0, 80]), Some("1.2.3.4:80".parse().unwrap()));
    }
}
