//! Fuzz entry point for the overlay control message: parse -> emit -> re-parse. Postcard accepts
//! over-long varints, so the re-emitted bytes may be shorter than the input; they must parse to the
//! same message, and emitting that again must give the same bytes (the encoding is canonical).

use crate::wire::control::{
    ControlRepr, Packet, ParseError, ADMIN_PART_MAX, ADMIN_REQUEST_MAX, CONTROL_TYPE, VERSION,
};

const BUF: usize = 2048;

/// Fuzz entry point (see the module doc). The same bytes also go through the introduction parser
/// (0xC5/0xC6, [`crate::wire::intro`]): parse -> emit -> re-parse.
pub fn control(data: &[u8]) {
    if let Ok(r) = crate::wire::intro::Repr::parse(data) {
        let mut buf = [0u8; crate::wire::intro::REQUEST_LEN];
        let n = r.emit(&mut buf).expect("what parsed fits");
        assert_eq!(n, data.len(), "an introduction message has one encoding");
        assert_eq!(crate::wire::intro::Repr::parse(&buf[..n]).expect("re-parses"), r);
    }
    let parsed = ControlRepr::parse_bytes(data);
    match (data, &parsed) {
        ([t, ..], Err(ParseError::NotControl)) => assert_ne!(*t, CONTROL_TYPE),
        ([CONTROL_TYPE, v, _, ..], Err(ParseError::UnknownVersion(u))) => assert!(*v == *u && *v != VERSION),
        (_, Err(_)) => {}
        (_, Ok(_)) => assert!(data.len() > 2 && data[0] == CONTROL_TYPE && data[1] == VERSION),
    }
    let Ok(repr) = parsed else {
        return;
    };
    // The admin messages' bounds hold for anything that parsed.
    match &repr {
        ControlRepr::Admin(a) => assert!(a.request.len() <= ADMIN_REQUEST_MAX),
        ControlRepr::AdminReply(r) => assert!(r.body.len() <= ADMIN_PART_MAX && r.part < r.parts),
        _ => {}
    }
    let len = repr.buffer_len();
    assert!(len <= data.len(), "the canonical encoding is never longer than what parsed");
    let mut buf = [0xa5u8; BUF];
    let n = repr.emit(&mut Packet::new_unchecked(&mut buf[..])).expect("fits");
    assert_eq!(n, len);
    let again = ControlRepr::parse_bytes(&buf[..n]).expect("re-parses");
    assert_eq!(again, repr);
    let mut buf2 = [0x5au8; BUF];
    let n2 = again.emit_into(&mut buf2).expect("fits");
    assert_eq!(buf[..n], buf2[..n2]);
}
