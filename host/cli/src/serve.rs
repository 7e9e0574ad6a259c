//! `plugbox serve` (a long-running host on a plugin directory, with hot
//! reload), and `plugbox disable` / `enable` / `approve`, which act through the
//! directory's state file so that a running `serve` picks them up.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
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

pub async fn serve(builder: HostBuilder, dir: &Path, watch: bool, json: bool) -> Result<ExitCode> {
    // Signal handlers first: a SIGHUP must never find the default action (exit).
    let mut signals = Signals::new()?;
    let host = builder.build()?;
    let logger = log_events(&host, json);
    let report = host.load_dir(dir).await.with_context(|| format!("loading plugins from `{}`", dir.display()))?;
    let watcher = if watch { Some(host.watch(dir).await?) } else { None };
    if !json {
        println!();
        print_statuses(&host, false);
        for f in &report.failed {
            println!("FAILED  {f}");
        }
        println!(
            "\nplugbox serve: {} plugin(s) from `{}`; {}. No HTTP endpoint yet: this mode runs the \
             plugin host only (events below). SIGHUP reloads the directory; Ctrl-C stops.\n",
            host.plugins().len(),
            dir.display(),
            if watch { "watching it for changes" } else { "not watching it (--no-watch)" },
        );
    }
    while let Signal::Reload = signals.next().await {
        if !json {
            println!("SIGHUP: reloading `{}`", dir.display());
        }
        match host.reload_dir(dir).await {
            Ok(_) if !json => print_statuses(&host, true),
            Ok(_) => {}
            Err(e) => eprintln!("error: reload: {e}"),
        }
    }
    if !json {
        println!("stopping");
    }
    if let Some(w) = watcher {
        w.stop().await;
    }
    host.unload_all().await;
    // Let the event log print the last unload events.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    logger.abort();
    Ok(ExitCode::SUCCESS)
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
