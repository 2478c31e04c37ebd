//! Field types that never fail their object: a field of the wrong type reads as
//! [`Lenient::Invalid`] (or [`ErrorField::Invalid`]) so the decoder can count one parse
//! error and still use the object's other fields. With serde's plain types, a negative
//! `eval_count` would throw away the `"done":true` beside it.
//!
//! Values that are not read are skipped with [`IgnoredAny`], which allocates nothing, so a
//! megabyte of nested garbage costs time but no memory.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A scalar a [`Lenient`] field can hold, with the JSON values that convert to it.
pub(super) trait Scalar: Sized {
    /// Said in parse errors: "eval_count: expected a non-negative integer".
    const EXPECTED: &'static str;

    fn from_u64(_: u64) -> Option<Self> {
        None
    }

    fn from_i64(_: i64) -> Option<Self> {
        None
    }

    fn from_f64(_: f64) -> Option<Self> {
        None
    }

    fn from_str(_: &str) -> Option<Self> {
        None
    }

    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

impl Scalar for u64 {
    const EXPECTED: &'static str = "a non-negative integer";

    fn from_u64(v: u64) -> Option<u64> {
        Some(v)
    }

    fn from_i64(v: i64) -> Option<u64> {
        u64::try_from(v).ok()
    }

    /// serde_json reads integers past `u64::MAX` as floats; those, fractions and negatives
    /// are refused, while an integral float such as `18.0` is taken at its value.
    fn from_f64(v: f64) -> Option<u64> {
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < TWO_POW_64 {
            Some(v as u64)
        } else {
            None
        }
    }
}

impl Scalar for f64 {
    const EXPECTED: &'static str = "a non-negative number";

    fn from_u64(v: u64) -> Option<f64> {
        Some(v as f64)
    }

    fn from_i64(v: i64) -> Option<f64> {
        (v >= 0).then_some(v as f64)
    }

    fn from_f64(v: f64) -> Option<f64> {
        (v.is_finite() && v >= 0.0).then_some(v)
    }
}

impl Scalar for String {
    const EXPECTED: &'static str = "a string";

    fn from_str(v: &str) -> Option<String> {
        Some(v.to_owned())
    }
}

impl Scalar for bool {
    const EXPECTED: &'static str = "true or false";

    fn from_bool(v: bool) -> Option<bool> {
        Some(v)
    }
}

/// A field that may be absent, hold a `T`, or hold something else. JSON `null` reads as
/// absent, as Ollama and OpenAI use it for "not set".
#[derive(Debug, Default, PartialEq)]
pub(super) enum Lenient<T> {
    #[default]
    Absent,
    Valid(T),
    Invalid,
}

impl<'de, T: Scalar> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(std::marker::PhantomData))
    }
}

struct LenientVisitor<T>(std::marker::PhantomData<T>);

impl<T> LenientVisitor<T> {
    fn wrap(value: Option<T>) -> Lenient<T> {
        value.map_or(Lenient::Invalid, Lenient::Valid)
    }
}

impl<'de, T: Scalar> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Lenient<T>, E> {
        Ok(Self::wrap(T::from_bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Lenient<T>, E> {
        Ok(Self::wrap(T::from_i64(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Lenient<T>, E> {
        Ok(Self::wrap(T::from_u64(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Lenient<T>, E> {
        Ok(Self::wrap(T::from_f64(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Lenient<T>, E> {
        Ok(Self::wrap(T::from_str(v)))
    }

    fn visit_unit<E>(self) -> Result<Lenient<T>, E> {
        Ok(Lenient::Absent)
    }

    fn visit_none<E>(self) -> Result<Lenient<T>, E> {
        Ok(Lenient::Absent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Lenient<T>, A::Error> {
        drain_seq(seq)?;
        Ok(Lenient::Invalid)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
        drain_map(map)?;
        Ok(Lenient::Invalid)
    }
}

/// Whether a field carries anything: a non-empty string, array or object, a number, or
/// `true`. For fields that only count as content (thinking, tool calls) and whose value
/// is never kept, so nothing is allocated for it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PresentVisitor)
    }
}

struct PresentVisitor;

impl<'de> Visitor<'de> for PresentVisitor {
    type Value = Present;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Present, E> {
        Ok(Present(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Present, E> {
        Ok(Present(true))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Present, E> {
        Ok(Present(true))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Present, E> {
        Ok(Present(true))
    }

    fn visit_str<E>(self, v: &str) -> Result<Present, E> {
        Ok(Present(!v.is_empty()))
    }

    fn visit_unit<E>(self) -> Result<Present, E> {
        Ok(Present(false))
    }

    fn visit_none<E>(self) -> Result<Present, E> {
        Ok(Present(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Present, A::Error> {
        let any = seq.next_element::<IgnoredAny>()?.is_some();
        drain_seq(seq)?;
        Ok(Present(any))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Present, A::Error> {
        let any = map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some();
        drain_map(map)?;
        Ok(Present(any))
    }
}

/// An `error` field in any of the shapes the APIs use: Ollama's `"error":"message"`, or an
/// object with a `message` (OpenAI, Anthropic, Responses). `null` and `false` mean none.
#[derive(Debug, Default, PartialEq)]
pub(super) enum ErrorField {
    #[default]
    Absent,
    Message(String),
    Invalid,
}

/// Said when an error carries no words of its own: it is still an error.
const NO_MESSAGE: &str = "error without a message";

impl<'de> Deserialize<'de> for ErrorField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ErrorVisitor)
    }
}

struct ErrorVisitor;

impl<'de> Visitor<'de> for ErrorVisitor {
    type Value = ErrorField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an error object")
    }

    fn visit_bool<E>(self, v: bool) -> Result<ErrorField, E> {
        Ok(if v {
            ErrorField::Message(NO_MESSAGE.to_owned())
        } else {
            ErrorField::Absent
        })
    }

    fn visit_i64<E>(self, _: i64) -> Result<ErrorField, E> {
        Ok(ErrorField::Invalid)
    }

    fn visit_u64<E>(self, _: u64) -> Result<ErrorField, E> {
        Ok(ErrorField::Invalid)
    }

    fn visit_f64<E>(self, _: f64) -> Result<ErrorField, E> {
        Ok(ErrorField::Invalid)
    }

    fn visit_str<E>(self, v: &str) -> Result<ErrorField, E> {
        Ok(ErrorField::Message(if v.is_empty() {
            NO_MESSAGE.to_owned()
        } else {
            v.to_owned()
        }))
    }

    fn visit_unit<E>(self) -> Result<ErrorField, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_none<E>(self) -> Result<ErrorField, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ErrorField, A::Error> {
        drain_seq(seq)?;
        Ok(ErrorField::Invalid)
    }

    /// Takes `message`, falling back on `type` or `code` (for example
    /// `{"type":"overloaded_error"}`) so that an error object always reads as an error.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorField, A::Error> {
        let mut message = None;
        let mut fallback = None;
        while let Some(key) = map.next_key::<ErrorKey>()? {
            match key {
                ErrorKey::Message => {
                    if let Lenient::Valid(m) = map.next_value::<Lenient<String>>()? {
                        message.get_or_insert(m);
                    }
                }
                ErrorKey::TypeOrCode => {
                    if let Lenient::Valid(m) = map.next_value::<Lenient<String>>()? {
                        fallback.get_or_insert(m);
                    }
                }
                ErrorKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let message = message
            .filter(|m| !m.is_empty())
            .or(fallback.filter(|m| !m.is_empty()));
        Ok(ErrorField::Message(
            message.unwrap_or_else(|| NO_MESSAGE.to_owned()),
        ))
    }
}

/// The keys of an error object that matter, read without allocating.
enum ErrorKey {
    Message,
    TypeOrCode,
    Other,
}

impl<'de> Deserialize<'de> for ErrorKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(ErrorKeyVisitor)
    }
}

struct ErrorKeyVisitor;

impl Visitor<'_> for ErrorKeyVisitor {
    type Value = ErrorKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<ErrorKey, E> {
        Ok(match v {
            "message" => ErrorKey::Message,
            "type" | "code" => ErrorKey::TypeOrCode,
            _ => ErrorKey::Other,
        })
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}
