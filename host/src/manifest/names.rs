//! Validated names: [`PluginName`] and [`EnvVarName`].

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::de::parsed;

/// A plugin's name: 1 to 64 characters from `a-z`, `0-9` and `-`, unique in a
/// host. It names the plugin in logs, metrics, the admin API, and the
/// operator's policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginName(String);

impl PluginName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PluginName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid =
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(PluginName(s.to_owned()))
        } else {
            Err(format!("invalid plugin name `{s}`: use 1-64 characters from a-z, 0-9 and `-`"))
        }
    }
}

impl TryFrom<String> for PluginName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PluginName> for String {
    fn from(name: PluginName) -> String {
        name.0
    }
}

impl AsRef<str> for PluginName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for PluginName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PluginName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed(deserializer, "a plugin name", str::parse)
    }
}

impl JsonSchema for PluginName {
    fn schema_name() -> Cow<'static, str> {
        "PluginName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9-]{1,64}$",
            "description": "1-64 characters from a-z, 0-9 and `-`, unique in a host.",
        })
    }
}

/// The name of an environment variable the plugin may read:
/// `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvVarName(String);

impl EnvVarName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` is a valid environment variable name.
    pub(super) fn is_valid(s: &str) -> bool {
        let mut bytes = s.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
}

impl FromStr for EnvVarName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if Self::is_valid(s) {
            Ok(EnvVarName(s.to_owned()))
        } else {
            Err(format!(
                "invalid environment variable name `{s}`: use letters, digits and `_`, not starting with a digit"
            ))
        }
    }
}

impl TryFrom<String> for EnvVarName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EnvVarName> for String {
    fn from(name: EnvVarName) -> String {
        name.0
    }
}

impl AsRef<str> for EnvVarName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EnvVarName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EnvVarName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed(deserializer, "an environment variable name", str::parse)
    }
}

impl JsonSchema for EnvVarName {
    fn schema_name() -> Cow<'static, str> {
        "EnvVarName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "An environment variable the plugin may read.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        for ok in ["a", "rate-limit", "x9", &"a".repeat(64)] {
            assert_eq!(ok.parse::<PluginName>().unwrap().as_str(), ok);
        }
        for bad in ["", "My Plugin", "rate_limit", "Rate", "é", &"a".repeat(65)] {
            assert!(bad.parse::<PluginName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_var_names() {
        for ok in ["LOG_LEVEL", "_X", "a1"] {
            assert!(ok.parse::<EnvVarName>().is_ok(), "{ok:?}");
        }
        for bad in ["", "1A", "LOG-LEVEL", "A B", "$X"] {
            assert!(bad.parse::<EnvVarName>().is_err(), "{bad:?}");
        }
    }
}
