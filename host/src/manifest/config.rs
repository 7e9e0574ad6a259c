//! The `config` section: [`ConfigField`], and merging it with the operator's
//! values ([`Manifest::resolve_config`]).
//!
//! [`Manifest::resolve_config`]: super::Manifest::resolve_config

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::names::EnvVarName;

/// One configuration key the plugin accepts.
///
/// ```yaml
/// config:
///   rps:     { type: number,  default: 10, description: tokens per second }
///   api_key: { type: string,  required: true, secret: true }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    /// The value's JSON type.
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// The operator must give a value (a required field has no default).
    #[serde(default)]
    pub required: bool,
    /// The value used when the operator gives none; must be of `type`.
    #[serde(default)]
    pub default: Option<Value>,
    /// What the value means, for operators (at most 1 KiB).
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The value is a secret: it is shown as `***` in logs, the admin API and
    /// the UI, and never appears in error messages.
    #[serde(default)]
    pub secret: bool,
}

/// The JSON type of a configuration value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    /// A string.
    String,
    /// Any number (integers too).
    Number,
    /// A whole number (`20` or `20.0`, not `20.5`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A list.
    Array,
    /// A map.
    Object,
}

impl ConfigType {
    /// The type's name in a manifest, such as `integer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConfigType::String => "string",
            ConfigType::Number => "number",
            ConfigType::Integer => "integer",
            ConfigType::Boolean => "boolean",
            ConfigType::Array => "array",
            ConfigType::Object => "object",
        }
    }

    /// Returns `value` if it is of this type; integers are normalized (`20.0`
    /// becomes `20`).
    pub fn check(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (ConfigType::String, Value::String(_))
            | (ConfigType::Number, Value::Number(_))
            | (ConfigType::Boolean, Value::Bool(_))
            | (ConfigType::Array, Value::Array(_))
            | (ConfigType::Object, Value::Object(_)) => Some(value.clone()),
            (ConfigType::Integer, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    Some(value.clone())
                } else {
                    let f = n.as_f64()?;
                    let whole = f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64;
                    whole.then(|| Value::from(f as i64))
                }
            }
            _ => None,
        }
    }

    /// Converts the text of an environment variable to this type: numbers,
    /// `true`/`false`, JSON for arrays and objects, strings as they are.
    fn parse_env(self, text: &str) -> Option<Value> {
        let value = match self {
            ConfigType::String => return Some(Value::String(text.to_owned())),
            ConfigType::Boolean => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return None,
            },
            _ => serde_json::from_str(text.trim()).ok()?,
        };
        self.check(&value)
    }
}

impl fmt::Display for ConfigType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Describes a value for an error message, without the value if it is secret.
fn describe(value: &Value, secret: bool) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    if secret || matches!(value, Value::Array(_) | Value::Object(_)) {
        kind.to_owned()
    } else {
        format!("{kind} `{value}`")
    }
}

impl ConfigField {
    /// Checks the field on its own: the default has the right type, and a
    /// required field has no default.
    fn check(&self) -> Result<(), String> {
        match &self.default {
            Some(_) if self.required => {
                Err("a required field cannot have a default: remove `required: true` or the default".to_owned())
            }
            Some(value) if self.ty.check(value).is_none() => {
                Err(format!("the default is {}, expected {}", describe(value, self.secret), article(self.ty)))
            }
            _ => Ok(()),
        }
    }
}

fn article(ty: ConfigType) -> String {
    match ty {
        ConfigType::Integer | ConfigType::Array | ConfigType::Object => format!("an {ty}"),
        _ => format!("a {ty}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    ty: ConfigType,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: bool,
}

impl<'de> Deserialize<'de> for ConfigField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = ConfigField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a config field such as `{ type: integer, default: 20 }`")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConfigField, A::Error> {
        let raw = RawField::deserialize(MapAccessDeserializer::new(map))?;
        let field = ConfigField {
            ty: raw.ty,
            required: raw.required,
            default: raw.default,
            description: raw.description,
            secret: raw.secret,
        };
        field.check().map_err(de::Error::custom)?;
        Ok(field)
    }
}

/// Merges the manifest's defaults with the operator's values; see
/// [`Manifest::resolve_config`](super::Manifest::resolve_config).
pub(super) fn resolve(
    fields: &BTreeMap<String, ConfigField>,
    operator: &Map<String, Value>,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Map<String, Value>, String> {
    let mut problems = Vec::new();
    for key in operator.keys().filter(|k| !fields.contains_key(*k)) {
        if fields.is_empty() {
            problems.push(format!("unknown key `{key}`: this plugin takes no configuration"));
        } else {
            let known: Vec<String> = fields.keys().map(|k| format!("`{k}`")).collect();
            problems.push(format!("unknown key `{key}`, expected one of {}", known.join(", ")));
        }
    }
    let mut resolved = Map::new();
    for (key, field) in fields {
        let value = match operator.get(key) {
            Some(value) => match env_reference(value) {
                Some(var) => match env(var) {
                    Ok(text) => field.ty.parse_env(&text).ok_or_else(|| {
                        let shown = if field.secret { String::new() } else { format!(" (`{text}`)") };
                        format!("`{key}`: environment variable `{var}`{shown} is not {}", article(field.ty))
                    }),
                    Err(std::env::VarError::NotPresent) => {
                        Err(format!("`{key}`: environment variable `{var}` is not set"))
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        Err(format!("`{key}`: environment variable `{var}` is not valid UTF-8"))
                    }
                },
                None => field.ty.check(value).ok_or_else(|| {
                    format!("`{key}`: expected {}, found {}", article(field.ty), describe(value, field.secret))
                }),
            },
            None if field.required => Err(format!("missing required key `{key}`")),
            None => match &field.default {
                Some(default) => Ok(field.ty.check(default).unwrap_or_else(|| default.clone())),
                None => continue,
            },
        };
        match value {
            Ok(value) => {
                resolved.insert(key.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() { Ok(resolved) } else { Err(problems.join("; ")) }
}

/// `Some(NAME)` if `value` is exactly the string `${NAME}`.
fn env_reference(value: &Value) -> Option<&str> {
    let name = value.as_str()?.strip_prefix("${")?.strip_suffix('}')?;
    EnvVarName::is_valid(name).then_some(name)
}

/// The text shown instead of a secret value.
pub(super) const REDACTED: &str = "***";

/// See [`Manifest::redact_config`](super::Manifest::redact_config).
pub(super) fn redact(fields: &BTreeMap<String, ConfigField>, config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .map(|(key, value)| {
            let secret = fields.get(key).is_none_or(|field| field.secret);
            (key.clone(), if secret { Value::from(REDACTED) } else { value.clone() })
        })
        .collect()
}
