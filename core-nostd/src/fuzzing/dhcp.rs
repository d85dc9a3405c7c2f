/// Fuzz entry point (see the module doc).
pub fn dhcp(data: &[u8]) {
    let _ = data;
}
