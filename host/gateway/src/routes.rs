//! Model routes: a model alias → ordered providers, optional weights,
//! fallback to the next provider when the error allows it.
//! IMPLEMENTATION OWNED BY THE CONFIG/UPSTREAM WORK: the signatures below are
//! the contract the server uses.

use std::sync::Arc;

use crate::config::GatewayConfig;
use crate::upstream::Upstream;

/// Where one attempt goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Target {
    /// A provider plugin (`Host::complete` / `Host::stream` with this provider type).
    Plugin {
        /// Its `provider-type`.
        provider_type: String,
    },
    /// An OpenAI-compatible upstream.
    Upstream(Arc<Upstream>),
}

/// One attempt of a plan.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Attempt {
    /// The provider's name in the config.
    pub provider: String,
    /// The model name to send it.
    pub model: String,
    /// Where it goes.
    pub target: Target,
}

/// The routes of one config, with their upstream clients (built once per
/// config; a reload builds new ones).
#[derive(Debug)]
pub struct Routes {
    _private: (),
}

/// A model the gateway serves (`GET /v1/models`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelEntry {
    /// The alias clients send.
    pub id: String,
    /// The first provider's name (`owned_by`).
    pub owned_by: String,
}

impl Routes {
    /// Builds the routes and upstream clients of `config`.
    pub fn new(config: &GatewayConfig) -> Result<Routes, crate::config::ConfigError> {
        let _ = config;
        todo!("routes work")
    }

    /// The attempts for one request for `model`, in order (weights applied);
    /// `None`: no route serves that model (404).
    pub fn plan(&self, model: &str) -> Option<Vec<Attempt>> {
        let _ = model;
        todo!("routes work")
    }

    /// The models routes name (`*` not listed).
    pub fn models(&self) -> Vec<ModelEntry> {
        todo!("routes work")
    }
}
