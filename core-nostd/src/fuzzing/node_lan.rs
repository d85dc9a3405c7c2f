/// Fuzz entry point (see the module doc).
pub fn node_lan(data: &[u8]) {
    let _ = data;
}
