//! The plugin's configuration, as the host passes it to `init`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The effective configuration of a plugin: the manifest's `config` defaults
/// merged with the operator's values, as a JSON object.
///
/// The typed getters return `Ok(None)` when a key is absent (or `null`) and an
/// error naming the key when it holds a value of the wrong type, so that
/// `init` can use `?`:
///
/// ```
/// # use plugbox_sdk::Config;
/// # fn init(config: Config) -> Result<(), String> {
/// let rps = config.get_f64("rps")?.unwrap_or(10.0);
/// let prompt = config.require_str("prompt")?;
/// # let _ = (rps, prompt); Ok(()) }
/// # assert!(init(Config::from_json(r#"{"prompt": "be brief"}"#).unwrap()).is_ok());
/// # assert!(init(Config::empty()).is_err());
/// ```
///
/// Or deserialize the whole object into your own type with [`Config::parse`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    values: Map<String, Value>,
}

impl Config {
    /// An empty configuration.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse the JSON the host passes to `init`. An empty string or `null` is an
    /// empty configuration; anything but a JSON object is an error.
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::empty());
        }
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(values)) => Ok(Config { values }),
            Ok(Value::Null) => Ok(Self::empty()),
            Ok(other) => Err(format!("the plugin config must be a JSON object, got `{other}`")),
            Err(e) => Err(format!("the plugin config is not valid JSON: {e}")),
        }
    }

    /// Build a configuration from a JSON object.
    pub fn from_map(values: Map<String, Value>) -> Self {
        Config { values }
    }

    /// The raw JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.values
    }

    /// Whether `key` is present with a non-null value.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The raw value of `key`, if present and not `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A number value (integers are accepted).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(wrong_type(key, "a number", other)),
        }
    }

    /// An integer value. A number with no fractional part (`20.0`) is accepted.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    return Ok(Some(i));
                }
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(wrong_type(key, "an integer", &Value::Number(n.clone()))),
                }
            }
            Some(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "a boolean", other)),
        }
    }

    /// A string value that must be present.
    pub fn require_str(&self, key: &str) -> Result<&str, String> {
        self.get_str(key)?.ok_or_else(|| format!("config `{key}` is required"))
    }

    /// Deserialize the whole configuration into `T`.
    ///
    /// ```
    /// # use plugbox_sdk::Config;
    /// #[derive(serde::Deserialize)]
    /// struct Settings { ttl_seconds: u64, #[serde(default)] verbose: bool }
    ///
    /// let config = Config::from_json(r#"{"ttl_seconds": 60}"#).unwrap();
    /// let settings: Settings = config.parse().unwrap();
    /// assert_eq!(settings.ttl_seconds, 60);
    /// assert!(!settings.verbose);
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(Value::Object(self.values.clone())).map_err(|e| format!("invalid plugin config: {e}"))
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> String {
    format!("config `{key}` must be {expected}, got `{got}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters() {
        let c = Config::from_json(r#"{"s": "x", "n": 1.5, "i": 20, "f": 3.0, "b": true, "z": null}"#).unwrap();
        assert_eq!(c.get_str("s").unwrap(), Some("x"));
        assert_eq!(c.get_f64("n").unwrap(), Some(1.5));
        assert_eq!(c.get_f64("i").unwrap(), Some(20.0));
        assert_eq!(c.get_i64("i").unwrap(), Some(20));
        assert_eq!(c.get_i64("f").unwrap(), Some(3));
        assert!(c.get_i64("n").is_err());
        assert_eq!(c.get_bool("b").unwrap(), Some(true));
        assert_eq!(c.get_str("z").unwrap(), None);
        assert_eq!(c.get_str("missing").unwrap(), None);
        assert_eq!(c.get_str("b").unwrap_err(), "config `b` must be a string, got `true`");
        assert_eq!(c.require_str("nope").unwrap_err(), "config `nope` is required");
    }

    #[test]
    fn from_json_shapes() {
        assert_eq!(Config::from_json("").unwrap(), Config::empty());
        assert_eq!(Config::from_json("null").unwrap(), Config::empty());
        assert!(Config::from_json("[1]").is_err());
        assert!(Config::from_json("{").is_err());
    }
}
