//! Discovery and loading: the three directory forms, lookups, unload, the
//! compile cache, and broken plugins that never stop the others.

use plugbox_host::Category;
use plugbox_host::CompileSource;
use plugbox_host::loader::SourceForm;
use plugbox_host::{Hook, RequestContext};

use crate::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn three_forms_load_side_by_side() {
    let dir = PluginDir::new();
    // Directory form.
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "modify", "continue"));
    // Sidecar form, in a nested grouping directory.
    let nested = dir.path().join("group");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::copy(plugbox_artifacts::SCRIPTED, nested.join("b.wasm")).unwrap();
    std::fs::write(nested.join("b.yaml"), scripted("b", 2, "modify", "continue")).unwrap();
    // Embedded form: hello-world carries its manifest (put there by the SDK).
    std::fs::copy(plugbox_artifacts::HELLO_WORLD, dir.path().join("hello.wasm")).unwrap();
    // Ignored: hidden files and partial downloads.
    std::fs::write(dir.path().join(".hidden.wasm"), b"junk").unwrap();
    std::fs::write(dir.path().join("x.wasm.part"), b"junk").unwrap();

    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut loaded = report.loaded.clone();
    loaded.sort();
    assert_eq!(loaded, ["a", "b", "hello-world"]);
    assert_eq!(host.plugin("a").unwrap().source().form, SourceForm::Directory);
    assert_eq!(host.plugin("b").unwrap().source().form, SourceForm::Sidecar);
    assert_eq!(host.plugin("hello-world").unwrap().source().form, SourceForm::Embedded);

    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [a] [b]");
    assert_eq!(ctx.get("hello-world.greeted").as_deref(), Some("true"));
}

#[tokio::test]
async fn packed_wasm_loads_alone() {
    let dir = PluginDir::new();
    let wasm = std::fs::read(plugbox_artifacts::SCRIPTED).unwrap();
    let packed = plugbox_host::loader::pack(&wasm, &scripted("packed", 1, "modify", "continue"));
    std::fs::write(dir.path().join("packed.wasm"), packed).unwrap();
    let host = host();
    let p = host.load_plugin(&dir.path().join("packed.wasm")).await.unwrap();
    assert_eq!(p.name(), "packed");
    assert_eq!(p.source().form, SourceForm::Embedded);
}

#[tokio::test]
async fn broken_plugins_are_reported_and_the_rest_load() {
    let dir = PluginDir::new();
    dir.add("good", plugbox_artifacts::SCRIPTED, &scripted("good", 1, "modify", "continue"));
    // Malformed manifest.
    dir.add("typo", plugbox_artifacts::SCRIPTED, "name: typo\nversion: 0.1.0\nhooks: [pre-request]\npriorty: 3\n");
    // Not a component.
    let d = dir.path().join("notwasm");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("x.wasm"), b"\0asm garbage").unwrap();
    std::fs::write(d.join("plugin.yaml"), "name: notwasm\nversion: 0.1.0\nhooks: [pre-request]\n").unwrap();
    // Declares a hook its component does not export.
    dir.add(
        "liar",
        plugbox_artifacts::BARE_REQUEST_HOOKS,
        "name: liar\nversion: 0.1.0\nhooks: [pre-request, provider]\n",
    );
    // A lone .wasm without any manifest.
    std::fs::copy(plugbox_artifacts::BARE_REQUEST_HOOKS, dir.path().join("anonymous.wasm")).unwrap();
    // A manifest without its component.
    std::fs::write(dir.path().join("orphan.yaml"), "name: orphan\n").unwrap();

    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.loaded, ["good"]);
    let errors: Vec<String> = report.failed.iter().map(|f| f.to_string()).collect();
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(has("typo/plugin.yaml:4:1: unknown field `priorty`"), "{errors:#?}");
    assert!(has("plugin `notwasm`: not a valid WebAssembly component"), "{errors:#?}");
    assert!(
        has(
            "plugin `liar`: declares hook `provider` but its component does not export `plugbox:plugin/provider@0.2.0`"
        ),
        "{errors:#?}"
    );
    assert!(has("anonymous.wasm: no manifest"), "{errors:#?}");
    assert!(has("orphan.yaml: manifest without a component"), "{errors:#?}");

    // The good plugin works.
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [good]");
}

#[tokio::test]
async fn component_needs_only_the_interfaces_it_uses() {
    let dir = PluginDir::new();
    dir.add(
        "bare",
        plugbox_artifacts::BARE_REQUEST_HOOKS,
        "name: bare\nversion: 0.1.0\nhooks: [pre-request, post-response]\n",
    );
    let host = host();
    host.load_dir(dir.path()).await.unwrap();
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
}

#[tokio::test]
async fn duplicate_names_are_refused() {
    let dir = PluginDir::new();
    dir.add("one", plugbox_artifacts::SCRIPTED, &scripted("same", 1, "continue", "continue"));
    dir.add("two", plugbox_artifacts::SCRIPTED, &scripted("same", 2, "continue", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.loaded, ["same"]);
    assert!(report.failed[0].to_string().contains("plugin `same` from"), "{}", report.failed[0]);
}

#[tokio::test]
async fn lookup_by_name_type_and_category_then_unload() {
    let dir = PluginDir::new();
    dir.add("echo-provider", plugbox_artifacts::ECHO_PROVIDER, &read(&manifest_of("echo-provider")));
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "continue", "continue"));
    let host = host();
    host.load_dir(dir.path()).await.unwrap();
    assert_eq!(host.provider("echo").unwrap().name(), "echo-provider");
    assert_eq!(host.plugins_implementing(Hook::PreRequest).len(), 1);
    let cats = host.snapshot().by_category();
    assert_eq!(cats[&Category::Provider], ["echo-provider"]);
    assert_eq!(cats[&Category::Request], ["a"]);

    host.unload("echo-provider").await.unwrap();
    assert!(host.provider("echo").is_none());
    assert!(host.plugin("echo-provider").is_none());
    assert!(host.unload("echo-provider").await.is_err());
}

#[tokio::test]
async fn warm_load_comes_from_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let dir = PluginDir::new();
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "continue", "continue"));
    let cold = plugbox_host::HostBuilder::new().cache_dir(Some(cache.path().into())).build().unwrap();
    let p = cold.load_plugin(&dir.path().join("a")).await.unwrap();
    assert_eq!(p.compile_source(), CompileSource::Compiled);
    let warm = plugbox_host::HostBuilder::new().cache_dir(Some(cache.path().into())).build().unwrap();
    let p = warm.load_plugin(&dir.path().join("a")).await.unwrap();
    assert_eq!(p.compile_source(), CompileSource::Cache);
    // A corrupt cache entry is ignored and rewritten. (Entries are memory-mapped
    // while in use, so they are only ever replaced by rename: drop the hosts
    // that map this one before damaging it in place.)
    drop((p, cold, warm));
    for e in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(e.unwrap().path(), b"corrupt").unwrap();
    }
    let again = plugbox_host::HostBuilder::new().cache_dir(Some(cache.path().into())).build().unwrap();
    let p = again.load_plugin(&dir.path().join("a")).await.unwrap();
    assert_eq!(p.compile_source(), CompileSource::Compiled);
}

pub fn manifest_of(name: &str) -> String {
    plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == name).expect("example exists").manifest.to_string()
}

#[tokio::test]
async fn plugins_built_against_other_compatible_wit_versions_load() {
    // api-0-1-0 is frozen at the WIT as it was at 0.1.0 (it keeps proving that
    // old plugins load as the host moves to 0.1.y); api-0-1-99 was built
    // against a later 0.1 patch. Both link their imports and exports by semver.
    let dir = PluginDir::new();
    for (name, wasm) in [("api-0-1-0", plugbox_artifacts::API_0_1_0), ("api-0-1-99", plugbox_artifacts::API_0_1_99)] {
        dir.add(
            name,
            wasm,
            &format!("name: {name}\nversion: 0.1.0\nhooks: [pre-request, post-response]\npriority: {}\n", name.len()),
        );
    }
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    let by_plugin: Vec<(String, String)> = ctx.trace().into_iter().map(|t| (t.plugin, t.action)).collect();
    assert_eq!(by_plugin.iter().filter(|(_, a)| a == "continue").count(), 4, "{by_plugin:?}");
    // The later of the two pre hooks wrote last.
    assert_eq!(ctx.get("api-version").as_deref(), Some("0.1.99"));
}
