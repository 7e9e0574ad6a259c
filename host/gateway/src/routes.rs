//! Model routes: a model alias → ordered providers, optional weights,
//! fallback to the next provider when the error allows it.
//!
//! [`Routes::new`] builds one pooled [`Upstream`] client per
//! `openai-compatible` provider of a config (a reload builds new ones; the
//! old ones close their connections when the last request using them ends).
//! [`Routes::plan`] orders a route's targets for one request: targets with a
//! weight first, in an order drawn by weight (a target's chance to come first
//! is its weight over the sum; then the same among the rest), then the
//! targets without a weight in file order. A model no route names goes to
//! the `*` route, if there is one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{ConfigError, GatewayConfig, ProviderConfig};
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
    routes: HashMap<String, Route>,
    catch_all: Option<Route>,
    models: Vec<ModelEntry>,
}

#[derive(Debug)]
struct Route {
    /// Weighted targets, with their weights.
    weighted: Vec<(u32, Attempt)>,
    /// Unweighted targets, in order.
    ordered: Vec<Attempt>,
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
    pub fn new(config: &GatewayConfig) -> Result<Routes, ConfigError> {
        let mut targets: BTreeMap<&str, Target> = BTreeMap::new();
        for (name, provider) in &config.providers {
            let target = match provider {
                ProviderConfig::Plugin { provider_type } => Target::Plugin { provider_type: provider_type.clone() },
                ProviderConfig::OpenAiCompatible(upstream) => Target::Upstream(Arc::new(
                    Upstream::new(upstream.clone())
                        .map_err(|e| ConfigError::Invalid(format!("provider `{name}`: {e}")))?,
                )),
            };
            targets.insert(name, target);
        }
        let mut routes = HashMap::new();
        let mut catch_all = None;
        let mut models = Vec::new();
        for route in &config.routes {
            if route.targets.is_empty() {
                return Err(ConfigError::Invalid(format!("route `{}` has no targets", route.model)));
            }
            let mut built = Route { weighted: Vec::new(), ordered: Vec::new() };
            for t in &route.targets {
                let target = targets.get(t.provider.as_str()).ok_or_else(|| {
                    ConfigError::Invalid(format!("route `{}` names unknown provider `{}`", route.model, t.provider))
                })?;
                let attempt = Attempt {
                    provider: t.provider.clone(),
                    model: t.model.clone().unwrap_or_else(|| route.model.clone()),
                    target: target.clone(),
                };
                match t.weight {
                    Some(w) => built.weighted.push((w, attempt)),
                    None => built.ordered.push(attempt),
                }
            }
            if route.model == "*" {
                catch_all = Some(built);
            } else {
                models.push(ModelEntry { id: route.model.clone(), owned_by: route.targets[0].provider.clone() });
                if routes.insert(route.model.clone(), built).is_some() {
                    return Err(ConfigError::Invalid(format!("two routes for model `{}`", route.model)));
                }
            }
        }
        Ok(Routes { routes, catch_all, models })
    }

    /// The attempts for one request for `model`, in order (weights applied);
    /// `None`: no route serves that model (404). With the `*` route, an
    /// attempt whose target names no model sends the client's model.
    pub fn plan(&self, model: &str) -> Option<Vec<Attempt>> {
        let (route, catch_all) = match self.routes.get(model) {
            Some(route) => (route, false),
            None => (self.catch_all.as_ref()?, true),
        };
        let mut plan = Vec::with_capacity(route.weighted.len() + route.ordered.len());
        let mut weighted: Vec<&(u32, Attempt)> = route.weighted.iter().collect();
        while !weighted.is_empty() {
            let total: u64 = weighted.iter().map(|(w, _)| u64::from(*w)).sum();
            let mut pick = rand::random_range(0..total);
            let at = weighted
                .iter()
                .position(|(w, _)| match pick.checked_sub(u64::from(*w)) {
                    Some(rest) => {
                        pick = rest;
                        false
                    }
                    None => true,
                })
                .expect("the pick is below the total");
            plan.push(weighted.remove(at).1.clone());
        }
        plan.extend(route.ordered.iter().cloned());
        if catch_all {
            for attempt in &mut plan {
                if attempt.model == "*" {
                    attempt.model = model.to_string();
                }
            }
        }
        Some(plan)
    }

    /// The models routes name (`*` not listed), in file order.
    pub fn models(&self) -> Vec<ModelEntry> {
        self.models.clone()
    }

    /// Whether a `*` route serves models no other route names.
    pub fn has_catch_all(&self) -> bool {
        self.catch_all.is_some()
    }
}

#[cfg(test)]
mod tests;
