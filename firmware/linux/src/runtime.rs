//! The tokio runtime around one `vn_core::Node`: the TAP (router or interface mode), the overlay's UDP
//! socket, upstream DNS sockets, the timer at `poll_at`, signals, the control socket, and the bindings
//! file written (off the packet path) before the ACKs that depend on it are released.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use vn_core::queue::{PersistToken, FRAME_CAP};
use vn_core::{dht, Event, Instant, Site, Transmit};

use crate::config::Config;
use crate::control::Request;
use crate::persist::{BindingsFile, ReservationsFile};
use vn_core::node::command::{parse_key, Command, CommandId, CommandOutput, CommandResult, Reservation};

/// The daemon's node: room for 4096 leases, 4096 LAN hosts, 256 DNS forwards in flight, 256 + 256
/// queued outputs (free and held, 768 KiB) and 256 events.
type DaemonNode = vn_core::Node<4096, 4096, 256, 256, 256>;

/// Frames read from the TAP per wake-up before outputs are flushed (and the bindings file written once
/// for all of them: a group commit under a DHCP flood).
const RX_BATCH: usize = 64;
/// How long an upstream DNS socket waits for its answer.
const UPSTREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// Send logs (ours via tracing, vn-core's via `log`) to stderr; RUST_LOG overrides the `info` default.
pub fn init_logging() {
    let _ = tracing_log::LogTracer::init();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

struct Clock(StdInstant);

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as i64)
    }
    fn std_at(&self, at: Instant) -> StdInstant {
        self.0 + std::time::Duration::from_micros(at.total_micros().max(0) as u64)
    }
}

/// Run until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<()> {
    // The node's tables are fixed-size arrays built by value before they are boxed; a debug build may
    // keep several copies on the stack, so the runtime gets a thread with room for them.
    std::thread::Builder::new()
        .name("vngate".into())
        .stack_size(64 << 20)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(serve(cfg))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the runtime thread panicked"))?
}

fn random_seed() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("OS random generator failed: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

/// The marker of a state directory whose DHT storage has voted: a founding node is fresh only
/// before it exists.
const VOTED_MARKER: &str = "dht.voted";

/// Build the node: router mode alone (P1) or joined to the overlay. The node is large (leases,
/// queues, the DHT engine): it is built on the heap.
fn build_node(
    cfg: &Config,
    site: Site,
    seed: u64,
    identity: &crate::identity::Identity,
    security: Option<vn_core::secure::SecurityConfig>,
    now: vn_core::Instant,
) -> Result<Box<DaemonNode>> {
    let Some(o) = &cfg.overlay else {
        return Ok(Box::new(DaemonNode::new(site, seed)));
    };
    let marker = cfg.state_dir.join(VOTED_MARKER);
    let fresh = o.storage && o.founding && !marker.exists();
    if o.storage {
        std::fs::write(
            &marker,
            b"this node's DHT storage has voted; it copies before voting after a restart\n",
        )
        .with_context(|| format!("cannot write {}", marker.display()))?;
    }
    let mut bootstrap = heapless::Vec::new();
    for p in &o.peers {
        bootstrap.push(*p).map_err(|_| anyhow::anyhow!("too many bootstrap peers"))?;
    }
    let oc = vn_core::OverlayConfig {
        id: identity.node_id,
        storage: o.storage,
        fresh,
        lan: cfg.tap.is_some(),
        advertise: Some(o.advertise.unwrap_or(o.listen)),
        bootstrap,
        // The daemon always signs its DHT records, and its storage side checks others'.
        signing_key: Some(identity.signing_key().to_bytes()),
    };
    info!(
        "joining the overlay as {} ({}{})",
        identity.node_id,
        if o.storage { "storage" } else { "client" },
        if fresh { ", founding: votes at once" } else { ", copies before it votes" }
    );
    let mut node = match security {
        Some(sec) => {
            info!("the overlay is secured: sessions only with nodes this namespace's CA certified");
            Box::new(DaemonNode::with_security(site, seed, oc, sec, now).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        None => Box::new(DaemonNode::with_overlay(site, seed, oc)),
    };
    node.set_preclaim(o.preclaim);
    node.set_sntp_servers(now, &cfg.security.ntp);
    Ok(node)
}

/// The overlay's UDP socket, with buffers large enough for bursts of tunnelled frames.
fn overlay_socket(listen: SocketAddr) -> Result<UdpSocket> {
    let std_sock = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("cannot bind the overlay socket {listen} (in use? wrong address?)"))?;
    std_sock.set_nonblocking(true)?;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&std_sock),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            warn!("could not enlarge the overlay socket buffer: {}", std::io::Error::last_os_error());
        }
    }
    Ok(UdpSocket::from_std(std_sock)?)
}

async fn recv_tap(tap: &Option<tokio_tun::Tun>, buf: &mut [u8]) -> std::io::Result<usize> {
    match tap {
        Some(t) => t.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn recv_overlay(sock: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn serve(cfg: Config) -> Result<()> {
    let site = Site::with_role(cfg.params.clone(), cfg.role).context("namespace parameters")?;
    let clock = Clock(StdInstant::now());

    let store = BindingsFile::new(&cfg.state_dir)
        .with_context(|| format!("cannot create the state directory {}", cfg.state_dir.display()))?;
    let (identity, created) = crate::identity::load_or_create(&cfg.state_dir)?;
    info!(
        "node id {} public key {} ({} key in {})",
        hex::encode(identity.node_id.0),
        hex::encode(identity.public_key()),
        if created { "new" } else { "existing" },
        cfg.state_dir.join(crate::identity::KEY_FILE).display()
    );
    let (noise, created) = crate::identity::load_or_create_noise(&cfg.state_dir)?;
    info!(
        "noise public key {} ({} key in {})",
        hex::encode(noise.public_key()),
        if created { "new" } else { "existing" },
        cfg.state_dir.join(crate::identity::NOISE_KEY_FILE).display()
    );
    let reading = crate::security::reading();
    let verified = crate::security::check(&cfg, Some((identity.public_key(), noise.public_key())), reading)?;
    match &verified {
        None => warn!(
            "no certificate at {}: running unsigned, as in P2 (set [security] require = true to refuse this)",
            cfg.security.cert.display()
        ),
        Some(v) => info!(
            "certificate serial {} ({}), valid until {}; namespace document version {}, revocation list version {}",
            v.info.serial,
            vn_core::cert::RoleNames(v.info.roles),
            v.info.not_after,
            v.doc_version,
            v.revocation_version
        ),
    }
    // Advanced (durably) before anything is sent: handshakes of this start carry the new value.
    let boot = crate::boot::next(&cfg.state_dir)?;
    info!("boot {boot} ({})", cfg.state_dir.join(crate::boot::BOOT_FILE).display());
    let security = match verified {
        Some(v) if cfg.overlay.is_some() => {
            let mut entropy = [0u8; 32];
            getrandom::fill(&mut entropy).map_err(|e| anyhow::anyhow!("OS random generator failed: {e}"))?;
            Some(vn_core::secure::SecurityConfig {
                noise_secret: noise.secret().to_bytes(),
                cert: heapless::Vec::from_slice(&v.cert).map_err(|_| {
                    anyhow::anyhow!("the certificate {} is too long", cfg.security.cert.display())
                })?,
                ca: v.ca,
                revoked: match v.revoked {
                    Some((_, bytes)) => Some(heapless::Vec::from_slice(&bytes).map_err(|_| {
                        anyhow::anyhow!("the revocation list {} is too long", cfg.security.revoked.display())
                    })?),
                    None => None,
                },
                boot,
                entropy,
                wall: reading.latest,
                synced: reading.synced,
            })
        }
        _ => None,
    };
    let mut node = build_node(&cfg, site, random_seed()?, &identity, security, clock.now())?;
    let (saved, bad) =
        store.load().with_context(|| format!("cannot read the bindings file {}", store.path().display()))?;
    for b in &bad {
        warn!("{}:{}: {}; line skipped", store.path().display(), b.line, b.reason);
    }
    let now = clock.now();
    // Reservations before bindings: a restored lease on a reserved address stays out of the pool.
    let res_file = ReservationsFile::new(&cfg.state_dir);
    let (reserved, bad) = res_file
        .load()
        .with_context(|| format!("cannot read the reservations file {}", res_file.path().display()))?;
    for b in &bad {
        warn!("{}:{}: {}; line skipped", res_file.path().display(), b.line, b.reason);
    }
    for r in reserved {
        let ip = r.ip;
        if let Err(e) = node.restore_reservation(now, r) {
            warn!("reservation of {ip} from {} not restored: {e}", res_file.path().display());
        }
    }
    let mut commands = Commands { pending: HashMap::new(), file: res_file };
    let mut revocation_kept = node.secure().map_or(0, |s| s.revocation_version());
    let restored = saved.iter().filter(|b| node.restore_binding(now, b)).count();
    info!(
        "restored {restored} of {} bindings from {} (each valid for a full lease from now)",
        saved.len(),
        store.path().display()
    );

    let tap = match &cfg.tap {
        None => None,
        Some(name) => Some(
            tokio_tun::Tun::builder()
                .name(name)
                .tap()
                .mtu(i32::from(cfg.params.mtu.max(1500)))
                .up()
                .build()
                .with_context(|| {
                    format!("cannot open TAP device {name} (are you root? does another process hold it?)")
                })?
                .pop()
                .context("no TAP queue returned")?,
        ),
    };
    let egress = match &cfg.egress_tun {
        None => None,
        Some(name) => {
            let t = tokio_tun::Tun::builder()
                .name(name)
                .mtu(i32::from(cfg.params.mtu))
                .up()
                .build()
                .with_context(|| {
                    format!("cannot open the egress TUN device {name} (are you root? does another process hold it?)")
                })?
                .pop()
                .context("no TUN queue returned")?;
            info!(
                "Internet egress through {name}: route {} to it and masquerade its traffic to the WAN",
                cfg.params.subnet
            );
            Some(t)
        }
    };
    let overlay = cfg.overlay.as_ref().map(|o| overlay_socket(o.listen)).transpose()?;
    match &cfg.tap {
        Some(name) => info!(
            "serving namespace {} ({}) on {name}: DNS/DHCP at {}, gateway {}, router MAC {}",
            cfg.params.name,
            cfg.params.subnet,
            node.site().dns_addr,
            node.site().gateway_addr,
            node.site().router_mac
        ),
        None => info!("standalone DHT storage node of namespace {} ({})", cfg.params.name, cfg.params.subnet),
    }
    if let Some(o) = &cfg.overlay {
        info!("overlay on {} (advertised {:?}), {} bootstrap peers", o.listen, o.advertise, o.peers.len());
    }

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let (up_tx, mut up_rx) = mpsc::channel::<(u16, SocketAddr, Vec<u8>)>(256);
    let mut upstream: HashMap<u16, Arc<UdpSocket>> = HashMap::new();
    let mut rx = vec![0u8; 65536];
    let mut orx = vec![0u8; 65536];
    let mut tx = vec![0u8; FRAME_CAP];
    let (persist_tx, mut persist_rx) = mpsc::channel::<(PersistToken, std::io::Result<()>)>(4);
    let mut persist =
        Persist { dirty: false, in_flight: false, retry_at: None, tx: persist_tx, store: store.clone() };
    let io = Io { tap: &tap, overlay: &overlay, egress: &egress };
    let mut erx = vec![0u8; 65536];
    let (ctl_path, mut ctl_rx) = crate::control::listen(&cfg.state_dir)?;
    info!("control socket {}", ctl_path.display());
    // Admin requests from the overlay (hostctl --via) waiting for their command's answer.
    let mut remote: Vec<RemoteAnswer> = Vec::new();

    loop {
        let deadline =
            [node.poll_at().map(|at| clock.std_at(at)), persist.retry_at, commands.next_deadline()]
                .into_iter()
                .flatten()
                .min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = recv_tap(&tap, &mut rx) => {
                let n = r.context("reading the TAP device")?;
                let now = clock.now();
                node.handle_lan(now, &rx[..n]);
                // Drain what else is waiting, so one flush (and one bindings write) serves the batch.
                if let Some(t) = &tap {
                    for _ in 1..RX_BATCH {
                        match t.try_recv(&mut rx) {
                            Ok(n) => node.handle_lan(now, &rx[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e).context("reading the TAP device"),
                        }
                    }
                }
            }
            r = recv_tap(&egress, &mut erx) => {
                let n = r.context("reading the egress TUN device")?;
                node.handle_egress(clock.now(), &erx[..n]);
            }
            r = recv_overlay(&overlay, &mut orx) => {
                match r {
                    Ok((n, from)) => {
                        let now = clock.now();
                        node.handle_overlay(now, from, &orx[..n]);
                        if let Some(s) = &overlay {
                            for _ in 1..RX_BATCH {
                                match s.try_recv_from(&mut orx) {
                                    Ok((n, from)) => node.handle_overlay(now, from, &orx[..n]),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    // ICMP errors surface as receive errors on a UDP socket: not fatal.
                    Err(e) => debug!("overlay receive: {e}"),
                }
            }
            Some((port, from, data)) = up_rx.recv() => {
                upstream.remove(&port);
                // An empty datagram marks a socket whose wait ran out: vn-core times the query out itself.
                if !data.is_empty() {
                    node.handle_upstream(clock.now(), from, port, &data);
                }
            }
            Some((token, result)) = persist_rx.recv() => {
                persist.in_flight = false;
                match result {
                    Ok(()) => node.bindings_persisted(token),
                    Err(e) => {
                        // The ACKs stay held; try again shortly. Clients retransmit meanwhile.
                        error!("writing the bindings file {} failed: {e}; retrying in 1 s", store.path().display());
                        persist.dirty = true;
                        persist.retry_at = Some(StdInstant::now() + std::time::Duration::from_secs(1));
                    }
                }
            }
            _ = sleep => {
                if persist.retry_at.is_some_and(|t| t <= StdInstant::now()) {
                    persist.retry_at = None;
                }
                node.handle_timeout(clock.now());
            }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigusr1.recv() => info!("stats: {:?}", node.stats()),
            Some((req, reply)) = ctl_rx.recv() => {
                let body = match req {
                    Request::Status => status_json(&node, &cfg, &identity, clock.now()),
                    Request::Metrics => crate::control::metrics(
                        &cfg.params.name,
                        &node.stats().fields(),
                        node.bindings(clock.now()).count(),
                    ),
                    Request::Revocation { hex } => take_revocation(&mut node, clock.now(), &hex),
                    req => {
                        commands.start(&mut node, clock.now(), req, reply);
                        commands.drain(&mut node, clock.now());
                        flush(&mut node, &clock, &mut persist, &io, &mut tx, &mut upstream, &up_tx).await;
                        continue;
                    }
                };
                crate::control::answer(reply, body);
            }
        }
        // Admin requests from the overlay run like the control socket's (vn-core checked the
        // sender's admin certificate).
        while let Some(call) = node.poll_admin_call() {
            let (otx, orx) = tokio::sync::oneshot::channel();
            let line = String::from_utf8_lossy(&call.request).into_owned();
            info!("admin request {} from {} at {}: {line}", call.id, call.peer, call.from);
            match serde_json::from_str::<Request>(line.trim()) {
                Ok(Request::Status) => {
                    let _ = otx.send(status_json(&node, &cfg, &identity, clock.now()));
                }
                Ok(Request::Metrics) => {
                    let m = crate::control::metrics(
                        &cfg.params.name,
                        &node.stats().fields(),
                        node.bindings(clock.now()).count(),
                    );
                    let _ = otx.send(m);
                }
                Ok(req) => commands.start(&mut node, clock.now(), req, otx),
                Err(e) => {
                    let _ = otx.send(serde_json::json!({ "error": format!("bad request: {e}") }).to_string());
                }
            }
            remote.push(RemoteAnswer { to: call.from, id: call.id, rx: orx });
        }
        commands.drain(&mut node, clock.now());
        keep_revocation(&node, &cfg, &mut revocation_kept);
        let mut i = 0;
        while i < remote.len() {
            match remote[i].rx.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => i += 1,
                done => {
                    let r = remote.swap_remove(i);
                    let mut body =
                        done.unwrap_or_else(|_| r#"{"error":"the daemon dropped the request"}"#.into());
                    if vn_core::overlay::admin_parts(body.len()).is_none() {
                        warn!("admin answer {} of {} bytes is too long for the overlay", r.id, body.len());
                        let why = format!(
                            "the answer ({} bytes) is too long for the overlay: ask through the node's control socket",
                            body.len()
                        );
                        body = serde_json::json!({ "error": why }).to_string();
                    }
                    let parts = vn_core::overlay::admin_parts(body.len()).unwrap_or(1);
                    for part in 0..parts {
                        let status = vn_core::wire::control::AdminStatus::Done;
                        node.admin_answer(clock.now(), r.to, r.id, status, body.as_bytes(), part);
                        flush(&mut node, &clock, &mut persist, &io, &mut tx, &mut upstream, &up_tx).await;
                    }
                }
            }
        }
        flush(&mut node, &clock, &mut persist, &io, &mut tx, &mut upstream, &up_tx).await;
    }
    // Let a write in flight finish, then write once more so remaining durations are fresh.
    if persist.in_flight {
        let _ = persist_rx.recv().await;
    }
    store.store(node.bindings(clock.now())).context("writing the bindings file at shutdown")?;
    info!("bindings saved to {}; stats: {:?}", store.path().display(), node.stats());
    Ok(())
}

/// An admin request from the overlay waiting for its answer.
struct RemoteAnswer {
    to: SocketAddr,
    id: u32,
    rx: tokio::sync::oneshot::Receiver<String>,
}

/// The answer to `hostctl status`.
fn status_json(
    node: &DaemonNode,
    cfg: &Config,
    identity: &crate::identity::Identity,
    now: Instant,
) -> String {
    use serde_json::json;
    let site = node.site();
    let me = json!({
        "id": hex::encode(identity.node_id.0),
        "version": env!("CARGO_PKG_VERSION"),
        "mode": match (&cfg.tap, cfg.role) {
            (None, _) => "storage",
            (Some(_), vn_core::config::NodeRole::Router) => "router",
            (Some(_), vn_core::config::NodeRole::Interface) => "interface",
        },
        "tap": cfg.tap,
    });
    let ns = json!({
        "name": site.params.name.as_str(),
        "id": hex::encode(site.params.id),
        "subnet": site.params.subnet.to_string(),
        "domain": site.params.domain.as_str(),
        "pool": format!("{}-{}", site.params.pool.first, site.params.pool.last),
        "mtu": site.params.mtu,
        "egress": site.params.egress,
        "dns": site.dns_addr.to_string(),
        "gateway": site.gateway_addr.to_string(),
        "router_mac": site.router_mac.to_string(),
    });
    let bindings = node
        .bindings(now)
        .map(|b| {
            json!({
                "ip": b.ip.to_string(),
                "mac": b.mac.to_string(),
                "hostname": b.hostname.as_str(),
                "client_id": hex::encode(&b.client_id),
                "remaining_s": b.remaining.secs(),
            })
        })
        .collect();
    let overlay = node.overlay().map(|o| {
        let peers: Vec<_> = o
            .peers()
            .iter()
            .map(|p| {
                json!({
                    "id": p.id().to_string(),
                    "endpoint": p.endpoint().to_string(),
                    "up": p.is_up(),
                    "path": format!("{:?}", p.path()).to_lowercase(),
                    "rtt_ms": p.rtt().srtt().map(|d| d.total_micros() as f64 / 1000.0),
                })
            })
            .collect();
        let dht = o.dht();
        json!({
            "peers": peers,
            "dht_members": dht::Members::len(dht.members()),
            "storage_ready": dht.storage_ready(),
            "stored_keys": dht.stored_keys(),
            "node_lease_s": dht.node_lease().map(|t| if t > now { (t - now).total_millis() as f64 / 1000.0 } else { 0.0 }),
            "pool_free": o.pool().free_held(),
            "owned": o.pool().held().chain(o.reserved_held(now)).map(|ip| ip.to_string()).collect::<Vec<_>>(),
        })
    });
    let reservations: Vec<_> = node
        .reservations(now)
        .map(|(r, held)| {
            json!({
                "ip": r.ip.to_string(),
                "pin": r.pin,
                "name": r.name.as_ref().map(|n| n.as_str()),
                "mac": r.mac.map(|m| m.to_string()),
                "held": held,
            })
        })
        .collect();
    let mut overlay = overlay.unwrap_or_default();
    let doc = crate::control::status(me, ns, bindings, &node.stats().fields(), overlay.take());
    // Reservations ride along at the top level.
    let mut v: serde_json::Value = serde_json::from_str(&doc).unwrap_or_default();
    v["reservations"] = json!(reservations);
    v.to_string()
}

/// Where outputs go.
struct Io<'a> {
    tap: &'a Option<tokio_tun::Tun>,
    overlay: &'a Option<UdpSocket>,
    egress: &'a Option<tokio_tun::Tun>,
}

/// The bindings file writer: one write in flight at a time, off the packet path. Changes that arrive
/// during a write are covered by the next one (a group commit); the ACKs they hold wait for it.
struct Persist {
    dirty: bool,
    in_flight: bool,
    retry_at: Option<StdInstant>,
    tx: mpsc::Sender<(PersistToken, std::io::Result<()>)>,
    store: BindingsFile,
}

impl Persist {
    fn start_write(&mut self, node: &DaemonNode, now: Instant) {
        if !self.dirty || self.in_flight || self.retry_at.is_some() {
            return;
        }
        let token = node.persist_checkpoint();
        let table: Vec<_> = node.bindings(now).collect();
        let (store, tx) = (self.store.clone(), self.tx.clone());
        self.dirty = false;
        self.in_flight = true;
        tokio::task::spawn_blocking(move || {
            let result = store.store(table.into_iter());
            let _ = tx.blocking_send((token, result));
        });
    }
}

/// Drain events (starting a write of the binding table when it changed), then every output that may leave.
async fn flush(
    node: &mut DaemonNode,
    clock: &Clock,
    persist: &mut Persist,
    io: &Io<'_>,
    buf: &mut [u8],
    upstream: &mut HashMap<u16, Arc<UdpSocket>>,
    up_tx: &mpsc::Sender<(u16, SocketAddr, Vec<u8>)>,
) {
    while let Some(ev) = node.poll_event() {
        match ev {
            Event::BindingsChanged => persist.dirty = true,
            Event::PoolExhausted
            | Event::ServiceConflict { .. }
            | Event::AddressInUse { .. }
            | Event::StaticConflict { .. } => {
                warn!("event {ev}")
            }
            _ => info!("event {ev}"),
        }
    }
    // The ACKs that depend on this write are held in the node until it is on disk.
    persist.start_write(node, clock.now());
    while let Some(t) = node.poll_transmit(clock.now(), buf) {
        match t {
            Transmit::Lan(len) => {
                if let Some(tap) = io.tap {
                    if let Err(e) = tap.send(&buf[..len]).await {
                        warn!("TAP write failed: {e}");
                    }
                }
            }
            Transmit::Overlay { to, len } => {
                if let Some(sock) = io.overlay {
                    // A full socket buffer drops the datagram, as a congested link would: never block here.
                    if let Err(e) = sock.try_send_to(&buf[..len], to) {
                        debug!("overlay send to {to}: {e}");
                    }
                }
            }
            Transmit::Upstream { to, local_port, len } => {
                send_upstream(upstream, up_tx, to, local_port, &buf[..len]).await;
            }
            Transmit::Egress(len) => {
                if let Some(tun) = io.egress {
                    if let Err(e) = tun.send(&buf[..len]).await {
                        debug!("egress TUN write failed: {e}");
                    }
                }
            }
        }
    }
}

/// Send a forwarded DNS query from the port vn-core chose, and wait (in a task) for one answer.
async fn send_upstream(
    upstream: &mut HashMap<u16, Arc<UdpSocket>>,
    up_tx: &mpsc::Sender<(u16, SocketAddr, Vec<u8>)>,
    to: SocketAddr,
    local_port: u16,
    data: &[u8],
) {
    let sock = match upstream.get(&local_port) {
        Some(s) => s.clone(),
        None => match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, local_port)).await {
            Ok(s) => {
                let s = Arc::new(s);
                upstream.insert(local_port, s.clone());
                let (s2, tx) = (s.clone(), up_tx.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    if let Ok(Ok((n, from))) = tokio::time::timeout(UPSTREAM_WAIT, s2.recv_from(&mut b)).await
                    {
                        b.truncate(n);
                        let _ = tx.send((local_port, from, b)).await;
                    } else {
                        let _ = tx.send((local_port, SocketAddr::from(([0, 0, 0, 0], 0)), Vec::new())).await;
                    }
                });
                s
            }
            Err(e) => {
                // The port is taken by someone else: drop the query, the client retries with a new one.
                warn!("cannot bind upstream port {local_port}: {e}");
                return;
            }
        },
    };
    if let Err(e) = sock.send_to(data, to).await {
        warn!("upstream DNS send to {to} failed: {e}");
    }
}

/// Longest wait for a command's result before the client is told it timed out.
const COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Commands waiting for the node at once; beyond it a request is refused at once.
const COMMANDS: usize = 64;

/// A control request waiting for the node's result.
struct PendingCommand {
    reply: tokio::sync::oneshot::Sender<String>,
    deadline: StdInstant,
    /// The reservation to persist on success, or the key read.
    what: Result<Reservation, String>,
}

/// Control requests the node answers later, bounded by [`COMMANDS`], each timed out after
/// [`COMMAND_WAIT`].
struct Commands {
    pending: HashMap<CommandId, PendingCommand>,
    file: ReservationsFile,
}

fn error_json(msg: impl std::fmt::Display) -> String {
    serde_json::json!({ "error": msg.to_string() }).to_string()
}

/// The request's reservation, checked for form (the node checks the rest).
fn reservation_of(ip: &str, pin: bool, name: Option<&str>, mac: Option<&str>) -> Result<Reservation, String> {
    let ip: vn_core::Ipv4Address =
        ip.parse().map_err(|_| format!("`{ip}` is not an IPv4 address: give one like 10.250.1.5"))?;
    let name = match name {
        None => None,
        Some(n) => Some(
            heapless::String::try_from(n.to_ascii_lowercase().as_str())
                .map_err(|_| format!("the name `{n}` is longer than 63 characters: choose a shorter one"))?,
        ),
    };
    let mac = match mac {
        None => None,
        Some(m) => Some(
            crate::persist::parse_mac(m)
                .ok_or_else(|| format!("`{m}` is not a MAC address: write it as aa:bb:cc:dd:ee:ff"))?,
        ),
    };
    Ok(Reservation { ip, pin, name, mac })
}

/// A command's result as the JSON hostctl prints.
fn result_json(what: &Result<Reservation, String>, r: &CommandResult) -> String {
    use serde_json::json;
    match r {
        Err(e) => error_json(e),
        Ok(CommandOutput::Record(rec)) => {
            let value = match rec.kind {
                dht::Kind::Ip => vn_core::overlay::decode_endpoint(&rec.value).map(|e| e.to_string()),
                dht::Kind::Host => match rec.value.get(..4) {
                    Some(&[a, b, c, d]) => Some(std::net::Ipv4Addr::new(a, b, c, d).to_string()),
                    _ => None,
                },
                _ => None,
            };
            json!({
                "key": what.as_ref().err(),
                "found": true,
                "owner": hex::encode(rec.owner.0),
                "generation": rec.gen,
                "kind": format!("{:?}", rec.kind).to_lowercase(),
                "value_hex": hex::encode(&rec.value),
                "value": value,
                "ttl_ms": rec.ttl_ms,
            })
            .to_string()
        }
        Ok(CommandOutput::Absent) => json!({ "key": what.as_ref().err(), "found": false }).to_string(),
        Ok(CommandOutput::Members(m)) => {
            let members: Vec<_> = m
                .iter()
                .map(|m| json!({ "owner": hex::encode(m.owner.0), "value_hex": hex::encode(&m.value), "ttl_ms": m.ttl_ms }))
                .collect();
            json!({ "key": what.as_ref().err(), "found": true, "members": members }).to_string()
        }
        Ok(CommandOutput::Reserved { ip, gen }) => {
            let res = what.as_ref().ok();
            json!({
                "reserved": ip.to_string(),
                "generation": gen,
                "pin": res.map(|r| r.pin),
                "name": res.and_then(|r| r.name.as_ref().map(|n| n.as_str().to_string())),
                "mac": res.and_then(|r| r.mac.map(|m| m.to_string())),
            })
            .to_string()
        }
    }
}

impl Commands {
    /// Starts a control request on the node; answers at once when it cannot start.
    fn start(
        &mut self,
        node: &mut DaemonNode,
        now: Instant,
        req: Request,
        reply: tokio::sync::oneshot::Sender<String>,
    ) {
        if self.pending.len() >= COMMANDS {
            return crate::control::answer(
                reply,
                error_json("the daemon has too many requests in flight: try again in a few seconds"),
            );
        }
        let (cmd, what) = match req {
            Request::DhtGet { key } => match parse_key(&key) {
                Ok((kind, name)) => (Command::DhtGet { kind, name }, Err(key)),
                Err(e) => return crate::control::answer(reply, error_json(e)),
            },
            Request::Reserve { ip, pin, name, mac } => {
                match reservation_of(&ip, pin, name.as_deref(), mac.as_deref()) {
                    Ok(r) => (Command::Reserve(r.clone()), Ok(r)),
                    Err(e) => return crate::control::answer(reply, error_json(e)),
                }
            }
            Request::Status | Request::Metrics | Request::Revocation { .. } => return,
        };
        match node.command(now, cmd) {
            Ok(id) => {
                self.pending
                    .insert(id, PendingCommand { reply, deadline: StdInstant::now() + COMMAND_WAIT, what });
            }
            Err(e) => crate::control::answer(reply, error_json(e)),
        }
    }

    /// Answers the requests the node finished, persisting reservations made, and times out the rest.
    fn drain(&mut self, node: &mut DaemonNode, now: Instant) {
        while let Some((id, r)) = node.poll_command() {
            let Some(p) = self.pending.remove(&id) else { continue };
            if p.what.is_ok() && r.is_ok() {
                let all: Vec<Reservation> = node.reservations(now).map(|(r, _)| r.clone()).collect();
                if let Err(e) = self.file.store(all.iter()) {
                    error!(
                        "writing {} failed: {e}; the reservation holds until the daemon stops",
                        self.file.path().display()
                    );
                }
            }
            crate::control::answer(p.reply, result_json(&p.what, &r));
        }
        let t = StdInstant::now();
        let late: Vec<CommandId> =
            self.pending.iter().filter(|(_, p)| p.deadline <= t).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(p) = self.pending.remove(&id) {
                crate::control::answer(
                    p.reply,
                    error_json("the DHT did not answer within 10 s: check `hostctl status` for DHT members and try again"),
                );
            }
        }
    }

    fn next_deadline(&self) -> Option<StdInstant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

/// A revocation list handed in by hostctl (hex of the signed bytes): the node checks and takes it.
fn take_revocation(node: &mut DaemonNode, now: Instant, hex_bytes: &str) -> String {
    let Ok(bytes) = hex::decode(hex_bytes.trim()) else {
        return error_json(
            "the revocation list is not hex: send the bytes of the `revoked` file hostctl wrote",
        );
    };
    match node.set_revocation_list(now, &bytes) {
        Ok(v) => serde_json::json!({ "ok": true, "version": v }).to_string(),
        Err(e) => error_json(format!("revocation list refused: {e}")),
    }
}

/// Writes the node's revocation list to `[security] revoked` when it changed (from hostctl or from a
/// peer), so a restart keeps it. Written whole to a temporary file and renamed.
fn keep_revocation(node: &DaemonNode, cfg: &Config, kept: &mut u64) {
    let Some(sec) = node.secure() else { return };
    let v = sec.revocation_version();
    if v <= *kept {
        return;
    }
    let path = &cfg.security.revoked;
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, sec.revocation_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    match r {
        Ok(()) => {
            info!("revocation list version {v} kept in {}", path.display());
            *kept = v;
        }
        Err(e) => error!("cannot write {}: {e}; the list holds until the daemon stops", path.display()),
    }
}
