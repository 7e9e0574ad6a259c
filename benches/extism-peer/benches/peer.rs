//! The peer: one pre-request hook (insert a system prompt, mask e-mail
//! addresses and phone numbers) as an Extism plugin, on a 1 KB chat request.
//!
//! - `peer/extism`: the host holds the request as JSON (`serde_json::Value`),
//!   serialises it, calls the plugin, and parses what comes back: Extism's
//!   calls take and return bytes, so that is what a gateway on Extism pays.
//! - `peer/extism-call-only`: the plugin call alone, on a request already
//!   serialised (the floor of the above).
//!
//! Compare with plugbox's `peer/plugbox` case in `cargo bench -p plugbox-host
//! --bench pipeline` (the `system-prompt` and `pii-redact` example plugins on
//! the same request), run on the same machine.

use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use extism::{Manifest, Plugin, Wasm};
use serde_json::Value;

/// The request both benches use: 4 messages, ~1 KB, two e-mail addresses and
/// one phone number to mask.
pub fn request() -> Value {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4);
    let texts = [
        format!("You are terse. {filler}"),
        format!("Hi, I am bob@example.com. {filler}"),
        format!("Noted. {filler}"),
        format!("Call me at +1 555 123 4567 or mail ann@example.org. {filler}"),
    ];
    let roles = ["system", "user", "assistant", "user"];
    let messages: Vec<Value> =
        roles.iter().zip(&texts).map(|(r, t)| serde_json::json!({"role": r, "content": t})).collect();
    serde_json::json!({"model": "bench", "messages": messages, "temperature": 0.2})
}

/// Builds the guest (release, wasm32-unknown-unknown) and returns its path.
fn build_guest() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .current_dir(&dir)
        .args(["build", "-p", "peer-guest", "--release", "--target", "wasm32-unknown-unknown"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the peer guest failed (is the wasm32-unknown-unknown target installed?)");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
    target.join("wasm32-unknown-unknown/release/peer_guest.wasm")
}

fn benches(c: &mut Criterion) {
    let manifest = Manifest::new([Wasm::file(build_guest())]);
    let mut plugin = Plugin::new(&manifest, [], false).unwrap();
    let req = request();

    // Sanity: the prompt is inserted and all three items are masked.
    let out: String = plugin.call("pre_request", req.to_string()).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["messages"].as_array().unwrap().len(), 5);
    let text = out.to_string();
    assert!(!text.contains("bob@example.com") && !text.contains("555 123"), "{text}");
    assert_eq!(text.matches("[EMAIL]").count(), 2);
    assert_eq!(text.matches("[PHONE]").count(), 1);

    let mut g = c.benchmark_group("peer");
    g.bench_function("extism", |b| {
        b.iter(|| {
            let out: String = plugin.call("pre_request", req.to_string()).unwrap();
            serde_json::from_str::<Value>(&out).unwrap()
        })
    });
    let body = req.to_string();
    g.bench_function("extism-call-only", |b| {
        b.iter(|| {
            let out: &[u8] = plugin.call("pre_request", body.as_str()).unwrap();
            out.len()
        })
    });
    g.finish();
}

criterion_group!(peer, benches);
criterion_main!(peer);
