//! Deserialization helpers that validate *inside* the deserializer.
//!
//! serde_norway attaches a line and column to an error only while the value's
//! own `deserialize_*` call is running. A check done after it returns (as
//! `#[serde(try_from)]` does) is reported at the enclosing mapping instead. So
//! every check here runs in a visitor, and the error points at the bad value.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// Parses a string scalar with `parse`; its `Err` text becomes the error.
pub(super) struct Parsed<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Parsed<T> {
    pub(super) const fn new(expecting: &'static str, parse: fn(&str) -> Result<T, String>) -> Self {
        Parsed { expecting, parse }
    }
}

impl<'de, T> DeserializeSeed<'de> for Parsed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<T> Visitor<'_> for Parsed<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// Deserializes a string with `parse`, reporting errors at the string.
pub(super) fn parsed<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    Parsed::new(expecting, parse).deserialize(deserializer)
}

/// Deserializes an optional value with `seed`: `null` or a missing field is
/// `None` (the field also needs `#[serde(default)]`).
pub(super) fn optional<'de, D, S>(deserializer: D, seed: S) -> Result<Option<S::Value>, D::Error>
where
    D: Deserializer<'de>,
    S: DeserializeSeed<'de>,
{
    deserializer.deserialize_option(OptionalVisitor(seed, PhantomData))
}

struct OptionalVisitor<'de, S>(S, PhantomData<&'de ()>);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptionalVisitor<'de, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an optional value")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// An unsigned integer within `min..=max`, written as a YAML integer.
#[derive(Clone, Copy)]
pub(super) struct BoundedInt {
    pub(super) min: u64,
    pub(super) max: u64,
}

impl<'de> DeserializeSeed<'de> for BoundedInt {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl BoundedInt {
    fn check<E: de::Error>(self, v: i128) -> Result<u64, E> {
        if v < i128::from(self.min) || v > i128::from(self.max) {
            let (min, max) = (self.min, self.max);
            return Err(E::custom(if max == u64::MAX {
                format!("`{v}` is out of range: use at least {min}")
            } else {
                format!("`{v}` is out of range: use {min} to {max}")
            }));
        }
        Ok(v as u64)
    }
}

impl Visitor<'_> for BoundedInt {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer from {} to {}", self.min, self.max)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(i128::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        self.check(i128::from(v))
    }
}
