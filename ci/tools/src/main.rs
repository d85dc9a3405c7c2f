//! `dhcp-probe`: a raw DHCPv4 client for vngate's end-to-end tests (RFC 2131).
//!
//! Real clients (udhcpc, dhclient, dhcpcd) cover the normal paths; this one drives the paths they do not take on
//! command: many clients with invented MACs, a DECLINE, a RELEASE, a DISCOVER that must go unanswered. It runs
//! inside a host network namespace and speaks through an `AF_PACKET` socket bound to one interface, so it can use
//! any chaddr as its source MAC and needs no address on the interface. Every wait is bounded.
//!
//! Exit codes: 0 done, 1 error (usage, socket, bad reply), 2 no OFFER before the timeout, 3 NAK, 4 no ACK.
//! `discover` prints `no offer` on stdout when it exits 2.

mod json;
mod raw;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dhcproto::v4::{self, DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use crate::json::Json;
use crate::raw::{Mac, RawSocket, Received};

#[derive(Parser)]
#[command(name = "dhcp-probe", version, about = "Raw DHCPv4 test client (DORA, DISCOVER, DECLINE, RELEASE)")]
struct Cli {
    /// Interface to send and listen on (inside the current network namespace).
    #[arg(long, short = 'i', default_value = "eth0", global = true)]
    iface: String,
    /// Seconds to wait for each answer (OFFER, ACK, ARP reply), retransmitting meanwhile.
    #[arg(long, default_value_t = 8.0, global = true)]
    timeout: f64,
    /// Seconds between retransmissions of a request.
    #[arg(long, default_value_t = 2.0, global = true)]
    retransmit: f64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// DISCOVER, OFFER, REQUEST, ACK; print the lease as JSON.
    Dora(ClientArgs),
    /// DISCOVER only; print the OFFER as JSON, or exit 2 with "no offer" after the timeout.
    Discover(ClientArgs),
    /// A full DORA, then DECLINE the address; print the declined lease as JSON.
    Decline(ClientArgs),
    /// RELEASE an address (unicast to the server, its MAC found by ARP).
    Release {
        #[command(flatten)]
        client: ClientArgs,
        /// The address to release.
        #[arg(long)]
        ip: Ipv4Addr,
        /// The server identifier (option 54) of the lease.
        #[arg(long)]
        server: Ipv4Addr,
    },
}

#[derive(Args)]
struct ClientArgs {
    /// Client hardware address (chaddr and Ethernet source), e.g. 02:00:00:00:00:01.
    #[arg(long)]
    mac: Mac,
    /// Host name to send (option 12).
    #[arg(long)]
    hostname: Option<String>,
    /// Client identifier (option 61) as hex; default: none (the server keys on chaddr).
    #[arg(long)]
    client_id: Option<String>,
    /// Address to ask for in the DISCOVER (option 50).
    #[arg(long)]
    requested: Option<Ipv4Addr>,
}

/// A failure that maps to its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NoOffer,
    Nak,
    NoAck,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::NoOffer => 2,
            Outcome::Nak => 3,
            Outcome::NoAck => 4,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::NoOffer => "no offer",
            Outcome::Nak => "NAK",
            Outcome::NoAck => "no ACK",
        })
    }
}

impl std::error::Error for Outcome {}

fn main() -> ExitCode {
    // Usage errors exit 1 (clap's own 2 would read as "no offer").
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Outcome>() {
            Some(o) => {
                eprintln!("dhcp-probe: {e:#}");
                ExitCode::from(o.code())
            }
            None => {
                eprintln!("dhcp-probe: error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cli: &Cli) -> Result<()> {
    let ok = |s: f64| s > 0.0 && s <= 600.0;
    if !ok(cli.timeout) || !ok(cli.retransmit) {
        bail!("--timeout and --retransmit must be in (0, 600] seconds");
    }
    let sock = RawSocket::open(&cli.iface)?;
    let t =
        Timing { wait: Duration::from_secs_f64(cli.timeout), every: Duration::from_secs_f64(cli.retransmit) };
    match &cli.cmd {
        Cmd::Dora(a) => {
            let c = Client::new(a)?;
            let lease = c.dora(&sock, t)?;
            println!("{}", lease.to_json(&c));
        }
        Cmd::Discover(a) => {
            let c = Client::new(a)?;
            let offer = c.discover(&sock, t)?;
            println!("{}", offer.to_json(&c));
        }
        Cmd::Decline(a) => {
            let c = Client::new(a)?;
            let lease = c.dora(&sock, t)?;
            c.decline(&sock, &lease)?;
            println!("{}", lease.to_json(&c));
        }
        Cmd::Release { client, ip, server } => {
            let c = Client::new(client)?;
            let server_mac = sock.arp_resolve(c.mac, *ip, *server, t.wait, t.every)?;
            c.release(&sock, *ip, *server, server_mac)?;
            println!(
                "{}",
                Json::obj().str("released", &ip.to_string()).str("chaddr", &c.mac.to_string()).end()
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Timing {
    wait: Duration,
    every: Duration,
}

struct Client {
    mac: Mac,
    xid: u32,
    hostname: Option<String>,
    client_id: Option<Vec<u8>>,
    requested: Option<Ipv4Addr>,
}

/// What the server answered (OFFER or ACK), with the MAC it came from.
struct Reply {
    msg: Message,
    server_mac: Mac,
    kind: MessageType,
}

impl Client {
    fn new(a: &ClientArgs) -> Result<Client> {
        let client_id = match &a.client_id {
            Some(h) => Some(parse_hex(h).context("--client-id")?),
            None => None,
        };
        if let Some(h) = &a.hostname {
            if h.is_empty() || h.len() > 63 {
                bail!("--hostname must be 1 to 63 bytes");
            }
        }
        Ok(Client {
            mac: a.mac,
            xid: raw::random_u32()?,
            hostname: a.hostname.clone(),
            client_id,
            requested: a.requested,
        })
    }

    fn base(&self, kind: MessageType) -> Message {
        let u = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(self.xid, u, u, u, u, &self.mac.0);
        // Broadcast flag: the probe's interface has no address, so unicast replies to yiaddr would be dropped
        // by the kernel's IP layer anyway; the raw socket sees both.
        m.set_flags(v4::Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        if let Some(id) = &self.client_id {
            o.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(h) = &self.hostname {
            o.insert(DhcpOption::Hostname(h.clone()));
        }
        o.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
            OptionCode::InterfaceMtu,
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
            OptionCode::ClasslessStaticRoute,
        ]));
        o.insert(DhcpOption::MaxMessageSize(1500));
        m
    }

    fn discover_msg(&self) -> Message {
        let mut m = self.base(MessageType::Discover);
        if let Some(r) = self.requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(r));
        }
        m
    }

    /// Send `msg` (broadcast, from 0.0.0.0) every `t.every` until a reply of one of `want` arrives or `t.wait`
    /// passes. A NAK always ends the wait.
    fn exchange(
        &self,
        sock: &RawSocket,
        msg: &Message,
        want: MessageType,
        t: Timing,
    ) -> Result<Option<Reply>> {
        let bytes = msg.to_vec().context("encoding the DHCP message")?;
        let deadline = Instant::now() + t.wait;
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if now >= next_send {
                sock.send_udp(
                    self.mac,
                    Mac::BROADCAST,
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::BROADCAST,
                    68,
                    67,
                    &bytes,
                )?;
                next_send = now + t.every;
            }
            let until = deadline.min(next_send);
            let Some(rx) = sock.recv_udp(until, 68)? else { continue };
            let Some(reply) = self.match_reply(&rx) else { continue };
            if reply.kind == MessageType::Nak {
                let text = match reply.msg.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(s)) => format!(" ({s})"),
                    _ => String::new(),
                };
                eprintln!("dhcp-probe: NAK from {}{text}", reply.server_mac);
                return Err(Outcome::Nak.into());
            }
            if reply.kind == want {
                return Ok(Some(reply));
            }
        }
    }

    /// A BOOTREPLY for this client's xid and chaddr, or None for anything else on the wire.
    fn match_reply(&self, rx: &Received) -> Option<Reply> {
        let msg = Message::decode(&mut Decoder::new(&rx.payload)).ok()?;
        if msg.opcode() != v4::Opcode::BootReply || msg.xid() != self.xid {
            return None;
        }
        if msg.chaddr().get(..6)? != self.mac.0 {
            return None;
        }
        let kind = msg.opts().msg_type()?;
        Some(Reply { msg, server_mac: rx.src_mac, kind })
    }

    fn discover(&self, sock: &RawSocket, t: Timing) -> Result<Reply> {
        match self.exchange(sock, &self.discover_msg(), MessageType::Offer, t)? {
            Some(r) => Ok(r),
            None => {
                println!("no offer");
                Err(Outcome::NoOffer.into())
            }
        }
    }

    fn dora(&self, sock: &RawSocket, t: Timing) -> Result<Reply> {
        let offer = self.discover(sock, t)?;
        let server = server_id(&offer.msg).context("the OFFER has no server identifier (option 54)")?;
        let mut req = self.base(MessageType::Request);
        req.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.msg.yiaddr()));
        req.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        match self.exchange(sock, &req, MessageType::Ack, t)? {
            Some(ack) => {
                if ack.msg.yiaddr() != offer.msg.yiaddr() {
                    bail!("ACK for {} after an OFFER of {}", ack.msg.yiaddr(), offer.msg.yiaddr());
                }
                Ok(ack)
            }
            None => Err(Outcome::NoAck.into()),
        }
    }

    fn decline(&self, sock: &RawSocket, lease: &Reply) -> Result<()> {
        let server = server_id(&lease.msg).context("the ACK has no server identifier (option 54)")?;
        let mut m = self.base(MessageType::Decline);
        let o = m.opts_mut();
        o.remove(OptionCode::ParameterRequestList);
        o.remove(OptionCode::MaxMessageSize);
        o.insert(DhcpOption::RequestedIpAddress(lease.msg.yiaddr()));
        o.insert(DhcpOption::ServerIdentifier(server));
        o.insert(DhcpOption::Message("address in use (dhcp-probe)".into()));
        let bytes = m.to_vec().context("encoding DECLINE")?;
        // RFC 2131 §4.4.4: DECLINE is broadcast, the client has no usable address.
        sock.send_udp(self.mac, Mac::BROADCAST, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &bytes)
    }

    fn release(&self, sock: &RawSocket, ip: Ipv4Addr, server: Ipv4Addr, server_mac: Mac) -> Result<()> {
        let mut m = self.base(MessageType::Release);
        m.set_flags(v4::Flags::default());
        m.set_ciaddr(ip);
        let o = m.opts_mut();
        o.remove(OptionCode::ParameterRequestList);
        o.remove(OptionCode::MaxMessageSize);
        o.insert(DhcpOption::ServerIdentifier(server));
        let bytes = m.to_vec().context("encoding RELEASE")?;
        // RFC 2131 §4.4.6: RELEASE is unicast to the server from the leased address.
        sock.send_udp(self.mac, server_mac, ip, server, 68, 67, &bytes)
    }
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

impl Reply {
    fn to_json(&self, c: &Client) -> String {
        let o = self.msg.opts();
        let mut j = Json::obj()
            .str("type", &format!("{:?}", self.kind).to_uppercase())
            .str("chaddr", &c.mac.to_string())
            .str("ip", &self.msg.yiaddr().to_string())
            .str("server_mac", &self.server_mac.to_string());
        if let Some(s) = server_id(&self.msg) {
            j = j.str("server_id", &s.to_string());
        }
        if let Some(DhcpOption::SubnetMask(m)) = o.get(OptionCode::SubnetMask) {
            j = j.str("mask", &m.to_string());
        }
        if let Some(DhcpOption::Router(r)) = o.get(OptionCode::Router) {
            j = j.strs("routers", r.iter().map(|a| a.to_string()));
        }
        if let Some(DhcpOption::DomainNameServer(r)) = o.get(OptionCode::DomainNameServer) {
            j = j.strs("dns", r.iter().map(|a| a.to_string()));
        }
        if let Some(DhcpOption::DomainName(d)) = o.get(OptionCode::DomainName) {
            j = j.str("domain", d);
        }
        if let Some(DhcpOption::InterfaceMtu(m)) = o.get(OptionCode::InterfaceMtu) {
            j = j.num("mtu", u64::from(*m));
        }
        if let Some(DhcpOption::AddressLeaseTime(s)) = o.get(OptionCode::AddressLeaseTime) {
            j = j.num("lease_time", u64::from(*s));
        }
        if let Some(DhcpOption::Renewal(s)) = o.get(OptionCode::Renewal) {
            j = j.num("t1", u64::from(*s));
        }
        if let Some(DhcpOption::Rebinding(s)) = o.get(OptionCode::Rebinding) {
            j = j.num("t2", u64::from(*s));
        }
        // Every option as received, code -> hex of its data, for checks this summary does not cover.
        let mut raw = Json::obj();
        for (code, opt) in o.iter() {
            let data = opt.to_vec().map(|v| v.get(2..).map(hex).unwrap_or_default()).unwrap_or_default();
            raw = raw.str(&u8::from(*code).to_string(), &data);
        }
        j.raw("options", &raw.end()).end()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 2 * 255 {
        bail!("expected 1 to 255 bytes of hex, got {s:?}");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16).with_context(|| format!("bad hex {s:?}"))
        })
        .collect()
}
