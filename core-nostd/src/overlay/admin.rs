//! What hostctl asks of the overlay (DESIGN.md `command(now, Command)`): DHT reads on an admin's
//! behalf, and addresses reserved by the admin.
//!
//! A reserved address is claimed as `ip:<addr>` like any pool address (same TTL, renewed by the
//! engine) but lives outside the [`super::DhtPool`]: refill never picks it, a lease ending on it never
//! gives it back, and DHCP sees it only through the node's reservation table. A claim that fails
//! (another owner, no quorum) is retried every [`RESERVE_RETRY`]; a lost lease is claimed again the
//! same way. Results of claims started by a command, and of admin reads, come back through
//! [`super::Overlay::take_admin_done`] keyed by the caller's command number.
//!
//! **hostctl over the overlay** (DESIGN.md "hostctl"): an admin's laptop joins the secured overlay as
//! a client with a certificate that has the admin role and sends [`ControlRepr::Admin`] requests (a
//! control-socket request line) inside its session. A request whose session certificate has no
//! [`cert::roles::ADMIN`] role, or that arrives on an unsecured overlay, is answered
//! [`AdminStatus::Refused`] and counted (`admin_refused`); one that finds [`ADMIN_REQUESTS`] waiting
//! is answered [`AdminStatus::Busy`] (`admin_busy`). The others wait for the runtime
//! ([`Overlay::take_admin_call`]), which executes them as it does its control socket's and answers
//! with [`Overlay::send_admin_reply`]: the answer travels in parts of at most [`ADMIN_PART_MAX`]
//! bytes. On the requester's side the parts wait for [`Overlay::take_admin_part`] (at most
//! [`ADMIN_REPLIES`]; beyond it the oldest is dropped, `admin_replies_dropped`).

use core::net::SocketAddr;

use heapless::Vec;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Address;

use super::{Overlay, Purpose, IP_TTL};
use crate::cert;
use crate::dht::{Key, Kind, OpError, Outcome};
use crate::id::NodeId;
use crate::queue::Cx;
use crate::session::PeerIdentity;
use crate::wire::control::{
    AdminReply, AdminRequest, AdminStatus, ControlRepr, ADMIN_PART_MAX, ADMIN_REQUEST_MAX,
};

/// Addresses the admin may reserve on one node; beyond it a reservation is refused.
pub const RESERVED: usize = 32;
/// Finished admin operations kept until taken; beyond it the oldest is dropped (the runtime's
/// request then times out).
pub const ADMIN_DONE: usize = 8;
/// Interval between attempts to claim a reserved address we do not hold.
pub const RESERVE_RETRY: Duration = Duration::from_secs(30);

/// Admin requests from the overlay waiting for the runtime; beyond it a request is answered busy.
pub const ADMIN_REQUESTS: usize = 2;
/// Admin reply parts waiting for the requester's runtime; beyond it the oldest is dropped.
pub const ADMIN_REPLIES: usize = 4;
/// Most parts of one admin answer: a longer answer is refused by [`Overlay::send_admin_reply`].
pub const ADMIN_PARTS: usize = 32;

/// How many parts an admin answer of `len` bytes takes; `None` beyond [`ADMIN_PARTS`].
pub fn admin_parts(len: usize) -> Option<u8> {
    let parts = len.div_ceil(ADMIN_PART_MAX).max(1);
    if parts > ADMIN_PARTS {
        None
    } else {
        u8::try_from(parts).ok()
    }
}

/// An admin request from a certified admin, for the runtime to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCall {
    /// Where it came from (the answer goes there).
    pub from: SocketAddr,
    /// The admin's certified node id.
    pub peer: NodeId,
    /// The requester's id for it.
    pub id: u32,
    /// The request line.
    pub request: Vec<u8, ADMIN_REQUEST_MAX>,
}

/// One part of an answer to our admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPart {
    /// Who answered.
    pub from: SocketAddr,
    /// Our request's id.
    pub id: u32,
    /// How it went.
    pub status: AdminStatus,
    /// This part's index.
    pub part: u8,
    /// How many parts the answer has.
    pub parts: u8,
    /// The bytes.
    pub body: Vec<u8, ADMIN_PART_MAX>,
}

/// A finished admin operation: the command number and what the DHT said.
pub type AdminDone = (u32, Result<Outcome, OpError>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResState {
    /// Not claimed: claim at `at`.
    Waiting { at: Instant },
    /// A Create in flight.
    Claiming,
    /// Ours (the engine renews it; `holds_ip` says whether the lease is still valid).
    Held,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ReservedIp {
    ip: Ipv4Address,
    key: Key,
    state: ResState,
    /// The highest generation seen for the key (for the next Create).
    after: u64,
    /// The command waiting for the first claim's result.
    cmd: Option<u32>,
}

/// The overlay's admin state.
#[derive(Default)]
pub(super) struct Admin {
    reserved: Vec<ReservedIp, RESERVED>,
    done: Vec<AdminDone, ADMIN_DONE>,
    calls: Vec<AdminCall, ADMIN_REQUESTS>,
    parts: Vec<AdminPart, ADMIN_REPLIES>,
}

/// Why a reservation cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveRefused {
    /// The address is bound to a DHCP lease of this node (the caller decides whether that is the
    /// reservation's own host).
    Leased,
    /// The address is being claimed for the pool right now: try again in a second.
    Claiming,
    /// [`RESERVED`] addresses are reserved already.
    Full,
}

impl Overlay {
    /// An admin request arrived (module doc).
    pub(super) fn admin_request(
        &mut self,
        cx: &mut Cx<'_>,
        from: SocketAddr,
        auth: Option<PeerIdentity>,
        r: AdminRequest<'_>,
    ) {
        let admin = auth.filter(|a| crate::secure::Secure::has_role(a.roles, cert::roles::ADMIN));
        let status = match admin {
            None => {
                warn!("overlay: admin request from {} refused: no admin certificate", from);
                cx.stats.admin_refused += 1;
                AdminStatus::Refused
            }
            Some(_) if self.admin.calls.is_full() => {
                cx.stats.admin_busy += 1;
                AdminStatus::Busy
            }
            Some(a) => {
                let mut request = Vec::new();
                // The parser bounds the request to ADMIN_REQUEST_MAX: this cannot fail.
                let _ = request.extend_from_slice(r.request);
                let _ = self.admin.calls.push(AdminCall { from, peer: a.node_id, id: r.id, request });
                return;
            }
        };
        let m = ControlRepr::AdminReply(AdminReply { id: r.id, status, part: 0, parts: 1, body: &[] });
        Self::send(cx, from, &m);
    }

    /// A part of an answer to one of our admin requests.
    pub(super) fn admin_reply_part(&mut self, cx: &mut Cx<'_>, from: SocketAddr, r: AdminReply<'_>) {
        if self.admin.parts.is_full() {
            cx.stats.admin_replies_dropped += 1;
            self.admin.parts.remove(0);
        }
        let mut body = Vec::new();
        // The parser bounds the part to ADMIN_PART_MAX: this cannot fail.
        let _ = body.extend_from_slice(r.body);
        let p = AdminPart { from, id: r.id, status: r.status, part: r.part, parts: r.parts, body };
        let _ = self.admin.parts.push(p);
    }

    /// The next admin request for the runtime to execute.
    pub fn take_admin_call(&mut self) -> Option<AdminCall> {
        (!self.admin.calls.is_empty()).then(|| self.admin.calls.remove(0))
    }

    /// The next part of an answer to our admin requests.
    pub fn take_admin_part(&mut self) -> Option<AdminPart> {
        (!self.admin.parts.is_empty()).then(|| self.admin.parts.remove(0))
    }

    /// Sends part `part` of the answer `body` to admin request `id` from `to` (the runtime sends
    /// the parts one by one, draining the output queue between them: [`admin_parts`] says how
    /// many). False (nothing sent) when the answer has no such part or more than [`ADMIN_PARTS`].
    pub fn send_admin_reply(
        &mut self,
        cx: &mut Cx<'_>,
        to: SocketAddr,
        id: u32,
        status: AdminStatus,
        body: &[u8],
        part: u8,
    ) -> bool {
        let Some(parts) = admin_parts(body.len()) else { return false };
        if part >= parts {
            return false;
        }
        let start = usize::from(part) * ADMIN_PART_MAX;
        let chunk = body.get(start..body.len().min(start + ADMIN_PART_MAX)).unwrap_or(&[]);
        let r = AdminReply { id, status, part, parts, body: chunk };
        Self::send(cx, to, &ControlRepr::AdminReply(r))
    }

    /// Sends admin request `request` (at most [`ADMIN_REQUEST_MAX`] bytes, else false) to `to`.
    pub fn send_admin_request(&mut self, cx: &mut Cx<'_>, to: SocketAddr, id: u32, request: &[u8]) -> bool {
        if request.len() > ADMIN_REQUEST_MAX {
            return false;
        }
        Self::send(cx, to, &ControlRepr::Admin(AdminRequest { id, request }))
    }

    /// Starts a read of `kind`:`name` for command `cmd`; its outcome comes back from
    /// [`Overlay::take_admin_done`].
    pub fn admin_read(&mut self, now: Instant, kind: Kind, name: &[u8], cmd: u32) -> Result<(), OpError> {
        if self.ops.is_full() {
            return Err(OpError::Busy);
        }
        let key = self.dht.key(kind, name);
        let op = self.dht.read(now, key, kind)?;
        let _ = self.ops.push((op, Purpose::Admin(cmd)));
        Ok(())
    }

    /// Reserves `ip` for this node: claimed in the DHT now, or as soon as the DHT client runs, and
    /// kept until the node stops. `Ok(Some(gen))` when it is ours already (a free pool address moved
    /// out of the pool, or reserved before); `Ok(None)` when a claim was started or queued, its
    /// outcome for `cmd` coming from [`Overlay::take_admin_done`]. With `leased_ok` an address bound
    /// to a lease here is taken over too (the lease's host is the reservation's).
    pub fn reserve_ip(
        &mut self,
        cx: &mut Cx<'_>,
        ip: Ipv4Address,
        leased_ok: bool,
        cmd: Option<u32>,
    ) -> Result<Option<u64>, ReserveRefused> {
        let key = self.ip_key(ip);
        if let Some(r) = self.admin.reserved.iter_mut().find(|r| r.ip == ip) {
            if r.state == ResState::Held && self.dht.holds(cx.now, &key) {
                return Ok(self.dht.claim_gen(&key));
            }
            // Claim again now, reporting to this command.
            r.cmd = cmd.or(r.cmd);
            if let ResState::Waiting { .. } = r.state {
                r.state = ResState::Waiting { at: cx.now };
            }
            self.retry_reserved(cx);
            return Ok(None);
        }
        if self.admin.reserved.is_full() {
            return Err(ReserveRefused::Full);
        }
        let mut state = ResState::Waiting { at: cx.now };
        if let Some(i) = self.pool.find(ip) {
            let e = self.pool.entries[i];
            if e.state == super::ClaimState::Claiming {
                return Err(ReserveRefused::Claiming);
            }
            if e.bound && !leased_ok {
                return Err(ReserveRefused::Leased);
            }
            // Our claim already: it changes hands from the pool to the reservation.
            self.pool.entries.swap_remove(i);
            state = ResState::Held;
        }
        let r = ReservedIp { ip, key, state, after: 0, cmd };
        // Cannot fail: checked for room above.
        let _ = self.admin.reserved.push(r);
        if state == ResState::Held && self.dht.holds(cx.now, &key) {
            if let Some(r) = self.admin.reserved.last_mut() {
                r.cmd = None;
            }
            return Ok(self.dht.claim_gen(&key));
        }
        self.retry_reserved(cx);
        Ok(None)
    }

    /// Whether `ip` is reserved on this node (held or not).
    pub fn is_reserved(&self, ip: Ipv4Address) -> bool {
        self.admin.reserved.iter().any(|r| r.ip == ip)
    }

    /// The reserved addresses this node holds now.
    pub fn reserved_held(&self, now: Instant) -> impl Iterator<Item = Ipv4Address> + '_ {
        self.admin.reserved.iter().filter(move |r| self.dht.holds(now, &r.key)).map(|r| r.ip)
    }

    /// The next finished admin operation.
    pub fn take_admin_done(&mut self) -> Option<AdminDone> {
        if self.admin.done.is_empty() {
            None
        } else {
            Some(self.admin.done.remove(0))
        }
    }

    fn admin_finish(&mut self, cmd: u32, outcome: Result<Outcome, OpError>) {
        if self.admin.done.is_full() {
            let _ = self.admin.done.remove(0);
        }
        let _ = self.admin.done.push((cmd, outcome));
    }

    /// The result of an admin read.
    pub(super) fn admin_result(&mut self, cmd: u32, outcome: Result<Outcome, OpError>) {
        self.admin_finish(cmd, outcome);
    }

    /// The result of the claim of reserved `ip`. A command's claim that another node holds ends the
    /// reservation (the command reports the conflict); a restored one keeps trying.
    pub(super) fn reserve_result(
        &mut self,
        cx: &mut Cx<'_>,
        ip: Ipv4Address,
        outcome: Result<Outcome, OpError>,
    ) {
        let me = self.me;
        let Some(i) = self.admin.reserved.iter().position(|r| r.ip == ip) else {
            // Unreserved while the Create ran: give the record up.
            if let Ok(Outcome::Created { gen }) = outcome {
                let key = self.ip_key(ip);
                if let Ok(op) = self.dht.delete(cx.now, key, Kind::Ip, &ip.octets(), gen) {
                    let _ = self.ops.push((op, Purpose::Delete));
                }
            }
            return;
        };
        let cmd = self.admin.reserved[i].cmd.take();
        match outcome {
            Ok(Outcome::Created { gen }) => {
                info!("overlay: reserved {} at generation {}", ip, gen);
                self.admin.reserved[i].after = gen;
                self.admin.reserved[i].state = ResState::Held;
                if let Some(c) = cmd {
                    self.admin_finish(c, Ok(Outcome::Created { gen }));
                }
            }
            Err(OpError::Conflict(s)) if s.owner == me => {
                // Our own record from before (a restart): take it at a higher generation.
                self.admin.reserved[i].after = s.gen;
                self.admin.reserved[i].cmd = cmd;
                self.admin.reserved[i].state = ResState::Waiting { at: cx.now };
                self.retry_reserved(cx);
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    // A Create answers Created or an error; anything else is a confused engine.
                    Ok(_) => OpError::Timeout,
                };
                if let OpError::Conflict(s) = e {
                    self.admin.reserved[i].after = self.admin.reserved[i].after.max(s.gen);
                }
                match cmd {
                    Some(c) => {
                        self.admin.reserved.swap_remove(i);
                        self.admin_finish(c, Err(e));
                    }
                    None => self.admin.reserved[i].state = ResState::Waiting { at: cx.now + RESERVE_RETRY },
                }
            }
        }
    }

    /// Our lease on a reserved key was lost: claim it again later.
    pub(super) fn reserve_lost(&mut self, now: Instant, key: &Key) {
        if let Some(r) = self.admin.reserved.iter_mut().find(|r| r.key == *key) {
            warn!("overlay: lost our reserved {}", r.ip);
            r.state = ResState::Waiting { at: now + RESERVE_RETRY };
        }
    }

    /// Starts the claims of reserved addresses whose turn has come (only while our node lease is
    /// valid: ip writes need it).
    pub(super) fn retry_reserved(&mut self, cx: &mut Cx<'_>) {
        if !self.dht_started {
            return;
        }
        if self.dht.node_lease().is_none_or(|e| e <= cx.now) {
            // Look again shortly (the node record is being created or renewed).
            for r in self.admin.reserved.iter_mut() {
                if let ResState::Waiting { at } = r.state {
                    r.state = ResState::Waiting { at: at.max(cx.now + Duration::from_secs(1)) };
                }
            }
            return;
        }
        let mut c = [0u8; 19];
        let n = self.contact(&mut c);
        for i in 0..self.admin.reserved.len() {
            let r = self.admin.reserved[i];
            let ResState::Waiting { at } = r.state else { continue };
            if at > cx.now || self.ops.is_full() {
                continue;
            }
            match self.dht.create(cx.now, r.key, Kind::Ip, &r.ip.octets(), &c[..n], IP_TTL, r.after) {
                Ok(op) => {
                    let _ = self.ops.push((op, Purpose::Reserve(r.ip)));
                    self.admin.reserved[i].state = ResState::Claiming;
                }
                Err(_) => self.admin.reserved[i].state = ResState::Waiting { at: cx.now + RESERVE_RETRY },
            }
        }
    }

    /// The next time a reserved address is due for a claim.
    pub(super) fn reserve_poll_at(&self) -> Option<Instant> {
        if !self.dht_started {
            return None;
        }
        self.admin
            .reserved
            .iter()
            .filter_map(|r| match r.state {
                ResState::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }
}
