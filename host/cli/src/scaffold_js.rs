//! `plugbox new NAME --lang js`: a JavaScript plugin project, built with
//! componentize-js. The project is self-contained: it carries the SDK
//! (`plugbox.js`) and the plugin API's WIT (`wit/`) this binary was built with.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use plugbox_host::Manifest;

/// The files of a new JavaScript plugin: (path in the project, contents).
const TEMPLATE: &[(&str, &str)] = &[
    ("plugin.js", include_str!("template-js/plugin.js.tmpl")),
    ("plugin.yaml", include_str!("template-js/plugin.yaml.tmpl")),
    ("package.json", include_str!("template-js/package.json.tmpl")),
    (".gitignore", include_str!("template-js/gitignore.tmpl")),
    ("plugbox.js", include_str!("../../../plugin-sdk/js/plugbox.js")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/host.wit", include_str!("../../../wit/host.wit")),
    ("wit/hooks.wit", include_str!("../../../wit/hooks.wit")),
    ("wit/worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// Creates `parent/name` with a JavaScript plugin that builds with
/// `npm install && npm run build`.
pub fn new_js_plugin(name: &str, parent: &Path) -> Result<ExitCode> {
    // The same rule as the manifest's `name`, checked by the manifest parser itself.
    Manifest::from_str(&format!("name: {name}\nversion: 0.1.0\nhooks: [pre-request]\n"), Path::new("<name>"))
        .with_context(|| format!("`{name}` is not a valid plugin name"))?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("`{}` already exists", dir.display());
    }
    for (path, text) in TEMPLATE {
        // Only the templates hold `{{name}}`; the SDK and the WIT are copied as they are.
        let text = text.replace("{{name}}", name);
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("template paths have a parent"))?;
        std::fs::write(&target, text).with_context(|| format!("writing `{}`", target.display()))?;
    }
    println!("created JavaScript plugin `{name}` in {}", dir.display());
    println!("next (needs Node.js 18 or newer):");
    println!("  cd {} && npm install && npm run build", dir.display());
    println!("  plugbox check .");
    println!("  plugbox call . pre-request --sample > input.json && plugbox call . pre-request --input input.json");
    Ok(ExitCode::SUCCESS)
}
