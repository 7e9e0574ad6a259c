//! The gateway's shared state: the host, the active config with its routes
//! (swapped whole on reload), the concurrency limit, the draining flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::RwLock;
use plugbox_host::Host;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{GatewayConfig, ProviderConfig};
use crate::routes::Routes;

/// One config as requests use it: a request takes the `Arc` at its start
/// and keeps it to its end, so a reload never changes a request in flight.
pub(crate) struct Active {
    pub config: GatewayConfig,
    pub routes: Routes,
    /// `limits.max_concurrent` permits; a reload that keeps the limit keeps
    /// the semaphore (and the permits held).
    pub permits: Arc<Semaphore>,
}

pub(crate) struct Shared {
    pub host: Host,
    active: RwLock<Arc<Active>>,
    /// Set once shutdown began: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// Cancelled by [`crate::ShutdownHandle::shutdown`].
    pub shutdown: CancellationToken,
    /// Serve clients that are not on loopback without API keys.
    pub allow_unauthenticated: bool,
    /// Requests (streams included) being served now.
    pub in_flight: AtomicUsize,
}

impl Shared {
    pub fn new(host: Host, active: Active, allow_unauthenticated: bool) -> Shared {
        Shared {
            host,
            active: RwLock::new(Arc::new(active)),
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            allow_unauthenticated,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The config a request starting now runs with.
    pub fn active(&self) -> Arc<Active> {
        self.active.read().clone()
    }

    /// Swaps in `next` (built and validated by the caller).
    pub fn swap(&self, next: Active) {
        *self.active.write() = Arc::new(next);
    }

    /// Whether every provider plugin the config names is loaded.
    pub fn missing_providers(&self) -> Vec<String> {
        let active = self.active();
        active
            .config
            .providers
            .values()
            .filter_map(|p| match p {
                ProviderConfig::Plugin { provider_type } if self.host.provider(provider_type).is_none() => {
                    Some(provider_type.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// Counts a request in flight while it lives (a stream's lives in its task).
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub fn new(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
