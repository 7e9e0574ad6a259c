//! The devices room of the facade: [`Host`]'s device methods call the
//! [devices subsystem](crate::devices) with the current registry snapshot.

use std::sync::Arc;

use super::Host;
use crate::devices::{Admission, DeviceSnapshot, admission};
use crate::models::ModelConfig;

impl Host {
    /// Probes devices, or returns the cached result if it is younger than
    /// [`DeviceOptions::cache_ttl`](crate::DeviceOptions::cache_ttl) and the
    /// loaded plugins have not changed.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host) {
    /// let devices = host.probe_devices().await;
    /// for d in &devices.adjusted {
    ///     println!("{} {}: {} MiB free", d.id, d.name, d.memory_free_mb);
    /// }
    /// for p in &devices.problems {
    ///     eprintln!("{p}"); // e.g. "builtin:nvml: NVML not available: ..."
    /// }
    /// # }
    /// ```
    pub async fn probe_devices(&self) -> Arc<DeviceSnapshot> {
        self.inner.device_state.probe(&self.snapshot(), false).await
    }

    /// Probes devices now, whatever the cache holds, and caches the result.
    pub async fn refresh_devices(&self) -> Arc<DeviceSnapshot> {
        self.inner.device_state.probe(&self.snapshot(), true).await
    }

    /// Whether `model` fits the devices as the latest probe (cached, see
    /// [`Host::probe_devices`]) reports them.
    pub async fn admit(&self, model: &ModelConfig) -> Admission {
        admission::check(model, &*self.probe_devices().await)
    }
}
