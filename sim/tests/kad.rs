//! Kademlia lookups among 1,000 storage nodes that each hold only a bounded routing table (not the
//! full member table): lookups of random keys must reach the true 5 closest live nodes in few hops,
//! also after 10 % of the nodes left without notice. `vn_core::dht::kad` has the rules.

use vn_sim::kad::{random_lookups, KadNet, Summary};
use vn_sim::millis;

const NS: [u8; 16] = *b"vngate-sim-kad-1";

#[test]
fn lookups_among_1000_nodes_with_routing_tables_find_the_5_closest() {
    let t0 = std::time::Instant::now();
    let n = 1000;
    let mut net = KadNet::build(3, n, millis(20), millis(80), false);
    let built = t0.elapsed();
    for i in 0..n {
        let t = net.table(i);
        assert!(vn_core::dht::Members::len(t) <= 32 * 8, "bounded");
    }
    let runs = random_lookups(&mut net, 300, &NS);
    let s = Summary::of(&runs);
    let log2n = (n as f64).log2();
    println!(
        "1000 nodes, routing tables only (built in {:.1} s): success {:.1}%, hops mean {:.2} p99 {}, {:.1} requests, {:.2} RTTs",
        built.as_secs_f64(),
        s.success * 100.0,
        s.hops_mean,
        s.hops_p99,
        s.sent_mean,
        s.took_mean_us / millis(100) as f64
    );
    assert!(s.success >= 0.99, "success {}", s.success);
    assert!(s.hops_mean <= log2n, "mean hops {} above log2(n) = {log2n}", s.hops_mean);
    assert!(s.hops_p99 <= 6, "p99 hops {}", s.hops_p99);
    // Routing works: far fewer requests than a scan would need.
    assert!(s.sent_mean <= 40.0, "requests per lookup {}", s.sent_mean);

    // 10 % leave without notice.
    let mut killed = 0;
    for i in 0..n {
        if i % 10 == 7 {
            net.kill(i);
            killed += 1;
        }
    }
    let runs = random_lookups(&mut net, 300, &NS);
    let s = Summary::of(&runs);
    println!(
        "after {killed} nodes died: success {:.1}%, hops mean {:.2} p99 {}, {:.1} requests, {:.2} RTTs",
        s.success * 100.0,
        s.hops_mean,
        s.hops_p99,
        s.sent_mean,
        s.took_mean_us / millis(100) as f64
    );
    assert!(s.success >= 0.95, "success with 10% dead: {}", s.success);
    assert!(s.hops_mean <= log2n, "mean hops {}", s.hops_mean);
}

/// Real DHT engines whose member tables are routing tables: every op looks its key up first, then
/// runs the usual quorum write or read; a second op on the key within the cache time does not.
mod engines {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use vn_core::dht::kad::RoutingTable;
    use vn_core::dht::{Config, Dht, Kind, Members, OpResult, Outcome, MAX_MESSAGE};
    use vn_core::{Duration, Instant, NodeId};
    use vn_sim::{millis, node_id, secs};

    type Engine<const B: usize, const KB: usize> = Dht<RoutingTable<B, KB>, 8, 8, 64>;

    /// A datagram in flight: (arrival µs, sequence, to, from, bytes).
    type InFlight = Reverse<(i64, u64, usize, usize, Vec<u8>)>;

    /// Storage nodes 0..n, and a client (index n) with a small table of 3 contacts.
    struct Net {
        storage: Vec<Engine<32, 8>>,
        client: Engine<32, 4>,
        ids: Vec<NodeId>,
        now: i64,
        queue: BinaryHeap<InFlight>,
        seq: u64,
    }

    const ONE_WAY: i64 = millis(50);

    impl Net {
        fn new(n: usize) -> Net {
            let ns = *b"vngate-sim-kad-2";
            let ids: Vec<NodeId> = (0..=n).map(node_id).collect();
            let mut cfg = Config::new(ns);
            cfg.storage = true;
            cfg.fresh = true;
            cfg.verify = false;
            let storage = (0..n)
                .map(|i| {
                    let mut t = RoutingTable::new(ids[i]);
                    // What fits of every other storage node (a converged network).
                    for j in (0..n).filter(|&j| j != i) {
                        t.insert(ids[j]);
                    }
                    Dht::new(Instant::ZERO, ids[i], t, &cfg, i as u64)
                })
                .collect();
            let mut ct = RoutingTable::new(ids[n]);
            for j in [1, n / 2, n - 1] {
                ct.insert(ids[j]);
            }
            let client =
                Dht::new(Instant::ZERO, ids[n], ct, &Config { verify: false, ..Config::new(ns) }, 99);
            Net { storage, client, ids, now: 0, queue: BinaryHeap::new(), seq: 0 }
        }

        fn flush(&mut self, i: usize) {
            let now = Instant::from_micros(self.now);
            let mut buf = [0u8; MAX_MESSAGE];
            let n = self.storage.len();
            loop {
                let got = if i == n {
                    self.client.poll_message(now, &mut buf)
                } else {
                    self.storage[i].poll_message(now, &mut buf)
                };
                let Some((to, len)) = got else { break };
                let j = self.ids.iter().position(|x| *x == to).expect("known node");
                self.seq += 1;
                self.queue.push(Reverse((self.now + ONE_WAY, self.seq, j, i, buf[..len].to_vec())));
            }
        }

        fn poll_at(&self) -> Option<i64> {
            let s = self.storage.iter().filter_map(|d| d.poll_at()).min();
            [s, self.client.poll_at()].into_iter().flatten().map(|t| t.total_micros()).min()
        }

        /// Runs until the client has a result (or `limit` µs pass).
        fn run_client_op(&mut self, limit: i64) -> Option<(OpResult, i64)> {
            let n = self.storage.len();
            self.flush(n);
            let start = self.now;
            while self.now - start < limit {
                if let Some(r) = self.client.poll_result() {
                    return Some((r, self.now - start));
                }
                let next_msg = self.queue.peek().map(|Reverse((t, ..))| *t);
                let next = [next_msg, self.poll_at()].into_iter().flatten().min()?;
                self.now = self.now.max(next);
                let now = Instant::from_micros(self.now);
                if next_msg == Some(next) {
                    let Some(Reverse((_, _, to, from, bytes))) = self.queue.pop() else { break };
                    let fid = self.ids[from];
                    if to == n {
                        self.client.handle_message(now, fid, vn_sim::SIM_ROLES, &bytes);
                    } else {
                        self.storage[to].handle_message(now, fid, vn_sim::SIM_ROLES, &bytes);
                    }
                    self.flush(to);
                } else {
                    for i in 0..n {
                        if self.storage[i].poll_at().is_some_and(|t| t <= now) {
                            self.storage[i].handle_timeout(now);
                            self.flush(i);
                        }
                    }
                    if self.client.poll_at().is_some_and(|t| t <= now) {
                        self.client.handle_timeout(now);
                        self.flush(n);
                    }
                }
            }
            None
        }
    }

    #[test]
    fn ops_look_the_key_up_first_then_use_the_cache() {
        let n = 60;
        let mut net = Net::new(n);
        let key = vn_core::dht::Key::derive(b"vngate-sim-kad-2", Kind::Node, b"pc1");
        let ttl = Duration::from_secs(600);
        let now = Instant::from_micros(net.now);
        let op = net.client.create(now, key, Kind::Node, b"", b"10.250.0.9", ttl, 0).unwrap();
        let (r, took) = net.run_client_op(secs(10)).expect("create finished");
        assert_eq!((r.op, r.outcome, r.attempts), (op, Ok(Outcome::Created { gen: 1 }), 1));
        let st = net.client.stats();
        assert_eq!((st.lookups, st.lookups_failed), (1, 0));
        // The write reached the true 5 closest: they hold the record.
        let all: std::collections::BTreeSet<NodeId> = net.ids[..n].iter().copied().collect();
        let holders: Vec<usize> = (0..n).filter(|&i| net.storage[i].stored_keys() == 1).collect();
        let want: Vec<usize> =
            all.replica_set(&key).iter().map(|id| net.ids.iter().position(|x| x == id).unwrap()).collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert!(
            holders.iter().all(|h| want_sorted.contains(h)) && holders.len() >= 3,
            "{holders:?} vs {want:?}"
        );
        let lookup_rtts = (took - 2 * ONE_WAY) as f64 / (2 * ONE_WAY) as f64;
        println!("client with 3 contacts among {n} storage nodes: create took {} ms ({lookup_rtts:.1} RTTs of lookup, then 1 RTT), hops {}", took / 1000, st.lookup_hops);
        assert!(took <= 2 * ONE_WAY * (1 + 6), "lookup at most 6 RTTs here: {took}");

        // A renewal within the cache time: no lookup, one round trip.
        let now = Instant::from_micros(net.now);
        net.client.renew(now, key, Kind::Node, b"", 1, ttl).unwrap();
        let (r, took) = net.run_client_op(secs(10)).expect("renew finished");
        assert_eq!(r.outcome, Ok(Outcome::Renewed { gen: 1 }));
        assert_eq!(took, 2 * ONE_WAY, "one round trip from the cache");
        let st = net.client.stats();
        assert_eq!(st.lookups, 1);
        assert!(st.route_cache_hits >= 1);

        // A storage node far from the key reads it: its own lookup, then the quorum read.
        let reader = (0..n).find(|i| !want.contains(i)).unwrap();
        let now = Instant::from_micros(net.now);
        net.storage[reader].read(now, key, Kind::Node).unwrap();
        net.flush(reader);
        let mut found = None;
        let start = net.now;
        while found.is_none() && net.now - start < secs(10) {
            net.run_client_op(millis(10));
            found = net.storage[reader].poll_result();
        }
        match found.expect("read finished").outcome {
            Ok(Outcome::Found(rec)) => assert_eq!(rec.owner, net.ids[n]),
            other => panic!("{other:?}"),
        }
        assert!(net.storage.iter().map(|d| d.stats().find_node_answered).sum::<u64>() > 0);
    }
}
