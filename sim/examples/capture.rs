//! Writes one datagram of each DHT message kind seen in a short simulated run (claims, a takeover,
//! an append, a restart's copy) into a directory: the seeds of the `dht` fuzz corpus.
//! `cargo run -p vn-sim --example capture -- core-nostd/fuzz/corpus/dht`

use vn_core::dht::{Config, Kind, Message};
use vn_core::Duration;
use vn_sim::{secs, NetConfig, Sim};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: capture DIR");
    let ns = *b"vngate-sim-ns-01";
    let mut sim = Sim::new(1, 6, NetConfig::default(), Config::new(ns));
    sim.capture = Some(Vec::new());
    for i in 0..6 {
        sim.with(i, |d, now| d.start(now, b"192.0.2.1:5555").unwrap());
    }
    sim.run_for(secs(1), &mut |_| {});
    let key = vn_core::dht::Key::derive(&ns, Kind::Ip, b"10.250.0.3");
    sim.with(0, |d, now| d.create(now, key, Kind::Ip, b"\x01\x02\x03", Duration::from_secs(60), 0).unwrap());
    sim.with(1, |d, now| {
        d.append(now, vn_core::dht::Key::derive(&ns, Kind::Bcast, b""), b"m", Duration::from_secs(60))
            .unwrap()
    });
    sim.run_for(secs(1), &mut |_| {});
    sim.with(2, |d, now| d.create(now, key, Kind::Ip, b"x", Duration::from_secs(60), 0).unwrap());
    sim.with(3, |d, now| d.read(now, vn_core::dht::Key::derive(&ns, Kind::Bcast, b""), Kind::Bcast).unwrap());
    sim.kill(4);
    sim.run_for(secs(2), &mut |_| {});
    sim.restart(4);
    sim.run_for(secs(5), &mut |_| {});
    let mut seen = std::collections::BTreeSet::new();
    for bytes in sim.capture.take().unwrap() {
        let Ok(m) = Message::decode(&bytes) else { continue };
        let kind = format!("{m:?}").split(['(', ' ', '{']).next().unwrap().to_string()
            + match &m {
                Message::WriteReply(r) => {
                    format!("-{:?}", r.result).split(['(', ' ', '{']).next().unwrap().to_string()
                }
                Message::ReadReply(r) => {
                    format!("-{:?}", r.result).split(['(', ' ', '{']).next().unwrap().to_string()
                }
                Message::Write(w) => {
                    format!("-{:?}", w.op).split(['(', ' ', '{']).next().unwrap().to_string()
                }
                _ => String::new(),
            }
            .as_str();
        if seen.insert(kind.clone()) {
            std::fs::write(format!("{dir}/{kind}"), &bytes).unwrap();
            println!("{kind}: {} bytes", bytes.len());
        }
    }
}
