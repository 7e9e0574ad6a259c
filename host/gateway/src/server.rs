//! The gateway: state, router, serving with graceful shutdown.
//! OWNED BY THE SERVER WORK: the names below are what `plugbox serve` uses.

use plugbox_host::Host;

use crate::config::GatewayConfig;

/// A running gateway's shared state and its HTTP router.
#[derive(Clone)]
pub struct Gateway {
    _host: Host,
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    host: Host,
    _config: GatewayConfig,
}

impl GatewayBuilder {
    /// A gateway over `host` (plugins loaded by the caller) with `config`.
    pub fn new(host: Host, config: GatewayConfig) -> Self {
        GatewayBuilder { host, _config: config }
    }

    /// The gateway.
    pub fn build(self) -> Gateway {
        Gateway { _host: self.host }
    }
}

/// Stops a gateway started by `Gateway::serve`.
#[derive(Clone, Default)]
pub struct ShutdownHandle {
    _private: (),
}
