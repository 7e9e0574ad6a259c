//! `plugbox check` and `plugbox list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use plugbox_host::loader::PluginSource;
use plugbox_host::loader::{self, MANIFEST_FILE};
use plugbox_host::{Host, LoadedPlugin, PluginState};
use serde_json::json;

/// The name a plugin source will load under (reads only the manifest).
pub fn plugin_name(source: &PluginSource) -> Result<String> {
    let manifest = match &source.manifest {
        Some(path) => plugbox_host::Manifest::from_path(path)?,
        None => {
            let wasm = std::fs::read(&source.component)?;
            let text = loader::embedded_manifest(&wasm)
                .ok_or_else(|| anyhow::anyhow!("`{}` has no embedded manifest", source.component.display()))?;
            plugbox_host::Manifest::from_str(&String::from_utf8(text)?, &source.component)?
        }
    };
    Ok(manifest.name.as_str().to_string())
}

fn describe(p: &LoadedPlugin) -> serde_json::Value {
    let m = p.manifest();
    json!({
        "name": p.name(),
        "version": m.version.to_string(),
        "description": m.description,
        "author": m.author,
        "hooks": m.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "priority": m.priority,
        "on-error": m.on_error,
        "provider-type": p.provider_type(),
        "source": p.source(),
        "limits": p.limits(),
        "grants": p.capabilities(),
        "load-ms": p.load_time().as_secs_f64() * 1000.0,
        "compiled-from": p.compile_source(),
        "stats": p.stats(),
    })
}

fn print_plugin(p: &LoadedPlugin) {
    let m = p.manifest();
    let l = p.limits();
    let c = p.capabilities();
    println!("{} {}  ({:?} form, {})", p.name(), m.version, p.source().form, p.source().component.display());
    if let Some(d) = &m.description {
        println!("  {d}");
    }
    let hooks: Vec<&str> = m.hooks.iter().map(|h| h.as_str()).collect();
    let on_error = match m.on_error {
        plugbox_host::manifest::OnError::FailOpen => "fail-open",
        plugbox_host::manifest::OnError::FailClosed => "fail-closed",
    };
    println!("  hooks:       {}  (priority {}, {on_error})", hooks.join(", "), m.priority);
    if let Some(t) = p.provider_type() {
        println!("  provider:    {t}");
    }
    println!(
        "  limits:      memory {}, timeout {:?}, {} instances, max-output {}",
        bytesize(l.memory),
        l.timeout,
        l.instances,
        bytesize(l.max_output)
    );
    println!("  grants:");
    let messages = match c.messages {
        plugbox_host::manifest::MessageAccess::None => "none (sees requests and responses without their text)",
        plugbox_host::manifest::MessageAccess::Read => "read (sees message text; changes to it are refused)",
        plugbox_host::manifest::MessageAccess::Write => "write (may change message text)",
    };
    println!("    messages   {messages}");
    println!("    kv         {}", if c.kv { "own namespace" } else { "no" });
    let net: Vec<String> = c.network.iter().map(|n| n.to_string()).collect();
    println!("    network    {}", if net.is_empty() { "none".to_string() } else { net.join(", ") });
    if c.preopens.is_empty() {
        println!("    files      none");
    }
    for o in &c.preopens {
        let access = match o.access {
            plugbox_host::manifest::FsAccess::Read => "read-only",
            plugbox_host::manifest::FsAccess::ReadWrite => "read-write",
        };
        println!("    files      {} -> {} ({access})", o.host.display(), o.guest);
    }
    let env: Vec<&str> = c.env.iter().map(|(k, _)| k.as_str()).collect();
    println!("    env        {}", if env.is_empty() { "none".to_string() } else { env.join(", ") });
    for d in &c.denied {
        println!("  NOT granted: {d}");
    }
    println!("  loaded in {:.1} ms ({:?})", p.load_time().as_secs_f64() * 1000.0, p.compile_source());
}

fn bytesize(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

pub async fn check(host: Host, paths: &[PathBuf], json: bool) -> Result<ExitCode> {
    let mut ok = true;
    let mut out = Vec::new();
    for path in paths {
        match host.load_plugin(path).await {
            Ok(p) => {
                if json {
                    out.push(describe(&p));
                } else {
                    print_plugin(&p);
                    println!();
                }
            }
            Err(e) => {
                ok = false;
                if json {
                    out.push(json!({ "path": path, "error": e.to_string() }));
                } else {
                    eprintln!("error: {}", with_path(path, &e));
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    host.unload_all().await;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Errors that do not name a file get the path they came from.
fn with_path(path: &Path, e: &plugbox_host::Error) -> String {
    match e {
        plugbox_host::Error::Manifest(_) | plugbox_host::Error::Io { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

pub async fn list(host: Host, dir: &Path, json: bool) -> Result<ExitCode> {
    let report = host.load_dir(dir).await?;
    let plugins = host.plugins();
    if json {
        let statuses = host.statuses();
        let status = |name: &str| statuses.iter().find(|s| s.name == name).map(|s| json!(s));
        let v = json!({
            "plugins": plugins.iter().map(|p| {
                let mut d = describe(p);
                d["status"] = status(p.name()).unwrap_or_default();
                d
            }).collect::<Vec<_>>(),
            "disabled": report.disabled,
            "failed": report.failed.iter().map(|f| json!({"path": f.path, "error": f.to_string()})).collect::<Vec<_>>(),
            "categories": host.snapshot().by_category(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_statuses(&host, false);
        for f in &report.failed {
            println!("FAILED  {f}");
        }
        if plugins.is_empty() && report.failed.is_empty() && report.disabled.is_empty() {
            println!(
                "(no plugins under `{}`; a plugin is a directory with {MANIFEST_FILE}, a .wasm with a .yaml beside it, or a packed .wasm)",
                dir.display()
            );
        }
    }
    host.unload_all().await;
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The plugin table of `list` and `serve`: one row per plugin with its
/// version, load time, when it was loaded and its state; under a row, the
/// plugin's last error and an upgrade waiting for approval, if any.
/// `failed`: also rows for plugins that failed and have no serving version.
pub fn print_statuses(host: &Host, failed: bool) {
    println!(
        "{:<18} {:<9} {:>8} {:<12} {:<10} {:>8}  {:<11} {:<20}  hooks",
        "NAME", "VERSION", "PRIORITY", "ON-ERROR", "FORM", "LOAD ms", "STATE", "LOADED AT"
    );
    for s in host.statuses() {
        match host.plugin(&s.name) {
            Some(p) => {
                let m = p.manifest();
                let hooks: Vec<&str> = m.hooks.iter().map(|h| h.as_str()).collect();
                let state = match p.stats().breaker {
                    plugbox_host::BreakerState::Closed => "active".to_string(),
                    plugbox_host::BreakerState::HalfOpen => "retrying".to_string(),
                    plugbox_host::BreakerState::Open { .. } => "quarantined".to_string(),
                };
                println!(
                    "{:<18} {:<9} {:>8} {:<12} {:<10} {:>8.1}  {:<11} {:<20}  {}",
                    p.name(),
                    m.version.to_string(),
                    m.priority,
                    format!("{:?}", m.on_error),
                    format!("{:?}", p.source().form),
                    p.load_time().as_secs_f64() * 1000.0,
                    state,
                    humantime::format_rfc3339_seconds(p.loaded_at()).to_string(),
                    hooks.join(",")
                );
            }
            None if s.state == PluginState::Failed && !failed => continue,
            None => {
                let state = match s.state {
                    PluginState::Disabled => "disabled",
                    PluginState::Pending => "pending",
                    _ => "failed",
                };
                println!(
                    "{:<18} {:<9} {:>8} {:<12} {:<10} {:>8}  {:<11} {:<20}",
                    s.name, "-", "-", "-", "-", "-", state, "-"
                );
            }
        }
        if let Some(dropped) = host.plugin(&s.name).map(|p| p.stats().log_lines_dropped).filter(|n| *n > 0) {
            println!("{:<18} dropped {dropped} log lines (over its log rate, or the host's log queue was full)", "");
        }
        if let Some(e) = &s.last_error {
            println!("{:<18} last error ({}): {}", "", humantime::format_rfc3339_seconds(e.at), e.message);
        }
        if let Some(p) = &s.pending {
            println!("{:<18} version {} waits for approval: {}", "", p.version, p.permissions);
        }
    }
}
