//! The DHT's safety and liveness in the simulator (DESIGN.md "The DHT and its consistency"): safety
//! (never two owners) is checked after every event, separately from liveness (eventually one).
//!
//! "Owner": a node whose claim reached a write quorum and whose lease has not lapsed, as the node
//! itself computes it (`Dht::holds`, module doc of `vn_core::dht`, "Leases"). A dead node owns
//! nothing.

use vn_core::dht::{Config, Kind, OpError, OpId, Outcome};
use vn_core::{Duration, NodeId};
use vn_sim::{millis, secs, NetConfig, Sim};

const NS: [u8; 16] = *b"vngate-sim-ns-01";

fn config() -> Config {
    let mut c = Config::new(NS);
    c.audit_interval = Duration::from_secs(15);
    c.max_ttl = Duration::from_secs(40);
    c
}

/// Starts every live node's `node:` record.
fn start_all(sim: &mut Sim) {
    for i in 0..sim.len() {
        sim.with(i, |d, now| d.start(now, b"contact").unwrap());
    }
}

/// A node that wants `key` and keeps asking for it while it does not hold it.
struct Claimant {
    node: usize,
    pending: Option<OpId>,
    retry_at: i64,
    after: u64,
    won: u32,
}

impl Claimant {
    fn new(node: usize) -> Self {
        Claimant { node, pending: None, retry_at: 0, after: 0, won: 0 }
    }

    /// Drains results and claims again when due.
    fn drive(&mut self, sim: &mut Sim, key: vn_core::dht::Key, ip_ttl: Duration) {
        if !sim.alive(self.node) {
            self.pending = None;
            return;
        }
        let now_g = sim.now;
        let mut results = Vec::new();
        sim.with(self.node, |d, _| {
            while let Some(r) = d.poll_result() {
                results.push(r);
            }
            while d.poll_event().is_some() {}
        });
        for r in results {
            if Some(r.op) != self.pending {
                continue;
            }
            self.pending = None;
            match r.outcome {
                Ok(Outcome::Created { gen }) => {
                    self.won += 1;
                    self.after = gen;
                }
                Err(OpError::Conflict(s)) => {
                    self.after = self.after.max(s.gen);
                    self.retry_at = now_g + millis(1500 + i64::from(sim.below(1000)));
                }
                _ => self.retry_at = now_g + millis(200 + i64::from(sim.below(300))),
            }
        }
        let holds = sim.node(self.node).is_some_and(|d| d.holds(sim.local_now(self.node), &key));
        if !holds && self.pending.is_none() && now_g >= self.retry_at {
            let after = self.after;
            self.pending = sim
                .with(self.node, |d, now| d.create(now, key, Kind::Ip, b"", b"chaddr", ip_ttl, after).ok())
                .flatten();
        }
    }
}

/// The nodes that hold `key` now.
fn owners(sim: &Sim, key: &vn_core::dht::Key) -> Vec<usize> {
    (0..sim.len()).filter(|&i| sim.node(i).is_some_and(|d| d.holds(sim.local_now(i), key))).collect()
}

/// One seed of the contention scenario: several nodes claim one `ip:` key at the same instant
/// under loss, jitter, clock drift, partitions and churn; then the network heals. Returns the
/// winner after healing.
fn contention(seed: u64, break_cas_check: bool) -> Result<usize, String> {
    let mut seed_rng = vn_core::rand::Rng::new(seed);
    let n = 5 + seed_rng.below(4) as usize; // 5..8 storage nodes
    let net = NetConfig {
        delay_min_us: millis(5),
        delay_max_us: millis(5 + i64::from(seed_rng.below(120))),
        loss_permille: seed_rng.below(150),
        max_offset_us: secs(5),
        max_drift_ppm: 3000,
    };
    let mut sim = Sim::new(seed, n, net, config());
    start_all(&mut sim);
    let key = vn_core::dht::Key::derive(&NS, Kind::Ip, b"10.250.0.7");
    let ncl = 2 + seed_rng.below(3) as usize;
    let mut claimants: Vec<Claimant> = (0..ncl).map(|i| Claimant::new((i * 3 + seed as usize) % n)).collect();
    claimants.dedup_by_key(|c| c.node);
    let ip_ttl = Duration::from_secs(20);
    let violation: std::cell::RefCell<Option<String>> = Default::default();
    let mut check = |sim: &mut Sim| {
        let o = owners(sim, &key);
        if o.len() > 1 && violation.borrow().is_none() {
            *violation.borrow_mut() =
                Some(format!("seed {seed}: two owners {o:?} at t={} ms", sim.now / 1000));
        }
    };
    sim.run_until(secs(3), &mut check);
    // Everyone claims at the same instant.
    for c in &mut claimants {
        c.drive(&mut sim, key, ip_ttl);
    }
    // Faults for 40 s.
    let mut t = secs(3);
    while t < secs(33) {
        t += millis(250);
        sim.run_until(t, &mut check);
        for c in &mut claimants {
            c.drive(&mut sim, key, ip_ttl);
        }
        if t % secs(2) == 0 {
            match sim.below(5) {
                0 => {
                    let dead = (0..n).filter(|&i| !sim.alive(i)).count();
                    if dead < 2 {
                        let i = sim.below(n as u32) as usize;
                        sim.kill(i);
                    }
                }
                1 => {
                    if let Some(i) = (0..n).find(|&i| !sim.alive(i)) {
                        sim.restart(i);
                        sim.with(i, |d, now| d.start(now, b"contact").unwrap());
                    }
                }
                2 => {
                    for i in 0..n {
                        let g = sim.below(2);
                        sim.set_group(i, g);
                    }
                }
                3 => sim.heal(),
                _ => {}
            }
        }
        if break_cas_check && violation.borrow().is_some() {
            break;
        }
    }
    if let Some(v) = violation.borrow_mut().take() {
        return Err(v);
    }
    // Heal: no loss, no partition, everyone back.
    sim.heal();
    sim.net.loss_permille = 0;
    for i in 0..n {
        if !sim.alive(i) {
            sim.restart(i);
            sim.with(i, |d, now| d.start(now, b"contact").unwrap());
        }
    }
    while t < secs(33 + 60) {
        t += millis(250);
        sim.run_until(t, &mut check);
        for c in &mut claimants {
            c.drive(&mut sim, key, ip_ttl);
        }
    }
    if let Some(v) = violation.borrow_mut().take() {
        return Err(v);
    }
    let o = owners(&sim, &key);
    if o.len() != 1 {
        let mut diag = String::new();
        for c in &claimants {
            let d = sim.node(c.node).unwrap();
            diag += &format!(
                "\n  claimant {} pending={:?} after={} won={} node_lease={:?} now={} gen={:?} stats={:?}",
                c.node,
                c.pending,
                c.after,
                c.won,
                d.node_lease(),
                sim.local_now(c.node),
                d.claim_gen(&key),
                d.stats()
            );
        }
        for i in 0..n {
            diag += &format!(
                "\n  node {i} ready={} keys={}",
                sim.node(i).unwrap().storage_ready(),
                sim.node(i).unwrap().stored_keys()
            );
        }
        return Err(format!("seed {seed}: {} owners after healing ({o:?}){diag}", o.len()));
    }
    Ok(o[0])
}

#[test]
fn never_two_owners_and_one_after_healing_over_200_seeds() {
    let mut wins = std::collections::BTreeMap::new();
    // VN_SIM_SEEDS=N runs more (or fewer) seeds.
    let seeds: u64 = std::env::var("VN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    // Seeds run on a few threads; each seed is deterministic on its own.
    let results: Vec<(u64, Result<usize, String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                sc.spawn(move || {
                    (0..seeds).filter(|s| s % 4 == t).map(|s| (s, contention(s, false))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for (_, r) in results {
        let w = r.unwrap_or_else(|e| panic!("{e}"));
        *wins.entry(w).or_insert(0) += 1;
    }
    println!(
        "contention: {seeds} seeds, no double owner, one owner after healing; winners by node index {wins:?}"
    );
}

#[test]
fn basic_create_read_and_conflict() {
    let mut sim = Sim::new(1, 7, NetConfig::default(), config());
    start_all(&mut sim);
    sim.run_for(secs(1), &mut |_| {});
    let key = vn_core::dht::Key::derive(&NS, Kind::Host, b"pc1");
    let op = sim
        .with(0, |d, now| {
            d.create(now, key, Kind::Host, b"", b"10.250.0.9", Duration::from_secs(60), 0).unwrap()
        })
        .unwrap();
    sim.run_for(secs(1), &mut |_| {});
    let r = sim.with(0, |d, _| d.poll_result()).unwrap().unwrap();
    assert_eq!((r.op, r.outcome, r.attempts), (op, Ok(Outcome::Created { gen: 1 }), 1));
    assert!(sim.node(0).unwrap().holds(sim.local_now(0), &key));

    sim.with(3, |d, now| d.create(now, key, Kind::Host, b"", b"x", Duration::from_secs(60), 0).unwrap());
    sim.with(4, |d, now| d.read(now, key, Kind::Host).unwrap());
    sim.run_for(secs(2), &mut |_| {});
    let r = sim.with(3, |d, _| d.poll_result()).unwrap().unwrap();
    let owner: NodeId = sim.id(0);
    assert!(matches!(r.outcome, Err(OpError::Conflict(s)) if s.owner == owner && s.gen == 1), "{r:?}");
    let r = sim.with(4, |d, _| d.poll_result()).unwrap().unwrap();
    match r.outcome {
        Ok(Outcome::Found(rec)) => {
            assert_eq!((rec.owner, rec.gen, rec.value.as_slice()), (owner, 1, &b"10.250.0.9"[..]))
        }
        other => panic!("{other:?}"),
    }
}

/// Runs until node `i` has a result, returning it and the global time it took (µs).
fn wait_result(sim: &mut Sim, i: usize, limit: i64) -> (vn_core::dht::OpResult, i64) {
    let start = sim.now;
    let got: std::cell::RefCell<Option<(vn_core::dht::OpResult, i64)>> = Default::default();
    while got.borrow().is_none() && sim.now - start < limit {
        let t = sim.now + millis(1);
        sim.run_until(t, &mut |s| {
            if got.borrow().is_none() {
                if let Some(r) = s.with(i, |d, _| d.poll_result()).flatten() {
                    *got.borrow_mut() = Some((r, s.now - start));
                }
            }
        });
    }
    got.into_inner().expect("no result in time")
}

#[test]
fn a_dead_owners_address_is_taken_over_in_about_30_s() {
    // 50 ms one-way, no loss: an RTT is 100 ms.
    let mut worst = 0;
    for seed in 0..5 {
        let mut sim = Sim::new(100 + seed, 7, NetConfig::default(), config());
        start_all(&mut sim);
        sim.run_for(secs(1), &mut |_| {});
        let key = vn_core::dht::Key::derive(&NS, Kind::Ip, b"10.250.0.8");
        sim.with(0, |d, now| d.create(now, key, Kind::Ip, b"", b"a", Duration::from_secs(60), 0).unwrap());
        let (r, _) = wait_result(&mut sim, 0, secs(5));
        assert_eq!(r.outcome, Ok(Outcome::Created { gen: 1 }));
        // The owner dies at a random point of its renewal cycle.
        let wait = secs(5) + millis(i64::from(sim.below(10_000)));
        sim.run_for(wait, &mut |_| {});
        sim.kill(0);
        let died = sim.now;
        let mut b = Claimant::new(1);
        let taken = std::cell::Cell::new(None);
        while taken.get().is_none() && sim.now - died < secs(60) {
            let t = sim.now + millis(100);
            sim.run_until(t, &mut |s| {
                if taken.get().is_none() && s.node(1).unwrap().holds(s.local_now(1), &key) {
                    taken.set(Some(s.now - died));
                }
            });
            b.drive(&mut sim, key, Duration::from_secs(60));
        }
        let took = taken.get().expect("never taken over");
        // The node record lapses 30 s after the owner's last renewal (at most 30 s after its death),
        // then a few round trips for the liveness check and the Create.
        assert!(took <= secs(30) + millis(1000), "seed {seed}: takeover after {} ms", took / 1000);
        assert!(sim.node(1).unwrap().claim_gen(&key) >= Some(2), "takeover bumps the generation");
        worst = worst.max(took);
    }
    println!("takeover of a dead owner's address: worst {} ms after its death (node TTL 30 s)", worst / 1000);
}

#[test]
fn lookups_among_1000_nodes_take_one_hop_and_survive_two_dead_replicas() {
    let n = 1000;
    let mut sim = Sim::new(
        7,
        n,
        NetConfig { delay_min_us: millis(20), delay_max_us: millis(80), ..Default::default() },
        config(),
    );
    let ttl = Duration::from_secs(600);
    let keys: Vec<_> =
        (0..200).map(|k| vn_core::dht::Key::derive(&NS, Kind::Node, format!("h{k}").as_bytes())).collect();
    for (k, key) in keys.iter().enumerate() {
        let w = (k * 7) % n;
        sim.with(w, |d, now| d.create(now, *key, Kind::Node, b"", b"v", ttl, 0).unwrap());
    }
    sim.run_for(secs(3), &mut |_| {});
    for k in 0..keys.len() {
        let r = sim.with((k * 7) % n, |d, _| d.poll_result()).flatten().expect("create finished");
        assert!(matches!(r.outcome, Ok(Outcome::Created { gen: 1 })) && r.attempts == 1, "{r:?}");
    }
    // Kill two of the five replicas of the first 20 keys (up to 40 nodes).
    let members: std::collections::BTreeSet<NodeId> = (0..n).map(|i| sim.id(i)).collect();
    // Kill two of the five replicas of 20 keys, but never a third replica of any key (a lost
    // quorum is allowed to block).
    let sets: Vec<_> = keys.iter().map(|k| vn_core::dht::Members::replica_set(&members, k)).collect();
    let mut dead = std::collections::BTreeSet::new();
    let mut damaged = 0;
    for rs in &sets {
        if damaged == 20 {
            break;
        }
        let mut trial = dead.clone();
        trial.extend(rs[..2].iter().copied());
        if sets.iter().all(|s| s.iter().filter(|id| trial.contains(*id)).count() <= 2) {
            dead = trial;
            damaged += 1;
        }
    }
    for id in &dead {
        sim.kill(sim.index_of(id).unwrap());
    }
    let killed = dead.len();
    assert_eq!(damaged, 20);
    // Every key is read from a random live node: found, in one round trip for keys with all
    // replicas alive (a lost replica costs at most one retransmission wait).
    let mut one_rtt = 0;
    let mut readers = Vec::new();
    for key in &keys {
        let mut r = sim.below(n as u32) as usize;
        while !sim.alive(r) {
            r = sim.below(n as u32) as usize;
        }
        let op = sim.with(r, |d, now| d.read(now, *key, Kind::Node).unwrap()).unwrap();
        readers.push((r, op));
    }
    sim.run_for(secs(3), &mut |_| {});
    let mut done = std::collections::HashMap::new();
    for (r, _) in &readers {
        while let Some(res) = sim.with(*r, |d, _| d.poll_result()).flatten() {
            done.insert((*r, res.op), res);
        }
    }
    for (k, (r, op)) in readers.iter().enumerate() {
        let res = done.remove(&(*r, *op)).expect("read finished");
        match res.outcome {
            Ok(Outcome::Found(rec)) => assert_eq!(rec.owner, sim.id((k * 7) % n), "key {k}"),
            other => panic!("key {k}: {other:?}"),
        }
        one_rtt += usize::from(res.attempts == 1);
    }
    assert_eq!(one_rtt, keys.len(), "every lookup is one hop, one attempt");
    // Claims on keys whose replica sets lost two nodes still go through.
    for (k, key) in keys.iter().enumerate() {
        let w = (k * 7) % n;
        if !sim.alive(w) || !sets[k].iter().any(|id| dead.contains(id)) {
            continue;
        }
        let op = sim.with(w, |d, now| d.renew(now, *key, Kind::Node, b"", 1, ttl).unwrap()).unwrap();
        let (r, _) = wait_result(&mut sim, w, secs(5));
        assert_eq!((r.op, r.outcome), (op, Ok(Outcome::Renewed { gen: 1 })));
    }
    let fresh = vn_core::dht::Key::derive(&NS, Kind::Node, b"new");
    sim.with(999, |d, now| d.create(now, fresh, Kind::Node, b"", b"v", ttl, 0).unwrap());
    let (r, _) = wait_result(&mut sim, 999, secs(5));
    assert_eq!(r.outcome, Ok(Outcome::Created { gen: 1 }));
    println!(
        "1000 storage nodes: {} records, {killed} nodes killed (2 of 5 replicas of 20 keys): {}/{} lookups found in one hop; {} datagrams",
        keys.len(),
        one_rtt,
        keys.len(),
        sim.stats.delivered
    );
}

#[test]
fn operation_latency_in_round_trips() {
    // Fixed 50 ms one-way delay, no loss: one RTT = 100 ms.
    let rtt = millis(100);
    let mut sim = Sim::new(3, 7, NetConfig::default(), config());
    start_all(&mut sim);
    sim.run_for(secs(1), &mut |_| {});
    let mut rows = Vec::new();
    let key = vn_core::dht::Key::derive(&NS, Kind::Ip, b"10.250.1.1");
    let mut measure =
        |sim: &mut Sim,
         name: &str,
         i: usize,
         f: &mut dyn FnMut(&mut vn_core::dht::Dht<_, 16, 16, 64>, vn_core::Instant)| {
            sim.with(i, |d, now| f(d, now));
            let (r, took) = wait_result(sim, i, secs(60));
            assert!(r.outcome.is_ok(), "{name}: {r:?}");
            rows.push((name.to_string(), took, r.attempts));
            took
        };
    let t_create = measure(&mut sim, "create (claim)", 0, &mut |d, now| {
        d.create(now, key, Kind::Ip, b"", b"a", Duration::from_secs(60), 0).unwrap();
    });
    measure(&mut sim, "read", 2, &mut |d, now| {
        d.read(now, key, Kind::Ip).unwrap();
    });
    measure(&mut sim, "renew", 0, &mut |d, now| {
        d.renew(now, key, Kind::Ip, b"", 1, Duration::from_secs(60)).unwrap();
    });
    let bkey = vn_core::dht::Key::derive(&NS, Kind::Bcast, b"");
    measure(&mut sim, "append (bcast)", 3, &mut |d, now| {
        d.append(now, bkey, b"member", Duration::from_secs(60)).unwrap();
    });
    measure(&mut sim, "read (bcast)", 4, &mut |d, now| {
        d.read(now, bkey, Kind::Bcast).unwrap();
    });
    // The new owner signs its record (generation 2) and the current owner submits it.
    let rec = sim.with(5, |d, _| d.sign_record(key, Kind::Ip, 2, b"b").unwrap()).unwrap();
    measure(&mut sim, "transfer", 0, &mut |d, now| {
        d.transfer(now, key, Kind::Ip, b"", 1, rec.clone(), Duration::from_secs(60)).unwrap();
    });
    // Takeover of a dead owner's address once its node record has lapsed: the replicas check the
    // owner's node record (one more round trip), and the first Create's generation is stale.
    sim.kill(5);
    sim.run_for(secs(35), &mut |_| {});
    let t_take = measure(&mut sim, "takeover (dead owner)", 1, &mut |d, now| {
        d.create(now, key, Kind::Ip, b"", b"c", Duration::from_secs(60), 0).unwrap();
    });
    measure(&mut sim, "delete", 1, &mut |d, now| {
        let g = d.claim_gen(&key).unwrap();
        d.delete(now, key, Kind::Ip, b"", g).unwrap();
    });
    println!("DHT operation latency, 7 storage nodes, 50 ms one-way (RTT 100 ms), no loss:");
    println!("  {:<24} {:>8} {:>6} {:>9}", "operation", "ms", "RTTs", "attempts");
    for (name, took, attempts) in &rows {
        println!(
            "  {:<24} {:>8.1} {:>6.2} {:>9}",
            name,
            *took as f64 / 1000.0,
            *took as f64 / rtt as f64,
            attempts
        );
    }
    assert!(t_create <= rtt + millis(1), "a claim is one round trip");
    assert!(t_take <= 3 * rtt + millis(1), "a takeover is at most three round trips");
}

/// How long membership news takes at most to reach every node in [`membership_churn`]: the Δ of
/// the module doc, below `handover − ATTEMPT_TIMEOUT` with margin for clock rates.
const SPREAD_US: i64 = secs(3);

fn churn_config() -> Config {
    let mut c = config();
    c.handover = Duration::from_secs(5);
    c
}

/// One seed of contention while the membership changes: storage nodes with new ids join and
/// members are retired (each node learns of a change at a random time within [`SPREAD_US`]),
/// under loss, jitter, clock drift, partitions and churn; then the network heals. Never two
/// owners; one owner after healing. `legacy`: changes go straight into the tables, without the
/// engine's handover (to show the test fails without it).
fn membership_churn(seed: u64, legacy: bool) -> Result<usize, String> {
    let mut seed_rng = vn_core::rand::Rng::new(seed ^ 0x6d656d62);
    let n0 = 5 + seed_rng.below(3) as usize; // 5..7 storage nodes at first
    let net = NetConfig {
        delay_min_us: millis(5),
        delay_max_us: millis(5 + i64::from(seed_rng.below(120))),
        loss_permille: seed_rng.below(150),
        max_offset_us: secs(5),
        max_drift_ppm: 3000,
    };
    let mut sim = Sim::new(seed, n0, net, churn_config());
    sim.legacy_members = legacy;
    start_all(&mut sim);
    let key = vn_core::dht::Key::derive(&NS, Kind::Ip, b"10.250.0.7");
    let ncl = 2 + seed_rng.below(3) as usize;
    let mut claimants: Vec<Claimant> =
        (0..ncl).map(|i| Claimant::new((i * 3 + seed as usize) % n0)).collect();
    claimants.sort_by_key(|c| c.node);
    claimants.dedup_by_key(|c| c.node);
    let is_claimant = |i: usize, cl: &[Claimant]| cl.iter().any(|c| c.node == i);
    let ip_ttl = Duration::from_secs(20);
    let violation: std::cell::RefCell<Option<String>> = Default::default();
    let mut check = |sim: &mut Sim| {
        let o = owners(sim, &key);
        if o.len() > 1 && violation.borrow().is_none() {
            *violation.borrow_mut() =
                Some(format!("seed {seed}: two owners {o:?} at t={} ms", sim.now / 1000));
        }
    };
    let mut retired = std::collections::BTreeSet::new();
    let mut changes = (0, 0);
    // Tells every node but `about` of a change, each at its own time within SPREAD_US.
    let spread = |sim: &mut Sim, about: usize, add: bool| {
        let id = sim.id(about);
        for j in 0..sim.len() {
            if j != about {
                let at = sim.now + i64::from(sim.below(SPREAD_US as u32));
                sim.tell(at, j, id, add);
            }
        }
    };
    sim.run_until(secs(3), &mut check);
    for c in &mut claimants {
        c.drive(&mut sim, key, ip_ttl);
    }
    // Faults and membership changes for 40 s.
    let mut t = secs(3);
    while t < secs(43) {
        t += millis(250);
        sim.run_until(t, &mut check);
        for c in &mut claimants {
            c.drive(&mut sim, key, ip_ttl);
        }
        if t % secs(3) == millis(1500) {
            // A membership change: a new id joins, or a member (never a claimant) is retired.
            // Retire a replica of the key when one can go: every change then moves the key.
            let rs = vn_core::dht::Members::replica_set(sim.members(), &key);
            let mut candidates: Vec<usize> =
                (0..sim.len()).filter(|&i| !retired.contains(&i) && !is_claimant(i, &claimants)).collect();
            let in_rs: Vec<usize> = candidates.iter().copied().filter(|&i| rs.contains(&sim.id(i))).collect();
            if !in_rs.is_empty() {
                candidates = in_rs;
            }
            if sim.len() < n0 + 5 && (sim.below(2) == 0 || candidates.len() < 2) {
                let j = sim.join();
                changes.0 += 1;
                spread(&mut sim, j, true);
                if sim.alive(j) {
                    sim.with(j, |d, now| d.start(now, b"contact").unwrap());
                }
            } else if sim.members().len() > vn_core::dht::K && !candidates.is_empty() {
                // Retirements keep K members (below K a removal waits for the one before it to
                // leave its window: handover + max_ttl, longer than this run).
                let r = candidates[sim.below(candidates.len() as u32) as usize];
                sim.retire(r);
                retired.insert(r);
                changes.1 += 1;
                spread(&mut sim, r, false);
            }
        }
        if t % secs(2) == 0 {
            let n = sim.len();
            match sim.below(5) {
                0 => {
                    let dead = (0..n).filter(|&i| !sim.alive(i) && !retired.contains(&i)).count();
                    if dead < 2 {
                        let i = sim.below(n as u32) as usize;
                        if !retired.contains(&i) {
                            sim.kill(i);
                        }
                    }
                }
                1 => {
                    if let Some(i) = (0..n).find(|&i| !sim.alive(i) && !retired.contains(&i)) {
                        sim.restart(i);
                        sim.with(i, |d, now| d.start(now, b"contact").unwrap());
                    }
                }
                2 => {
                    for i in 0..n {
                        let g = sim.below(2);
                        sim.set_group(i, g);
                    }
                }
                3 => sim.heal(),
                _ => {}
            }
        }
        if violation.borrow().is_some() {
            break;
        }
    }
    if let Some(v) = violation.borrow_mut().take() {
        return Err(format!("{v} (after {} joins, {} retirements)", changes.0, changes.1));
    }
    // Heal: no loss, no partition, every member back; then the change settles.
    sim.heal();
    sim.net.loss_permille = 0;
    for i in 0..sim.len() {
        if !sim.alive(i) && !retired.contains(&i) {
            sim.restart(i);
            sim.with(i, |d, now| d.start(now, b"contact").unwrap());
        }
    }
    while t < secs(43 + 75) {
        t += millis(250);
        sim.run_until(t, &mut check);
        for c in &mut claimants {
            c.drive(&mut sim, key, ip_ttl);
        }
    }
    if let Some(v) = violation.borrow_mut().take() {
        return Err(v);
    }
    let o = owners(&sim, &key);
    if o.len() != 1 {
        let mut diag = String::new();
        for c in &claimants {
            let d = sim.node(c.node).unwrap();
            diag += &format!(
                "\n  claimant {} pending={:?} after={} won={} node_lease={:?} now={} gen={:?} stats={:?}",
                c.node,
                c.pending,
                c.after,
                c.won,
                d.node_lease(),
                sim.local_now(c.node),
                d.claim_gen(&key),
                d.stats()
            );
        }
        for i in 0..sim.len() {
            if let Some(d) = sim.node(i) {
                diag += &format!("\n  node {i} ready={} keys={}", d.storage_ready(), d.stored_keys());
            }
        }
        return Err(format!("seed {seed}: {} owners after the change settled ({o:?}){diag}", o.len()));
    }
    Ok(o[0])
}

fn run_seeds(
    seeds: u64,
    f: fn(u64, bool) -> Result<usize, String>,
    legacy: bool,
) -> Vec<(u64, Result<usize, String>)> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                sc.spawn(move || {
                    (0..seeds).filter(|s| s % 4 == t).map(|s| (s, f(s, legacy))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Without the handover the same scenario finds two owners. Measured on 100 seeds: with
/// `legacy_members` (changes straight into the tables) seeds 33, 37, 41, 47, 50, 64 and 82 fail;
/// with the engine as it was before membership changes were handled (no handover, copies
/// answered whatever the table, a joiner copying after SYNC_DELAY) seeds 2, 33, 41, 42, 44, 47,
/// 50, 55, 64 and 82 fail. This keeps the scenario sharp: seed 33 (one retirement of a replica
/// of the key) must still fail without the handover.
#[test]
fn the_churn_scenario_finds_two_owners_without_the_handover() {
    let r = membership_churn(33, true);
    assert!(matches!(&r, Err(e) if e.contains("two owners")), "{r:?}");
    assert!(membership_churn(33, false).is_ok());
}

#[test]
fn a_second_removal_waits_in_a_table_of_at_most_k() {
    let mut sim = Sim::new(9, 6, NetConfig::default(), churn_config());
    let (a, b, c) = (sim.id(3), sim.id(4), sim.id(5));
    // Six members: the first removal leaves five, the quorum stays 3 of 5.
    assert_eq!(sim.with(0, |d, now| d.remove_member(now, &a)), Some(true));
    // Five members: a second removal would shrink the quorum while the first is in its window.
    assert_eq!(sim.with(0, |d, now| d.remove_member(now, &b)), Some(false));
    assert_eq!(sim.node(0).unwrap().stats().removals_refused, 1);
    // After the window (2 · handover + max_ttl) it goes through.
    sim.run_for(secs(2 * 5 + 40 + 1), &mut |_| {});
    assert_eq!(sim.with(0, |d, now| d.remove_member(now, &b)), Some(true));
    assert_eq!(sim.with(0, |d, now| d.remove_member(now, &c)), Some(false));
    // A member back undoes its removal: the next one need not wait for it.
    assert_eq!(sim.with(0, |d, now| d.add_member(now, b)), Some(true));
    assert_eq!(sim.with(0, |d, now| d.remove_member(now, &c)), Some(true));
}

#[test]
fn never_two_owners_while_members_join_and_retire_over_100_seeds() {
    // VN_SIM_SEEDS=N runs more (or fewer) seeds.
    let seeds: u64 = std::env::var("VN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut wins = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    for (_, r) in run_seeds(seeds, membership_churn, false) {
        match r {
            Ok(w) => *wins.entry(w).or_insert(0) += 1,
            Err(e) => failed.push(e),
        }
    }
    assert!(failed.is_empty(), "{} of {seeds} seeds failed:\n{}", failed.len(), failed.join("\n"));
    println!("membership churn: {seeds} seeds, no double owner, one owner after settling; winners {wins:?}");
}

#[test]
#[ignore]
fn one_churn_seed() {
    let seed: u64 = std::env::var("VN_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let legacy = std::env::var("VN_SIM_LEGACY").is_ok();
    let count: u64 = std::env::var("VN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for (s, r) in run_seeds(count, membership_churn, legacy) {
        if s >= seed {
            println!(
                "{s}: {}",
                r.map_or_else(|e| e.lines().next().unwrap_or("").to_string(), |w| format!("ok {w}"))
            );
        }
    }
}
