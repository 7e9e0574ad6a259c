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

/// The files of a new Python plugin: (path in the project, contents). The
/// SDK package and the WIT are copied in, so the project builds on its own.
const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    ("app.py", include_str!("template-python/app.py.tmpl")),
    ("plugin.yaml", include_str!("template-python/plugin.yaml.tmpl")),
    (".gitignore", include_str!("template-python/gitignore.tmpl")),
    ("plugbox_plugin/__init__.py", include_str!("../../../plugin-sdk/python/plugbox_plugin/__init__.py")),
    ("plugbox_plugin/exports.py", include_str!("../../../plugin-sdk/python/plugbox_plugin/exports.py")),
    ("plugbox_plugin/http.py", include_str!("../../../plugin-sdk/python/plugbox_plugin/http.py")),
    ("provider.py", include_str!("../../../plugin-sdk/python/provider.py")),
    ("wit/plugbox/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/plugbox/hooks.wit", include_str!("../../../wit/hooks.wit")),
    ("wit/plugbox/host.wit", include_str!("../../../wit/host.wit")),
    ("wit/plugbox/worlds.wit", include_str!("../../../wit/worlds.wit")),
    ("wit/python/python.wit", include_str!("../../../plugin-sdk/python/wit/python.wit")),
    ("wit/python/deps/cli.wit", include_str!("../../../plugin-sdk/python/wit/deps/cli.wit")),
    ("wit/python/deps/clocks.wit", include_str!("../../../plugin-sdk/python/wit/deps/clocks.wit")),
    ("wit/python/deps/filesystem.wit", include_str!("../../../plugin-sdk/python/wit/deps/filesystem.wit")),
    ("wit/python/deps/http.wit", include_str!("../../../plugin-sdk/python/wit/deps/http.wit")),
    ("wit/python/deps/io.wit", include_str!("../../../plugin-sdk/python/wit/deps/io.wit")),
    ("wit/python/deps/random.wit", include_str!("../../../plugin-sdk/python/wit/deps/random.wit")),
    ("wit/python/deps/sockets.wit", include_str!("../../../plugin-sdk/python/wit/deps/sockets.wit")),
];

/// The one command that builds a scaffolded Python plugin (run in its directory).
pub const PYTHON_BUILD: &str = "componentize-py -d wit/plugbox -d wit/python -w plugbox:python/plugin \
--import-interface-name plugbox:plugin/types@0.2.0=types componentize app -o plugin.wasm";

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

/// `plugbox new NAME --lang python`: app.py, plugin.yaml, and copies of the
/// SDK package and the WIT, so that one command builds it.
pub fn new_python_plugin(name: &str, parent: &Path) -> Result<ExitCode> {
    Manifest::from_str(&format!("name: {name}\nversion: 0.1.0\nhooks: [pre-request]\n"), Path::new("<name>"))
        .with_context(|| format!("`{name}` is not a valid plugin name"))?;
    let dir = &parent.join(name);
    if dir.exists() {
        bail!("`{}` already exists", dir.display());
    }
    for (path, text) in PYTHON_TEMPLATE {
        let text = text.replace("{{name}}", name);
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("template paths have a parent"))?;
        std::fs::write(&target, text).with_context(|| format!("writing `{}`", target.display()))?;
    }
    println!("created Python plugin `{name}` in {}", dir.display());
    println!("next (with componentize-py 0.25: `pip install componentize-py==0.25.1`):");
    println!("  cd {}", dir.display());
    println!("  {PYTHON_BUILD}");
    println!("  plugbox check .");
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
