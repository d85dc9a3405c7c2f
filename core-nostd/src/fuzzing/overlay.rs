/// Fuzz entry point (see the module doc).
pub fn overlay(data: &[u8]) {
    let _ = data;
}
