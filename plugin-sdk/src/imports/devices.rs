//! Read the host's device reports (after device hooks ran).

use crate::DeviceReport;

/// The host's current device reports.
pub fn list() -> Vec<DeviceReport> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::devices::list();
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::with(|h| h.devices.clone());
}
