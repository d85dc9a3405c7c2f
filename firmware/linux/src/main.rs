//! `vngate`: the daemon that makes a Linux machine (an OpenWrt router, a host) a site's gateway onto
//! the VN. It only moves bytes and reads clocks: every protocol decision is vn-core's.
//!
//! Router mode (P1): a TAP device on the site's dedicated bridge carries the LAN; vn-core answers ARP,
//! DHCP, DNS and ICMP echo for the service block; forwarded DNS queries leave through UDP sockets bound
//! to the random port vn-core picked for each.

mod boot;
mod config;
mod control;
mod identity;
mod persist;
mod runtime;
mod security;
mod uci;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vngate", version, about = "A site's gateway onto a self-configuring virtual network")]
struct Cli {
    /// Configuration file: TOML, or OpenWrt's UCI (/etc/config/vngate; detected by its content).
    #[arg(long, short, global = true, default_value = "/etc/vngate/vngate.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (the default).
    Run,
    /// Check the configuration file and exit: 0 when it is usable, 1 with the line of the first error.
    CheckConfig {
        /// The file to check (instead of --config).
        file: Option<PathBuf>,
    },
    /// Translate an OpenWrt UCI configuration (/etc/config/vngate) into the daemon's TOML, check it
    /// and print it: exit 1, with the UCI line of the first error and nothing on stdout, when unusable.
    UciToToml {
        /// The UCI file.
        #[arg(default_value = "/etc/config/vngate")]
        file: PathBuf,
    },
    /// Make this node's keys (node.key, noise.key) if absent and write and print node.pub, the file
    /// `hostctl node sign --pub` reads. The private keys never leave this machine.
    Keygen {
        /// The state directory (default: the configuration's `state_dir` when --config is readable,
        /// else /etc/vngate).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Replace existing keys with new ones (the node id changes; the old files are kept as *.old).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `check-config`'s certificate check, as a phrase for its report.
fn check_security(c: &config::Config) -> anyhow::Result<String> {
    let keys = identity::load_existing(&c.state_dir)?;
    let pubs = keys.as_ref().map(|(id, noise)| (id.public_key(), noise.public_key()));
    Ok(match security::check(c, pubs, security::reading())? {
        None => format!(
            "no certificate at {}: the daemon runs unsigned ([security] require = false)",
            c.security.cert.display()
        ),
        Some(v) => format!(
            "certificate serial {} for node {} ({}), valid until {}{}",
            v.info.serial,
            hex::encode(v.info.node_id.0),
            vn_core::cert::RoleNames(v.info.roles),
            v.info.not_after,
            if keys.is_some() {
                ", matches this node's keys"
            } else {
                "; the node's keys are not in the state directory yet, so they were not compared"
            }
        ),
    })
}

/// The state directory of a router when neither --state-dir nor a configuration names one.
const DEFAULT_STATE_DIR: &str = "/etc/vngate";

/// `vngate keygen`.
fn keygen(
    config: &std::path::Path,
    state_dir: Option<PathBuf>,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = match state_dir {
        Some(d) => d,
        None => match config::load(config) {
            Ok(c) => c.state_dir,
            Err(_) if !config.exists() => PathBuf::from(DEFAULT_STATE_DIR),
            Err(e) => anyhow::bail!("{e}; fix it, or name the key directory with --state-dir"),
        },
    };
    if force {
        identity::replace(&dir)?;
    }
    let (id, id_new) = identity::load_or_create(&dir)?;
    let (noise, noise_new) = identity::load_or_create_noise(&dir)?;
    let public = identity::NodePub::of(&id, &noise);
    let path = identity::write_pub(&dir, &public)
        .with_context(|| format!("the keys are in {}, but node.pub could not be written", dir.display()))?;
    let state = |new: bool| if new { "created" } else { "existing" };
    if json {
        let v = serde_json::json!({
            "state_dir": dir.display().to_string(),
            "node_key": state(id_new),
            "noise_key": state(noise_new),
            "pub_file": path.display().to_string(),
            "ed25519": hex::encode(public.ed25519),
            "x25519": hex::encode(public.x25519),
            "node_id": hex::encode(public.node_id.0),
        });
        println!("{v}");
    } else {
        eprintln!(
            "node key {} ({}), noise key {} ({}); public keys in {}: give that file to the admin for \
             `hostctl node sign --pub`",
            dir.join(identity::KEY_FILE).display(),
            state(id_new),
            dir.join(identity::NOISE_KEY_FILE).display(),
            state(noise_new),
            path.display()
        );
        print!("{}", public.to_text());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let path = file.unwrap_or(cli.config);
            match config::load(&path) {
                Ok(c) => match check_security(&c) {
                    Ok(sec) => {
                        println!(
                            "{}: ok (namespace {}, subnet {}, pool {}-{}, router MAC {}); {sec}",
                            path.display(),
                            c.params.name,
                            c.params.subnet,
                            c.params.pool.first,
                            c.params.pool.last,
                            c.params.router_mac()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {}: {e:#}", path.display());
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::UciToToml { file }) => {
            match config::read(&file).and_then(|text| uci::to_checked_toml(&file, &text)) {
                Ok(toml) => {
                    print!("{toml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Keygen { state_dir, force, json }) => match keygen(&cli.config, state_dir, force, json)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None | Some(Command::Run) => {
            runtime::init_logging();
            let cfg = match config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
