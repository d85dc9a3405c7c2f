//! `hostctl`: the admin's tool for a VN. In this version it creates a namespace's daemon configuration
//! (a fresh random namespace id and checked parameters); certificates, status and migration come with the
//! overlay (P2) and the CA (P3), when `hostctl ns create` replaces `config init`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use vn_core::config::{AddrRange, NamespaceParams};
use vn_core::{Ipv4Address, Ipv4Cidr};

#[derive(Parser)]
#[command(name = "hostctl", version, about = "Provision and manage a vngate virtual network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

const DEFAULT_SOCKET: &str = "/var/lib/vngate/control.sock";

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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Status { socket, json } => {
            let answer = ask(&socket, r#"{"cmd":"status"}"#)?;
            if json {
                println!("{answer}");
            } else {
                let v: serde_json::Value =
                    serde_json::from_str(&answer).context("the daemon's answer is not JSON")?;
                print_status(&v)?;
            }
        }
        Command::Metrics { socket } => print!("{}", ask(&socket, r#"{"cmd":"metrics"}"#)?),
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
