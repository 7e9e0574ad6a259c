//! `plugbox serve` (the OpenAI-compatible gateway over a plugin directory,
//! with hot reload of the plugins and the gateway config), and `plugbox disable` / `enable` / `approve`, which act through the
//! directory's state file so that a running `serve` picks them up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plugbox_gateway::GatewayBuilder;
use plugbox_gateway::config::{ConfigWatcher, GatewayConfig};
use plugbox_host::reload::{PluginStates, fingerprint_of};
use plugbox_host::{Host, HostBuilder, PluginEvent, loader};
use tokio::sync::broadcast::error::RecvError;

use super::check::{plugin_name, print_statuses};

/// Prints each plugin event on its own line (text or JSON) until the host goes.
fn log_events(host: &Host, json: bool) -> tokio::task::JoinHandle<()> {
    let mut events = host.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => print_event(&e, json),
                Err(RecvError::Lagged(n)) => eprintln!("({n} plugin events not shown: the log fell behind)"),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

/// One event as `serve` and `demo` print it.
pub fn print_event(e: &PluginEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    } else {
        println!("{}  {e}", humantime::format_rfc3339_millis(e.at));
    }
}

/// What `plugbox serve` was asked to do.
pub struct ServeOptions {
    /// The plugin directory (`--plugins`); none: the embedded echo provider only.
    pub plugins: Option<PathBuf>,
    /// The gateway config file (`--config`); none: [`GatewayConfig::default_echo`].
    pub config: Option<PathBuf>,
    /// `--listen`, over the config's `listen`.
    pub listen: Option<SocketAddr>,
    /// `--allow-unauthenticated`: serve non-loopback clients without API keys.
    pub allow_unauthenticated: bool,
    /// `--grace`: how long requests in flight may take to finish on shutdown.
    pub grace: Duration,
    /// Watch the plugin directory and the config file (not `--no-watch`).
    pub watch: bool,
    /// `--json`: events as JSON lines.
    pub json: bool,
}

/// `plugbox serve`: the OpenAI-compatible gateway.
pub async fn serve(builder: HostBuilder, opts: ServeOptions) -> Result<ExitCode> {
    // Signal handlers first: a SIGHUP must never find the default action (exit).
    let mut signals = Signals::new()?;
    let config = match &opts.config {
        Some(path) => GatewayConfig::from_path(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => GatewayConfig::default_echo(),
    };
    let listen = opts.listen.unwrap_or(config.listen);
    if !listen.ip().to_canonical().is_loopback() && config.api_keys.is_empty() && !opts.allow_unauthenticated {
        bail!(
            "refusing to listen on {listen} with no API keys configured: anyone who reaches it could use it. \
             Configure `api-keys` in the gateway config, listen on a loopback address, or pass \
             --allow-unauthenticated"
        );
    }
    let host = builder.build()?;
    let logger = log_events(&host, opts.json);
    let mut failed = Vec::new();
    if let Some(dir) = &opts.plugins {
        let report = host.load_dir(dir).await.with_context(|| format!("loading plugins from `{}`", dir.display()))?;
        failed = report.failed;
    }
    let watcher = match (&opts.plugins, opts.watch) {
        (Some(dir), true) => Some(host.watch(dir).await?),
        _ => None,
    };
    // The embedded echo provider, unless the directory has one.
    let _echo_dir = if host.provider("echo").is_none() { load_embedded_echo(&host).await? } else { None };
    let gateway = GatewayBuilder::new(host.clone(), config)
        .allow_unauthenticated(opts.allow_unauthenticated)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config_watcher = match (&opts.config, opts.watch) {
        (Some(path), true) => {
            let gw = gateway.clone();
            let json = opts.json;
            let shown = path.display().to_string();
            Some(
                ConfigWatcher::start(path, move |next| match next.and_then(|c| gw.set_config(c)) {
                    Ok(()) if json => println!("{}", serde_json::json!({"event": "config-reloaded", "path": shown})),
                    Ok(()) => println!("config reloaded from `{shown}`"),
                    Err(e) => eprintln!("error: config not reloaded, the current one keeps serving: {e}"),
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if !opts.json {
        println!();
        print_statuses(&host, false);
        for f in &failed {
            println!("FAILED  {f}");
        }
        println!(
            "\nplugbox serve: {} plugin(s){}; {}. SIGHUP reloads the plugins; Ctrl-C or SIGTERM stops \
             (requests in flight get {} to finish).",
            host.plugins().len(),
            opts.plugins.as_ref().map(|d| format!(" from `{}`", d.display())).unwrap_or_default(),
            if opts.watch { "watching for changes" } else { "not watching (--no-watch)" },
            humantime::format_duration(opts.grace),
        );
    }
    println!("plugbox serve: listening on http://{addr}");
    let server = {
        let gw = gateway.clone();
        tokio::spawn(async move { gw.serve(listener, std::future::pending()).await })
    };
    while let Signal::Reload = signals.next().await {
        let Some(dir) = &opts.plugins else { continue };
        if !opts.json {
            println!("SIGHUP: reloading `{}`", dir.display());
        }
        match host.reload_dir(dir).await {
            Ok(_) if !opts.json => print_statuses(&host, true),
            Ok(_) => {}
            Err(e) => eprintln!("error: reload: {e}"),
        }
    }
    println!("plugbox serve: stopping; {} request(s) in flight", gateway.in_flight());
    gateway.shutdown_handle().shutdown();
    tokio::select! {
        done = tokio::time::timeout(opts.grace, server) => match done {
            Ok(Ok(Ok(()))) => println!("plugbox serve: drained"),
            Ok(Ok(Err(e))) => eprintln!("error: serving: {e}"),
            Ok(Err(e)) => eprintln!("error: the server task: {e}"),
            Err(_) => eprintln!(
                "plugbox serve: grace period over, {} request(s) cut off", gateway.in_flight()
            ),
        },
        _ = signals.next() => eprintln!("plugbox serve: second signal, not waiting for requests in flight"),
    }
    if let Some(w) = config_watcher {
        w.stop();
    }
    if let Some(w) = watcher {
        w.stop().await;
    }
    host.unload_all().await;
    // Let the event log print the last unload events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    logger.abort();
    Ok(ExitCode::SUCCESS)
}

/// Loads the `echo` provider embedded in this binary (written to a private
/// temporary directory, removed when serving ends).
#[cfg(feature = "demo-plugins")]
async fn load_embedded_echo(host: &Host) -> Result<Option<tempfile::TempDir>> {
    let dir = tempfile::Builder::new().prefix("plugbox-echo-").tempdir().context("a temporary directory")?;
    let path = dir.path().join("echo-provider.wasm");
    std::fs::write(&path, plugbox_artifacts::ECHO_PROVIDER_BYTES)
        .with_context(|| format!("writing `{}`", path.display()))?;
    host.load_plugin(&path).await.context("loading the embedded echo provider")?;
    Ok(Some(dir))
}

/// Built without the example plugins: there is no embedded echo provider.
#[cfg(not(feature = "demo-plugins"))]
async fn load_embedded_echo(_host: &Host) -> Result<Option<std::path::PathBuf>> {
    eprintln!(
        "warning: no `echo` provider plugin is loaded and this binary has none embedded \
         (built without the `demo-plugins` feature): routes to it will fail"
    );
    Ok(None)
}

enum Signal {
    Reload,
    Stop,
}

/// SIGHUP (reload), Ctrl-C and SIGTERM (stop).
struct Signals {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Streams made once: a signal that arrives while a reload runs is kept.
            Ok(Signals {
                hup: signal(SignalKind::hangup())?,
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

/// `plugbox disable NAME` / `plugbox enable NAME`.
pub fn set_disabled(dir: &Path, name: &str, disabled: bool) -> Result<ExitCode> {
    if !dir.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    let found = find_plugin(dir, name)?;
    let path = PluginStates::path_in(dir);
    let changed = PluginStates::update(&path, |s| {
        if disabled {
            s.disabled.insert(name.to_string());
        } else {
            s.disabled.remove(name);
        }
    })?;
    let what = if disabled { "disabled" } else { "enabled" };
    match (changed, found) {
        (false, _) => println!("`{name}` was already {what}"),
        (true, Some(p)) => println!("{what} `{name}` ({}); recorded in `{}`", p.display(), path.display()),
        (true, None) => {
            println!("{what} `{name}` (no such plugin in `{}` yet); recorded in `{}`", dir.display(), path.display())
        }
    }
    println!("a `plugbox serve` on this directory applies it at once (its watcher, or SIGHUP with --no-watch)");
    Ok(ExitCode::SUCCESS)
}

/// `plugbox approve NAME`: approves the plugin's files as they are now.
pub fn approve(dir: &Path, name: &str) -> Result<ExitCode> {
    let Some(path) = find_plugin(dir, name)? else { bail!("no plugin named `{name}` in `{}`", dir.display()) };
    let (_, version, fingerprint) = fingerprint_of(&path)?;
    let state = PluginStates::path_in(dir);
    PluginStates::update(&state, |s| {
        s.approved.insert(name.to_string(), fingerprint.clone());
    })?;
    println!(
        "approved `{name}` {version} as it is now in `{}` (fingerprint {}); a `plugbox serve` on this \
         directory swaps it in if it waits for approval, or when it does. Changing the files again needs a new approval.",
        path.display(),
        &fingerprint[..16]
    );
    Ok(ExitCode::SUCCESS)
}

/// The plugin directory, manifest or `.wasm` of plugin `name` under `dir`.
fn find_plugin(dir: &Path, name: &str) -> Result<Option<std::path::PathBuf>> {
    let (sources, _) = loader::discover(dir)?;
    Ok(sources
        .into_iter()
        .find(|s| plugin_name(s).is_ok_and(|n| n == name))
        .map(|s| plugbox_host::reload::source_key(&s)))
}
