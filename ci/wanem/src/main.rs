//! vn-wanem: bridges two Ethernet interfaces, holding each frame for a delay (plus jitter) and dropping some, per
//! direction. Run it in a namespace that holds one interface towards each site:
//!
//! ```text
//! vn-wanem --a wa --b wb --delay 50ms --jitter 5ms --loss 1% [--rate 100mbit] [--seed N] [--queue 4096]
//! ```
//!
//! Each quantity takes `VALUE` for both directions or `A_TO_B/B_TO_A`. Counters are printed on SIGTERM/SIGINT
//! (then it exits) and on SIGUSR1.

use std::io::Write;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use vn_wanem::link::{Link, Params};
use vn_wanem::rng::Rng;
use vn_wanem::sock::{PacketSocket, Recv, VNET_HDR_LEN};
use vn_wanem::units::{DurationPair, LossPair, RatePair};

/// Frames read from one socket before the other gets its turn and due frames are released.
const RX_BATCH: usize = 64;

#[derive(Parser, Debug)]
#[command(
    name = "vn-wanem",
    version,
    about = "Userspace WAN link emulator: an L2 bridge with delay, jitter, loss and rate"
)]
struct Args {
    /// Interface towards side A.
    #[arg(long)]
    a: String,
    /// Interface towards side B.
    #[arg(long)]
    b: String,
    /// One-way base delay (e.g. 50ms, or 50ms/20ms for A->B/B->A).
    #[arg(long, default_value = "0")]
    delay: DurationPair,
    /// Jitter: the delay is drawn uniformly in delay +- jitter.
    #[arg(long, default_value = "0")]
    jitter: DurationPair,
    /// Loss probability in percent (e.g. 1%, or 10%/0).
    #[arg(long, default_value = "0")]
    loss: LossPair,
    /// Rate limit (e.g. 100mbit; none = unlimited).
    #[arg(long, default_value = "none")]
    rate: RatePair,
    /// Let jitter reorder frames (off: frames leave in the order they came).
    #[arg(long)]
    reorder: bool,
    /// Seed of the loss and jitter draws (default: from the clock, printed so the run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Frames held per direction at most; more are dropped and counted.
    #[arg(long, default_value_t = Link::DEFAULT_CAPACITY)]
    queue: usize,
    /// Forward plain frames, without the virtio-net header that carries checksum and segmentation offload
    /// state (then turn offloads off on the ends, or TCP and UDP checksums arrive unfinished).
    #[arg(long)]
    no_vnet_hdr: bool,
}

static TERM: AtomicBool = AtomicBool::new(false);
static REPORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGUSR1 {
        REPORT.store(true, Ordering::Relaxed);
    } else {
        TERM.store(true, Ordering::Relaxed);
    }
}

/// Installs the handlers and blocks the signals; returns the mask to wait with, under which they are delivered.
/// Blocked outside `ppoll`, a signal can only interrupt the wait, never land between the flag check and it.
fn setup_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset and sigaction calls on live, zero-initialised structs; the handler only stores atomics.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, ptr::null_mut()) != 0 {
                bail!("sigaction: {}", std::io::Error::last_os_error());
            }
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            bail!("pthread_sigmask failed");
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
            libc::sigdelset(&mut old, sig);
        }
        Ok(old)
    }
}

fn describe(p: &Params) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rate = match p.rate {
        Some(bps) => format!("{bps}bit"),
        None => "none".into(),
    };
    format!(
        "delay={}ms jitter={}ms loss={}% rate={rate} reorder={}",
        ms(p.delay),
        ms(p.jitter),
        p.loss * 100.0,
        p.reorder
    )
}

fn report(tag: &str, links: [(&str, &Link, u64); 2]) {
    let mut out = std::io::stdout().lock();
    for (dir, link, kernel_drops) in links {
        let c = link.counters();
        let _ = writeln!(
            out,
            "vn-wanem {tag}: {dir} received={} forwarded={} bytes={} dropped_loss={} dropped_queue={} \
             tx_errors={} held={} rx_kernel_drops={kernel_drops}",
            c.received,
            c.forwarded,
            c.bytes_forwarded,
            c.dropped_loss,
            c.dropped_queue,
            c.tx_errors,
            link.len(),
        );
    }
    let _ = out.flush();
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.queue == 0 {
        bail!("--queue must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let vnet = !args.no_vnet_hdr;
    let mut sa = PacketSocket::open(&args.a, vnet).with_context(|| format!("opening {}", args.a))?;
    let mut sb = PacketSocket::open(&args.b, vnet).with_context(|| format!("opening {}", args.b))?;
    let params = |delay, jitter, loss, rate| Params { delay, jitter, loss, rate, reorder: args.reorder };
    let pab = params(args.delay.ab, args.jitter.ab, args.loss.ab, args.rate.ab);
    let pba = params(args.delay.ba, args.jitter.ba, args.loss.ba, args.rate.ba);
    // Two independent streams derived from the one seed.
    let mut seeds = Rng::new(seed);
    let mut ab = Link::new(pab, args.queue, seeds.next_u64()).with_meta_len(sa.meta_len());
    let mut ba = Link::new(pba, args.queue, seeds.next_u64()).with_meta_len(sb.meta_len());
    let wait_mask = setup_signals()?;

    println!(
        "vn-wanem: a={} b={} seed={seed} queue={} vnet_hdr={vnet}\n  a->b {}\n  b->a {}",
        sa.name(),
        sb.name(),
        args.queue,
        describe(&pab),
        describe(&pba)
    );
    println!("vn-wanem: ready");
    let _ = std::io::stdout().flush();

    let origin = Instant::now();
    let mut buf = vec![0u8; 65535 + VNET_HDR_LEN + 64];
    let mut truncated = 0u64;
    let mut warned = false;
    while !TERM.load(Ordering::Relaxed) {
        if REPORT.swap(false, Ordering::Relaxed) {
            let (ka, kb) = (sa.kernel_drops(), sb.kernel_drops());
            report("counters", [("a->b", &ab, ka), ("b->a", &ba, kb)]);
        }
        let now = origin.elapsed();
        ab.pop_due(now, |f| sb.send(f).is_ok());
        ba.pop_due(now, |f| sa.send(f).is_ok());

        let next = match (ab.poll_at(), ba.poll_at()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let ts = next.map(|t| {
            let d = t.saturating_sub(origin.elapsed());
            libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
        });
        let mut fds = [
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&sa), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&sb), events: libc::POLLIN, revents: 0 },
        ];
        let tsp = ts.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: live pollfds, an optional live timespec and a live sigset.
        let ret = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, tsp, &wait_mask) };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("ppoll");
        }
        for (i, (sock, link)) in [(&sa, &mut ab), (&sb, &mut ba)].into_iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            for _ in 0..RX_BATCH {
                match sock.recv(&mut buf) {
                    Ok(Recv::Frame(n)) => {
                        link.push(origin.elapsed(), &buf[..n]);
                    }
                    Ok(Recv::Truncated) => truncated += 1,
                    Ok(Recv::Empty) => break,
                    Err(e) => {
                        // E.g. ENETDOWN while an end is being reconfigured: reading cleared it; go on.
                        if !warned {
                            eprintln!("vn-wanem: receive on {}: {e}", sock.name());
                            warned = true;
                        }
                        break;
                    }
                }
            }
        }
    }
    let (ka, kb) = (sa.kernel_drops(), sb.kernel_drops());
    report("exit", [("a->b", &ab, ka), ("b->a", &ba, kb)]);
    if truncated > 0 {
        println!("vn-wanem exit: truncated={truncated}");
    }
    Ok(())
}
