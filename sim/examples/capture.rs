//! Writes one datagram of each DHT message kind seen in a short simulated run (claims, a takeover,
//! an append, a restart's copy) into a directory: the seeds of the `dht` fuzz corpus.
//! `cargo run -p vn-sim --example capture -- core-nostd/fuzz/corpus/dht`

use vn_core::dht::{Config, Dht, Kind, Message, Write, WriteOp, MAX_MESSAGE};
use vn_core::Duration;
use vn_core::NodeId;
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
    let ip = [10, 250, 0, 3];
    let key = vn_core::dht::Key::derive(&ns, Kind::Ip, &ip);
    sim.with(0, |d, now| {
        d.create(now, key, Kind::Ip, &ip, b"\x01\x02\x03", Duration::from_secs(60), 0).unwrap()
    });
    sim.with(1, |d, now| {
        d.append(now, vn_core::dht::Key::derive(&ns, Kind::Bcast, b""), b"m", Duration::from_secs(60))
            .unwrap()
    });
    sim.run_for(secs(1), &mut |_| {});
    sim.with(2, |d, now| d.create(now, key, Kind::Ip, &ip, b"x", Duration::from_secs(60), 0).unwrap());
    sim.with(3, |d, now| d.read(now, vn_core::dht::Key::derive(&ns, Kind::Bcast, b""), Kind::Bcast).unwrap());
    sim.kill(4);
    sim.run_for(secs(2), &mut |_| {});
    sim.restart(4);
    sim.run_for(secs(5), &mut |_| {});
    signed(&dir, ns);
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

/// Signed writes (the simulator's records are unsigned): a Create of `ip:10.250.0.7` signed by the
/// key whose seed is 0x02 (the fuzz target's router), the same with its value tampered, and a
/// Transfer to that node's record.
fn signed(dir: &str, ns: [u8; 16]) {
    let mut cfg = Config::new(ns);
    cfg.signing_key = Some([2; 32]);
    let d: Dht<std::collections::BTreeSet<NodeId>> =
        Dht::new(vn_core::Instant::ZERO, NodeId([0; 32]), Default::default(), &cfg, 1);
    let ip = [10, 250, 0, 7];
    let key = d.key(Kind::Ip, &ip);
    let rec = d.sign_record(key, Kind::Ip, 1, b"chaddr").unwrap();
    let name = vn_core::dht::Name::from_slice(&ip).unwrap();
    let create =
        Write { rid: 1, key, kind: Kind::Ip, name, op: WriteOp::Create { rec: rec.clone(), ttl_ms: 60_000 } };
    let mut buf = [0u8; MAX_MESSAGE];
    let n = Message::Write(create.clone()).encode(&mut buf).unwrap();
    std::fs::write(format!("{dir}/Write-Create-signed"), &buf[..n]).unwrap();
    // The value's last byte sits just before the 64-byte signature, 2 bytes (ttl 60000 = 3 bytes).
    let at = n - 3 - 64 - 1;
    buf[at] ^= 0x20;
    std::fs::write(format!("{dir}/Write-Create-tampered"), &buf[..n]).unwrap();
    let rec2 = d.sign_record(key, Kind::Ip, 2, b"moved").unwrap();
    let transfer = Write { op: WriteOp::Transfer { gen: 1, rec: rec2, ttl_ms: 60_000 }, ..create };
    let n = Message::Write(transfer).encode(&mut buf).unwrap();
    std::fs::write(format!("{dir}/Write-Transfer-signed"), &buf[..n]).unwrap();
    println!("signed writes: 3 files");
}
