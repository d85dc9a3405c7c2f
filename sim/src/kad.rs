//! Kademlia lookups among many storage nodes that each hold only a bounded routing table
//! (`vn_core::dht::kad`), over a virtual clock with per-link delay. Lighter than [`crate::Sim`]: a
//! node here is its routing table and its answer to `FindNode` (the real message bytes, encoded and
//! decoded), not a whole DHT engine, so 10,000 nodes fit in one process.
//!
//! Nodes join one after the other as Kademlia's paper says: a bootstrap contact, a lookup of their
//! own id, then a lookup of a random id in each bucket farther than their closest neighbour. Every
//! `FindNode` teaches the receiver its (storage) sender, every answer teaches the asker the answerer;
//! a full bucket checks its least recently seen node before a newcomer may take its place. Lookups
//! run one at a time (the network is otherwise idle), each with up to α = 3 requests in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use vn_core::dht::kad::{Lookup, LookupState, Routing, RoutingTable, PROBE_TIMEOUT};
use vn_core::dht::{FindNode, FindNodeReply, Key, Members, Message, ReplicaSet, K, MAX_MESSAGE};
use vn_core::rand::Rng;
use vn_core::{Instant, NodeId};

/// The routing table every simulated storage node holds (the defaults: 32 buckets of 8).
pub type Table = RoutingTable;

/// What one lookup found and what it cost.
#[derive(Debug, Clone)]
pub struct LookupRun {
    /// The replica set found (empty when the lookup failed).
    pub found: ReplicaSet,
    /// Whether it is the true `K` closest live nodes.
    pub exact: bool,
    /// Hops (`Lookup::hops`).
    pub hops: u8,
    /// `FindNode` requests sent.
    pub sent: u16,
    /// From start to result (µs of virtual time).
    pub took_us: i64,
}

enum Ev {
    /// A FindNode arrives at node `to` from node `from`.
    Request { to: usize, from: usize, bytes: Vec<u8> },
    /// A FindNodeReply arrives at the asker from node `from`.
    Reply { from: usize, bytes: Vec<u8> },
}

/// A network of storage nodes with routing tables.
pub struct KadNet {
    ids: Vec<NodeId>,
    tables: Vec<Table>,
    alive: Vec<bool>,
    index: HashMap<NodeId, usize>,
    rng: Rng,
    /// Virtual time (µs).
    pub now: i64,
    /// Shortest one-way delay (µs).
    pub delay_min_us: i64,
    /// Longest one-way delay (µs).
    pub delay_max_us: i64,
    /// Messages delivered so far.
    pub messages: u64,
    next_rid: u32,
}

impl KadNet {
    /// `n` storage nodes (ids as [`crate::node_id`]) that join one after the other; one-way delays
    /// uniform in `delay_min_us..=delay_max_us`. `refresh`: after the lookup of its own id, a
    /// joining node also refreshes its far buckets (the paper's join; about ten times the messages).
    /// Without it, far buckets fill only from the requests of later joiners.
    pub fn build(seed: u64, n: usize, delay_min_us: i64, delay_max_us: i64, refresh: bool) -> KadNet {
        let ids: Vec<NodeId> = (0..n).map(crate::node_id).collect();
        let mut net = KadNet {
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            tables: ids.iter().map(|id| Table::new(*id)).collect(),
            alive: vec![true; n],
            ids,
            rng: Rng::new(seed),
            now: 0,
            delay_min_us,
            delay_max_us,
            messages: 0,
            next_rid: 0,
        };
        for i in 1..n {
            let boot = net.rng.below(i as u32) as usize;
            let bid = net.ids[boot];
            net.tables[i].insert(bid);
            let me = net.ids[i];
            net.lookup(i, me);
            // Refresh every bucket farther than our closest neighbour.
            let nearest = vn_core::dht::kad::closest::<1>(&net.tables[i], &me);
            let top =
                nearest.first().and_then(|c| net.tables[i].bucket_of(c)).filter(|_| refresh).unwrap_or(0);
            for b in 0..top {
                let target = net.random_in_bucket(&me, b);
                net.lookup(i, target);
            }
        }
        net
    }

    /// A random id sharing exactly `b` leading bits with `me`.
    fn random_in_bucket(&mut self, me: &NodeId, b: usize) -> NodeId {
        let mut x = me.0;
        for (i, byte) in x.iter_mut().enumerate() {
            for bit in 0..8 {
                let pos = i * 8 + bit;
                let mask = 0x80u8 >> bit;
                // Bit b differs from ours, the bits after it are random.
                if pos == b || (pos > b && self.rng.below(2) == 1) {
                    *byte ^= mask;
                }
            }
        }
        NodeId(x)
    }

    /// The number of nodes (dead or alive).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Node `i`'s routing table.
    pub fn table(&self, i: usize) -> &Table {
        &self.tables[i]
    }

    /// Whether node `i` runs.
    pub fn alive(&self, i: usize) -> bool {
        self.alive[i]
    }

    /// Node `i` stops without notice (the others' tables still name it).
    pub fn kill(&mut self, i: usize) {
        self.alive[i] = false;
    }

    /// A uniform value in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        self.rng.below(n)
    }

    /// The true `K` closest live nodes to `target`.
    pub fn true_closest(&self, target: &NodeId) -> ReplicaSet {
        let mut best: Vec<([u8; 32], NodeId)> = Vec::with_capacity(K + 1);
        for (i, id) in self.ids.iter().enumerate() {
            if !self.alive[i] {
                continue;
            }
            let d = id.distance(target);
            if best.len() < K || d < best[K - 1].0 {
                let pos = best.partition_point(|(bd, _)| *bd < d);
                best.insert(pos, (d, *id));
                best.truncate(K);
            }
        }
        best.into_iter().map(|(_, id)| id).collect()
    }

    fn delay(&mut self) -> i64 {
        let span = (self.delay_max_us - self.delay_min_us).max(0);
        self.delay_min_us + if span > 0 { i64::from(self.rng.below(span as u32 + 1)) } else { 0 }
    }

    /// Node `at` learns that storage node `id` is alive; a liveness check it asks for is settled on
    /// the spot (the checked node answers if it runs, else its check times out).
    fn learn(&mut self, at: usize, id: NodeId) {
        let now = Instant::from_micros(self.now);
        if let Some(probe) = self.tables[at].seen(now, id) {
            let alive = self.index.get(&probe).is_some_and(|&j| self.alive[j]);
            self.messages += u64::from(alive) * 2;
            if alive {
                self.tables[at].seen(now, probe);
            } else {
                self.tables[at].handle_timeout(now + PROBE_TIMEOUT);
            }
        }
    }

    /// Node `from` looks `target` up; the network runs until the lookup ends.
    pub fn lookup(&mut self, from: usize, target: NodeId) -> LookupRun {
        self.next_rid = self.next_rid.wrapping_add(1);
        let rid = self.next_rid;
        let start = self.now;
        let me = self.ids[from];
        let mut l: Lookup =
            Lookup::new(Instant::from_micros(self.now), rid, target, &self.tables[from], Some(me));
        let mut queue: BinaryHeap<Reverse<(i64, u64, usize)>> = BinaryHeap::new();
        let mut events: Vec<Option<Ev>> = Vec::new();
        let mut buf = [0u8; MAX_MESSAGE];
        let state = loop {
            let now = Instant::from_micros(self.now);
            let table = &mut self.tables[from];
            l.handle_timeout(now, &mut |id| table.failed(id));
            while let Some(to) = l.poll_send(now) {
                let m = Message::FindNode(FindNode { rid, target: Key(target.0), storage: true });
                let n = m.encode(&mut buf).expect("fits");
                let Some(&j) = self.index.get(&to) else { continue };
                let at = self.now + self.delay();
                events.push(Some(Ev::Request { to: j, from, bytes: buf[..n].to_vec() }));
                queue.push(Reverse((at, events.len() as u64, events.len() - 1)));
            }
            let st = l.state(now);
            if st != LookupState::Running {
                break st;
            }
            let next_timer = l.poll_at().total_micros();
            let next_ev = queue.peek().map(|Reverse((t, _, _))| *t);
            match next_ev {
                Some(t) if t <= next_timer => {
                    let Some(Reverse((t, _, e))) = queue.pop() else { unreachable!() };
                    self.now = t;
                    match events[e].take() {
                        Some(Ev::Request { to, from: asker, bytes }) => {
                            if !self.alive[to] {
                                continue;
                            }
                            self.messages += 1;
                            let Ok(Message::FindNode(f)) = Message::decode(&bytes) else {
                                panic!("bad FindNode")
                            };
                            if f.storage {
                                let aid = self.ids[asker];
                                self.learn(to, aid);
                            }
                            let nodes = vn_core::dht::kad::answer(&self.tables[to], &f.target);
                            let m = Message::FindNodeReply(FindNodeReply { rid: f.rid, nodes });
                            let n = m.encode(&mut buf).expect("fits");
                            let at = self.now + self.delay();
                            events.push(Some(Ev::Reply { from: to, bytes: buf[..n].to_vec() }));
                            queue.push(Reverse((at, events.len() as u64, events.len() - 1)));
                        }
                        Some(Ev::Reply { from: answerer, bytes }) => {
                            self.messages += 1;
                            let Ok(Message::FindNodeReply(r)) = Message::decode(&bytes) else {
                                panic!("bad FindNodeReply")
                            };
                            let aid = self.ids[answerer];
                            self.learn(from, aid);
                            l.handle_reply(&aid, r.rid, &r.nodes);
                        }
                        None => {}
                    }
                }
                _ => self.now = self.now.max(next_timer),
            }
        };
        let found = match state {
            LookupState::Done(set) => set,
            _ => ReplicaSet::new(),
        };
        let exact = !found.is_empty() && found == self.true_closest(&target);
        LookupRun { found, exact, hops: l.hops(), sent: l.sent(), took_us: self.now - start }
    }
}

/// This process's peak resident memory (kB), from /proc (0 where there is none).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Summary of many lookups.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Lookups run.
    pub n: usize,
    /// Share that found the true `K` closest live nodes.
    pub success: f64,
    /// Mean hops.
    pub hops_mean: f64,
    /// 99th percentile of hops.
    pub hops_p99: u8,
    /// Mean `FindNode` requests per lookup.
    pub sent_mean: f64,
    /// Mean time (µs).
    pub took_mean_us: f64,
    /// 99th percentile of time (µs).
    pub took_p99_us: i64,
}

impl Summary {
    /// Summarizes `runs` (at least one).
    pub fn of(runs: &[LookupRun]) -> Summary {
        let n = runs.len();
        let mut hops: Vec<u8> = runs.iter().map(|r| r.hops).collect();
        let mut took: Vec<i64> = runs.iter().map(|r| r.took_us).collect();
        hops.sort_unstable();
        took.sort_unstable();
        let p99 = |len: usize| (len * 99 / 100).min(len - 1);
        Summary {
            n,
            success: runs.iter().filter(|r| r.exact).count() as f64 / n as f64,
            hops_mean: hops.iter().map(|&h| f64::from(h)).sum::<f64>() / n as f64,
            hops_p99: hops[p99(n)],
            sent_mean: runs.iter().map(|r| f64::from(r.sent)).sum::<f64>() / n as f64,
            took_mean_us: took.iter().sum::<i64>() as f64 / n as f64,
            took_p99_us: took[p99(n)],
        }
    }
}

/// Runs `count` lookups of random keys from random live nodes.
pub fn random_lookups(net: &mut KadNet, count: usize, ns: &[u8; 16]) -> Vec<LookupRun> {
    (0..count)
        .map(|k| {
            let mut from = net.below(net.len() as u32) as usize;
            while !net.alive(from) {
                from = net.below(net.len() as u32) as usize;
            }
            let key = Key::derive(ns, vn_core::dht::Kind::Ip, format!("k{k}").as_bytes());
            net.lookup(from, key.as_id())
        })
        .collect()
}
