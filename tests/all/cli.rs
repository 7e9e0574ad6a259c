//! The `plugbox` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::*;

fn plugbox(args: &[&str]) -> Output {
    plugbox_stdin(args, None)
}

/// Runs the `plugbox` binary with `args`, `stdin` as its input.
pub(crate) fn plugbox_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .args(args)
        .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
        .env_remove("PLUGBOX_POLICY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plugbox");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_hooks_grants_and_limits() {
    let dir = PluginDir::new();
    let p = dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 7, "continue", "continue"));
    let o = plugbox(&["check", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let s = out(&o);
    for needle in [
        "a 0.1.0",
        "pre-request, post-response",
        "priority 7",
        "memory 16 MiB",
        "timeout 100ms",
        "messages   write",
        "kv         own namespace",
        "network    none",
    ] {
        assert!(s.contains(needle), "missing `{needle}` in:\n{s}");
    }
}

#[test]
fn check_reports_file_line_column_and_fails() {
    let dir = PluginDir::new();
    let p = dir.add("bad", plugbox_artifacts::SCRIPTED, "name: bad\nversion: 1.0\nhooks: [pre-request]\n");
    let o = plugbox(&["check", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(e.contains("bad/plugin.yaml:2:"), "{e}");
}

#[test]
#[cfg(unix)]
fn a_compile_cache_others_can_write_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let cache = base.path().join("shared-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .args(["check", plugbox_artifacts::HELLO_WORLD])
        .env("PLUGBOX_CACHE_DIR", &cache)
        .env_remove("PLUGBOX_POLICY")
        .output()
        .unwrap();
    assert!(!o.status.success(), "a world-writable cache was used");
    let e = err(&o);
    assert!(e.contains(&format!("compile cache `{}`", cache.display())), "{e}");
    assert!(e.contains(&format!("chmod 700 {}", cache.display())), "{e}");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "nothing was written to the refused cache");
}

#[test]
fn check_json_is_machine_readable() {
    let o = plugbox(&["check", "--json", plugbox_artifacts::HELLO_WORLD]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v[0]["name"], "hello-world");
}

#[test]
fn list_shows_plugins_and_failures() {
    let dir = PluginDir::new();
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "continue", "continue"));
    dir.add("b", plugbox_artifacts::SCRIPTED, "name: b\nversion: 0.1.0\nhooks: [nope]\n");
    let o = plugbox(&["list", "--plugins", dir.path().to_str().unwrap()]);
    assert!(!o.status.success(), "a failed plugin makes `list` exit non-zero");
    let s = out(&o);
    assert!(s.contains("NAME") && s.lines().any(|l| l.starts_with("a ")), "{s}");
    assert!(s.contains("FAILED") && s.contains("b/plugin.yaml:3"), "{s}");
}

#[test]
fn call_runs_one_hook_with_json() {
    let dir = PluginDir::new();
    let p = dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "modify", "continue"));
    let input = serde_json::json!({ "req": request("hello") }).to_string();
    let o = plugbox_stdin(&["call", p.to_str().unwrap(), "pre-request"], Some(&input));
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["result"]["Ok"], "Continue", "{v}");
    assert_eq!(v["edited"]["messages"][0]["content"], "hello [a]", "the request as the plugin left it: {v}");
    assert_eq!(v["violation"], serde_json::Value::Null, "{v}");
    assert_eq!(v["context"]["trace"], "pre:a");

    // Operator config from the command line.
    let o =
        plugbox_stdin(&["call", p.to_str().unwrap(), "pre-request", "--config", r#"{"pre":"respond"}"#], Some(&input));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    // `respond` carries the answer as OpenAI JSON text.
    let answer: serde_json::Value = serde_json::from_str(v["result"]["Ok"]["Respond"].as_str().unwrap()).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "from a", "{v}");
    assert_eq!(answer["object"], "chat.completion", "{v}");

    // A hook the plugin does not implement.
    let o = plugbox_stdin(&["call", p.to_str().unwrap(), "provider"], Some(&input));
    assert!(!o.status.success());
    assert!(err(&o).contains("does not implement `provider`"), "{}", err(&o));
}

#[test]
fn pack_embeds_a_manifest() {
    let dir = PluginDir::new();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(&manifest, scripted("packed", 1, "continue", "continue")).unwrap();
    let out_wasm = dir.path().join("packed.wasm");
    let o = plugbox(&[
        "pack",
        "--manifest",
        manifest.to_str().unwrap(),
        "--component",
        plugbox_artifacts::SCRIPTED,
        "-o",
        out_wasm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = plugbox(&["check", out_wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("packed 0.1.0"), "{}", out(&o));

    // An invalid manifest is refused before anything is written.
    std::fs::write(&manifest, "name: Bad Name\n").unwrap();
    let o = plugbox(&[
        "pack",
        "--manifest",
        manifest.to_str().unwrap(),
        "--component",
        plugbox_artifacts::SCRIPTED,
        "-o",
        "/dev/null",
    ]);
    assert!(!o.status.success());
}

#[test]
fn schema_is_json() {
    let o = plugbox(&["schema"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(v["properties"]["permissions"].is_object(), "{v}");
}

#[test]
fn new_scaffolds_a_plugin_that_builds_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let o = plugbox(&["new", "my-filter", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let crate_dir = dir.path().join("my-filter");
    assert!(crate_dir.join("plugin.yaml").is_file());
    // Build it for wasm32-wasip2, sharing the guest build's target dir so the
    // SDK and wit-bindgen are already compiled.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", plugbox_artifacts::GUEST_TARGET_DIR)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "the scaffolded plugin does not build");
    let wasm = Path::new(plugbox_artifacts::GUEST_TARGET_DIR).join("wasm32-wasip2/release/my_filter.wasm");
    let o = plugbox(&["check", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("my-filter 0.1.0"), "{}", out(&o));
    // Invalid names are refused.
    let o = plugbox(&["new", "Bad_Name", "--dir", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
}

#[test]
fn demo_runs_and_shows_what_plugins_did() {
    let o = plugbox(&["demo"]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    let s = out(&o);
    for needle in ["[EMAIL]", "served from response-cache", "rate-limited", "failed-open: trapped", "respond", "modify"]
    {
        assert!(s.contains(needle), "demo output lacks `{needle}`:\n{s}");
    }
}

#[test]
fn call_sample_inputs_run_against_real_plugins() {
    // The sample `plugbox call --sample` prints is accepted as is.
    for (wasm, hook) in [
        (plugbox_artifacts::PII_REDACT, "pre-request"),
        (plugbox_artifacts::PII_REDACT, "post-response"),
        (plugbox_artifacts::ECHO_PROVIDER, "provider"),
    ] {
        let o = plugbox(&["call", wasm, hook, "--sample"]);
        assert!(o.status.success(), "{}", err(&o));
        let sample = out(&o);
        let o = plugbox_stdin(&["call", wasm, hook], Some(&sample));
        assert!(o.status.success(), "{hook}: {}", err(&o));
        let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
        assert!(v["result"].get("Ok").is_some(), "{hook}: {v}");
    }
}
