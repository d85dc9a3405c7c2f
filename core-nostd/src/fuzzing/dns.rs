/// Fuzz entry point (see the module doc).
pub fn dns(data: &[u8]) {
    let _ = data;
}
