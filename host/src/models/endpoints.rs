//! Interface (endpoint) plugins: route a request path and model to the plugin
//! of the model's mode, and check model servers' health through them.
//!
//! An interface plugin (hook `endpoint`) declares a `mode` (`chat`,
//! `embedding` ...) and the API paths it supports. The host asks each plugin
//! once for its mode and endpoints (and again after a reload), and routes by
//! the model's `mode`; when two plugins claim a mode, the one with the lower
//! priority (then name) serves it.
//!
//! **Failures.** Every call (mode and endpoints, `validate-request`,
//! `health-check`) gets one verdict, made inside the call: a trap, a timeout,
//! or an answer the host refuses counts once in the plugin's stats and once
//! towards its circuit breaker. A plugin that fails in `validate-request`
//! follows the one on-error decision of every chain
//! (the plugin's `on-error`): `fail-closed` (or the host's
//! `propagate_plugin_errors`) makes the call an error ([`RouteError::Plugin`]);
//! `fail-open` lets the request through unvalidated, and the verdict's
//! `reason` says so. A failed health check is always an error: it never reads
//! as healthy. A plugin that cannot say its mode and endpoints is left out of
//! routing.
//!
//! **Output budget.** Everything an interface plugin returns is charged against
//! its `limits.max-output`, by JSON path: the mode (`$.mode`, also 1-64 of
//! `a-z`, `0-9`, `-`), the endpoint list (`$.endpoints`, at most 256 entries
//! of at most 1,024 bytes), the
//! refusal text of `validate-request` (`$.error`) and the health message
//! (`$.message`). An answer past the budget is refused whole, as an invalid
//! output naming the field.
//!
//! **Access.** Interface plugins see routing data only (the request's path,
//! the model name or alias it used, the model server's base URL), never a
//! message: the `messages` permission has no bearing on them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;

use super::{ModelConfig, ModelSet};
use crate::bindings::types::Health;
use crate::budget::OutputBudget;
use crate::failure::{FailureKind, PluginFailure};
use crate::manifest::Hook;
use crate::plugin::{Invoke, Live, LoadedPlugin};
use crate::registry::Snapshot;

/// Most endpoints an interface plugin may declare.
pub(crate) const MAX_ENDPOINTS: usize = 256;
/// Longest endpoint path an interface plugin may declare, in bytes.
pub(crate) const MAX_ENDPOINT_TEXT: usize = 1024;

/// What an interface plugin declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceInfo {
    /// The interface plugin's name.
    pub plugin: String,
    /// The model mode it serves (`chat`, `embedding` ...).
    pub mode: String,
    /// The API paths it supports.
    pub endpoints: Vec<String>,
}

/// The answer to "may this request go to this model?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteVerdict {
    /// The model's name (the request may have used an alias).
    pub model: String,
    /// The name the request used.
    pub requested: String,
    /// The model's mode, which chose the interface plugin.
    pub mode: String,
    /// The interface plugin that judged.
    pub plugin: String,
    /// Whether the request may go to the model.
    pub accepted: bool,
    /// Why the request was refused, or why it was let through unvalidated.
    pub reason: Option<String>,
}

/// Why a request could not be routed or a model not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No model (or alias) of that name is configured.
    #[error("no model named `{0}` is configured")]
    UnknownModel(String),
    /// No loaded interface plugin serves the model's mode.
    #[error("model `{model}` has mode `{mode}`, but no loaded interface plugin implements it")]
    NoInterface {
        /// The model's name.
        model: String,
        /// The model's mode.
        mode: String,
    },
    /// A health check was asked for a model without a `base-url`.
    #[error("model `{0}` has no `base-url` to check")]
    NoBaseUrl(String),
    /// The interface plugin failed (in `validate-request` with `on-error: fail-closed`, or in a health check).
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
}

/// Mode and endpoints per interface plugin instance, asked once.
#[derive(Default)]
struct InterfaceCache {
    entries: RwLock<Vec<(Weak<LoadedPlugin>, Arc<InterfaceInfo>)>>,
}

impl InterfaceCache {
    fn get(&self, plugin: &Arc<LoadedPlugin>) -> Option<Arc<InterfaceInfo>> {
        let weak = Arc::downgrade(plugin);
        self.entries.read().iter().find(|(w, _)| Weak::ptr_eq(w, &weak)).map(|(_, i)| i.clone())
    }

    fn put(&self, plugin: &Arc<LoadedPlugin>, info: Arc<InterfaceInfo>) {
        let mut entries = self.entries.write();
        entries.retain(|(w, _)| w.strong_count() > 0);
        entries.push((Arc::downgrade(plugin), info));
    }
}

/// `v1/chat/completions` for `/v1/chat/completions/?stream=1` and the like.
pub fn normalize_path(path: &str) -> &str {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.trim_matches('/')
}

fn missing() -> wasmtime::Error {
    wasmtime::format_err!("the component's `endpoint` exports were not loaded")
}

/// `mode` and `supported-endpoints`, asked in one call.
pub(crate) struct EndpointInfo;

impl Invoke for EndpointInfo {
    type Output = (String, Vec<String>);
    const HOOK: &'static str = "supported-endpoints";
    async fn invoke<'a>(self, live: &'a mut Live) -> wasmtime::Result<Self::Output>
    where
        Self: 'a,
    {
        let g = live.endpoint.as_ref().ok_or_else(missing)?;
        let mode = g.call_mode(&mut live.store).await?;
        let endpoints = g.call_supported_endpoints(&mut live.store).await?;
        Ok((mode, endpoints))
    }
}

/// The `validate-request` call of an interface plugin.
pub(crate) struct ValidateRequest<'r> {
    pub(crate) path: &'r str,
    pub(crate) model: &'r str,
}

impl Invoke for ValidateRequest<'_> {
    type Output = Result<(), String>;
    const HOOK: &'static str = "validate-request";
    async fn invoke<'a>(self, live: &'a mut Live) -> wasmtime::Result<Self::Output>
    where
        Self: 'a,
    {
        let g = live.endpoint.as_ref().ok_or_else(missing)?;
        g.call_validate_request(&mut live.store, self.path, self.model).await
    }
}

/// The `health-check` call of an interface plugin.
pub(crate) struct HealthCheck<'r> {
    pub(crate) model: &'r str,
    pub(crate) base_url: &'r str,
    pub(crate) elapsed_ms: u64,
    pub(crate) timeout_ms: u64,
}

impl Invoke for HealthCheck<'_> {
    type Output = Health;
    const HOOK: &'static str = "health-check";
    async fn invoke<'a>(self, live: &'a mut Live) -> wasmtime::Result<Self::Output>
    where
        Self: 'a,
    {
        let g = live.endpoint.as_ref().ok_or_else(missing)?;
        g.call_health_check(&mut live.store, self.model, self.base_url, self.elapsed_ms, self.timeout_ms).await
    }
}

/// Checks a plugin's mode and endpoints against `budget` and the rules.
pub(crate) fn check_info(budget: &mut OutputBudget, mode: &str, endpoints: &[String]) -> Result<(), String> {
    budget.text(&"$.mode", mode)?;
    super::check_mode(mode).map_err(|e| format!("`$.mode`: {}", e.escape_debug()))?;
    budget.elements(&"$.endpoints", endpoints.len(), MAX_ENDPOINTS)?;
    for (i, e) in endpoints.iter().enumerate() {
        if e.len() > MAX_ENDPOINT_TEXT {
            return Err(format!("`$.endpoints[{i}]` is {} bytes; at most {MAX_ENDPOINT_TEXT} are accepted", e.len()));
        }
        budget.text(&format_args!("$.endpoints[{i}]"), e)?;
    }
    Ok(())
}

fn budget_of(plugin: &LoadedPlugin) -> OutputBudget {
    OutputBudget::new(plugin.limits().max_output)
}

/// The interfaces subsystem: routes by model mode to the interface plugins of
/// a registry snapshot, and remembers what each plugin declared. It knows
/// nothing of the host: give it a snapshot and the model set.
#[derive(Default)]
pub(crate) struct Interfaces {
    cache: InterfaceCache,
    /// The host's `propagate_plugin_errors`: every plugin failure fails closed.
    propagate_all: bool,
}

impl Interfaces {
    /// A subsystem with an empty cache.
    pub(crate) fn new(propagate_all: bool) -> Self {
        Interfaces { cache: InterfaceCache::default(), propagate_all }
    }

    async fn info(&self, plugin: &Arc<LoadedPlugin>) -> Result<Arc<InterfaceInfo>, PluginFailure> {
        if let Some(info) = self.cache.get(plugin) {
            return Ok(info);
        }
        let check = |(mode, endpoints): (String, Vec<String>)| {
            check_info(&mut budget_of(plugin), &mode, &endpoints).map_err(FailureKind::InvalidOutput)?;
            Ok((mode, endpoints))
        };
        let (mode, endpoints) = plugin.call_checked(None, plugin.limits().timeout, EndpointInfo, check).await?;
        let info = Arc::new(InterfaceInfo { plugin: plugin.name().to_string(), mode, endpoints });
        self.cache.put(plugin, info.clone());
        Ok(info)
    }

    /// Every interface plugin of `registry` with its mode and endpoints, in
    /// routing order. A plugin that cannot answer is left out and logged.
    pub(crate) async fn list(&self, registry: &Snapshot) -> Vec<InterfaceInfo> {
        let mut out = Vec::new();
        for plugin in registry.chain(Hook::Endpoint) {
            match self.info(&plugin).await {
                Ok(info) => out.push((*info).clone()),
                Err(f) => tracing::warn!(plugin = plugin.name(), "interface plugin did not describe itself: {f}"),
            }
        }
        out
    }

    /// The interface plugin of `registry` serving `mode`.
    pub(crate) async fn for_mode(&self, registry: &Snapshot, mode: &str) -> Option<(Arc<LoadedPlugin>, InterfaceInfo)> {
        for plugin in registry.chain(Hook::Endpoint) {
            match self.info(&plugin).await {
                Ok(info) if info.mode == mode => return Some((plugin, (*info).clone())),
                Ok(_) => {}
                Err(f) => tracing::warn!(plugin = plugin.name(), "interface plugin did not describe itself: {f}"),
            }
        }
        None
    }

    async fn route(&self, registry: &Snapshot, model: &ModelConfig) -> Result<Arc<LoadedPlugin>, RouteError> {
        self.for_mode(registry, &model.mode)
            .await
            .map(|(p, _)| p)
            .ok_or_else(|| RouteError::NoInterface { model: model.name.clone(), mode: model.mode.clone() })
    }

    /// Asks the interface plugin of `model`'s mode whether a request to `path`
    /// fits it (see [`Host::validate_request`](crate::Host::validate_request)).
    pub(crate) async fn validate(
        &self,
        registry: &Snapshot,
        models: &ModelSet,
        path: &str,
        model: &str,
    ) -> Result<RouteVerdict, RouteError> {
        let config = models.get(model).ok_or_else(|| RouteError::UnknownModel(model.to_string()))?;
        let plugin = self.route(registry, config).await?;
        let call = ValidateRequest { path: normalize_path(path), model };
        let check = |answer: Result<(), String>| {
            if let Err(reason) = &answer {
                budget_of(&plugin).text(&"$.error", reason).map_err(FailureKind::InvalidOutput)?;
            }
            Ok(answer)
        };
        let mut verdict = RouteVerdict {
            model: config.name.clone(),
            requested: model.to_string(),
            mode: config.mode.clone(),
            plugin: plugin.name().to_string(),
            accepted: true,
            reason: None,
        };
        match plugin.call_checked(None, plugin.limits().timeout, call, check).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                verdict.accepted = false;
                verdict.reason = Some(reason);
            }
            Err(f) if plugin.fails_closed(self.propagate_all) => return Err(RouteError::Plugin(f)),
            Err(f) => {
                tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
                verdict.reason = Some(format!("not validated: {f} (fail-open)"));
            }
        }
        Ok(verdict)
    }

    /// Health-checks `model`'s server at its configured `base-url`.
    pub(crate) async fn health_of(
        &self,
        registry: &Snapshot,
        models: &ModelSet,
        model: &str,
        elapsed: Duration,
        timeout: Duration,
    ) -> Result<Health, RouteError> {
        let config = models.get(model).ok_or_else(|| RouteError::UnknownModel(model.to_string()))?;
        let base_url = config.base_url.as_deref().ok_or_else(|| RouteError::NoBaseUrl(config.name.clone()))?;
        self.health_at(registry, config, base_url, elapsed, timeout).await
    }

    /// Health-checks `model`'s server at `base_url` through the interface
    /// plugin of its mode. Any failure is an error.
    pub(crate) async fn health_at(
        &self,
        registry: &Snapshot,
        model: &ModelConfig,
        base_url: &str,
        elapsed: Duration,
        timeout: Duration,
    ) -> Result<Health, RouteError> {
        let plugin = self.route(registry, model).await?;
        let call = HealthCheck {
            model: &model.name,
            base_url: base_url.trim_end_matches('/'),
            elapsed_ms: elapsed.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
        };
        let check = |health: Health| {
            budget_of(&plugin).text(&"$.message", &health.message).map_err(FailureKind::InvalidOutput)?;
            Ok(health)
        };
        Ok(plugin.call_checked(None, plugin.limits().timeout, call, check).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/v1/chat/completions"), "v1/chat/completions");
        assert_eq!(normalize_path("v1/embeddings/"), "v1/embeddings");
        assert_eq!(normalize_path("/v1/completions?x=1#f"), "v1/completions");
        assert_eq!(normalize_path(""), "");
    }

    #[test]
    fn declarations_are_charged_and_checked() {
        let endpoints = vec!["v1/chat/completions".to_string(), "v1/completions".to_string()];
        let mut b = OutputBudget::new(u64::MAX);
        check_info(&mut b, "chat", &endpoints).unwrap();
        assert_eq!(b.used(), 4 + 2 * crate::budget::ELEMENT_COST + 19 + 14);

        let e = check_info(&mut OutputBudget::new(60), "chat", &endpoints).unwrap_err();
        assert!(e.contains("at `$.endpoints[1]`"), "{e}");
        let e = check_info(&mut OutputBudget::new(1024), &"m".repeat(2048), &[]).unwrap_err();
        assert!(e.contains("at `$.mode`"), "{e}");
        let e = check_info(&mut OutputBudget::new(u64::MAX), "Chat Mode", &[]).unwrap_err();
        assert!(e.starts_with("`$.mode`: invalid mode `Chat Mode`"), "{e}");
        let many = vec![String::new(); MAX_ENDPOINTS + 1];
        let e = check_info(&mut OutputBudget::new(u64::MAX), "chat", &many).unwrap_err();
        assert_eq!(e, "`$.endpoints` has 257 elements; at most 256 are accepted");
        let long = vec!["e".repeat(MAX_ENDPOINT_TEXT + 1)];
        let e = check_info(&mut OutputBudget::new(u64::MAX), "chat", &long).unwrap_err();
        assert_eq!(e, "`$.endpoints[0]` is 1025 bytes; at most 1024 are accepted");
    }
}

#[cfg(test)]
mod subsystem_tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::devices::test_plugins::{scripted, snapshot};

    fn models() -> ModelSet {
        let src = "models:\n  a:\n    mode: alpha\n    base-url: http://127.0.0.1:1\n  b:\n    mode: beta\n  c:\n    mode: gamma\n";
        ModelSet::from_str(src, std::path::Path::new("models.yaml")).unwrap()
    }

    #[tokio::test]
    async fn routes_validates_and_checks_health_from_a_snapshot() {
        let wasm = plugbox_artifacts::DEVICE_SCRIPTED;
        let plugins = [
            (
                wasm,
                scripted(
                    "alpha",
                    "endpoint",
                    "fail-open",
                    &[("mode", "alpha"), ("endpoints", "2"), ("validate", "refuse")],
                ),
            ),
            (
                wasm,
                scripted(
                    "beta",
                    "endpoint",
                    "fail-closed",
                    &[("mode", "beta"), ("validate", "huge"), ("big_bytes", "4096")],
                ),
            ),
            (
                wasm,
                scripted(
                    "gamma",
                    "endpoint",
                    "fail-open",
                    &[("mode", "gamma"), ("validate", "huge"), ("big_bytes", "4096")],
                ),
            ),
        ];
        let (registry, _dir) = snapshot(&plugins, BreakerConfig::default()).await;
        let interfaces = Interfaces::new(false);
        let list = interfaces.list(&registry).await;
        assert_eq!(list.len(), 3);
        assert_eq!(
            list[0],
            InterfaceInfo {
                plugin: "alpha".into(),
                mode: "alpha".into(),
                endpoints: vec!["v1/e0".into(), "v1/e1".into()]
            }
        );

        let set = models();
        let v = interfaces.validate(&registry, &set, "/v1/e0?x", "a").await.unwrap();
        assert!(!v.accepted);
        assert_eq!(v.reason.as_deref(), Some("alpha refuses `v1/e0` for `a`"));
        // A refusal past max-output: fail-closed is an error, fail-open lets the request through, saying so.
        let e = interfaces.validate(&registry, &set, "v1/e0", "b").await.unwrap_err();
        assert!(e.to_string().starts_with("plugin `beta` failed in `validate-request`: invalid output: output exceeds the plugin's max-output of 1024 bytes at `$.error`"), "{e}");
        let v = interfaces.validate(&registry, &set, "v1/e0", "c").await.unwrap();
        assert!(v.accepted && v.reason.unwrap().starts_with("not validated: plugin `gamma` failed"));
        for name in ["beta", "gamma"] {
            let stats = registry.plugins[name].stats();
            assert_eq!((stats.errors, stats.consecutive_failures), (1, 1), "{name}: {stats:?}");
        }
        // With every plugin error propagated, fail-open plugins fail closed too.
        let strict = Interfaces::new(true);
        assert!(matches!(strict.validate(&registry, &set, "v1/e0", "c").await, Err(RouteError::Plugin(_))));

        let h = interfaces.health_of(&registry, &set, "a", Duration::ZERO, Duration::from_secs(1)).await.unwrap();
        assert_eq!((h.healthy, h.message.as_str()), (true, "a is fine"));
        assert_eq!(
            interfaces.health_of(&registry, &set, "b", Duration::ZERO, Duration::ZERO).await.unwrap_err(),
            RouteError::NoBaseUrl("b".into())
        );
    }
}
