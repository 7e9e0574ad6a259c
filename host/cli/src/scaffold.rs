//! `plugbox new` and `plugbox pack`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use plugbox_host::Manifest;
use plugbox_host::loader;

/// The template files of a new plugin crate: (path in the crate, contents).
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("template/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("template/lib.rs.tmpl")),
    ("plugin.yaml", include_str!("template/plugin.yaml.tmpl")),
    (".cargo/config.toml", include_str!("template/cargo-config.toml.tmpl")),
    (".gitignore", include_str!("template/gitignore.tmpl")),
];

/// The plugin-sdk this binary was built from.
const DEFAULT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugin-sdk");

pub fn new_plugin(name: &str, parent: &Path, sdk_path: Option<&Path>) -> Result<ExitCode> {
    // The same rule as the manifest's `name`, checked by the manifest parser itself.
    Manifest::from_str(&format!("name: {name}\nversion: 0.1.0\nhooks: [pre-request]\n"), Path::new("<name>"))
        .with_context(|| format!("`{name}` is not a valid plugin name"))?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("`{}` already exists", dir.display());
    }
    let sdk: PathBuf = match sdk_path {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(DEFAULT_SDK),
    };
    let sdk =
        sdk.canonicalize().with_context(|| format!("plugin-sdk not found at `{}` (pass --sdk-path)", sdk.display()))?;
    let crate_name = name.replace('-', "_");
    for (path, text) in TEMPLATE {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk_path}}", &sdk.display().to_string());
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("template paths have a parent"))?;
        std::fs::write(&target, text).with_context(|| format!("writing `{}`", target.display()))?;
    }
    println!("created plugin `{name}` in {}", dir.display());
    println!("next:");
    println!("  cd {} && cargo build --release", dir.display());
    println!("  plugbox check target/wasm32-wasip2/release/{crate_name}.wasm");
    Ok(ExitCode::SUCCESS)
}

pub fn pack(manifest: &Path, component: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading `{}`", manifest.display()))?;
    let parsed = Manifest::from_str(&text, manifest)?;
    let wasm = std::fs::read(component).with_context(|| format!("reading `{}`", component.display()))?;
    if wasmparser::Parser::is_component(&wasm) {
        let packed = loader::pack(&wasm, &text);
        let out = output.unwrap_or(component);
        std::fs::write(out, packed).with_context(|| format!("writing `{}`", out.display()))?;
        println!("packed manifest of `{}` {} into {}", parsed.name.as_str(), parsed.version, out.display());
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("`{}` is not a WebAssembly component (build for wasm32-wasip2)", component.display())
    }
}
