//! [`Limits`]: resource limits per instance and per call, with safe defaults.

use std::time::Duration;

use bytesize::ByteSize;
use schemars::JsonSchema;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::de::{BoundedInt, optional};
use super::units::{DurationRule, GIB, KIB, MIB, SizeRule, duration_schema, ser_duration, ser_size, size_schema};

const MEMORY: SizeRule = SizeRule { min: MIB, max: 4 * GIB, default: 64 * MIB };
const STACK: SizeRule = SizeRule { min: 64 * KIB, max: 4 * MIB, default: 512 * KIB };
const MAX_OUTPUT: SizeRule = SizeRule { min: KIB, max: 64 * MIB, default: 4 * MIB };
const MAX_HELD: SizeRule = SizeRule { min: 0, max: MIB, default: 16 * KIB };
const TIMEOUT_MIN: Duration = Duration::from_millis(1);
const TIMEOUT_MAX: Duration = Duration::from_secs(60);
const TIMEOUT: DurationRule = DurationRule { min: TIMEOUT_MIN, max: TIMEOUT_MAX };
const TIMEOUT_DEFAULT: Duration = Duration::from_millis(100);
const INSTANCES: BoundedInt = BoundedInt { min: 1, max: 256 };
const INSTANCES_DEFAULT: u32 = 4;
const FUEL: BoundedInt = BoundedInt { min: 1, max: u64::MAX };

/// Resource limits per instance and per hook call. Each one is optional and
/// has a safe default.
///
/// Sizes are integers (bytes) or strings with a unit: `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000), such as `32MiB`.
/// Durations are strings such as `20ms`, `1s` or `1m 30s`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Linear memory cap per instance. Default 64MiB; 1MiB to 4GiB.
    #[serde(default, deserialize_with = "de_memory", serialize_with = "ser_size")]
    #[schemars(schema_with = "size_schema")]
    pub memory: Option<ByteSize>,
    /// Wall-clock time per hook call. Default 100ms; 1ms to 60s.
    #[serde(default, deserialize_with = "de_timeout", serialize_with = "ser_duration")]
    #[schemars(schema_with = "duration_schema")]
    pub timeout: Option<Duration>,
    /// Instances that may run at once (calls beyond wait). Default 4; 1 to 256.
    #[serde(default, deserialize_with = "de_instances")]
    #[schemars(range(min = 1, max = 256))]
    pub instances: Option<u32>,
    /// WebAssembly stack per instance. Default 512KiB; 64KiB to 4MiB.
    #[serde(default, deserialize_with = "de_stack", serialize_with = "ser_size")]
    #[schemars(schema_with = "size_schema")]
    pub stack: Option<ByteSize>,
    /// Fuel (roughly, WebAssembly instructions) per hook call, on top of the
    /// timeout. Default: no fuel limit; at least 1.
    #[serde(default, deserialize_with = "de_fuel")]
    #[schemars(range(min = 1))]
    pub fuel: Option<u64>,
    /// Largest output of one hook call (response, chunk, report) in bytes.
    /// Default 4MiB; 1KiB to 64MiB.
    #[serde(default, deserialize_with = "de_max_output", serialize_with = "ser_size")]
    #[schemars(schema_with = "size_schema")]
    pub max_output: Option<ByteSize>,
    /// Most bytes of stream text an `on-chunk` hook may hold back (answer
    /// `hold`) at once. Default 16KiB; 0 to 1MiB.
    #[serde(default, deserialize_with = "de_max_held", serialize_with = "ser_size")]
    #[schemars(schema_with = "size_schema")]
    pub max_held: Option<ByteSize>,
}

/// Limits with every default filled in, in plain units, ready to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedLimits {
    /// Linear memory cap per instance, in bytes.
    pub memory: u64,
    /// Wall-clock deadline per hook call.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Instances that may run at once.
    pub instances: u32,
    /// WebAssembly stack size per instance, in bytes.
    pub stack: u64,
    /// Fuel per hook call; `None` means no fuel metering.
    pub fuel: Option<u64>,
    /// Largest output of one hook call, in bytes.
    pub max_output: u64,
    /// Most bytes of stream text an `on-chunk` hook may hold back.
    pub max_held: u64,
}

impl ResolvedLimits {
    /// The limits of a plugin whose manifest sets none: memory 64 MiB,
    /// timeout 100 ms, 4 instances, stack 512 KiB, no fuel limit, output 4 MiB,
    /// 16 KiB held.
    pub const DEFAULT: ResolvedLimits = ResolvedLimits {
        memory: MEMORY.default,
        timeout: TIMEOUT_DEFAULT,
        instances: INSTANCES_DEFAULT,
        stack: STACK.default,
        fuel: None,
        max_output: MAX_OUTPUT.default,
        max_held: MAX_HELD.default,
    };
}

impl ResolvedLimits {
    /// The tighter of two sets of limits, limit by limit.
    pub fn min(&self, other: &ResolvedLimits) -> ResolvedLimits {
        ResolvedLimits {
            memory: self.memory.min(other.memory),
            timeout: self.timeout.min(other.timeout),
            instances: self.instances.min(other.instances),
            stack: self.stack.min(other.stack),
            fuel: match (self.fuel, other.fuel) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            max_output: self.max_output.min(other.max_output),
            max_held: self.max_held.min(other.max_held),
        }
    }
}

impl Default for ResolvedLimits {
    fn default() -> Self {
        ResolvedLimits::DEFAULT
    }
}

impl Limits {
    /// Fills in the defaults ([`ResolvedLimits::DEFAULT`]) for limits that are
    /// not set.
    ///
    /// A parsed manifest's limits are already within bounds (they are checked
    /// while parsing, with the line of the bad value). Limits built in code
    /// that are out of bounds are clamped to them here, so that the result is
    /// always safe to apply:
    ///
    /// | limit        | default  | bounds           |
    /// |--------------|----------|------------------|
    /// | `memory`     | 64 MiB   | 1 MiB – 4 GiB    |
    /// | `timeout`    | 100 ms   | 1 ms – 60 s      |
    /// | `instances`  | 4        | 1 – 256          |
    /// | `stack`      | 512 KiB  | 64 KiB – 4 MiB   |
    /// | `fuel`       | none     | at least 1       |
    /// | `max-output` | 4 MiB    | 1 KiB – 64 MiB   |
    /// | `max-held`   | 16 KiB   | 0 – 1 MiB        |
    pub fn resolve(&self) -> ResolvedLimits {
        self.resolve_with(ResolvedLimits::DEFAULT)
    }

    /// Like [`Limits::resolve`], with `defaults` for the limits that are not
    /// set (the operator policy uses it for its bounds).
    pub fn resolve_with(&self, defaults: ResolvedLimits) -> ResolvedLimits {
        let size = |value: Option<ByteSize>, rule: SizeRule, default: u64| {
            value.map_or(default, |v| v.as_u64().clamp(rule.min, rule.max))
        };
        ResolvedLimits {
            memory: size(self.memory, MEMORY, defaults.memory),
            timeout: self.timeout.map_or(defaults.timeout, |t| t.clamp(TIMEOUT_MIN, TIMEOUT_MAX)),
            instances: self
                .instances
                .map_or(defaults.instances, |n| n.clamp(INSTANCES.min as u32, INSTANCES.max as u32)),
            stack: size(self.stack, STACK, defaults.stack),
            fuel: self.fuel.map(|f| f.max(FUEL.min)).or(defaults.fuel),
            max_output: size(self.max_output, MAX_OUTPUT, defaults.max_output),
            max_held: size(self.max_held, MAX_HELD, defaults.max_held),
        }
    }
}

fn de_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    optional(d, MEMORY)
}

fn de_stack<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    optional(d, STACK)
}

fn de_max_output<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    optional(d, MAX_OUTPUT)
}

fn de_max_held<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    optional(d, MAX_HELD)
}

fn de_instances<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    // INSTANCES.max fits in a u32.
    Ok(optional(d, INSTANCES)?.map(|n| n as u32))
}

fn de_fuel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    optional(d, FUEL)
}

fn de_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    optional(d, TIMEOUT)
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml: &str) -> Result<Limits, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let resolved = Limits::default().resolve();
        assert_eq!(resolved, ResolvedLimits::DEFAULT);
        assert_eq!(resolved.memory, 64 * MIB);
        assert_eq!(resolved.timeout, Duration::from_millis(100));
        assert_eq!(resolved.instances, 4);
        assert_eq!(resolved.stack, 512 * KIB);
        assert_eq!(resolved.fuel, None);
        assert_eq!(resolved.max_output, 4 * MIB);
        assert_eq!(resolved.max_held, 16 * KIB);
    }

    #[test]
    fn parses_and_resolves() {
        let l = limits("{memory: 32MiB, timeout: 20ms, instances: 8, stack: 1048576, fuel: 1000, max-output: 1MB}")
            .unwrap();
        let r = l.resolve();
        assert_eq!(r.memory, 32 * MIB);
        assert_eq!(r.timeout, Duration::from_millis(20));
        assert_eq!(r.instances, 8);
        assert_eq!(r.stack, MIB);
        assert_eq!(r.fuel, Some(1000));
        assert_eq!(r.max_output, 1_000_000);
        assert_eq!(limits("memory: null").unwrap(), Limits::default());
        assert_eq!(limits("max-held: 64KiB").unwrap().resolve().max_held, 64 * KIB);
        assert_eq!(limits("max-held: 0").unwrap().resolve().max_held, 0);
    }

    #[test]
    fn bounds_are_errors_when_parsing() {
        let err = |yaml| limits(yaml).unwrap_err();
        assert!(err("memory: 512KiB").starts_with("memory: `512KiB` is too small: use at least `1MiB`"));
        assert!(err("memory: 5GiB").starts_with("memory: `5GiB` is too large: use at most `4GiB`"));
        assert!(err("timeout: 0ms").starts_with("timeout: `0ms` is too short: use at least `1ms`"));
        assert!(err("timeout: 2m").starts_with("timeout: `2m` is too long: use at most `1m`"));
        assert!(err("instances: 0").starts_with("instances: `0` is out of range: use 1 to 256"));
        assert!(err("instances: 257").starts_with("instances: `257` is out of range"));
        assert!(err("stack: 1KiB").starts_with("stack: `1KiB` is too small"));
        assert!(err("fuel: 0").starts_with("fuel: `0` is out of range: use at least 1"));
        assert!(err("timeout: 20").starts_with("timeout: invalid duration `20`: add a unit"));
        assert!(err("memory: lots").starts_with("memory: invalid size `lots`"));
        assert!(err("memory: -1").starts_with("memory: invalid size `-1`"));
        assert!(err("max-held: 2MiB").starts_with("max-held: `2MiB` is too large: use at most `1MiB`"));
    }

    #[test]
    fn resolve_clamps_limits_built_in_code() {
        let l = Limits {
            memory: Some(ByteSize(1)),
            timeout: Some(Duration::from_secs(3600)),
            instances: Some(0),
            stack: Some(ByteSize(u64::MAX)),
            fuel: Some(0),
            max_output: Some(ByteSize(0)),
            max_held: Some(ByteSize(u64::MAX)),
        };
        let r = l.resolve();
        assert_eq!(
            r,
            ResolvedLimits {
                memory: MIB,
                timeout: TIMEOUT_MAX,
                instances: 1,
                stack: 4 * MIB,
                fuel: Some(1),
                max_output: KIB,
                max_held: MIB
            }
        );
    }

    #[test]
    fn sizes_serialize_exactly_and_round_trip() {
        let l = limits("{memory: 1.5GiB, timeout: 1s 500ms}").unwrap();
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), l);
    }
}
