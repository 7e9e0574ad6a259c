//! The gateway config file (YAML).
//!
//! ```yaml
//! listen: 127.0.0.1:8080
//! providers:
//!   local: { type: plugin, provider-type: echo }
//!   openai:
//!     type: openai-compatible
//!     base-url: https://api.openai.com/v1
//!     api-key: ${OPENAI_API_KEY}
//!     timeouts: { connect: 5s, first-byte: 60s, total: 10m }
//!     retries: { max: 2, initial-backoff: 200ms, max-backoff: 5s }
//! routes:
//!   - model: gpt-4o
//!     targets:
//!       - { provider: openai, model: gpt-4o, weight: 3 }
//!       - { provider: local }
//! api-keys:
//!   - { key: "${TEAM_A_KEY}", caller: team-a }
//! limits: { max-body: 4MiB, request-timeout: 120s, max-concurrent: 1024, max-tool-rounds: 4 }
//! ```
//!
//! Unknown fields are refused; errors name `file:line:col` and the field's
//! path; `${NAME}` expands an environment variable in `listen`, `base-url`,
//! `api-key`, `headers` and `api-keys[].key` (a missing one is an error
//! naming it; `$${` is a literal `${`); durations are humantime (`5s`,
//! `200ms`, `10m`), sizes bytesize (`4MiB`). [`GatewayConfig::json_schema`]
//! is the schema editors use (checked in as `manifests/gateway.schema.json`);
//! [`ConfigWatcher`] follows the file for hot reloads. docs/gateway.md
//! ("Configuration reference") describes every field.

mod de;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use crate::upstream::UpstreamConfig;

pub use watch::ConfigWatcher;

/// The whole gateway config, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where `plugbox serve` listens (default `127.0.0.1:8080`); the
    /// command line's `--listen` wins.
    pub listen: SocketAddr,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// Client API keys. Empty: no authentication, loopback clients only.
    pub api_keys: Vec<ApiKey>,
    /// Request limits.
    pub limits: Limits,
    /// Model configs for device admission and endpoint validation, by the
    /// route's model name (same format as the host's model file).
    pub models: plugbox_host::ModelSet,
}

/// One provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// A provider plugin, by the `provider-type` it reports.
    Plugin {
        /// The provider plugin's `provider-type`.
        provider_type: String,
    },
    /// An OpenAI-compatible HTTP API.
    OpenAiCompatible(crate::upstream::UpstreamConfig),
}

/// A model alias and where its requests go.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The model name clients send (`*` matches any model no other route names).
    pub model: String,
    /// Providers in fallback order.
    pub targets: Vec<RouteTarget>,
}

/// One provider of a route.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RouteTarget {
    /// A key of [`GatewayConfig::providers`].
    pub provider: String,
    /// The model name sent to that provider (default: the route's model).
    pub model: Option<String>,
    /// Optional weight: targets with weights are shuffled by weight for each
    /// request before the unweighted ones, which keep their order.
    pub weight: Option<u32>,
}

/// A client API key and the caller identity plugins see.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiKey {
    /// The secret (after `${ENV}` expansion).
    pub key: String,
    /// The caller name (`req.caller()` in plugins).
    pub caller: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("key", &"<redacted>").field("caller", &self.caller).finish()
    }
}

/// Request limits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body accepted (413 beyond). Default 4 MiB.
    pub max_body: u64,
    /// Deadline of a whole request, streams included. Default 10 min.
    pub request_timeout: Duration,
    /// Requests served at once; beyond it new ones get 503. Default 1024.
    pub max_concurrent: usize,
    /// Rounds of plugin-answered tool calls before the gateway stops
    /// calling the model again. Default 4; 0: plugins cannot answer calls.
    pub max_tool_rounds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 4 << 20,
            request_timeout: Duration::from_secs(600),
            max_concurrent: 1024,
            max_tool_rounds: 4,
        }
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid config: `file:line:col: message` (the field's
    /// path starts the message), or `file: message` when no place is known.
    #[error("{0}")]
    Invalid(String),
}

/// The default listen address: loopback, port 8080.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Largest config file read (a config is a few KiB; this stops a mistake
/// such as pointing `--config` at a log file).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl GatewayConfig {
    /// The config `plugbox serve` uses without `--config`: loopback, the
    /// `echo` provider plugin answering every model, no keys.
    pub fn default_echo() -> GatewayConfig {
        let providers = BTreeMap::from([("echo".to_string(), ProviderConfig::Plugin { provider_type: "echo".into() })]);
        GatewayConfig {
            listen: DEFAULT_LISTEN,
            providers,
            routes: vec![RouteConfig {
                model: "*".into(),
                targets: vec![RouteTarget { provider: "echo".into(), model: None, weight: None }],
            }],
            api_keys: Vec::new(),
            limits: Limits::default(),
            models: plugbox_host::ModelSet::default(),
        }
    }

    /// Reads and validates a config file (environment variables from this
    /// process).
    pub fn from_path(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let src = read(path)?;
        GatewayConfig::from_str(&src, path)
    }

    /// Parses and validates config text; `origin` names it in errors;
    /// `${NAME}` reads this process's environment.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(src: &str, origin: &Path) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_str_with_env(src, origin, |name| std::env::var(name).ok())
    }

    /// Like [`GatewayConfig::from_str`], with `${NAME}` looked up by `env`
    /// (`None`: not set).
    pub fn from_str_with_env(
        src: &str,
        origin: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let env: HashMap<String, Option<String>> = de::env_references(src)
            .into_iter()
            .map(|name| {
                let value = env(&name);
                (name, value)
            })
            .collect();
        // First pass: the provider names, so that the second can check the
        // routes' references to them where they are written.
        #[derive(Deserialize)]
        struct Names {
            #[serde(default)]
            providers: BTreeMap<String, serde::de::IgnoredAny>,
        }
        let names = de::with_context(de::Context { env: env.clone(), ..Default::default() }, || {
            serde_norway::from_str::<Names>(src).map(|n| n.providers.into_keys().collect::<BTreeSet<_>>())
        });
        let providers = names.ok();
        let context = de::Context { env, providers, route_models: BTreeSet::new() };
        let file: ConfigFile =
            de::with_context(context, || serde_norway::from_str(src)).map_err(|e| from_yaml(e, src, origin))?;
        file.validate(src, origin)
    }

    /// The JSON Schema of the config file (draft 2020-12), keys sorted; it is
    /// checked in as `manifests/gateway.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        sorted(schemars::schema_for!(ConfigFile).to_value())
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid(format!(
            "{}: the file is {} bytes; a gateway config is at most {MAX_CONFIG_BYTES}",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// A serde_norway error as `file:line:col: message`.
fn from_yaml(err: serde_norway::Error, src: &str, origin: &Path) -> ConfigError {
    let text = err.to_string();
    let Some(loc) = err.location() else {
        return ConfigError::Invalid(format!("{}: {text}", origin.display()));
    };
    let mut message = text.replacen(&format!(" at line {} column {}", loc.line(), loc.column()), "", 1);
    let line = src.lines().nth(loc.line().saturating_sub(1)).unwrap_or("");
    if line[..line.len() - line.trim_start().len()].contains('\t') {
        message.push_str(" (a tab in the indentation: YAML is indented with spaces)");
    }
    ConfigError::Invalid(format!("{}:{}:{}: {message}", origin.display(), loc.line(), loc.column()))
}

/// An error found after parsing, at the line and column of the key `path`
/// (map keys from the top level) where the file writes it.
fn invalid_at(src: &str, origin: &Path, path: &[&str], message: String) -> ConfigError {
    match key_position(src, path) {
        Some((line, col)) => ConfigError::Invalid(format!("{}:{line}:{col}: {message}", origin.display())),
        None => ConfigError::Invalid(format!("{}: {message}", origin.display())),
    }
}

/// The 1-based line and column of the deepest key of `path` found in block
/// mappings (or in a flow mapping on its parent's line).
fn key_position(src: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut found = None;
    let mut parent: Option<usize> = None;
    let mut depth = 0;
    for (index, line) in src.lines().enumerate() {
        let Some(key) = path.get(depth) else { break };
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        match parent {
            Some(p) if indent <= p => break,
            None if indent != 0 => continue,
            _ => {}
        }
        let quoted = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")];
        if quoted.iter().any(|k| content.starts_with(k.as_str())) {
            found = Some((index + 1, indent + 1));
            parent = Some(indent);
            depth += 1;
            // The rest of the path may sit in a flow mapping on this line.
            for key in &path[depth..] {
                if let Some(at) = content.find(&format!("{key}:")) {
                    found = Some((index + 1, indent + at + 1));
                    depth += 1;
                } else {
                    break;
                }
            }
            if depth == path.len() {
                break;
            }
        }
    }
    found
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

// ---- The file, as written -------------------------------------------------

/// The plugbox gateway config (`plugbox serve --config FILE`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "plugbox gateway config")]
struct ConfigFile {
    /// Address and port to listen on (default `127.0.0.1:8080`); `plugbox
    /// serve --listen` wins. `${NAME}` reads an environment variable.
    #[serde(default, deserialize_with = "de_listen")]
    #[schemars(with = "Option<String>", example = "127.0.0.1:8080")]
    listen: Option<SocketAddr>,
    /// Providers by name: provider plugins and OpenAI-compatible upstreams.
    #[serde(default, deserialize_with = "de_providers")]
    providers: BTreeMap<String, ProviderFile>,
    /// Model routes: the model name clients send → the providers that serve
    /// it, in fallback order. `model: "*"` catches every other model.
    #[serde(default)]
    routes: Vec<RouteFile>,
    /// Client API keys (`Authorization: Bearer KEY`). None: no
    /// authentication, and only loopback clients are served.
    #[serde(default)]
    api_keys: Vec<ApiKeyFile>,
    /// Request limits.
    #[serde(default)]
    limits: LimitsFile,
    /// Model configs by model name (the host's model format: `mode`,
    /// `aliases`, `required-devices`, `memory-mb`, `base-url`), for endpoint
    /// validation by interface plugins and device admission.
    #[serde(default)]
    #[schemars(schema_with = "models_schema")]
    models: BTreeMap<String, plugbox_host::ModelConfig>,
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    de::parsed(d, "an address and port such as `127.0.0.1:8080`", |s| {
        let s = de::expand_env(s)?;
        s.parse().map(Some).map_err(|_| {
            format!(
                "invalid listen address `{s}`: write an IP address and a port, such as `127.0.0.1:8080` or `[::1]:8080`"
            )
        })
    })
}

fn de_providers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ProviderFile>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, ProviderFile>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of provider names to providers")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key_seed(NameSeed(&out))? {
                let provider: ProviderFile = map.next_value()?;
                out.insert(name, provider);
            }
            Ok(out)
        }
    }
    /// A provider name not defined earlier in the map.
    struct NameSeed<'a>(&'a BTreeMap<String, ProviderFile>);
    impl<'de> serde::de::DeserializeSeed<'de> for NameSeed<'_> {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            let defined = self.0;
            de::parsed(d, "a provider name", |s| {
                de::check_name("provider name", s)?;
                if defined.contains_key(s) {
                    return Err(format!("provider `{s}` is defined twice"));
                }
                Ok(s.to_string())
            })
        }
    }
    d.deserialize_map(V)
}

/// The kind of provider.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ProviderKind {
    /// A provider plugin loaded by the gateway (`provider-type` names it).
    Plugin,
    /// An HTTP API speaking OpenAI's Chat Completions and Embeddings.
    OpenaiCompatible,
}

/// A provider. `type: plugin` takes `provider-type`; `type:
/// openai-compatible` takes `base-url`, `api-key`, `headers`, `timeouts` and
/// `retries`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProviderFile {
    /// `plugin` or `openai-compatible`.
    #[serde(rename = "type")]
    kind: ProviderKind,
    /// `plugin`: the `provider-type` the provider plugin reports (default:
    /// the provider's name).
    #[serde(default)]
    provider_type: Option<String>,
    /// `openai-compatible`: the API's base URL up to and including `/v1`,
    /// such as `https://api.openai.com/v1`.
    #[serde(default, deserialize_with = "de_base_url")]
    #[schemars(with = "Option<String>", example = "https://api.openai.com/v1")]
    base_url: Option<String>,
    /// `openai-compatible`: the bearer token sent upstream, usually
    /// `${NAME}` to read it from the environment.
    #[serde(default, deserialize_with = "de_secret_opt")]
    #[schemars(example = "${OPENAI_API_KEY}")]
    api_key: Option<String>,
    /// `openai-compatible`: extra request headers (`${NAME}` expanded).
    #[serde(default, deserialize_with = "de_headers")]
    headers: BTreeMap<String, String>,
    /// `openai-compatible`: timeouts.
    #[serde(default)]
    timeouts: Option<TimeoutsFile>,
    /// `openai-compatible`: retries on 429, 5xx and connect errors.
    #[serde(default)]
    retries: Option<RetriesFile>,
}

fn de_base_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de::parsed(d, "a URL such as `https://api.openai.com/v1`", |s| {
        let expanded = de::expand_env(s)?;
        let url = reqwest::Url::parse(&expanded)
            .map_err(|e| format!("invalid base URL `{expanded}`: {e}; write it like `https://api.openai.com/v1`"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("invalid base URL `{expanded}`: use an `http://` or `https://` URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("invalid base URL `{expanded}`: leave out the query and fragment"));
        }
        Ok(Some(expanded.trim_end_matches('/').to_string()))
    })
}

fn de_secret_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de::secret(d).map(Some)
}

fn de_headers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of header names to values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key_seed(Seed(|s: &str| {
                http::HeaderName::from_bytes(s.as_bytes())
                    .map(|n| n.as_str().to_string())
                    .map_err(|_| format!("invalid header name `{s}`"))
            }))? {
                let value = map.next_value_seed(Seed(|s: &str| {
                    let v = de::expand_env(s)?;
                    http::HeaderValue::from_str(&v)
                        .map_err(|_| format!("the value of header `{s}` is not a valid header value"))?;
                    Ok(v)
                }))?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    struct Seed<F>(F);
    impl<'de, F: FnOnce(&str) -> Result<String, String>> serde::de::DeserializeSeed<'de> for Seed<F> {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            de::parsed(d, "a string", self.0)
        }
    }
    d.deserialize_map(V)
}

/// Timeouts of calls to an upstream.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TimeoutsFile {
    /// Connecting (TCP and TLS). Default `10s`.
    #[serde(default, deserialize_with = "de_duration_opt")]
    #[schemars(with = "Option<String>", example = "10s")]
    connect: Option<Duration>,
    /// From sending the request to the response's headers (for a call
    /// without streaming, the whole generation). Default `5m`.
    #[serde(default, deserialize_with = "de_duration_opt")]
    #[schemars(with = "Option<String>", example = "60s")]
    first_byte: Option<Duration>,
    /// The whole call, retries and a stream's last byte included. Default `10m`.
    #[serde(default, deserialize_with = "de_duration_opt")]
    #[schemars(with = "Option<String>", example = "10m")]
    total: Option<Duration>,
}

fn de_duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de::duration(d).map(Some)
}

fn de_duration_or_zero_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de::duration_or_zero(d).map(Some)
}

/// Retries on 429, 5xx and connect errors, with exponential backoff and
/// jitter; an upstream's `Retry-After` is honoured.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RetriesFile {
    /// Retries after the first try (0 to 10). Default 2.
    #[serde(default, deserialize_with = "de_max_retries")]
    #[schemars(range(max = 10))]
    max: Option<u32>,
    /// The first wait; it doubles each retry, with jitter. Default `250ms`.
    #[serde(default, deserialize_with = "de_duration_or_zero_opt")]
    #[schemars(with = "Option<String>", example = "250ms")]
    initial_backoff: Option<Duration>,
    /// The longest wait between tries. An upstream's `Retry-After` longer
    /// than this ends the retries (the client gets the 429 and its
    /// `Retry-After`). Default `10s`.
    #[serde(default, deserialize_with = "de_duration_or_zero_opt")]
    #[schemars(with = "Option<String>", example = "10s")]
    max_backoff: Option<Duration>,
}

fn de_max_retries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de::bounded(d, 0, 10).map(|n| Some(n as u32))
}

/// A route: a model name clients send and the providers that serve it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RouteFile {
    /// The model name clients send; `*` serves every model no other route names.
    #[serde(deserialize_with = "de::route_model")]
    #[schemars(example = "gpt-4o")]
    model: String,
    /// The providers, in fallback order: a provider name, or `{provider,
    /// model, weight}`. Targets with a weight are shuffled by weight for each
    /// request and tried before the unweighted ones, which keep their order.
    #[serde(deserialize_with = "de_targets")]
    #[schemars(length(min = 1))]
    targets: Vec<TargetEntry>,
}

/// A route target: a provider name, or a map.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TargetEntry {
    /// A provider name (the route's model is sent as is).
    Name(String),
    /// A provider, the model sent to it, and a weight.
    Full(TargetFile),
}

impl TargetEntry {
    fn into_target(self) -> RouteTarget {
        match self {
            TargetEntry::Name(provider) => RouteTarget { provider, model: None, weight: None },
            TargetEntry::Full(t) => RouteTarget { provider: t.provider, model: t.model, weight: t.weight },
        }
    }
}

/// A route target.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TargetFile {
    /// A provider's name (a key of `providers`).
    #[serde(deserialize_with = "de_provider_ref")]
    provider: String,
    /// The model name sent to the provider (default: the model the client sent).
    #[serde(default, deserialize_with = "de_target_model")]
    model: Option<String>,
    /// A weight from 1 to 1000000: weighted targets are tried in an order
    /// drawn by weight for each request, before unweighted ones.
    #[serde(default, deserialize_with = "de_weight")]
    #[schemars(range(min = 1, max = 1_000_000))]
    weight: Option<u32>,
}

fn de_provider_ref<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de::parsed(d, "a provider name", de::provider_ref)
}

fn de_target_model<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de::parsed(d, "a model name", |s| {
        de::check_name("model", s)?;
        Ok(Some(s.to_string()))
    })
}

fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de::bounded(d, 1, 1_000_000).map(|n| Some(n as u32))
}

fn de_targets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TargetEntry>, D::Error> {
    struct Seq;
    impl<'de> Visitor<'de> for Seq {
        type Value = Vec<TargetEntry>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of providers")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = seq.next_element_seed(EntrySeed)? {
                out.push(entry);
            }
            if out.is_empty() {
                return Err(serde::de::Error::custom("a route needs at least one target provider"));
            }
            Ok(out)
        }
    }
    struct EntrySeed;
    impl<'de> serde::de::DeserializeSeed<'de> for EntrySeed {
        type Value = TargetEntry;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TargetEntry, D::Error> {
            d.deserialize_any(Entry)
        }
    }
    struct Entry;
    impl<'de> Visitor<'de> for Entry {
        type Value = TargetEntry;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a provider name, or a map with `provider`, `model` and `weight`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TargetEntry, E> {
            de::provider_ref(v).map(TargetEntry::Name).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetEntry, A::Error> {
            TargetFile::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(TargetEntry::Full)
        }
    }
    d.deserialize_seq(Seq)
}

/// A client API key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ApiKeyFile {
    /// The key clients send as `Authorization: Bearer KEY`, usually
    /// `${NAME}` to read it from the environment.
    #[serde(deserialize_with = "de::secret")]
    #[schemars(example = "${TEAM_A_KEY}")]
    key: String,
    /// The caller's name, as plugins see it (`req.caller()`).
    #[serde(deserialize_with = "de_caller")]
    #[schemars(example = "team-a")]
    caller: String,
}

fn de_caller<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de::parsed(d, "a caller name", |s| {
        de::check_name("caller", s)?;
        Ok(s.to_string())
    })
}

/// Request limits.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsFile {
    /// The largest request body (larger ones get 413). Default `4MiB`.
    #[serde(default, deserialize_with = "de_size_opt")]
    #[schemars(with = "Option<String>", example = "4MiB")]
    max_body: Option<u64>,
    /// The deadline of a whole request, streams included. Default `10m`.
    #[serde(default, deserialize_with = "de_duration_opt")]
    #[schemars(with = "Option<String>", example = "120s")]
    request_timeout: Option<Duration>,
    /// Requests served at once; beyond it new ones get 503. Default 1024.
    #[serde(default, deserialize_with = "de_max_concurrent")]
    #[schemars(range(min = 1, max = 1_000_000))]
    max_concurrent: Option<usize>,
    /// Rounds of plugin-answered tool calls before the gateway stops calling
    /// the model again (0 to 64; 0: plugins cannot answer tool calls). Default 4.
    #[serde(default, deserialize_with = "de_max_tool_rounds")]
    #[schemars(range(max = 64))]
    max_tool_rounds: Option<u32>,
}

fn de_size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de::size(d).map(Some)
}

fn de_max_concurrent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    de::bounded(d, 1, 1_000_000).map(|n| Some(n as usize))
}

fn de_max_tool_rounds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de::bounded(d, 0, 64).map(|n| Some(n as u32))
}

fn models_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Model configs by model name, in the host's model format.",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": false,
            "required": ["mode"],
            "properties": {
                "aliases": { "type": "array", "items": { "type": "string" }, "description": "Other names clients may use." },
                "mode": { "type": "string", "description": "The interface mode (`chat`, `embedding` ...): the interface plugin of that mode validates requests." },
                "base-url": { "type": "string", "description": "Where the model's server listens, for health checks." },
                "required-devices": { "type": "array", "items": { "type": "string" }, "description": "Device ids the model runs on (`gpu:0`, `memory`)." },
                "memory-mb": { "type": "object", "additionalProperties": { "type": "integer", "minimum": 0 }, "description": "MiB needed on each required device." }
            }
        }
    })
}

impl ConfigFile {
    /// The checks across fields that parsing could not place, then the
    /// validated config.
    fn validate(self, src: &str, origin: &Path) -> Result<GatewayConfig, ConfigError> {
        let at = |path: &[&str], message: String| invalid_at(src, origin, path, message);
        let mut providers = BTreeMap::new();
        for (name, p) in self.providers {
            let provider = match p.kind {
                ProviderKind::Plugin => {
                    let stray = [
                        ("base-url", p.base_url.is_some()),
                        ("api-key", p.api_key.is_some()),
                        ("headers", !p.headers.is_empty()),
                        ("timeouts", p.timeouts.is_some()),
                        ("retries", p.retries.is_some()),
                    ];
                    if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                        return Err(at(
                            &["providers", &name, key],
                            format!(
                                "providers.{name}.{key}: only `openai-compatible` providers take `{key}`; a `plugin` provider takes `provider-type`"
                            ),
                        ));
                    }
                    ProviderConfig::Plugin { provider_type: p.provider_type.unwrap_or_else(|| name.clone()) }
                }
                ProviderKind::OpenaiCompatible => {
                    if p.provider_type.is_some() {
                        return Err(at(
                            &["providers", &name, "provider-type"],
                            format!("providers.{name}.provider-type: only `plugin` providers take `provider-type`"),
                        ));
                    }
                    let Some(base_url) = p.base_url else {
                        return Err(at(
                            &["providers", &name],
                            format!(
                                "providers.{name}: an `openai-compatible` provider needs `base-url`, such as `https://api.openai.com/v1`"
                            ),
                        ));
                    };
                    let t = p.timeouts.unwrap_or_default();
                    let r = p.retries.unwrap_or_default();
                    let d = UpstreamConfig::new(base_url);
                    let upstream = UpstreamConfig {
                        api_key: p.api_key,
                        headers: p.headers,
                        connect_timeout: t.connect.unwrap_or(d.connect_timeout),
                        first_byte_timeout: t.first_byte.unwrap_or(d.first_byte_timeout),
                        total_timeout: t.total.unwrap_or(d.total_timeout),
                        max_retries: r.max.unwrap_or(d.max_retries),
                        initial_backoff: r.initial_backoff.unwrap_or(d.initial_backoff),
                        max_backoff: r.max_backoff.unwrap_or(d.max_backoff),
                        ..d
                    };
                    if upstream.first_byte_timeout > upstream.total_timeout {
                        return Err(at(
                            &["providers", &name, "timeouts", "first-byte"],
                            format!(
                                "providers.{name}.timeouts: `first-byte` ({}) is longer than `total` ({})",
                                humantime::format_duration(upstream.first_byte_timeout),
                                humantime::format_duration(upstream.total_timeout)
                            ),
                        ));
                    }
                    if upstream.initial_backoff > upstream.max_backoff {
                        return Err(at(
                            &["providers", &name, "retries", "initial-backoff"],
                            format!(
                                "providers.{name}.retries: `initial-backoff` ({}) is longer than `max-backoff` ({})",
                                humantime::format_duration(upstream.initial_backoff),
                                humantime::format_duration(upstream.max_backoff)
                            ),
                        ));
                    }
                    ProviderConfig::OpenAiCompatible(upstream)
                }
            };
            providers.insert(name, provider);
        }
        let routes: Vec<RouteConfig> = self
            .routes
            .into_iter()
            .map(|r| RouteConfig {
                model: r.model,
                targets: r.targets.into_iter().map(TargetEntry::into_target).collect(),
            })
            .collect();
        let mut seen = BTreeSet::new();
        for k in &self.api_keys {
            if !seen.insert(k.key.as_str()) {
                return Err(at(
                    &["api-keys"],
                    format!(
                        "api-keys: caller `{}` has the same key as an earlier entry: each key names one caller",
                        k.caller
                    ),
                ));
            }
        }
        let api_keys = self.api_keys.into_iter().map(|k| ApiKey { key: k.key, caller: k.caller }).collect();
        let d = Limits::default();
        let limits = Limits {
            max_body: self.limits.max_body.unwrap_or(d.max_body),
            request_timeout: self.limits.request_timeout.unwrap_or(d.request_timeout),
            max_concurrent: self.limits.max_concurrent.unwrap_or(d.max_concurrent),
            max_tool_rounds: self.limits.max_tool_rounds.unwrap_or(d.max_tool_rounds),
        };
        let models = self
            .models
            .into_iter()
            .map(|(name, mut m)| {
                m.name = name;
                m
            })
            .collect();
        let models = plugbox_host::ModelSet::new(models)
            .map_err(|(model, message)| at(&["models", &model], format!("models.{model}: {message}")))?;
        Ok(GatewayConfig { listen: self.listen.unwrap_or(DEFAULT_LISTEN), providers, routes, api_keys, limits, models })
    }
}
