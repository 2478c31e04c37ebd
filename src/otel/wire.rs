//! The protobuf wire format, written straight into a byte buffer: the OTLP trace
//! messages of [`super::span`] as a sequence of fields, with prost's own encoders
//! (`prost::encoding`: keys, varints, scalar, string and bytes fields).
//!
//! Encoding spans through generated message structs (`opentelemetry-proto`'s, with
//! `prost`) allocates a `String` per attribute key and value and a `Vec` per id and list:
//! some seventy allocations a span. Writing the fields directly from the record
//! allocates nothing once the export buffer has grown. What prost's encoders do not do is
//! a nested message written before its length is known: [`begin`] and [`end`] reserve
//! room for the length and fill it in. What it writes is checked by decoding it with the
//! official definitions (`opentelemetry-proto`, in the tests).

use prost::encoding::{self, WireType};

/// Appends `value` as a base-128 varint.
pub fn varint(buf: &mut Vec<u8>, value: u64) {
    encoding::encode_varint(value, buf);
}

/// How many bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    encoding::encoded_len_varint(value)
}

/// A varint field (`uint32`, `uint64`, enums).
pub fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    encoding::uint64::encode(field, &value, buf);
}

/// An `int64` field.
pub fn int64(buf: &mut Vec<u8>, field: u32, value: i64) {
    encoding::int64::encode(field, &value, buf);
}

/// A `bool` field.
pub fn boolean(buf: &mut Vec<u8>, field: u32, value: bool) {
    encoding::bool::encode(field, &value, buf);
}

/// A `fixed64` field.
pub fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    encoding::fixed64::encode(field, &value, buf);
}

/// A `fixed32` field.
pub fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    encoding::fixed32::encode(field, &value, buf);
}

/// A `double` field.
pub fn double(buf: &mut Vec<u8>, field: u32, value: f64) {
    encoding::double::encode(field, &value, buf);
}

/// A `bytes` field (also a pre-encoded message's body).
pub fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    encoding::encode_key(field, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
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
    encoding::encode_key(field, WireType::LengthDelimited, buf);
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
    let mut room = &mut buf[open.at..open.at + need];
    encoding::encode_varint(len, &mut room);
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
                let mut expected = vec![0xAA, (2 << 3) | 2];
                varint(&mut expected, body as u64);
                expected.extend(std::iter::repeat_n(7u8, body));
                assert_eq!(b, expected, "body {body}, reserve {reserve}");
            }
        }
    }
}
