//! The protobuf wire format, written straight into a byte buffer: just what the OTLP
//! trace messages of [`super::span`] need (varints, 64- and 32-bit fixed fields,
//! length-delimited strings, bytes and nested messages).
//!
//! Encoding spans through generated message structs (`opentelemetry-proto`'s, with
//! `prost`) allocates a `String` per attribute key and value and a `Vec` per id and list:
//! some seventy allocations a span. Writing the wire format directly from the record
//! allocates nothing once the export buffer has grown. What it writes is checked by
//! decoding it with the official definitions (`opentelemetry-proto`, in the tests).

/// Wire type of varints (`int64`, `uint32`, `bool`, enums).
const VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields (`fixed64`, `double`).
const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages).
const LEN: u8 = 2;
/// Wire type of 32-bit fixed fields (`fixed32`).
const FIXED32: u8 = 5;

/// Appends `value` as a base-128 varint.
pub fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// How many bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

/// A varint field (`uint32`, `uint64`, enums, `int64` of non-negative values and, as
/// ten bytes, negative ones).
pub fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, VARINT);
    varint(buf, value);
}

/// An `int64` field.
pub fn int64(buf: &mut Vec<u8>, field: u32, value: i64) {
    // Two's complement, as protobuf encodes `int64`.
    uint(buf, field, value as u64);
}

/// A `bool` field.
pub fn boolean(buf: &mut Vec<u8>, field: u32, value: bool) {
    uint(buf, field, u64::from(value));
}

/// A `fixed64` field.
pub fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// A `fixed32` field.
pub fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    key(buf, field, FIXED32);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// A `double` field.
pub fn double(buf: &mut Vec<u8>, field: u32, value: f64) {
    fixed64(buf, field, value.to_bits());
}

/// A `bytes` field (also a pre-encoded message's body).
pub fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// A `string` field.
pub fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

/// The start of a nested message: its key and room for its length, which
/// [`end`] fills in once the body is written. `reserve` is the length's expected size in
/// bytes (1 for bodies under 128 bytes, 2 under 16 KiB): a longer one moves the body once.
#[must_use = "close the message with `end`"]
pub fn begin(buf: &mut Vec<u8>, field: u32, reserve: usize) -> Open {
    key(buf, field, LEN);
    let at = buf.len();
    buf.resize(at + reserve, 0);
    Open { at, reserve }
}

/// A nested message being written (from [`begin`]).
#[derive(Debug, Clone, Copy)]
pub struct Open {
    at: usize,
    reserve: usize,
}

/// Writes the length of the message `open` started, now that its body is complete.
pub fn end(buf: &mut Vec<u8>, open: Open) {
    let body_start = open.at + open.reserve;
    let len = (buf.len() - body_start) as u64;
    let need = varint_len(len);
    if need != open.reserve {
        // Move the body to fit the length (rare: `reserve` was a poor guess).
        let body_end = buf.len();
        if need > open.reserve {
            buf.resize(body_end + need - open.reserve, 0);
            buf.copy_within(body_start..body_end, open.at + need);
        } else {
            buf.copy_within(body_start..body_end, open.at + need);
            buf.truncate(body_end - (open.reserve - need));
        }
    }
    let mut at = open.at;
    let mut value = len;
    for _ in 0..need - 1 {
        buf[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    buf[at] = value as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_specification() {
        // The protobuf documentation's examples.
        let mut b = Vec::new();
        varint(&mut b, 1);
        varint(&mut b, 150);
        varint(&mut b, 0);
        assert_eq!(b, [0x01, 0x96, 0x01, 0x00]);
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
        let mut b = Vec::new();
        int64(&mut b, 1, -1);
        assert_eq!(b.len(), 1 + 10, "negative int64 takes ten bytes");
    }

    #[test]
    fn nested_lengths_fit_whatever_was_reserved() {
        for body in [0usize, 5, 127, 128, 300, 20_000] {
            for reserve in [1, 2, 3] {
                let mut b = vec![0xAA];
                let open = begin(&mut b, 2, reserve);
                b.extend(std::iter::repeat_n(7u8, body));
                end(&mut b, open);
                let mut expected = vec![0xAA, (2 << 3) | LEN];
                varint(&mut expected, body as u64);
                expected.extend(std::iter::repeat_n(7u8, body));
                assert_eq!(b, expected, "body {body}, reserve {reserve}");
            }
        }
    }
}
