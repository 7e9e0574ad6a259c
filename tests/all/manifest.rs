//! `plugin.yaml`: golden files and the checked-in JSON Schema.
//!
//! - `tests/manifests/valid/*.yaml` must parse; the parsed manifest, as pretty
//!   JSON, must equal the `.json` beside it.
//! - `tests/manifests/invalid/*.yaml` must fail; the error's `Display` text
//!   must equal the `.err` beside it.
//! - `manifests/plugin.schema.json` must equal `manifest::json_schema()`.
//!
//! Run with `BLESS=1` to (re)write the expected files after a deliberate
//! change, then review the diff: error messages are part of the product.

use std::fs;
use std::path::{Path, PathBuf};

use plugbox_host::manifest::{self, Manifest};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v == "1")
}

/// The `.yaml` files of `tests/manifests/<dir>`, as paths relative to the
/// repository root, sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let rel = Path::new("tests/manifests").join(dir);
    let abs = repo_root().join(&rel);
    let mut files: Vec<PathBuf> = fs::read_dir(&abs)
        .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", abs.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter(|name| Path::new(name).extension().is_some_and(|ext| ext == "yaml"))
        .map(|name| rel.join(name))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "too few manifests in `{}`: is the directory right?", abs.display());
    files
}

/// Expected files (`ext`) in `dir` with no `.yaml` beside them.
fn orphans(dir: &str, ext: &str) -> Vec<String> {
    let abs = repo_root().join("tests/manifests").join(dir);
    let mut found: Vec<String> = fs::read_dir(&abs)
        .expect("a readable directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext) && !p.with_extension("yaml").exists())
        .map(|p| format!("{}: no `.yaml` beside it; delete it", p.display()))
        .collect();
    found.sort();
    found
}

/// Compares `actual` with the expected file (or writes it under `BLESS=1`);
/// returns a failure message. `same` decides equality of the two texts.
fn check_golden(expected: &Path, actual: &str, same: fn(&str, &str) -> bool) -> Option<String> {
    let abs = repo_root().join(expected);
    if bless() {
        fs::write(&abs, actual).unwrap_or_else(|e| panic!("cannot write `{}`: {e}", abs.display()));
        return None;
    }
    match fs::read_to_string(&abs) {
        Ok(want) if same(&want, actual) => None,
        Ok(want) => Some(format!("{} differs (- expected, + actual):\n{}", expected.display(), diff(&want, actual))),
        Err(e) => Some(format!("{}: {e}; run with BLESS=1 to create it", expected.display())),
    }
}

fn same_text(a: &str, b: &str) -> bool {
    a == b
}

/// JSON files compare as values, so that key order does not matter.
fn same_json(a: &str, b: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    parse(a).is_some_and(|a| Some(a) == parse(b))
}

/// A line diff (longest common subsequence), enough for golden files.
fn diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn valid_manifests_parse_to_the_expected_json() {
    let mut failures = orphans("valid", "json");
    for yaml in yaml_files("valid") {
        let src = fs::read_to_string(repo_root().join(&yaml)).expect("a readable manifest");
        let manifest = match Manifest::from_str(&src, &yaml) {
            Ok(manifest) => manifest,
            Err(e) => {
                failures.push(format!("{}: expected to parse, but: {e}", yaml.display()));
                continue;
            }
        };
        let json = serde_json::to_string_pretty(&manifest).expect("a manifest serializes") + "\n";
        failures.extend(check_golden(&yaml.with_extension("json"), &json, same_json));
        // What serializes must parse back to the same manifest (JSON is YAML).
        match Manifest::from_str(&json, &yaml) {
            Ok(again) if again == manifest => {}
            Ok(again) => failures.push(format!("{}: does not round-trip:\n{again:#?}", yaml.display())),
            Err(e) => failures.push(format!("{}: serialized form does not parse: {e}", yaml.display())),
        }
    }
    report(failures);
}

#[test]
fn invalid_manifests_fail_with_the_expected_message() {
    let mut failures = orphans("invalid", "err");
    for yaml in yaml_files("invalid") {
        let src = fs::read_to_string(repo_root().join(&yaml)).expect("a readable manifest");
        match Manifest::from_str(&src, &yaml) {
            Ok(manifest) => {
                failures.push(format!("{}: expected an error, but it parsed: {manifest:?}", yaml.display()))
            }
            Err(e) => failures.extend(check_golden(&yaml.with_extension("err"), &format!("{e}\n"), same_text)),
        }
    }
    report(failures);
}

#[test]
fn from_path_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("plugin.yaml");
    let missing = Manifest::from_path(&path).unwrap_err();
    assert!(matches!(missing, manifest::ManifestError::Io { .. }), "{missing:?}");
    assert!(missing.to_string().starts_with(&format!("cannot read `{}`: ", path.display())), "{missing}");

    fs::write(&path, "name: x\nversion: 1.0.0\nhooks: [endpoint]\n").expect("a written file");
    let manifest = Manifest::from_path(&path).expect("a valid manifest");
    assert_eq!(manifest.name.as_str(), "x");

    fs::write(&path, "name: x\nversion: 1.0.0\nhooks: [nope]\n").expect("a written file");
    let err = Manifest::from_path(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:3:9: hooks[0]: unknown hook `nope`", path.display())), "{err}");
}

#[test]
fn a_manifest_over_64_kib_is_refused_before_parsing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("plugin.yaml");
    // Valid YAML all the way (a 20 MB comment): only its size is wrong.
    let mut text = String::from("name: x\nversion: 1.0.0\nhooks: [endpoint]\n");
    text.push_str(&format!("# {}\n", "x".repeat(20 << 20)));
    fs::write(&path, &text).expect("a written file");
    let started = std::time::Instant::now();
    let err = Manifest::from_path(&path).unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_millis(500), "took {:?}", started.elapsed());
    assert_eq!(
        err,
        format!(
            "{}: the manifest is too large: `{}` bytes, the limit is 65536 bytes (64 KiB)",
            path.display(),
            text.len()
        )
    );
    // The same text given directly (an embedded manifest) is refused alike.
    let err = Manifest::from_str(&text, Path::new("x.wasm#plugbox-manifest")).unwrap_err().to_string();
    assert!(err.starts_with("x.wasm#plugbox-manifest: the manifest is too large: `"), "{err}");
    // Exactly at the cap is fine.
    let mut at_cap = String::from("name: x\nversion: 1.0.0\nhooks: [endpoint]\n#");
    at_cap.push_str(&"x".repeat(manifest::MAX_MANIFEST_BYTES - at_cap.len() - 1));
    at_cap.push('\n');
    assert_eq!(at_cap.len(), manifest::MAX_MANIFEST_BYTES);
    fs::write(&path, &at_cap).expect("a written file");
    Manifest::from_path(&path).expect("a manifest of exactly 64 KiB");
}

#[tokio::test]
async fn a_plugin_with_an_oversized_manifest_is_not_loaded_and_others_are() {
    let dir = crate::PluginDir::new();
    dir.add("ok", plugbox_artifacts::SCRIPTED, &crate::scripted("ok", 0, "continue", "continue"));
    let big = format!("{}# {}\n", crate::scripted("big", 0, "continue", "continue"), "x".repeat(1 << 20));
    dir.add("big", plugbox_artifacts::SCRIPTED, &big);
    let host = crate::host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let err = report.failed[0].to_string();
    assert!(err.contains("big/plugin.yaml: the manifest is too large: `"), "{err}");
    assert!(host.plugin("ok").is_some());
}

#[test]
fn schema_file_is_up_to_date() {
    let actual = serde_json::to_string_pretty(&manifest::json_schema()).expect("a schema serializes") + "\n";
    if let Some(failure) = check_golden(Path::new("manifests/plugin.schema.json"), &actual, same_json) {
        panic!("{failure}\nrun with BLESS=1 to regenerate the schema");
    }
}
