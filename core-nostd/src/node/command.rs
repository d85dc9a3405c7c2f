//! Commands from hostctl or the runtime ([`Node::command`], DESIGN.md "vn-core: the node"):
//! a DHT read on the admin's behalf, and an address reserved by the admin.
//!
//! `command` checks what it can at once and returns either an error or a [`CommandId`]; the result
//! comes later from [`Node::poll_command`] (poll it after every input, like [`Node::poll_event`]).
//! Results wait there until polled, at most [`DONE`] of them; beyond it the oldest is dropped and the
//! runtime's request times out. No event announces them: a runtime that has commands pending polls.
//!
//! **Reserve** `ip` for this node ([`Reservation`]): `ip` must be a VN host address (inside the subnet,
//! not the service block). The node claims `ip:<addr>` in the DHT (a conflict with another owner is
//! the command's error, [`CommandError::Dht`] with [`OpError::Conflict`]) and keeps the address out of
//! its DHCP pool: a client whose hardware address is the reservation's MAC gets exactly this address
//! (and no other), any other client never gets it; without a MAC nobody gets it by DHCP. The `pin`
//! flag is stored for migration (P5 refuses to move pinned addresses). A `name` is registered as an
//! admin name ([`crate::overlay::NameSource::Admin`]): it wins over a lease's name at this node (our
//! own lease record of that name is deleted and the admin's created; see [`crate::overlay`] for a name
//! another node holds). The result is [`CommandOutput::Reserved`] once the claim is ours; the name's
//! registration continues in the background. Without an overlay a reservation is local only and done
//! at once; it cannot carry a name (DNS names need the DHT). Reserving an address a lease of another
//! MAC holds here is refused ([`CommandError::InUse`]); reserving it again replaces the reservation.
//! Restored reservations ([`Node::restore_reservation`]) are claimed again and retried while another
//! node holds them.

use core::net::SocketAddr;

use heapless::{Deque, Vec};
use smoltcp::time::Instant;
use smoltcp::wire::{DhcpPacket, EthernetAddress, Ipv4Address};

use super::Node;
use crate::config::is_hostname_label;
use crate::dhcp::Allocator;
use crate::dht::{Kind, MemberView, OpError, Outcome, RecordView, BCAST_MAX, MAX_NAME};
use crate::overlay::{AdminCall, AdminPart, HostLabel, NameSource, ReserveRefused, RESERVED};
use crate::queue::Cx;
use crate::wire::control::AdminStatus;

/// Finished commands kept until [`Node::poll_command`]; beyond it the oldest is dropped.
pub const DONE: usize = 8;

/// A command's handle, to match its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u32);

/// An address held for a host by the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The address.
    pub ip: Ipv4Address,
    /// Never migrated away from this node (stored for P5).
    pub pin: bool,
    /// An admin name for it (lowercase RFC 1123 label).
    pub name: Option<HostLabel>,
    /// The host that gets it by DHCP.
    pub mac: Option<EthernetAddress>,
}

/// What the admin asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read `kind`:`name` from the DHT (a name as the keys are derived: 4 octets for `ip`, the label
    /// for `host`, the 32 id bytes for `node`; [`parse_key`] reads the text forms).
    DhtGet {
        /// The record kind.
        kind: Kind,
        /// The name.
        name: Vec<u8, MAX_NAME>,
    },
    /// Reserve an address (module doc).
    Reserve(Reservation),
}

/// A command's result.
// No heap to box the member set into.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutput {
    /// The live record with the highest generation a read quorum holds.
    Record(RecordView),
    /// A read quorum holds no live record.
    Absent,
    /// The members of a `bcast` set.
    Members(Vec<MemberView, BCAST_MAX>),
    /// The address is reserved and ours, at this DHT generation (`None` without an overlay).
    Reserved {
        /// The address.
        ip: Ipv4Address,
        /// Our generation of `ip:<addr>`.
        gen: Option<u64>,
    },
}

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The node has not joined an overlay.
    NoOverlay,
    /// The address is outside the VN subnet.
    NotInSubnet,
    /// The address is in the service block (or the subnet's network or broadcast address).
    ServiceAddress,
    /// The name is not a lowercase RFC 1123 label.
    BadName,
    /// The MAC is not a unicast address.
    BadMac,
    /// The key is not `ip:<IPv4>`, `host:<label>` or `node:<64 hex digits>`.
    BadKey,
    /// A DHCP lease of another host holds the address at this node.
    InUse,
    /// Another reservation here has this MAC.
    MacTaken,
    /// The reservation table is full.
    Full,
    /// The node is busy (the address is being claimed for the pool, or too many operations run).
    Busy,
    /// The DHT refused or did not answer.
    Dht(OpError),
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoOverlay => f.write_str("this node has not joined an overlay: configure one to use the DHT"),
            Self::NotInSubnet => f.write_str("the address is outside the VN subnet: choose one inside it"),
            Self::ServiceAddress => {
                f.write_str("the address is reserved for the service block: choose one above the gateway address")
            }
            Self::BadName => f.write_str(
                "the name is not a hostname label: use up to 63 letters, digits and hyphens, not starting or ending with a hyphen",
            ),
            Self::BadMac => f.write_str("the MAC is not a unicast address: give the host's own MAC"),
            Self::BadKey => f.write_str("the key is not ip:<IPv4>, host:<name> or node:<64 hex digits>: use one of those forms"),
            Self::InUse => f.write_str(
                "a lease of another host holds the address here: reserve it with that host's MAC or wait until the lease ends",
            ),
            Self::MacTaken => f.write_str("another reservation has this MAC: give each host one address"),
            Self::Full => f.write_str("the reservation table is full: remove a reservation first"),
            Self::Busy => f.write_str("the node is busy with this address or the DHT: try again in a few seconds"),
            Self::Dht(OpError::Conflict(s)) => write!(
                f,
                "node {} holds the address at generation {}: choose another address or release it there",
                s.owner, s.gen
            ),
            Self::Dht(e) => write!(f, "the DHT failed ({e}): check that storage nodes are up and try again"),
        }
    }
}

impl core::error::Error for CommandError {}

/// A command's result as [`Node::poll_command`] hands it out.
pub type CommandResult = Result<CommandOutput, CommandError>;

/// Reads a DHT key's text form: `ip:<IPv4>`, `host:<label>` (lowercased) or `node:<64 hex digits>`.
pub fn parse_key(s: &str) -> Result<(Kind, Vec<u8, MAX_NAME>), CommandError> {
    let (kind, rest) = s.split_once(':').ok_or(CommandError::BadKey)?;
    let mut name = Vec::new();
    match kind {
        "ip" => {
            let ip: Ipv4Address = rest.parse().map_err(|_| CommandError::BadKey)?;
            name.extend_from_slice(&ip.octets()).map_err(|_| CommandError::BadKey)?;
            Ok((Kind::Ip, name))
        }
        "host" => {
            let mut label = HostLabel::new();
            for c in rest.chars() {
                label.push(c.to_ascii_lowercase()).map_err(|_| CommandError::BadKey)?;
            }
            if !is_hostname_label(&label) {
                return Err(CommandError::BadKey);
            }
            name.extend_from_slice(label.as_bytes()).map_err(|_| CommandError::BadKey)?;
            Ok((Kind::Host, name))
        }
        "node" => {
            let hex = rest.as_bytes();
            if hex.len() != 64 {
                return Err(CommandError::BadKey);
            }
            for pair in hex.chunks(2) {
                let digit = |c: u8| (c as char).to_digit(16).ok_or(CommandError::BadKey);
                let b = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
                name.push(b).map_err(|_| CommandError::BadKey)?;
            }
            Ok((Kind::Node, name))
        }
        _ => Err(CommandError::BadKey),
    }
}

#[derive(Debug, Clone)]
struct Entry {
    res: Reservation,
    /// Ours now (refreshed before DHCP looks).
    held: bool,
}

/// The node's command state: reservations, reserve commands waiting for their claim, results.
#[derive(Default)]
pub(super) struct Admin {
    next: u32,
    table: Vec<Entry, RESERVED>,
    /// Reserve commands waiting for the overlay's claim: (command, address).
    waiting: Vec<(u32, Ipv4Address), RESERVED>,
    done: Deque<(CommandId, CommandResult), DONE>,
}

impl Admin {
    fn finish(&mut self, id: CommandId, r: CommandResult) {
        if self.done.is_full() {
            self.done.pop_front();
        }
        let _ = self.done.push_back((id, r));
    }

    /// Whether `ip` is reserved with an admin name.
    pub(super) fn named(&self, ip: Ipv4Address) -> bool {
        self.table.iter().any(|e| e.res.ip == ip && e.res.name.is_some())
    }

    fn next_id(&mut self) -> CommandId {
        self.next = self.next.wrapping_add(1);
        CommandId(self.next)
    }
}

/// DHCP's allocator with the reservations applied for one client (module doc).
pub(super) struct Reserved<'a> {
    inner: &'a mut dyn Allocator,
    table: &'a [Entry],
    client: EthernetAddress,
}

impl Reserved<'_> {
    fn mine(&self) -> Option<&Entry> {
        self.table.iter().find(|e| e.res.mac == Some(self.client))
    }
    fn reserved(&self, ip: Ipv4Address) -> bool {
        self.table.iter().any(|e| e.res.ip == ip)
    }
}

impl Allocator for Reserved<'_> {
    fn owns(&self, ip: Ipv4Address) -> bool {
        match self.mine() {
            Some(e) => e.res.ip == ip && e.held,
            None => !self.reserved(ip) && self.inner.owns(ip),
        }
    }
    fn candidates(&self) -> u32 {
        self.inner.candidates()
    }
    fn candidate(&self, i: u32) -> Option<Ipv4Address> {
        self.inner.candidate(i)
    }
    fn short(&mut self) -> bool {
        self.mine().is_none() && self.inner.short()
    }
    fn pick(
        &self,
        hash: u32,
        limit: u32,
        is_free: &mut dyn FnMut(Ipv4Address) -> bool,
    ) -> Option<Ipv4Address> {
        if let Some(e) = self.mine() {
            return (e.held && is_free(e.res.ip)).then_some(e.res.ip);
        }
        self.inner.pick(hash, limit, &mut |ip| !self.reserved(ip) && is_free(ip))
    }
}

/// The client hardware address of a DHCP message (a relayed one's differs from the frame's source).
pub(super) fn chaddr(payload: &[u8]) -> Option<EthernetAddress> {
    let p = DhcpPacket::new_checked(payload).ok()?;
    Some(p.client_hardware_address())
}

impl<const LEASES: usize, const HOSTS: usize, const DNSQ: usize, const TXQ: usize, const EVQ: usize>
    Node<LEASES, HOSTS, DNSQ, TXQ, EVQ>
{
    /// Starts `cmd` (module doc). Errors found at once are returned; otherwise the result comes from
    /// [`Node::poll_command`] under the returned id.
    pub fn command(&mut self, now: Instant, cmd: Command) -> Result<CommandId, CommandError> {
        self.ensure_started(now);
        let r = match cmd {
            Command::DhtGet { kind, name } => {
                let id = self.admin.next_id();
                let o = self.overlay.as_mut().ok_or(CommandError::NoOverlay)?;
                o.admin_read(now, kind, &name, id.0).map_err(CommandError::Dht)?;
                let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                o.pump_with(&mut cx, &self.site);
                Ok(id)
            }
            Command::Reserve(res) => {
                let id = self.admin.next_id();
                self.reserve(now, res, Some(id)).map(|()| id)
            }
        };
        self.drain_routes(now);
        r
    }

    /// The next admin request from the overlay, from a certified admin (see
    /// [`crate::overlay::AdminCall`]): execute it like a control-socket request and answer with
    /// [`Node::admin_answer`]. Poll it after every overlay input.
    pub fn poll_admin_call(&mut self) -> Option<AdminCall> {
        self.overlay.as_mut()?.take_admin_call()
    }

    /// Sends part `part` of the answer `body` to admin request `id` from `to`, sealed in the
    /// session. Send the parts ([`crate::overlay::admin_parts`] of them) one by one, polling
    /// transmits between them. False when there is no overlay, no such part, or the answer is too long.
    pub fn admin_answer(
        &mut self,
        now: Instant,
        to: SocketAddr,
        id: u32,
        status: AdminStatus,
        body: &[u8],
        part: u8,
    ) -> bool {
        let Some(o) = self.overlay.as_mut() else { return false };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        o.send_admin_reply(&mut cx, to, id, status, body, part)
    }

    /// Sends an admin request to the node at `to` (hostctl's client node): it waits for the session
    /// like any output; the answer's parts come from [`Node::poll_admin_part`]. False without an
    /// overlay or when `request` is too long.
    pub fn admin_ask(&mut self, now: Instant, to: SocketAddr, id: u32, request: &[u8]) -> bool {
        self.ensure_started(now);
        let Some(o) = self.overlay.as_mut() else { return false };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        o.send_admin_request(&mut cx, to, id, request)
    }

    /// The next part of an answer to [`Node::admin_ask`].
    pub fn poll_admin_part(&mut self) -> Option<AdminPart> {
        self.overlay.as_mut()?.take_admin_part()
    }

    /// The next finished command.
    pub fn poll_command(&mut self) -> Option<(CommandId, CommandResult)> {
        self.admin.done.pop_front()
    }

    /// Reload a persisted reservation (at start, before the bindings): claimed again once the DHT
    /// client runs, retried while another node holds it.
    pub fn restore_reservation(&mut self, now: Instant, res: Reservation) -> Result<(), CommandError> {
        self.reserve(now, res, None)
    }

    /// The reservations, with whether each address is ours now.
    pub fn reservations(&self, now: Instant) -> impl Iterator<Item = (&Reservation, bool)> + '_ {
        self.admin.table.iter().map(move |e| (&e.res, self.reservation_held(now, e.res.ip)))
    }

    fn reservation_held(&self, now: Instant, ip: Ipv4Address) -> bool {
        self.overlay.as_ref().is_none_or(|o| o.holds_ip(now, ip))
    }

    fn reserve(&mut self, now: Instant, res: Reservation, id: Option<CommandId>) -> Result<(), CommandError> {
        let params = &self.site.params;
        if !params.subnet.contains_addr(&res.ip) {
            return Err(CommandError::NotInSubnet);
        }
        if !params.is_vn_host(res.ip) {
            return Err(CommandError::ServiceAddress);
        }
        if res.name.as_ref().is_some_and(|n| !is_hostname_label(n)) {
            return Err(CommandError::BadName);
        }
        if res.mac.is_some_and(|m| !m.is_unicast()) {
            return Err(CommandError::BadMac);
        }
        if res.mac.is_some() && self.admin.table.iter().any(|e| e.res.mac == res.mac && e.res.ip != res.ip) {
            return Err(CommandError::MacTaken);
        }
        let lease = self.dhcp.bindings(now).find(|b| b.ip == res.ip).map(|b| b.mac);
        if lease.is_some_and(|m| Some(m) != res.mac) {
            return Err(CommandError::InUse);
        }
        let slot = self.admin.table.iter().position(|e| e.res.ip == res.ip);
        if slot.is_none() && self.admin.table.is_full() {
            return Err(CommandError::Full);
        }
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        let gen = match self.overlay.as_mut() {
            None if res.name.is_some() => return Err(CommandError::NoOverlay),
            None => Some(None),
            Some(o) => {
                let r = o.reserve_ip(&mut cx, res.ip, lease.is_some(), id.map(|i| i.0));
                let gen = match r {
                    Ok(Some(gen)) => Some(Some(gen)),
                    Ok(None) => None,
                    Err(ReserveRefused::Leased) => return Err(CommandError::InUse),
                    Err(ReserveRefused::Claiming) => return Err(CommandError::Busy),
                    Err(ReserveRefused::Full) => return Err(CommandError::Full),
                };
                if let Some(name) = &res.name {
                    o.register_name(&mut cx, name, res.ip, NameSource::Admin);
                }
                o.pump_with(&mut cx, &self.site);
                gen
            }
        };
        info!("reserved {} (pin {})", res.ip, res.pin);
        let ip = res.ip;
        let entry = Entry { res, held: false };
        match slot {
            Some(i) => self.admin.table[i] = entry,
            // Cannot fail: checked for room above.
            None => drop(self.admin.table.push(entry)),
        }
        if let Some(id) = id {
            match gen {
                Some(gen) => self.admin.finish(id, Ok(CommandOutput::Reserved { ip, gen })),
                None => {
                    self.admin.waiting.retain(|w| w.1 != ip);
                    let _ = self.admin.waiting.push((id.0, ip));
                }
            }
        }
        Ok(())
    }

    /// Takes the overlay's finished admin operations into command results (called with the route
    /// and hostname results after every input).
    pub(super) fn drain_commands(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else { return };
        while let Some((cmd, outcome)) = o.take_admin_done() {
            let id = CommandId(cmd);
            let reserve = self.admin.waiting.iter().position(|w| w.0 == cmd);
            let result = match (reserve, outcome) {
                (Some(i), outcome) => {
                    let (_, ip) = self.admin.waiting.swap_remove(i);
                    match outcome {
                        Ok(Outcome::Created { gen }) => Ok(CommandOutput::Reserved { ip, gen: Some(gen) }),
                        other => {
                            // The claim failed: the reservation (and its name) ends.
                            self.admin.table.retain(|e| e.res.ip != ip);
                            let mut cx =
                                Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                            o.unregister_ip(&mut cx, ip);
                            Err(CommandError::Dht(other.err().unwrap_or(OpError::Timeout)))
                        }
                    }
                }
                (None, Ok(Outcome::Found(rec))) => Ok(CommandOutput::Record(rec)),
                (None, Ok(Outcome::Absent)) => Ok(CommandOutput::Absent),
                (None, Ok(Outcome::Members(m))) => Ok(CommandOutput::Members(m)),
                (None, Ok(_)) => Err(CommandError::Dht(OpError::Timeout)),
                (None, Err(e)) => Err(CommandError::Dht(e)),
            };
            self.admin.finish(id, result);
        }
    }

    /// Whether each reserved address is ours now, for DHCP.
    pub(super) fn refresh_reservations(&mut self, now: Instant) {
        for i in 0..self.admin.table.len() {
            let ip = self.admin.table[i].res.ip;
            self.admin.table[i].held = self.reservation_held(now, ip);
        }
    }
}

/// Wraps `inner` with the reservations for DHCP client `client`.
pub(super) fn with_reservations<'a>(
    admin: &'a Admin,
    inner: &'a mut dyn Allocator,
    client: EthernetAddress,
) -> Reserved<'a> {
    Reserved { inner, table: &admin.table, client }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NamespaceParams, Site};
    use smoltcp::wire::Ipv4Cidr;

    fn node() -> crate::node::DefaultNode {
        let params =
            NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
        Node::new(Site::new(params).unwrap(), 7)
    }

    #[test]
    fn keys_parse_from_their_text_forms() {
        let (k, n) = parse_key("ip:10.250.1.5").unwrap();
        assert_eq!((k, &n[..]), (Kind::Ip, &[10, 250, 1, 5][..]));
        let (k, n) = parse_key("host:Printer").unwrap();
        assert_eq!((k, &n[..]), (Kind::Host, &b"printer"[..]));
        let hex = "0a".repeat(32);
        let (k, n) = parse_key(&std::format!("node:{hex}")).unwrap();
        assert_eq!((k, &n[..]), (Kind::Node, &[0x0a; 32][..]));
        for bad in ["ip:10.250.1", "host:-x", "host:", "node:0a", "node:zz", "mac:x", "10.250.1.5", ""] {
            assert_eq!(parse_key(bad), Err(CommandError::BadKey), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let e =
            CommandError::Dht(OpError::Conflict(crate::dht::Stamp { owner: crate::NodeId([1; 32]), gen: 4 }));
        let s = std::format!("{e}");
        assert!(s.contains("generation 4") && s.contains("choose another address"), "{s}");
        assert!(std::format!("{}", CommandError::InUse).contains("wait until the lease ends"));
    }

    #[test]
    fn a_local_reservation_is_done_at_once_and_checked() {
        let mut n = node();
        let now = Instant::from_secs(1);
        let ip = Ipv4Address::new(10, 250, 1, 5);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let res = Reservation { ip, pin: true, name: None, mac: Some(mac) };
        let id = n.command(now, Command::Reserve(res.clone())).unwrap();
        assert_eq!(n.poll_command(), Some((id, Ok(CommandOutput::Reserved { ip, gen: None }))));
        assert_eq!(n.poll_command(), None);
        // One address per MAC; names need the DHT; broadcast MACs and service addresses are refused.
        let other = Reservation { ip: Ipv4Address::new(10, 250, 1, 6), ..res.clone() };
        assert_eq!(n.command(now, Command::Reserve(other)), Err(CommandError::MacTaken));
        let named = Reservation { name: Some("x".try_into().unwrap()), ..res.clone() };
        assert_eq!(n.command(now, Command::Reserve(named)), Err(CommandError::NoOverlay));
        let bcast = Reservation { mac: Some(EthernetAddress::BROADCAST), ..res.clone() };
        assert_eq!(n.command(now, Command::Reserve(bcast)), Err(CommandError::BadMac));
        let gw = Reservation { ip: Ipv4Address::new(10, 250, 0, 2), mac: None, ..res.clone() };
        assert_eq!(n.command(now, Command::Reserve(gw)), Err(CommandError::ServiceAddress));
        let get = Command::DhtGet { kind: Kind::Ip, name: Vec::new() };
        assert_eq!(n.command(now, get), Err(CommandError::NoOverlay));
        assert_eq!(n.reservations(now).collect::<std::vec::Vec<_>>(), std::vec![(&res, true)]);
    }

    /// A node on an (unsecured) overlay, to drive its admin handling with a chosen identity.
    fn overlay_node() -> crate::node::DefaultNode {
        let params =
            NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
        let cfg = crate::overlay::OverlayConfig {
            id: crate::NodeId([3; 32]),
            storage: false,
            fresh: false,
            lan: false,
            advertise: None,
            bootstrap: Vec::new(),
            signing_key: None,
        };
        Node::with_overlay(Site::new(params).unwrap(), 7, cfg)
    }

    /// Feeds `msg` to `n` as if opened from a session with `auth`; the control replies sent back.
    fn admin_in(
        n: &mut crate::node::DefaultNode,
        auth: Option<crate::session::PeerIdentity>,
        msg: &crate::wire::control::ControlRepr<'_>,
    ) -> std::vec::Vec<std::vec::Vec<u8>> {
        let now = Instant::from_secs(1);
        let from: SocketAddr = "192.0.2.9:4500".parse().unwrap();
        let mut b = [0xa5u8; 1536];
        let len = msg.emit_into(&mut b).unwrap();
        let o = n.overlay.as_mut().unwrap();
        let mut cx = Cx { now, rng: &mut n.rng, stats: &mut n.stats, out: &mut n.out };
        o.handle_control_from(&mut cx, from, auth, &b[..len]);
        let mut sent = std::vec::Vec::new();
        let mut buf = [0u8; 1536];
        while let Some(t) = n.poll_transmit(now, &mut buf) {
            if let crate::queue::Transmit::Overlay { to, len } = t {
                if to == from && buf[..len].first() == Some(&crate::wire::control::CONTROL_TYPE) {
                    sent.push(buf[..len].to_vec());
                }
            }
        }
        sent
    }

    fn reply_of(bytes: &[u8]) -> (u32, AdminStatus, u8, u8, std::vec::Vec<u8>) {
        match crate::wire::control::ControlRepr::parse_bytes(bytes) {
            Ok(crate::wire::control::ControlRepr::AdminReply(r)) => {
                (r.id, r.status, r.part, r.parts, r.body.to_vec())
            }
            other => panic!("not an admin reply: {other:?}"),
        }
    }

    /// Nodes with an overlay are large: run on a big stack.
    fn big_stack(f: fn()) {
        std::thread::Builder::new().stack_size(64 << 20).spawn(f).unwrap().join().unwrap();
    }

    #[test]
    fn admin_requests_run_only_for_admin_certificates() {
        big_stack(admin_authorization);
    }

    fn admin_authorization() {
        use crate::cert::roles;
        use crate::session::PeerIdentity;
        use crate::wire::control::{AdminRequest, ControlRepr};
        let mut n = overlay_node();
        let req = ControlRepr::Admin(AdminRequest { id: 42, request: br#"{"cmd":"status"}"# });
        // A certified router (no admin role) and an unauthenticated sender are refused, and counted.
        let router = PeerIdentity { node_id: crate::NodeId([5; 32]), roles: roles::ROUTER | roles::DHT };
        for auth in [Some(router), None] {
            let sent = admin_in(&mut n, auth, &req);
            let replies: std::vec::Vec<_> = sent.iter().map(|b| reply_of(b)).collect();
            assert_eq!(replies, std::vec![(42, AdminStatus::Refused, 0, 1, std::vec![])]);
            assert!(n.poll_admin_call().is_none());
        }
        assert_eq!(n.stats().admin_refused, 2);
        // An admin's request waits for the runtime, with the certified id.
        let admin = PeerIdentity { node_id: crate::NodeId([6; 32]), roles: roles::ADMIN };
        assert!(admin_in(&mut n, Some(admin), &req).is_empty());
        let call = n.poll_admin_call().unwrap();
        assert_eq!((call.id, call.peer, &call.request[..]), (42, admin.node_id, &br#"{"cmd":"status"}"#[..]));
        // Beyond ADMIN_REQUESTS waiting, the next is answered busy.
        for _ in 0..crate::overlay::ADMIN_REQUESTS {
            assert!(admin_in(&mut n, Some(admin), &req).is_empty());
        }
        let sent = admin_in(&mut n, Some(admin), &req);
        assert_eq!(reply_of(&sent[0]).1, AdminStatus::Busy);
        assert_eq!(n.stats().admin_busy, 1);
    }

    #[test]
    fn a_long_admin_answer_travels_in_parts_and_comes_back_whole() {
        big_stack(admin_parts_round_trip);
    }

    fn admin_parts_round_trip() {
        use crate::wire::control::ADMIN_PART_MAX;
        let mut a = overlay_node();
        let to: SocketAddr = "192.0.2.9:4500".parse().unwrap();
        let now = Instant::from_secs(1);
        let body: std::vec::Vec<u8> = (0..ADMIN_PART_MAX * 2 + 7).map(|i| (i % 251) as u8).collect();
        assert_eq!(crate::overlay::admin_parts(body.len()), Some(3));
        let mut buf = [0u8; 1536];
        let mut parts = std::vec::Vec::new();
        for part in 0..3 {
            assert!(a.admin_answer(now, to, 9, AdminStatus::Done, &body, part));
            while let Some(t) = a.poll_transmit(now, &mut buf) {
                if let crate::queue::Transmit::Overlay { to: t, len } = t {
                    if t == to && buf[0] == crate::wire::control::CONTROL_TYPE {
                        parts.push(buf[..len].to_vec());
                    }
                }
            }
        }
        assert!(!a.admin_answer(now, to, 9, AdminStatus::Done, &body, 3), "no fourth part");
        assert_eq!(parts.len(), 3);
        // The requester keeps them for its runtime, in order.
        let mut b = overlay_node();
        let mut whole = std::vec::Vec::new();
        for p in &parts {
            let repr = crate::wire::control::ControlRepr::parse_bytes(p).unwrap();
            admin_in(&mut b, None, &repr);
            let got = b.poll_admin_part().unwrap();
            assert_eq!((got.id, got.status, got.parts), (9, AdminStatus::Done, 3));
            whole.extend_from_slice(&got.body);
        }
        assert_eq!(whole, body);
        // Too long for ADMIN_PARTS parts: nothing is sent.
        let huge = std::vec![0u8; ADMIN_PART_MAX * crate::overlay::ADMIN_PARTS + 1];
        assert!(!a.admin_answer(now, to, 10, AdminStatus::Done, &huge, 0));
        assert!(!a.admin_ask(now, to, 11, &[b'x'; crate::wire::control::ADMIN_REQUEST_MAX + 1]));
    }

    struct Pool(std::vec::Vec<Ipv4Address>);
    impl Allocator for Pool {
        fn owns(&self, ip: Ipv4Address) -> bool {
            self.0.contains(&ip)
        }
        fn candidates(&self) -> u32 {
            self.0.len() as u32
        }
        fn candidate(&self, i: u32) -> Option<Ipv4Address> {
            self.0.get(i as usize).copied()
        }
    }

    #[test]
    fn dhcp_sees_a_reserved_address_only_for_its_mac() {
        let ip = |d| Ipv4Address::new(10, 250, 1, d);
        let mut pool = Pool(std::vec![ip(3), ip(4)]);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mut admin = Admin::default();
        let res = Reservation { ip: ip(4), pin: false, name: None, mac: Some(mac) };
        admin.table.push(Entry { res, held: true }).unwrap();
        let other = with_reservations(&admin, &mut pool, EthernetAddress([2, 0, 0, 0, 0, 2]));
        assert!(!other.owns(ip(4)) && other.owns(ip(3)));
        for h in 0..4 {
            assert_eq!(other.pick(h, 8, &mut |_| true), Some(ip(3)));
        }
        let mine = with_reservations(&admin, &mut pool, mac);
        assert!(mine.owns(ip(4)) && !mine.owns(ip(3)), "the reserved host gets exactly its address");
        assert_eq!(mine.pick(0, 8, &mut |_| true), Some(ip(4)));
        assert_eq!(mine.pick(0, 8, &mut |_| false), None);
        admin.table[0].held = false;
        let mine = with_reservations(&admin, &mut pool, mac);
        assert_eq!(mine.pick(0, 8, &mut |_| true), None, "not ours yet: nothing offered");
    }
}
