//! The module picture, checked: the library's top-level modules form layers,
//! and a module only uses modules of a lower layer (or its own). A `use` that
//! points upwards, and so any cycle, fails `cargo test`.
//!
//! ```text
//! 0  manifest  bindings  failure  breaker    plain data and leaf rules
//! 1  budget  error  blocking
//! 2  policy  engine  imports  capability  events
//! 3  loader                                  plugin files on disk
//! 4  plugin                                  one plugin version, its instances
//! 5  registry                                the set of loaded plugins
//! 6  pipeline  devices  models               subsystems over a registry snapshot
//! 7  reload  watch  devtools                 hot reload; one hook as JSON
//! 8  host                                    the facade (`impl Host` lives here)
//! ```

/// Layer of each top-level module; a module may use those of a lower layer,
/// and (within a layer) only those listed in [`SAME_LAYER`].
const LAYERS: &[(&str, u8)] = &[
    ("manifest", 0),
    ("openai", 0),
    ("bindings", 0),
    ("failure", 0),
    ("breaker", 0),
    ("budget", 1),
    ("error", 1),
    ("blocking", 1),
    ("policy", 2),
    ("engine", 2),
    ("imports", 2),
    ("capability", 2),
    ("events", 2),
    ("loader", 3),
    ("plugin", 4),
    ("registry", 5),
    ("pipeline", 6),
    ("devices", 6),
    ("models", 6),
    ("reload", 7),
    ("watch", 7),
    ("host", 8),
    ("devtools", 7),
];

/// Uses allowed between modules of one layer (user, used).
const SAME_LAYER: &[(&str, &str)] = &[
    ("blocking", "error"),
    ("policy", "imports"),
    ("capability", "imports"),
    ("capability", "policy"),
    ("events", "capability"),
    ("devices", "models"),
    ("watch", "reload"),
];

/// Uses that point upwards on purpose (user, used, why). Keep it short.
const UPWARD: &[(&str, &str, &str)] = &[(
    "bindings",
    "imports",
    "the bindgen `with:` map names the host entry types behind the `llm` resources (imports::llm), \
     whose trait impls use the generated types: one knot, made by the generator",
)];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// `crate::<name>` references in `text`, ignoring comment lines.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b}`: every first segment inside the braces.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for part in inner.split(',') {
                    refs.push(part.trim().split("::").next().unwrap_or("").to_string());
                }
            } else {
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                refs.push(rest[..end].to_string());
            }
        }
    }
    refs
}

#[test]
fn modules_only_use_lower_layers() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.iter().next().unwrap().to_str().unwrap().trim_end_matches(".rs");
            if matches!(top, "lib" | "layering") {
                continue;
            }
            let Some(own) = layer(top) else {
                problems.push(format!("module `{top}` has no layer in `layering.rs`"));
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may build whole hosts.
            let text = text.split("#[cfg(test)]").next().unwrap();
            for used in crate_refs(text) {
                let Some(theirs) = layer(&used) else { continue };
                let allowed = used == top
                    || theirs < own
                    || (theirs == own && SAME_LAYER.contains(&(top, used.as_str())))
                    || UPWARD.iter().any(|(u, d, _)| (*u, *d) == (top, used.as_str()));
                if !allowed {
                    problems
                        .push(format!("`{}` uses `crate::{used}` (layer {theirs} from layer {own})", rel.display()));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "the module layering is broken:\n{}", problems.join("\n"));
}

#[test]
fn refs_are_found_in_paths_and_use_groups() {
    let refs = crate_refs(
        "use crate::{plugin::X, budget};\nlet a = crate::host::Host::new(); // crate::watch\n// crate::reload",
    );
    assert_eq!(refs, ["plugin", "budget", "host", "watch"]);
}
