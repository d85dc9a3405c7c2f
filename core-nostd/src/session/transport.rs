//! Transport messages (0xC0 data, 0xC1 control): ChaCha20-Poly1305 with the keys of the Noise split,
//! the 64-bit counter as the nonce (Noise's ChaChaPoly nonce: 32 zero bits then the counter in
//! little-endian), header bytes 0..16 as associated data, encryption and decryption in place.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use smoltcp::time::Instant;

use super::replay::ReplayWindow;
use crate::wire::overlay::{Flags, MessageType, Packet, HEADER_LEN, OVERHEAD, TAG_LEN, VERSION};

/// After this many messages a session stops sending (WireGuard's REJECT_AFTER_MESSAGES).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// After this many messages the initiator of a session starts a new handshake (REKEY_AFTER_MESSAGES).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// The Noise ChaChaPoly nonce of a counter.
pub fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

/// One direction pair of keys from one handshake, with its indices, counter and replay window.
#[derive(Clone)]
pub struct Keypair {
    /// Our index: the receiver index of what we receive with this keypair.
    pub local: u32,
    /// The peer's index: the receiver index we write.
    pub remote: u32,
    /// When the handshake completed.
    pub born: Instant,
    /// Whether we were the initiator.
    pub initiator: bool,
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    /// The next counter to send.
    pub send_counter: u64,
    window: ReplayWindow,
}

impl core::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keypair")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("born", &self.born)
            .field("initiator", &self.initiator)
            .field("send_counter", &self.send_counter)
            .finish_non_exhaustive()
    }
}

/// Why a transport message could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The counter was seen before or is older than the window.
    Replayed,
    /// The tag did not verify.
    Auth,
}

impl Keypair {
    /// A keypair from the split keys (`i2r`, `r2i`) of a handshake.
    pub fn new(
        local: u32,
        remote: u32,
        born: Instant,
        initiator: bool,
        i2r: &[u8; 32],
        r2i: &[u8; 32],
    ) -> Self {
        let (s, r) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Self {
            local,
            remote,
            born,
            initiator,
            send: ChaCha20Poly1305::new(s.into()),
            recv: ChaCha20Poly1305::new(r.into()),
            send_counter: 0,
            window: ReplayWindow::new(),
        }
    }

    /// Seal the `payload_len` bytes at `buf[16..]` in place: write the header, encrypt, append the tag.
    /// `None` when `buf` is shorter than the message or the counter is spent.
    // HOT PATH
    pub fn seal(
        &mut self,
        msg_type: MessageType,
        flags: Flags,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Option<usize> {
        let len = OVERHEAD + payload_len;
        let msg = buf.get_mut(..len)?;
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return None;
        }
        let counter = self.send_counter;
        self.send_counter += 1;
        let mut p = Packet::new_unchecked(&mut *msg);
        p.set_msg_type(msg_type);
        p.set_version_flags(VERSION, flags);
        p.clear_reserved();
        p.set_receiver(self.remote);
        p.set_counter(counter);
        let (header, rest) = msg.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(payload_len);
        let t = self.send.encrypt_in_place_detached(&nonce(counter), header, body).ok()?;
        tag.copy_from_slice(&t);
        Some(len)
    }

    /// Open a whole transport message in place (its header already parsed: `counter` from bytes 8..16):
    /// check the window, verify and decrypt, then update the window.
    // HOT PATH
    pub fn open(&mut self, msg: &mut [u8], counter: u64) -> Result<(), OpenError> {
        if counter >= REJECT_AFTER_MESSAGES || !self.window.check(counter) {
            return Err(OpenError::Replayed);
        }
        if msg.len() < OVERHEAD {
            return Err(OpenError::Auth);
        }
        let (header, rest) = msg.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.recv
            .decrypt_in_place_detached(&nonce(counter), header, body, Tag::from_slice(tag))
            .map_err(|_| OpenError::Auth)?;
        if self.window.update(counter) {
            Ok(())
        } else {
            Err(OpenError::Replayed)
        }
    }
}
