//! Sizes (`32MiB`) and durations (`20ms`) in limits: parsing, bounds, and
//! writing them back exactly.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::Serializer;
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

pub(super) const KIB: u64 = 1 << 10;
pub(super) const MIB: u64 = 1 << 20;
pub(super) const GIB: u64 = 1 << 30;

/// Bounds and default of one size limit; it deserializes a bounded size.
#[derive(Clone, Copy)]
pub(super) struct SizeRule {
    pub(super) min: u64,
    pub(super) max: u64,
    pub(super) default: u64,
}

/// Writes a size exactly, in the largest binary unit that divides it.
pub(super) fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0B".to_owned(),
        b if b % GIB == 0 => format!("{}GiB", b / GIB),
        b if b % MIB == 0 => format!("{}MiB", b / MIB),
        b if b % KIB == 0 => format!("{}KiB", b / KIB),
        b => format!("{b}B"),
    }
}

/// Parses `<number>[ ]<unit>`, with a unit from `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000), case
/// sensitive so that `m` cannot silently mean 1000² bytes. No unit means bytes.
fn parse_size(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let factor: u64 = match unit.strip_prefix(' ').unwrap_or(unit) {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    let digit_at_ends =
        number.starts_with(|c: char| c.is_ascii_digit()) && number.ends_with(|c: char| c.is_ascii_digit());
    if !digit_at_ends {
        return None;
    }
    match number.parse::<u64>() {
        Ok(n) => n.checked_mul(factor),
        Err(_) => {
            let bytes = number.parse::<f64>().ok()? * factor as f64;
            (bytes < u64::MAX as f64).then_some(bytes as u64)
        }
    }
}

pub(super) fn ser_size<S: Serializer>(value: &Option<ByteSize>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(size) => serializer.serialize_str(&format_size(size.as_u64())),
        None => serializer.serialize_none(),
    }
}

pub(super) fn ser_duration<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_str(&humantime::format_duration(*d).to_string()),
        None => serializer.serialize_none(),
    }
}

impl SizeRule {
    fn check<E: de::Error>(self, written: &str, bytes: u64) -> Result<ByteSize, E> {
        if bytes < self.min {
            Err(E::custom(format_args!("`{written}` is too small: use at least `{}`", format_size(self.min))))
        } else if bytes > self.max {
            Err(E::custom(format_args!("`{written}` is too large: use at most `{}`", format_size(self.max))))
        } else {
            Ok(ByteSize(bytes))
        }
    }
}

impl<'de> DeserializeSeed<'de> for SizeRule {
    type Value = ByteSize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ByteSize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for SizeRule {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as `32MiB`")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        self.check(&v.to_string(), v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        Err(E::custom(format_args!("invalid size `{v}`: a size cannot be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        Err(E::custom(format_args!("invalid size `{v}`: add a unit, such as `1.5MiB`")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        match parse_size(v) {
            Some(bytes) => self.check(v, bytes),
            None => Err(E::custom(format_args!(
                "invalid size `{v}`: expected a number of bytes or a number with a unit \
                 (B, KiB, MiB, GiB, KB, MB, GB), such as `512KiB`, `32MiB` or `1GiB`"
            ))),
        }
    }
}

/// Bounds of a duration limit; it deserializes a bounded duration.
#[derive(Clone, Copy)]
pub(super) struct DurationRule {
    pub(super) min: Duration,
    pub(super) max: Duration,
}

impl<'de> DeserializeSeed<'de> for DurationRule {
    type Value = Duration;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for DurationRule {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as `20ms`")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format_args!("invalid duration `{v}`: add a unit, such as `{v}ms` or `{v}s`")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format_args!("invalid duration `{v}`: use a positive duration such as `20ms`")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format_args!("invalid duration `{v}`: add a unit, such as `{v}s`")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        let d = humantime::parse_duration(v).map_err(|_| {
            E::custom(format_args!(
                "invalid duration `{v}`: expected a number with a unit, such as `20ms`, `1s` or `1m 30s`"
            ))
        })?;
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if d < self.min {
            Err(E::custom(format_args!("`{v}` is too short: use at least `{}`", show(self.min))))
        } else if d > self.max {
            Err(E::custom(format_args!("`{v}` is too long: use at most `{}`", show(self.max))))
        } else {
            Ok(d)
        }
    }
}

pub(super) fn size_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "integer", "null"],
        "pattern": "^[0-9]+(\\.[0-9]+)? ?([KMGT]i?B|B)?$",
        "minimum": 0,
        "description": "A size: bytes, or a number with a unit such as `512KiB`, `32MiB`, `1GiB` (`KB`, `MB`, `GB` are powers of 1000).",
    })
}

pub(super) fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "description": "A duration with a unit, such as `20ms`, `1s` or `1m 30s`.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_units() {
        for (text, bytes) in [
            ("1048576", MIB),
            ("1MiB", MIB),
            ("1 MiB", MIB),
            ("1.5KiB", 1536),
            ("2MB", 2_000_000),
            ("3GB", 3_000_000_000),
            ("4GiB", 4 * GIB),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for bad in ["", "MiB", "1m", "1mib", "1 megs", "1.MiB", ".5MiB", "1  MiB", "-1", "99999999999TiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_are_written_exactly() {
        for (bytes, text) in
            [(32 * MIB, "32MiB"), (4 * GIB, "4GiB"), (1536, "1536B"), (1_000_000, "1000000B"), (2 * KIB, "2KiB")]
        {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
    }
}
