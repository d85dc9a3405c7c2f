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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vngate", version, about = "A site's gateway onto a self-configuring virtual network")]
struct Cli {
    /// Configuration file (TOML).
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let path = file.unwrap_or(cli.config);
            match config::load(&path) {
                Ok(c) => {
                    println!(
                        "{}: ok (namespace {}, subnet {}, pool {}-{}, router MAC {})",
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
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
