//! The interfaces room of the facade: [`Host`]'s interface-plugin methods
//! call the [interfaces subsystem](crate::models::endpoints) with the current
//! registry snapshot.

use std::sync::Arc;
use std::time::Duration;

use super::Host;
use crate::bindings::types::Health;
use crate::models::{InterfaceInfo, ModelConfig, ModelSet, RouteError, RouteVerdict};
use crate::plugin::LoadedPlugin;

impl Host {
    /// Every loaded interface plugin with its mode and endpoints, in routing
    /// order. A plugin that cannot answer is left out and logged.
    pub async fn interfaces(&self) -> Vec<InterfaceInfo> {
        self.inner.interfaces.list(&self.snapshot()).await
    }

    /// The interface plugin serving `mode`, if one is loaded.
    pub async fn interface_for_mode(&self, mode: &str) -> Option<(Arc<LoadedPlugin>, InterfaceInfo)> {
        self.inner.interfaces.for_mode(&self.snapshot(), mode).await
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
        self.inner.interfaces.validate(&self.snapshot(), models, path, model).await
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
        self.inner.interfaces.health_of(&self.snapshot(), models, model, elapsed, timeout).await
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
        self.inner.interfaces.health_at(&self.snapshot(), model, base_url, elapsed, timeout).await
    }
}
