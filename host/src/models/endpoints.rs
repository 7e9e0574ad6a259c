//! Interface (endpoint) plugins: route a request path and model to the plugin
//! of the model's mode, and check model servers' health through them.
//!
//! An interface plugin (hook `endpoint`) declares a `mode` (`chat`,
//! `embedding` ...) and the API paths it supports. The host asks each plugin
//! once for its mode and endpoints (and again after a reload), and routes by
//! the model's `mode`; when two plugins claim a mode, the one with the lower
//! priority (then name) serves it.
//!
//! Failure policy: a plugin that fails in `validate-request` follows its
//! `on-error`: `fail-closed` makes the call an error
//! ([`RouteError::Plugin`]); `fail-open` lets the request through unvalidated,
//! and the verdict's `reason` says so. A failed health check is always an
//! error: it never reads as healthy.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;

use super::{ModelConfig, ModelSet};
use crate::bindings::types::Health;
use crate::manifest::{Hook, OnError};
use crate::pipeline::invoke;
use crate::plugin::{LoadedPlugin, PluginFailure};

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
pub(crate) struct InterfaceCache {
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

impl crate::Host {
    async fn interface_info(&self, plugin: &Arc<LoadedPlugin>) -> Result<Arc<InterfaceInfo>, PluginFailure> {
        if let Some(info) = self.inner.interfaces.get(plugin) {
            return Ok(info);
        }
        let call = invoke::EndpointInfo { _marker: std::marker::PhantomData };
        let (mode, endpoints) = plugin.call(None, plugin.limits().timeout, call).await?;
        let info = Arc::new(InterfaceInfo { plugin: plugin.name().to_string(), mode, endpoints });
        self.inner.interfaces.put(plugin, info.clone());
        Ok(info)
    }

    /// Every loaded interface plugin with its mode and endpoints, in routing
    /// order. A plugin that cannot answer is left out and logged.
    pub async fn interfaces(&self) -> Vec<InterfaceInfo> {
        let mut out = Vec::new();
        for plugin in self.snapshot().chain(Hook::Endpoint) {
            match self.interface_info(&plugin).await {
                Ok(info) => out.push((*info).clone()),
                Err(f) => tracing::warn!(plugin = plugin.name(), "interface plugin did not describe itself: {f}"),
            }
        }
        out
    }

    /// The interface plugin serving `mode`, if one is loaded.
    pub async fn interface_for_mode(&self, mode: &str) -> Option<(Arc<LoadedPlugin>, InterfaceInfo)> {
        for plugin in self.snapshot().chain(Hook::Endpoint) {
            match self.interface_info(&plugin).await {
                Ok(info) if info.mode == mode => return Some((plugin, (*info).clone())),
                Ok(_) => {}
                Err(f) => tracing::warn!(plugin = plugin.name(), "interface plugin did not describe itself: {f}"),
            }
        }
        None
    }

    async fn route(&self, model: &ModelConfig) -> Result<Arc<LoadedPlugin>, RouteError> {
        self.interface_for_mode(&model.mode)
            .await
            .map(|(p, _)| p)
            .ok_or_else(|| RouteError::NoInterface { model: model.name.clone(), mode: model.mode.clone() })
    }

    /// Asks the interface plugin of `model`'s mode whether a request to `path`
    /// fits it. `model` may be a name or an alias; the plugin sees it as the
    /// request gave it.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host, models: plugbox_host::models::ModelSet) {
    /// let verdict = host.validate_request(&models, "/v1/embeddings", "qwen").await.unwrap();
    /// if !verdict.accepted {
    ///     eprintln!("400: {}", verdict.reason.unwrap_or_default());
    /// }
    /// # }
    /// ```
    pub async fn validate_request(
        &self,
        models: &ModelSet,
        path: &str,
        model: &str,
    ) -> Result<RouteVerdict, RouteError> {
        let config = models.get(model).ok_or_else(|| RouteError::UnknownModel(model.to_string()))?;
        let plugin = self.route(config).await?;
        let normalized = normalize_path(path);
        let call = invoke::ValidateRequest { path: normalized, model };
        let mut verdict = RouteVerdict {
            model: config.name.clone(),
            requested: model.to_string(),
            mode: config.mode.clone(),
            plugin: plugin.name().to_string(),
            accepted: true,
            reason: None,
        };
        match plugin.call(None, plugin.limits().timeout, call).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                verdict.accepted = false;
                verdict.reason = Some(reason);
            }
            Err(f)
                if self.inner.pipeline.propagate_plugin_errors || plugin.manifest().on_error == OnError::FailClosed =>
            {
                return Err(RouteError::Plugin(f));
            }
            Err(f) => {
                tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
                verdict.reason = Some(format!("not validated: {f} (fail-open)"));
            }
        }
        Ok(verdict)
    }

    /// Health-checks `model`'s server at its configured `base-url` through the
    /// interface plugin of its mode. `elapsed` is how long the server has been
    /// starting, `timeout` how long it may take (the plugin decides what they
    /// mean for its verdict).
    pub async fn check_model_health(
        &self,
        models: &ModelSet,
        model: &str,
        elapsed: Duration,
        timeout: Duration,
    ) -> Result<Health, RouteError> {
        let config = models.get(model).ok_or_else(|| RouteError::UnknownModel(model.to_string()))?;
        let base_url = config.base_url.as_deref().ok_or_else(|| RouteError::NoBaseUrl(config.name.clone()))?;
        self.check_health_at(config, base_url, elapsed, timeout).await
    }

    /// Health-checks `model`'s server at `base_url` (e.g. a server just started
    /// on a port chosen at run time). The plugin reaches it with outgoing HTTP,
    /// so its manifest must be granted the host.
    pub async fn check_health_at(
        &self,
        model: &ModelConfig,
        base_url: &str,
        elapsed: Duration,
        timeout: Duration,
    ) -> Result<Health, RouteError> {
        let plugin = self.route(model).await?;
        let call = invoke::HealthCheck {
            model: &model.name,
            base_url: base_url.trim_end_matches('/'),
            elapsed_ms: elapsed.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
        };
        Ok(plugin.call(None, plugin.limits().timeout, call).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/v1/chat/completions"), "v1/chat/completions");
        assert_eq!(normalize_path("v1/embeddings/"), "v1/embeddings");
        assert_eq!(normalize_path("/v1/completions?x=1#f"), "v1/completions");
        assert_eq!(normalize_path(""), "");
    }
}
