//! Replays every file of every fuzz corpus (core-nostd/fuzz/corpus/<target>/) through the same entry
//! point the fuzzer uses, so a crash once found stays fixed. Runs in the normal `cargo test`.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            f(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn corpora_replay_without_panic() {
    for (name, f) in [
        ("dhcp", vn_core::fuzzing::dhcp as fn(&[u8])),
        ("dns", vn_core::fuzzing::dns),
        ("overlay", vn_core::fuzzing::overlay),
        ("node_lan", vn_core::fuzzing::node_lan),
        ("control", vn_core::fuzzing::control),
        ("dht", vn_core::fuzzing::dht),
        ("cert", vn_core::fuzzing::cert),
        ("handshake", vn_core::fuzzing::handshake),
    ] {
        let n = replay(name, f);
        assert!(n > 0, "the {name} corpus is empty: seed it with real captures");
    }
}
