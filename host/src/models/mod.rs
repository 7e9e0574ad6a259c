//! Model configuration (seed 004): which models exist, under which aliases,
//! in which mode (served by which interface plugin), and what devices and
//! memory they need.
//!
//! ```yaml
//! models:
//!   qwen2.5-7b:
//!     aliases: [qwen, qwen-chat]        # other names clients may use
//!     mode: chat                        # the interface plugin whose `mode` is `chat`
//!     base-url: http://127.0.0.1:10015  # the model server, for health checks
//!     required-devices: [gpu:0]         # device ids, as `plugbox devices` shows them
//!     memory-mb: { gpu:0: 8192 }        # MiB needed on each device
//!   bge-m3:
//!     mode: embedding
//!     required-devices: [memory]        # system RAM
//!     memory-mb: { memory: 2048 }
//! ```
//!
//! Unknown fields are errors; every error names the file and, where it can,
//! the line and column. Rules checked while parsing: model names and aliases
//! are 1-128 characters without spaces; `mode` is 1-64 of `a-z`, `0-9`, `-`;
//! `base-url` is an `http://` or `https://` URL with a host; device ids have no
//! spaces. Rules across fields: a name or alias names one model only; a device
//! is required once; `memory-mb` names only required devices.
//!
//! [`ModelSet`] routes a request to the interface plugin of its model's mode.

pub(crate) mod endpoints;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

pub use endpoints::{InterfaceInfo, RouteError, RouteVerdict};

/// Why a model configuration could not be used. Model files are YAML like
/// manifests and report errors the same way (`file:line:column: message`),
/// with the same type: `Io`, `Parse`, or `Invalid` for rules across models.
pub type ModelConfigError = crate::manifest::ManifestError;

/// One model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelConfig {
    /// The model's name (its key in the file).
    #[serde(skip_deserializing)]
    pub name: String,
    /// Other names clients may use for it.
    #[serde(default, deserialize_with = "de_names")]
    pub aliases: Vec<String>,
    /// The interface mode (`chat`, `embedding` ...): the interface plugin
    /// whose `mode` it is validates its requests and checks its health.
    #[serde(deserialize_with = "de_mode")]
    pub mode: String,
    /// Where the model's server listens, for health checks.
    #[serde(default, deserialize_with = "de_base_url")]
    pub base_url: Option<String>,
    /// Ids of the devices the model runs on (`gpu:0`, `memory`, `sysfs:card1`).
    #[serde(default, deserialize_with = "de_devices")]
    pub required_devices: Vec<String>,
    /// MiB needed on each required device (absent: only needs it online).
    #[serde(default)]
    pub memory_mb: BTreeMap<String, u64>,
}

impl ModelConfig {
    /// A model with no aliases, devices or base URL.
    pub fn new(name: impl Into<String>, mode: impl Into<String>) -> Self {
        ModelConfig {
            name: name.into(),
            aliases: Vec::new(),
            mode: mode.into(),
            base_url: None,
            required_devices: Vec::new(),
            memory_mb: BTreeMap::new(),
        }
    }

    /// Whether `name` is this model's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a model configuration: a map with `models`")]
struct ModelFile {
    models: BTreeMap<String, ModelConfig>,
}

/// The configured models, found by name or alias.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelSet {
    models: Vec<ModelConfig>,
    #[serde(skip)]
    by_name: HashMap<String, usize>,
}

impl ModelSet {
    /// Reads and checks a model configuration file.
    pub fn from_path(path: &Path) -> Result<ModelSet, ModelConfigError> {
        let src =
            std::fs::read_to_string(path).map_err(|source| ModelConfigError::Io { path: path.to_owned(), source })?;
        ModelSet::from_str(&src, path)
    }

    /// Parses and checks a model configuration; `origin` names it in errors.
    pub fn from_str(src: &str, origin: &Path) -> Result<ModelSet, ModelConfigError> {
        let file: ModelFile = serde_norway::from_str(src).map_err(|e| crate::manifest::from_yaml(e, src, origin))?;
        let models = file
            .models
            .into_iter()
            .map(|(name, mut m)| {
                m.name = name;
                m
            })
            .collect();
        ModelSet::new(models).map_err(|(model, message)| ModelConfigError::Invalid {
            path: origin.to_owned(),
            line: model_line(src, &model),
            message,
        })
    }

    /// Checks `models` together. The error names the model at fault.
    pub fn new(models: Vec<ModelConfig>) -> Result<ModelSet, (String, String)> {
        let mut by_name = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            check_name(&m.name).map_err(|e| (m.name.clone(), format!("model name: {e}")))?;
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                if let Some(&other) = by_name.get(name) {
                    let other: &ModelConfig = &models[other];
                    return Err((
                        m.name.clone(),
                        format!("model `{}`: the name `{name}` already names model `{}`", m.name, other.name),
                    ));
                }
                by_name.insert(name.clone(), i);
            }
            for (j, d) in m.required_devices.iter().enumerate() {
                if m.required_devices[..j].contains(d) {
                    return Err((m.name.clone(), format!("model `{}`: device `{d}` is required twice", m.name)));
                }
            }
            if let Some(d) = m.memory_mb.keys().find(|d| !m.required_devices.contains(d)) {
                return Err((
                    m.name.clone(),
                    format!("model `{}`: `memory-mb` names `{d}`, which is not in `required-devices`", m.name),
                ));
            }
        }
        Ok(ModelSet { models, by_name })
    }

    /// The model called `name` (its name or an alias).
    pub fn get(&self, name: &str) -> Option<&ModelConfig> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// Every model, by name.
    pub fn iter(&self) -> impl Iterator<Item = &ModelConfig> {
        self.models.iter()
    }

    /// Number of models (aliases not counted).
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no model is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// The line of a model's key under `models:`.
fn model_line(src: &str, name: &str) -> Option<usize> {
    let keys = [format!("{name}:"), format!("\"{name}\":"), format!("'{name}':")];
    src.lines()
        .position(|l| l.starts_with(' ') && keys.iter().any(|k| l.trim_start().starts_with(k.as_str())))
        .map(|i| i + 1)
}

fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` must be 1-128 characters without spaces", s.escape_debug()));
    }
    Ok(())
}

fn check_mode(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| s.to_string()).ok_or_else(|| format!("invalid mode `{s}`: use 1-64 characters from a-z, 0-9 and `-`"))
}

fn check_base_url(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("invalid base-url `{s}`: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(s.trim_end_matches('/').to_string()),
        _ => Err(format!("invalid base-url `{s}`: use an http:// or https:// URL with a host")),
    }
}

fn check_device(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid device id `{}`: use 1-1024 characters without spaces", s.escape_debug()));
    }
    Ok(s.to_string())
}

/// Validates each string of a list inside the deserializer, so that an error
/// points at the bad value, not at the enclosing map.
struct Strings(fn(&str) -> Result<String, String>, &'static str);

impl<'de> Visitor<'de> for Strings {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(One(self.0, self.1))? {
            out.push(v);
        }
        Ok(out)
    }
}

struct One(fn(&str) -> Result<String, String>, &'static str);

impl<'de> de::DeserializeSeed<'de> for One {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for One {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v).map_err(E::custom)
    }
}

fn de_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    fn check(s: &str) -> Result<String, String> {
        check_name(s).map(|()| s.to_string()).map_err(|e| format!("alias {e}"))
    }
    d.deserialize_seq(Strings(check, "a list of model aliases"))
}

fn de_devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_seq(Strings(check_device, "a list of device ids such as `gpu:0`"))
}

fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de::DeserializeSeed::deserialize(One(check_mode, "a mode such as `chat`"), d)
}

fn de_base_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de::DeserializeSeed::deserialize(One(check_base_url, "a URL such as `http://127.0.0.1:8080`"), d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<ModelSet, String> {
        ModelSet::from_str(src, Path::new("models.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_documented_example() {
        let src = "models:\n  qwen2.5-7b:\n    aliases: [qwen, qwen-chat]\n    mode: chat\n    base-url: http://127.0.0.1:10015/\n    required-devices: [gpu:0]\n    memory-mb: { gpu:0: 8192 }\n  bge-m3:\n    mode: embedding\n";
        let set = parse(src).unwrap();
        assert_eq!(set.len(), 2);
        let q = set.get("qwen").unwrap();
        assert_eq!(q.name, "qwen2.5-7b");
        assert_eq!(q.base_url.as_deref(), Some("http://127.0.0.1:10015"));
        assert_eq!(q.memory_mb["gpu:0"], 8192);
        assert!(q.answers_to("qwen-chat"));
        assert_eq!(set.get("bge-m3").unwrap().mode, "embedding");
        assert!(set.get("nope").is_none());
    }

    #[test]
    fn errors_point_at_the_value() {
        let err = |src: &str| parse(src).unwrap_err();
        assert_eq!(
            err("models:\n  m:\n    mode: Chat Mode\n"),
            "models.yaml:3:11: models.m.mode: invalid mode `Chat Mode`: use 1-64 characters from a-z, 0-9 and `-`"
        );
        let starts = |src: &str, prefix: &str| {
            let e = err(src);
            assert!(e.starts_with(prefix), "{e}");
        };
        starts("models:\n  m:\n    mode: chat\n    port: 1\n", "models.yaml:4:5: models.m: unknown field `port`");
        starts("models:\n  m:\n    mode: chat\n    base-url: ftp://x\n", "models.yaml:4:15: ");
        starts(
            "models:\n  m:\n    mode: chat\n    aliases: [a, 'b c']\n",
            "models.yaml:4:18: models.m.aliases[1]: alias `b c` must be 1-128 characters without spaces",
        );
        assert!(err("models:\n  m:\n    aliases: [a]\n").contains("missing field `mode`"));
    }

    #[test]
    fn rules_across_fields_and_models() {
        let err = |src: &str| parse(src).unwrap_err();
        assert_eq!(
            err("models:\n  a:\n    mode: chat\n    aliases: [x]\n  b:\n    mode: chat\n    aliases: [x]\n"),
            "models.yaml:5: model `b`: the name `x` already names model `a`"
        );
        assert_eq!(
            err("models:\n  a:\n    mode: chat\n    required-devices: [gpu:0]\n    memory-mb: { gpu:1: 10 }\n"),
            "models.yaml:2: model `a`: `memory-mb` names `gpu:1`, which is not in `required-devices`"
        );
        assert_eq!(
            err("models:\n  a:\n    mode: chat\n    required-devices: [gpu:0, gpu:0]\n"),
            "models.yaml:2: model `a`: device `gpu:0` is required twice"
        );
    }
}
