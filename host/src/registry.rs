//! The set of loaded plugins. Readers take an immutable [`Snapshot`]; every
//! change builds a new snapshot and swaps it in atomically, so a request that
//! started on one snapshot finishes on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::manifest::Hook;
use crate::plugin::LoadedPlugin;

/// What a plugin implements, for grouping (seed 001's "categories").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// `pre-request` and `post-response` hooks.
    Request,
    /// `on-chunk` and `on-stream-end` hooks.
    Stream,
    /// The `on-tool-call` hook.
    Tool,
    /// LLM providers.
    Provider,
    /// The `on-device-probe` hook (adjusts device probe results).
    DeviceHook,
    /// Plugins that report devices of their own (`device-probe`).
    DeviceProbe,
    /// Interface plugins (`endpoint`).
    Endpoint,
}

impl Category {
    /// The category a hook belongs to.
    pub fn of(hook: Hook) -> Category {
        match hook {
            Hook::PreRequest | Hook::PostResponse => Category::Request,
            Hook::OnChunk | Hook::OnStreamEnd => Category::Stream,
            Hook::OnToolCall => Category::Tool,
            Hook::Provider => Category::Provider,
            Hook::OnDeviceProbe => Category::DeviceHook,
            Hook::DeviceProbe => Category::DeviceProbe,
            Hook::Endpoint => Category::Endpoint,
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("plugins", &self.plugins.keys().collect::<Vec<_>>()).finish()
    }
}

/// An immutable view of the loaded plugins.
#[derive(Default)]
pub struct Snapshot {
    pub(crate) plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Plugins with request hooks, ascending priority (ties by name).
    pub(crate) request_chain: Vec<Arc<LoadedPlugin>>,
    /// Provider plugins by provider type.
    pub(crate) providers: BTreeMap<String, Arc<LoadedPlugin>>,
}

impl Snapshot {
    fn build(plugins: BTreeMap<String, Arc<LoadedPlugin>>) -> Snapshot {
        let mut request_chain: Vec<_> = plugins
            .values()
            .filter(|p| p.implements(Hook::PreRequest) || p.implements(Hook::PostResponse))
            .cloned()
            .collect();
        sort_by_priority(&mut request_chain);
        let providers =
            plugins.values().filter_map(|p| p.provider_type().map(|t| (t.to_string(), p.clone()))).collect();
        Snapshot { plugins, request_chain, providers }
    }

    /// Plugins implementing `hook`, ascending priority.
    pub fn chain(&self, hook: Hook) -> Vec<Arc<LoadedPlugin>> {
        let mut v: Vec<_> = self.plugins.values().filter(|p| p.implements(hook)).cloned().collect();
        sort_by_priority(&mut v);
        v
    }

    /// Plugins grouped by what they implement.
    pub fn by_category(&self) -> BTreeMap<Category, Vec<String>> {
        let mut map: BTreeMap<Category, Vec<String>> = BTreeMap::new();
        for p in self.plugins.values() {
            let mut cats: Vec<Category> = p.manifest.hooks.iter().map(|h| Category::of(*h)).collect();
            cats.sort();
            cats.dedup();
            for c in cats {
                map.entry(c).or_default().push(p.name().to_string());
            }
        }
        map
    }
}

fn sort_by_priority(v: &mut [Arc<LoadedPlugin>]) {
    v.sort_by(|a, b| a.manifest.priority.cmp(&b.manifest.priority).then_with(|| a.name().cmp(b.name())));
}

/// The registry: current snapshot plus a writer lock so that changes serialise.
#[derive(Default)]
pub(crate) struct Registry {
    current: RwLock<Arc<Snapshot>>,
    write: Mutex<()>,
}

impl Registry {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Applies `change` to a copy of the plugin map and swaps the result in.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<LoadedPlugin>>) -> R) -> R {
        let _guard = self.write.lock();
        let mut plugins = self.snapshot().plugins.clone();
        let result = change(&mut plugins);
        *self.current.write() = Arc::new(Snapshot::build(plugins));
        result
    }
}

/// Whether `plugin` may join `plugins` in place of the plugins named in
/// `replacing`: names are unique, provider types are unique, and the host
/// holds at most `max` plugins.
pub(crate) fn check_admission(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    plugin: &LoadedPlugin,
    replacing: &[String],
    max: usize,
) -> Result<()> {
    let others = || plugins.values().filter(|p| !replacing.iter().any(|r| r == p.name()));
    if let Some(other) = others().find(|p| p.name() == plugin.name()) {
        return Err(Error::Conflict(format!(
            "plugin `{}` from `{}` is already loaded from `{}`",
            plugin.name(),
            plugin.source.component.display(),
            other.source.component.display()
        )));
    }
    if let Some(ty) = plugin.provider_type()
        && let Some(other) = others().find(|p| p.provider_type() == Some(ty))
    {
        return Err(Error::Conflict(format!(
            "plugin `{}` provides type `{ty}`, which plugin `{}` already provides",
            plugin.name(),
            other.name()
        )));
    }
    if others().count() >= max {
        return Err(Error::TooManyPlugins { plugin: plugin.name().to_string(), max });
    }
    Ok(())
}
