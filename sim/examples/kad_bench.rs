//! Kademlia lookups at 1,000 and 10,000 storage nodes (each with a bounded routing table) against
//! the one-hop member table: hops, success, lookup latency in round trips, memory.
//! `cargo run --release -p vn-sim --example kad_bench [-- SEED]`

use vn_sim::kad::{peak_rss_kb, random_lookups, KadNet, Summary, Table};
use vn_sim::millis;

const NS: [u8; 16] = *b"vngate-kad-bench";

fn main() {
    let seed: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    // One-way delay uniform 20..80 ms: a mean round trip of 100 ms.
    let rtt_us = millis(100) as f64;
    println!(
        "routing table: {} bytes per node (32 buckets of 8); one-way delay 20..80 ms (mean RTT 100 ms); seed {seed}",
        std::mem::size_of::<Table>()
    );
    println!(
        "{:>7} {:>6} {:>7} {:>8} {:>7} {:>8} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "nodes",
        "killed",
        "lookups",
        "success",
        "hops",
        "hops p99",
        "requests",
        "RTTs",
        "RTTs p99",
        "read RTTs",
        "vs 1-hop"
    );
    for &(n, count) in &[(1_000usize, 2_000usize), (10_000, 2_000)] {
        let t0 = std::time::Instant::now();
        let mut net = KadNet::build(seed, n, millis(20), millis(80), true);
        let built = t0.elapsed();
        let join_msgs = net.messages;
        for kill_pct in [0u32, 10] {
            if kill_pct > 0 {
                for i in 0..n {
                    if net.below(100) < kill_pct {
                        net.kill(i);
                    }
                }
            }
            let killed = (0..n).filter(|&i| !net.alive(i)).count();
            let runs = random_lookups(&mut net, count, &NS);
            let s = Summary::of(&runs);
            let lookup_rtts = s.took_mean_us / rtt_us;
            // A read after the lookup is one more round trip; with the one-hop table it is the only one.
            let read = lookup_rtts + 1.0;
            println!(
                "{:>7} {:>6} {:>7} {:>7.2}% {:>7.2} {:>8} {:>9.1} {:>9.2} {:>10.2} {:>9.2} {:>7.2}x",
                n,
                killed,
                s.n,
                s.success * 100.0,
                s.hops_mean,
                s.hops_p99,
                s.sent_mean,
                lookup_rtts,
                s.took_p99_us as f64 / rtt_us,
                read,
                read / 1.0
            );
        }
        println!(
            "        built {n} nodes in {:.1} s ({join_msgs} join messages); peak RSS so far {} MiB",
            built.as_secs_f64(),
            peak_rss_kb() / 1024
        );
    }
    println!("one-hop member table (up to ~1,000 storage nodes): 0 lookup RTTs, read 1 RTT, success 100% while the table is complete");
}
