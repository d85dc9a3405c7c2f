//! A deterministic simulator of many vn-core DHT engines in one process (STYLE.md §6: quinn's `Pair`,
//! vpncloud's `Simulator`, but with per-node time).
//!
//! A global virtual clock jumps from event to event (a datagram arriving, a node's `poll_at`); each
//! node reads its own clock, `offset + t · (1 + drift)`, so clock offsets and rates differ per node.
//! Links add a delay drawn between `delay_min` and `delay_max` (jitter), drop datagrams with a
//! probability, and partitions split the nodes into groups that cannot talk. Nodes can die without
//! notice and come back empty. Membership changes: storage nodes with new ids join, members are
//! retired, and each node learns of a change when the test says (news travels out of band, so a
//! test bounds how long it takes). Everything comes from one seed: the same seed replays the same run.

pub mod kad;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use vn_core::dht::{Config, Dht, MAX_MESSAGE};
use vn_core::rand::Rng;
use vn_core::{Instant, NodeId};

/// The engine every simulated node runs.
pub type Engine = Dht<BTreeSet<NodeId>, 16, 16, 64>;

/// Network and clock settings of a run.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Shortest one-way delay (µs).
    pub delay_min_us: i64,
    /// Longest one-way delay (µs); the delay is uniform in between.
    pub delay_max_us: i64,
    /// Datagrams lost, per thousand.
    pub loss_permille: u32,
    /// Largest clock offset of a node (µs, either sign).
    pub max_offset_us: i64,
    /// Largest clock rate error of a node (parts per million, either sign).
    pub max_drift_ppm: i64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay_min_us: 50_000,
            delay_max_us: 50_000,
            loss_permille: 0,
            max_offset_us: 0,
            max_drift_ppm: 0,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver {
        to: usize,
        from: NodeId,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        stamp: u64,
    },
    /// Node `node` learns that `id` joined (`add`) or left the member table.
    Member {
        node: usize,
        id: NodeId,
        add: bool,
    },
}

struct SimNode {
    id: NodeId,
    dht: Option<Engine>,
    offset_us: i64,
    drift_ppm: i64,
    stamp: u64,
    group: u32,
    incarnation: u64,
}

/// Counters of the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    /// Datagrams sent by engines.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Lost on the link.
    pub lost: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Arrived at a dead node.
    pub to_dead: u64,
}

/// The simulator.
pub struct Sim {
    /// Global virtual time (µs since the start).
    pub now: i64,
    /// Link settings (may be changed between runs: heal by setting loss to 0).
    pub net: NetConfig,
    /// Network counters.
    pub stats: NetStats,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
    queue: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    seq: u64,
    rng: Rng,
    config: Config,
    members: BTreeSet<NodeId>,
    /// Membership news applied straight to the tables (`members_mut`), without the engine's
    /// handover: only to show that the tests fail without it.
    pub legacy_members: bool,
    /// Removals an engine refused and the simulator applied later.
    pub removals_retried: u64,
    /// Every datagram sent, when set (to seed fuzz corpora from real traffic).
    pub capture: Option<Vec<Vec<u8>>>,
}

/// The certified roles every simulated node has (unused while `Config::verify` is off).
pub const SIM_ROLES: u8 = vn_core::cert::roles::ROUTER | vn_core::cert::roles::DHT;

/// The id of simulated node `i` (a hash, as real ids are, so replica sets are spread).
pub fn node_id(i: usize) -> NodeId {
    NodeId::from_public_key(&{
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        k
    })
}

impl Sim {
    /// `n` storage nodes (all members of the table, all fresh) with the given DHT settings.
    pub fn new(seed: u64, n: usize, net: NetConfig, mut config: Config) -> Sim {
        config.storage = true;
        config.fresh = true;
        // The simulator tests consistency, not authorization: its ids are not key-derived, so its
        // records are unsigned and its storage nodes accept them (dht module doc, "Authorization").
        config.verify = false;
        let mut rng = Rng::new(seed);
        let members: BTreeSet<NodeId> = (0..n).map(node_id).collect();
        let mut sim = Sim {
            now: 0,
            net,
            stats: NetStats::default(),
            nodes: Vec::new(),
            index: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: Rng::new(seed ^ 0x5eed),
            config,
            members,
            legacy_members: false,
            removals_retried: 0,
            capture: None,
        };
        for i in 0..n {
            let offset_us = signed(&mut rng, sim.net.max_offset_us);
            let drift_ppm = signed(&mut rng, sim.net.max_drift_ppm);
            let id = node_id(i);
            sim.index.insert(id, i);
            sim.nodes.push(SimNode {
                id,
                dht: None,
                offset_us,
                drift_ppm,
                stamp: 0,
                group: 0,
                incarnation: 0,
            });
            sim.boot(i, true);
        }
        sim
    }

    fn boot(&mut self, i: usize, fresh: bool) {
        let mut cfg = self.config.clone();
        cfg.fresh = fresh;
        let now = self.local_now(i);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        let seed = (i as u64) << 32 ^ node.incarnation ^ u64::from(self.rng.next_u32());
        // A node that boots learns the current table (the overlay's hellos would teach it).
        let mut members = self.members.clone();
        members.insert(node.id);
        node.dht = Some(Engine::new(now, node.id, members, &cfg, seed));
        self.flush(i);
    }

    /// The number of nodes (dead or alive).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Node `i`'s clock now.
    pub fn local_now(&self, i: usize) -> Instant {
        let n = &self.nodes[i];
        Instant::from_micros(self.now + n.offset_us + self.now * n.drift_ppm / 1_000_000)
    }

    /// Whether node `i` is running.
    pub fn alive(&self, i: usize) -> bool {
        self.nodes[i].dht.is_some()
    }

    /// Node `i`'s engine, if it is running.
    pub fn node(&self, i: usize) -> Option<&Engine> {
        self.nodes[i].dht.as_ref()
    }

    /// Runs `f` on node `i`'s engine at its local time, then sends what it queued. `None` if dead.
    pub fn with<T>(&mut self, i: usize, f: impl FnOnce(&mut Engine, Instant) -> T) -> Option<T> {
        let now = self.local_now(i);
        let r = f(self.nodes[i].dht.as_mut()?, now);
        self.flush(i);
        Some(r)
    }

    /// Node `i` stops without notice (its state is lost).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].dht = None;
    }

    /// Node `i` comes back with empty state: it copies before it votes.
    pub fn restart(&mut self, i: usize) {
        self.boot(i, false);
    }

    /// The member table as the simulator knows it (every join and retirement so far).
    pub fn members(&self) -> &BTreeSet<NodeId> {
        &self.members
    }

    /// A storage node with a new id joins: it boots with the current table (it copies before it
    /// votes) and becomes a member; the others learn of it only through [`Sim::tell`]. Its index.
    pub fn join(&mut self) -> usize {
        let i = self.nodes.len();
        let id = node_id(i);
        let offset_us = signed(&mut self.rng, self.net.max_offset_us);
        let drift_ppm = signed(&mut self.rng, self.net.max_drift_ppm);
        self.index.insert(id, i);
        self.nodes.push(SimNode { id, dht: None, offset_us, drift_ppm, stamp: 0, group: 0, incarnation: 0 });
        self.members.insert(id);
        self.boot(i, false);
        i
    }

    /// Node `i` is retired: it stops and leaves the table; the others learn of it only through
    /// [`Sim::tell`].
    pub fn retire(&mut self, i: usize) {
        self.nodes[i].dht = None;
        self.members.remove(&self.nodes[i].id);
    }

    /// Node `node` learns at global time `at` (µs) that `id` joined (`add`) or left. A removal the
    /// engine refuses (one is still in its window) is applied again a second later.
    pub fn tell(&mut self, at: i64, node: usize, id: NodeId, add: bool) {
        self.push(at.max(self.now), Ev::Member { node, id, add });
    }

    /// Puts node `i` in partition group `g`: only nodes of the same group can talk.
    pub fn set_group(&mut self, i: usize, g: u32) {
        self.nodes[i].group = g;
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// A uniform random value in `0..n` from the simulation's generator.
    pub fn below(&mut self, n: u32) -> u32 {
        self.rng.below(n)
    }

    fn push(&mut self, at: i64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    /// Sends what node `i` queued and re-arms its timer.
    fn flush(&mut self, i: usize) {
        let now = self.local_now(i);
        let mut buf = [0u8; MAX_MESSAGE];
        let mut out = Vec::new();
        let Some(dht) = self.nodes[i].dht.as_mut() else { return };
        while let Some((to, n)) = dht.poll_message(now, &mut buf) {
            out.push((to, buf[..n].to_vec()));
        }
        let at = dht.poll_at();
        let from = self.nodes[i].id;
        for (to, bytes) in out {
            self.stats.sent += 1;
            if let Some(c) = &mut self.capture {
                c.push(bytes.clone());
            }
            let Some(&j) = self.index.get(&to) else { continue };
            if self.rng.below(1000) < self.net.loss_permille {
                self.stats.lost += 1;
                continue;
            }
            if self.nodes[i].group != self.nodes[j].group {
                self.stats.partitioned += 1;
                continue;
            }
            let span = (self.net.delay_max_us - self.net.delay_min_us).max(0);
            let delay =
                self.net.delay_min_us + if span > 0 { i64::from(self.rng.below(span as u32 + 1)) } else { 0 };
            self.push(self.now + delay, Ev::Deliver { to: j, from, bytes });
        }
        if let Some(at) = at {
            let node = &mut self.nodes[i];
            node.stamp += 1;
            // The global time at which the node's clock reads `at` (rounded up).
            let local = at.total_micros() - node.offset_us;
            let g =
                (local * 1_000_000 + (1_000_000 + node.drift_ppm) - 1).div_euclid(1_000_000 + node.drift_ppm);
            let stamp = node.stamp;
            self.push(g.max(self.now), Ev::Timer { node: i, stamp });
        }
    }

    /// Runs events until global time `until` (µs), calling `check` after every event.
    pub fn run_until(&mut self, until: i64, check: &mut dyn FnMut(&mut Sim)) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, ev))) = self.queue.pop() else { break };
            self.now = at;
            match ev {
                Ev::Deliver { to, from, bytes } => {
                    let now = self.local_now(to);
                    if self.nodes[self.index[&from]].group != self.nodes[to].group {
                        // A partition that began while the datagram was in flight.
                        self.stats.partitioned += 1;
                        continue;
                    }
                    let Some(dht) = self.nodes[to].dht.as_mut() else {
                        self.stats.to_dead += 1;
                        continue;
                    };
                    self.stats.delivered += 1;
                    dht.handle_message(now, from, SIM_ROLES, &bytes);
                    self.flush(to);
                }
                Ev::Member { node, id, add } => {
                    let now = self.local_now(node);
                    let legacy = self.legacy_members;
                    let Some(dht) = self.nodes[node].dht.as_mut() else { continue };
                    // False only for a removal refused while another is in its window.
                    let applied = match (legacy, add) {
                        (true, true) => {
                            vn_core::dht::Members::insert(dht.members_mut(), id);
                            true
                        }
                        (true, false) => {
                            vn_core::dht::Members::remove(dht.members_mut(), &id);
                            true
                        }
                        (false, true) => {
                            dht.add_member(now, id);
                            true
                        }
                        (false, false) => dht.remove_member(now, &id) || !dht.members().contains(&id),
                    };
                    if !applied {
                        self.removals_retried += 1;
                        self.push(self.now + 1_000_000, Ev::Member { node, id, add });
                    }
                    self.flush(node);
                }
                Ev::Timer { node, stamp } => {
                    if self.nodes[node].stamp != stamp {
                        continue;
                    }
                    let now = self.local_now(node);
                    let Some(dht) = self.nodes[node].dht.as_mut() else { continue };
                    dht.handle_timeout(now);
                    self.flush(node);
                }
            }
            check(self);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `us` microseconds of global time.
    pub fn run_for(&mut self, us: i64, check: &mut dyn FnMut(&mut Sim)) {
        let until = self.now + us;
        self.run_until(until, check);
    }
}

fn signed(rng: &mut Rng, max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    i64::from(rng.below((2 * max + 1).min(u32::MAX as i64) as u32)) - max
}

/// Seconds to microseconds.
pub const fn secs(s: i64) -> i64 {
    s * 1_000_000
}

/// Milliseconds to microseconds.
pub const fn millis(ms: i64) -> i64 {
    ms * 1000
}
