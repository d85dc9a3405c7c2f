//! `hostctl`: the admin's tool for a VN: provisioning (`ns create`, `node sign|revoke|list`: a CA, signed
//! certificates and config bundles, see ns.rs), and a daemon's status, DHT and reservations through its
//! control socket — or, with `--via IP:PORT`, over the overlay as an admin client (remote.rs; `admin init`
//! makes its keys and certificate). `config init` is the older, unsigned way to write a daemon configuration (P1/P2).

mod cakey;
mod ns;
mod remote;

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use vn_core::config::{AddrRange, NamespaceParams};
use vn_core::{Ipv4Address, Ipv4Cidr};

#[derive(Parser)]
#[command(name = "hostctl", version, about = "Provision and manage a vngate virtual network")]
struct Cli {
    /// Ask the daemon at IP:PORT over the overlay (as an admin client) instead of through its control
    /// socket (or the environment variable VNGATE_VIA).
    #[arg(long, global = true, value_name = "IP:PORT")]
    via: Option<SocketAddr>,
    /// With --via: the admin's bundle (node.cert with the admin role, ca.pub, namespace.doc) (or
    /// VNGATE_CERT_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// With --via: where the admin's noise.key is, when not in --cert-dir (or VNGATE_KEY_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    key_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The overlay transport, when asked for (flags first, then the environment).
    fn via(&self) -> Result<Option<remote::Via>> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let target = match (&self.via, env("VNGATE_VIA")) {
            (Some(v), _) => *v,
            (None, Some(v)) => v
                .to_string_lossy()
                .parse()
                .context("VNGATE_VIA must be the daemon's overlay endpoint IP:PORT")?,
            (None, None) => return Ok(None),
        };
        let cert_dir = self.cert_dir.clone().or_else(|| env("VNGATE_CERT_DIR").map(PathBuf::from)).context(
            "--via needs --cert-dir DIR (or VNGATE_CERT_DIR): a bundle signed with `hostctl node sign NAME --role admin`",
        )?;
        let key_dir = self.key_dir.clone().or_else(|| env("VNGATE_KEY_DIR").map(PathBuf::from));
        Ok(Some(remote::Via { target, cert_dir, key_dir }))
    }
}

#[derive(Subcommand)]
enum Command {
    /// A namespace: its CA and signed document.
    #[command(subcommand)]
    Ns(NsCmd),
    /// Nodes of a namespace: certificates, config bundles, revocation.
    #[command(subcommand)]
    Node(NodeCmd),
    /// The admin's own credentials for `--via` (hostctl over the overlay).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Daemon configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// A daemon's node, namespace, bindings and counters (through its control socket).
    Status {
        /// The daemon's control socket (in its state directory).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// A daemon's counters in the Prometheus text format.
    Metrics {
        /// The daemon's control socket (in its state directory).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// The VN's DHT, read through a daemon.
    #[command(subcommand)]
    Dht(DhtCmd),
    /// Reserve an address for a host at a daemon's site (held in the DHT by that node).
    Reserve {
        /// The address, inside the VN subnet and above the service block.
        ip: Ipv4Address,
        /// Never migrate the address away from this site.
        #[arg(long)]
        pin: bool,
        /// An admin hostname for it (wins over a lease's name).
        #[arg(long)]
        name: Option<String>,
        /// The host that gets the address by DHCP (aa:bb:cc:dd:ee:ff).
        #[arg(long)]
        mac: Option<String>,
        /// The daemon's control socket (in its state directory).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON as is.
        #[arg(long)]
        json: bool,
    },
}

/// Where the CA passphrase comes from (read only when the CA key is used).
#[derive(clap::Args, Clone)]
struct Passphrase {
    /// A file whose first line is the CA key's passphrase (else the environment variable
    /// VNGATE_CA_PASSPHRASE).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

/// Which namespace directory.
#[derive(clap::Args, Clone)]
struct NsDir {
    /// The namespace directory (default: $XDG_CONFIG_HOME/vngate/<ns>, or the only namespace there).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The namespace's name, to find its directory.
    #[arg(long)]
    ns: Option<String>,
}

#[derive(Subcommand)]
enum NsCmd {
    /// Create a namespace: a new CA key (sealed under a passphrase), ca.pub and the signed namespace document.
    Create {
        /// The namespace's name (a DNS label).
        name: String,
        /// The VN subnet, e.g. 10.250.0.0/16.
        #[arg(long)]
        subnet: String,
        /// The DNS domain (default NAME.home.arpa).
        #[arg(long)]
        domain: Option<String>,
        /// Internet egress through .2.
        #[arg(long)]
        egress: bool,
        /// The mode of router nodes' daemons: router (a TAP on a LAN bridge) or interface (the host's own TAP).
        #[arg(long, default_value = "router")]
        mode: String,
        /// DHCP pool FIRST-LAST (default: the subnet minus the service block).
        #[arg(long)]
        pool: Option<String>,
        /// Upstream resolver for names outside the VN.
        #[arg(long)]
        upstream_dns: Option<Ipv4Address>,
        /// The namespace directory (default $XDG_CONFIG_HOME/vngate/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace an existing namespace (a new CA: every node needs a new certificate).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: Passphrase,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Sign a certificate for a node's keys (its node.pub from `vngate keygen`) and write its config bundle.
    Sign {
        /// The node's name (a DNS label).
        name: String,
        /// The node's node.pub.
        #[arg(long = "pub")]
        pub_file: PathBuf,
        /// Roles, comma-separated: router, host, dht, rendezvous, admin.
        #[arg(long, alias = "roles")]
        role: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// One of the namespace's founding storage nodes (votes at once on its first start).
        #[arg(long)]
        founding: bool,
        /// Where other nodes reach this one (IP:PORT); the daemon listens on that port.
        #[arg(long)]
        endpoint: Option<String>,
        /// A node to introduce itself to at start (IP:PORT); repeat for more.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// The node's state directory, where `vngate keygen` put its keys.
        #[arg(long, default_value = "/etc/vngate")]
        state_dir: String,
        /// The node's TAP device (router and host roles).
        #[arg(long, default_value = "vn0")]
        tap: String,
        /// Replace the node's existing bundle (a new certificate; the old one stays valid until revoked).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: NsDir,
        #[command(flatten)]
        pass: Passphrase,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a node's certificates: the next signed revocation list.
    Revoke {
        /// The node's name.
        name: String,
        /// Only this serial (default: every unrevoked certificate of the node).
        #[arg(long)]
        serial: Option<u64>,
        /// Hand the new list to the daemon behind this control socket: it takes it, keeps it, and
        /// passes it to every node it has a session with (each passes it on).
        #[arg(long)]
        publish: Option<PathBuf>,
        #[command(flatten)]
        dir: NsDir,
        #[command(flatten)]
        pass: Passphrase,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The certificates issued in a namespace.
    List {
        #[command(flatten)]
        dir: NsDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Keys made here, in the namespace directory (keys/NAME, 0600), and a certificate with the admin
    /// role for them (bundles/NAME): then `hostctl --via IP:PORT --cert-dir <bundle> <verb>`.
    Init {
        /// The admin's name (a DNS label).
        #[arg(default_value = "admin")]
        name: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace the existing bundle (a new certificate for the same keys).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: NsDir,
        #[command(flatten)]
        pass: Passphrase,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DhtCmd {
    /// Read one record: ip:<addr>, host:<name> or node:<hex id>.
    Get {
        /// The key.
        key: String,
        /// The daemon's control socket (in its state directory).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON as is.
        #[arg(long)]
        json: bool,
    },
}

/// Checks a key's form before asking the daemon.
fn check_key(key: &str) -> Result<()> {
    match key.split_once(':') {
        Some(("ip" | "host" | "node", rest)) if !rest.is_empty() => Ok(()),
        _ => bail!("`{key}` is not a DHT key: write ip:10.250.1.5, host:NAME or node:<64 hex digits>"),
    }
}

/// The request line for `reserve`.
fn reserve_request(ip: Ipv4Address, pin: bool, name: Option<&str>, mac: Option<&str>) -> Result<String> {
    if let Some(m) = mac {
        let ok = m.split(':').count() == 6
            && m.split(':').all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
        if !ok {
            bail!("`{m}` is not a MAC address: write it as aa:bb:cc:dd:ee:ff");
        }
    }
    Ok(serde_json::json!({ "cmd": "reserve", "ip": ip.to_string(), "pin": pin, "name": name, "mac": mac })
        .to_string())
}

/// The daemon's answer as JSON, or its error as a sentence.
fn answer_of(text: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(text).context("the daemon's answer is not JSON (is it a vngate daemon?)")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("the daemon refused: {e}");
    }
    Ok(v)
}

/// `dht get` for people.
fn format_record(v: &serde_json::Value) -> String {
    let key = v.get("key").and_then(|k| k.as_str()).unwrap_or("?");
    if v.get("found").and_then(|f| f.as_bool()) != Some(true) {
        return format!("{key}: absent (a read quorum holds no live record)\n");
    }
    if let Some(m) = v.get("members").and_then(|m| m.as_array()) {
        let mut out = format!("{key}: {} members\n", m.len());
        for x in m {
            let f =
                |k: &str| x.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
            out.push_str(&format!("  {} {} ttl {} ms\n", f("owner"), f("value_hex"), f("ttl_ms")));
        }
        return out;
    }
    let f = |k: &str| v.get(k).filter(|x| !x.is_null()).map(|x| x.to_string().trim_matches('"').to_string());
    let value = f("value").map(|d| format!("{d} ({})", f("value_hex").unwrap_or_default()));
    format!(
        "{key}\n  owner       {}\n  generation  {}\n  value       {}\n  ttl         {} ms\n",
        f("owner").unwrap_or_default(),
        f("generation").unwrap_or_default(),
        value.or_else(|| f("value_hex")).unwrap_or_default(),
        f("ttl_ms").unwrap_or_default()
    )
}

/// `reserve` for people.
fn format_reserved(v: &serde_json::Value) -> String {
    let f = |k: &str| v.get(k).filter(|x| !x.is_null()).map(|x| x.to_string().trim_matches('"').to_string());
    let mut out = format!("reserved {}", f("reserved").unwrap_or_default());
    if let Some(g) = f("generation") {
        out.push_str(&format!(" (DHT generation {g})"));
    }
    if let Some(m) = f("mac") {
        out.push_str(&format!(" for {m}"));
    }
    if let Some(n) = f("name") {
        out.push_str(&format!(" named {n}"));
    }
    if f("pin").as_deref() == Some("true") {
        out.push_str(", pinned");
    }
    out.push('\n');
    out
}

const DEFAULT_SOCKET: &str = "/var/lib/vngate/control.sock";

/// Send one request line to the daemon, over the overlay with `via`, else through its control socket.
fn ask_via(via: &Option<remote::Via>, socket: &std::path::Path, request: &str) -> Result<String> {
    match via {
        Some(v) => remote::ask(v, request),
        None => ask(socket, request),
    }
}

/// Send one request line to the daemon and read its whole answer.
fn ask(socket: &std::path::Path, request: &str) -> Result<String> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (is vngate running? is --socket right? are you root?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out).context("reading the daemon's answer")?;
    if out.is_empty() {
        bail!("the daemon closed the connection without an answer");
    }
    Ok(out)
}

fn print_status(v: &serde_json::Value) -> Result<()> {
    if let Some(e) = v.get("error") {
        bail!("the daemon refused: {e}");
    }
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).unwrap_or("-").to_string();
    println!("node       {} ({}, vngate {})", s("/node/id"), s("/node/mode"), s("/node/version"));
    println!(
        "namespace  {} {} domain {} pool {}",
        s("/namespace/name"),
        s("/namespace/subnet"),
        s("/namespace/domain"),
        s("/namespace/pool")
    );
    println!(
        "service    dns {} gateway {} router MAC {}",
        s("/namespace/dns"),
        s("/namespace/gateway"),
        s("/namespace/router_mac")
    );
    let bindings = v.get("bindings").and_then(|b| b.as_array()).cloned().unwrap_or_default();
    println!("bindings   {}", bindings.len());
    if !bindings.is_empty() {
        println!("  {:<16} {:<18} {:<24} {:>9}", "address", "mac", "hostname", "remaining");
        for b in &bindings {
            let f = |k: &str| b.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
            let host = f("hostname");
            println!(
                "  {:<16} {:<18} {:<24} {:>8}s",
                f("ip"),
                f("mac"),
                if host.is_empty() { "-".into() } else { host },
                b.get("remaining_s").and_then(|x| x.as_u64()).unwrap_or(0)
            );
        }
    }
    if let Some(o) = v.get("overlay").filter(|o| !o.is_null()) {
        let n = |p: &str| o.pointer(p).map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "overlay    {} DHT members, storage ready {}, {} keys stored, node record {} s left",
            n("/dht_members"),
            n("/storage_ready"),
            n("/stored_keys"),
            n("/node_lease_s")
        );
        let owned: Vec<String> = o
            .get("owned")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        println!("owned      {} ({} free in the pre-claimed pool)", owned.join(" "), n("/pool_free"));
        let peers = o.get("peers").and_then(|x| x.as_array()).cloned().unwrap_or_default();
        println!("peers      {}", peers.len());
        for p in &peers {
            let f =
                |k: &str| p.get(k).map(|x| x.to_string().trim_matches('"').to_string()).unwrap_or_default();
            let rtt =
                p.get("rtt_ms").and_then(|x| x.as_f64()).map(|r| format!("{r:.1} ms")).unwrap_or("-".into());
            println!(
                "  {:<16} {:<22} {:<5} {:<8} rtt {}",
                f("id"),
                f("endpoint"),
                if f("up") == "true" { "up" } else { "down" },
                f("path"),
                rtt
            );
        }
    }
    if let Some(stats) = v.get("stats").and_then(|x| x.as_object()) {
        let nonzero: Vec<String> =
            stats.iter().filter(|(_, n)| n.as_u64() != Some(0)).map(|(k, n)| format!("{k}={n}")).collect();
        println!(
            "counters   {}",
            if nonzero.is_empty() { "all zero".to_string() } else { nonzero.join(" ") }
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Write a router's configuration for a new namespace, with a fresh random namespace id.
    Init {
        /// Namespace name (a DNS label; the domain defaults to NAME.home.arpa).
        #[arg(long)]
        name: String,
        /// The VN subnet, e.g. 10.250.0.0/16.
        #[arg(long)]
        subnet: String,
        /// DHCP pool FIRST-LAST (default: the subnet minus the service block).
        #[arg(long)]
        pool: Option<String>,
        /// TAP device on the site's dedicated bridge.
        #[arg(long, default_value = "vn0")]
        tap: String,
        /// Where the daemon keeps its bindings.
        #[arg(long, default_value = "/var/lib/vngate")]
        state_dir: String,
        /// Upstream resolver for names outside the VN.
        #[arg(long)]
        upstream_dns: Option<Ipv4Address>,
        /// Output file (refuses to overwrite without --force).
        #[arg(long, short)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

fn parse_cidr(s: &str) -> Result<Ipv4Cidr> {
    let (a, p) = s.split_once('/').context("--subnet must look like 10.250.0.0/16")?;
    let addr: Ipv4Address = a.parse().context("--subnet: bad address")?;
    let prefix: u8 = p.parse().context("--subnet: bad prefix length")?;
    if prefix > 32 {
        bail!("--subnet: the prefix length must be at most 32");
    }
    Ok(Ipv4Cidr::new(addr, prefix))
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

fn run(cli: Cli) -> Result<()> {
    let via = cli.via()?;
    match cli.command {
        Command::Ns(NsCmd::Create {
            name,
            subnet,
            domain,
            egress,
            mode,
            pool,
            upstream_dns,
            dir,
            force,
            pass,
            json,
        }) => {
            let dir = match dir {
                Some(d) => d,
                None => ns::base_dir()?.join(&name),
            };
            let args = ns::CreateArgs { name, subnet, domain, egress, mode, pool, upstream_dns, dir, force };
            let pass = cakey::passphrase(pass.passphrase_file.as_deref())?;
            let v = ns::create(&args, &pass)?;
            if json {
                print_json(&v);
            } else {
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
                println!("namespace {} (id {}) created in {}", s("name"), s("id"), s("dir"));
                println!("  subnet {}, domain {}", s("subnet"), s("domain"));
                println!("  CA public key {} in {}", s("ca"), args.dir.join(ns::CA_PUB).display());
                println!(
                    "  CA private key sealed in {} ({}, ChaCha20-Poly1305): keep it and its passphrase offline, with a backup",
                    args.dir.join(ns::CA_KEY).display(),
                    s("kdf")
                );
                println!("next: run `vngate keygen` on each node, then `hostctl node sign NAME --pub node.pub --role router,dht`");
            }
        }
        Command::Node(NodeCmd::Sign {
            name,
            pub_file,
            role,
            days,
            founding,
            endpoint,
            peers,
            state_dir,
            tap,
            force,
            dir,
            pass,
            json,
        }) => {
            let d = ns::existing_dir(dir.dir, dir.ns.as_deref())?;
            let args = ns::SignArgs {
                name,
                pub_file,
                roles: role,
                days,
                founding,
                endpoint,
                peers,
                state_dir,
                tap,
                force,
            };
            let v = ns::sign(&d, &args, || cakey::passphrase(pass.passphrase_file.as_deref()))?;
            if json {
                print_json(&v);
            } else {
                let s = |k: &str| {
                    v.get(k).map(|x| x.to_string().trim_matches('"').to_string()).unwrap_or_default()
                };
                println!(
                    "certificate serial {} for {} (node {}, roles {}), valid until {}",
                    s("serial"),
                    s("name"),
                    s("node_id"),
                    s("roles"),
                    ns::format_time(v["not_after"].as_u64().unwrap_or(0))
                );
                println!(
                    "bundle {}: copy it to the node's {} and run `vngate --config {}/{}`",
                    s("bundle"),
                    args.state_dir,
                    args.state_dir,
                    ns::BUNDLE_CONFIG
                );
            }
        }
        Command::Admin(AdminCmd::Init { name, days, force, dir, pass, json }) => {
            let d = ns::existing_dir(dir.dir, dir.ns.as_deref())?;
            let pub_file = remote::admin_keys(&d, &name)?;
            let args = ns::SignArgs {
                name: name.clone(),
                pub_file,
                roles: "admin".into(),
                days,
                founding: false,
                endpoint: None,
                peers: Vec::new(),
                state_dir: remote::key_dir_of(&d, &name).display().to_string(),
                tap: String::new(),
                force,
            };
            let mut v = ns::sign(&d, &args, || cakey::passphrase(pass.passphrase_file.as_deref()))?;
            let bundle = d.join("bundles").join(&name);
            v["cert_dir"] = serde_json::json!(bundle.display().to_string());
            if json {
                print_json(&v);
            } else {
                println!(
                    "admin {name}: keys in {}, certificate in {}\nuse: hostctl --via IP:PORT --cert-dir {} status",
                    remote::key_dir_of(&d, &name).display(),
                    bundle.display(),
                    bundle.display()
                );
            }
        }
        Command::Node(NodeCmd::Revoke { name, serial, publish, dir, pass, json }) => {
            let d = ns::existing_dir(dir.dir, dir.ns.as_deref())?;
            let mut v = ns::revoke(&d, &name, serial, || cakey::passphrase(pass.passphrase_file.as_deref()))?;
            if let Some(socket) = &publish {
                let file = v["file"].as_str().unwrap_or_default().to_string();
                let bytes = std::fs::read(&file).with_context(|| format!("cannot read {file}"))?;
                let req = serde_json::json!({ "cmd": "revocation", "hex": hex::encode(bytes) }).to_string();
                let answer: serde_json::Value =
                    serde_json::from_str(&ask(socket, &req)?).context("the daemon's answer is not JSON")?;
                if let Some(e) = answer.get("error") {
                    bail!("the daemon refused the revocation list: {e}");
                }
                v["published"] = answer["version"].clone();
            }
            if json {
                print_json(&v);
            } else if publish.is_some() {
                println!(
                    "revoked {} serial(s) {}: revocation list version {} published; it spreads to every node \
                     through their sessions (and is kept in each node's `revoked` file)",
                    name, v["revoked"], v["list_version"]
                );
            } else {
                println!(
                    "revoked {} serial(s) {}: revocation list version {} ({} serials) in {}",
                    name,
                    v["revoked"],
                    v["list_version"],
                    v["serials"].as_array().map_or(0, |a| a.len()),
                    v["file"].as_str().unwrap_or_default()
                );
                println!(
                    "publish it: `hostctl node revoke ... --publish /var/lib/vngate/control.sock` on any node (it \
                     spreads through the sessions), or copy that file to a node as its [security] revoked file"
                );
            }
        }
        Command::Node(NodeCmd::List { dir, json }) => {
            let d = ns::existing_dir(dir.dir, dir.ns.as_deref())?;
            let st = ns::list(&d)?;
            if json {
                print_json(&serde_json::to_value(&st)?);
            } else {
                let now = ns::unix_now();
                println!(
                    "namespace {} ({}), {} certificates, revocation list version {}",
                    st.name,
                    st.subnet,
                    st.nodes.len(),
                    st.revocation_version
                );
                if !st.nodes.is_empty() {
                    println!(
                        "  {:>6} {:<20} {:<18} {:<24} {:<21} state",
                        "serial", "name", "node", "roles", "valid until"
                    );
                }
                for n in &st.nodes {
                    let state = if n.revoked {
                        "revoked"
                    } else if n.not_after < now {
                        "expired"
                    } else {
                        "valid"
                    };
                    println!(
                        "  {:>6} {:<20} {:<18} {:<24} {:<21} {}",
                        n.serial,
                        n.name,
                        n.node_id.get(..16).unwrap_or(&n.node_id),
                        n.roles,
                        ns::format_time(n.not_after),
                        state
                    );
                }
            }
        }
        Command::Status { socket, json } => {
            let answer = ask_via(&via, &socket, r#"{"cmd":"status"}"#)?;
            if json {
                println!("{answer}");
            } else {
                let v: serde_json::Value =
                    serde_json::from_str(&answer).context("the daemon's answer is not JSON")?;
                print_status(&v)?;
            }
        }
        Command::Metrics { socket } => print!("{}", ask_via(&via, &socket, r#"{"cmd":"metrics"}"#)?),
        Command::Dht(DhtCmd::Get { key, socket, json }) => {
            check_key(&key)?;
            let text =
                ask_via(&via, &socket, &serde_json::json!({ "cmd": "dht_get", "key": key }).to_string())?;
            let v = answer_of(&text)?;
            if json {
                println!("{text}");
            } else {
                print!("{}", format_record(&v));
            }
        }
        Command::Reserve { ip, pin, name, mac, socket, json } => {
            let req = reserve_request(ip, pin, name.as_deref(), mac.as_deref())?;
            let text = ask_via(&via, &socket, &req)?;
            let v = answer_of(&text)?;
            if json {
                println!("{text}");
            } else {
                print!("{}", format_reserved(&v));
            }
        }
        Command::Config(ConfigCmd::Init { name, subnet, pool, tap, state_dir, upstream_dns, out, force }) => {
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
            let mut params = NamespaceParams::new(id, &name, parse_cidr(&subnet)?)
                .map_err(|e| anyhow::anyhow!("{e}; fix --name or --subnet"))?;
            if let Some(p) = &pool {
                let (a, b) = p.split_once('-').context("--pool must look like 10.250.1.10-10.250.1.200")?;
                params.pool = AddrRange::new(
                    a.trim().parse().context("--pool: bad first address")?,
                    b.trim().parse().context("--pool: bad last address")?,
                );
            }
            params.upstream_dns = upstream_dns;
            params.validate().map_err(|e| anyhow::anyhow!("{e}; fix the options and try again"))?;
            let mut text = format!(
                "# vngate router configuration, made by `hostctl config init`.\n[namespace]\nid = \"{}\"\nname = \"{}\"\nsubnet = \"{}\"\npool = \"{}-{}\"\nlease_time = {}\ndomain = \"{}\"\nmtu = {}\negress = {}\n",
                hex::encode(params.id),
                params.name,
                params.subnet,
                params.pool.first,
                params.pool.last,
                params.lease_time.secs(),
                params.domain,
                params.mtu,
                params.egress
            );
            if let Some(u) = params.upstream_dns {
                text.push_str(&format!("upstream_dns = \"{u}\"\n"));
            }
            text.push_str(&format!("\n[daemon]\ntap = \"{tap}\"\nstate_dir = \"{state_dir}\"\n"));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .create_new(!force)
                .open(&out)
                .with_context(|| {
                    format!("cannot create {} (it exists? pass --force to overwrite)", out.display())
                })?;
            f.write_all(text.as_bytes())?;
            println!("wrote {} (namespace id {})", out.display(), hex::encode(params.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_takes_flags_then_the_environment_and_needs_credentials() {
        let cli = Cli::try_parse_from(["hostctl", "status", "--via", "10.99.0.1:4789", "--cert-dir", "/b"])
            .unwrap();
        let v = cli.via().unwrap().unwrap();
        assert_eq!((v.target, v.cert_dir, v.key_dir), ("10.99.0.1:4789".parse().unwrap(), "/b".into(), None));
        // Global: before the verb too.
        let cli = Cli::try_parse_from(["hostctl", "--via", "10.99.0.1:4789", "dht", "get", "ip:10.250.1.5"])
            .unwrap();
        if std::env::var_os("VNGATE_CERT_DIR").is_none() {
            let e = cli.via().unwrap_err().to_string();
            assert!(e.contains("--cert-dir") && e.contains("--role admin"), "{e}");
        }
        assert!(Cli::try_parse_from(["hostctl", "status", "--via", "router.lan"]).is_err());
    }

    #[test]
    fn admin_keys_are_made_in_the_namespace_dir_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = remote::admin_keys(d.path(), "ops").unwrap();
        let keys = remote::key_dir_of(d.path(), "ops");
        assert_eq!(p, keys.join("node.pub"));
        for f in ["node.key", remote::NOISE_KEY] {
            let mode = std::fs::metadata(keys.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        // node.pub is what `node sign` takes (its id is the Ed25519 key's).
        let text = std::fs::read_to_string(&p).unwrap();
        let parsed = ns::parse_node_pub(&p, &text).unwrap();
        let noise = std::fs::read_to_string(keys.join(remote::NOISE_KEY)).unwrap();
        // Run again: the same keys.
        remote::admin_keys(d.path(), "ops").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(std::fs::read_to_string(keys.join(remote::NOISE_KEY)).unwrap(), noise);
        assert_ne!(parsed.x25519, [0; 32]);
    }

    #[test]
    fn dht_get_and_reserve_parse() {
        let cli = Cli::try_parse_from(["hostctl", "dht", "get", "ip:10.250.1.5", "--json"]).unwrap();
        assert!(
            matches!(cli.command, Command::Dht(DhtCmd::Get { ref key, json: true, .. }) if key == "ip:10.250.1.5")
        );
        let cli = Cli::try_parse_from([
            "hostctl",
            "reserve",
            "10.250.1.5",
            "--pin",
            "--name",
            "pr",
            "--mac",
            "02:cc:00:00:00:01",
        ])
        .unwrap();
        let Command::Reserve { ip, pin, name, mac, json, .. } = cli.command else { panic!("not reserve") };
        assert_eq!(
            (ip, pin, name.as_deref(), mac.as_deref(), json),
            (Ipv4Address::new(10, 250, 1, 5), true, Some("pr"), Some("02:cc:00:00:00:01"), false)
        );
        assert!(Cli::try_parse_from(["hostctl", "reserve", "10.250.1"]).is_err());
        assert!(check_key("mac:x").unwrap_err().to_string().contains("write ip:"));
        assert!(check_key("host:printer").is_ok());
        assert!(reserve_request(ip, false, None, Some("02-cc"))
            .unwrap_err()
            .to_string()
            .contains("aa:bb:cc:dd:ee:ff"));
        let req: serde_json::Value =
            serde_json::from_str(&reserve_request(ip, true, Some("pr"), None).unwrap()).unwrap();
        assert_eq!(
            req,
            serde_json::json!({"cmd":"reserve","ip":"10.250.1.5","pin":true,"name":"pr","mac":null})
        );
    }

    #[test]
    fn answers_print_for_people() {
        let v = answer_of(r#"{"key":"ip:10.250.1.5","found":true,"owner":"07","generation":3,"kind":"ip","value_hex":"04c00002010fa0","value":"192.0.2.1:4000","ttl_ms":1000}"#).unwrap();
        assert_eq!(format_record(&v), "ip:10.250.1.5\n  owner       07\n  generation  3\n  value       192.0.2.1:4000 (04c00002010fa0)\n  ttl         1000 ms\n");
        let v = answer_of(r#"{"key":"host:x","found":false}"#).unwrap();
        assert!(format_record(&v).starts_with("host:x: absent"));
        let v = answer_of(
            r#"{"reserved":"10.250.1.5","generation":2,"pin":true,"name":"pr","mac":"02-cc-00-00-00-01"}"#,
        )
        .unwrap();
        assert_eq!(
            format_reserved(&v),
            "reserved 10.250.1.5 (DHT generation 2) for 02-cc-00-00-00-01 named pr, pinned\n"
        );
        let e = answer_of(r#"{"error":"the name is bad: use letters"}"#).unwrap_err();
        assert_eq!(e.to_string(), "the daemon refused: the name is bad: use letters");
        assert!(answer_of("nope").unwrap_err().to_string().contains("not JSON"));
    }
}
