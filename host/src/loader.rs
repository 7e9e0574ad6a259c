//! Finding plugins on disk and reading their manifests.
//!
//! A plugin directory may hold, at any depth:
//! - `<name>/plugin.yaml` with its `.wasm` (the [`SourceForm::Directory`] form);
//! - `<name>.wasm` with `<name>.yaml` beside it ([`SourceForm::Sidecar`]);
//! - a lone `<name>.wasm` whose manifest is embedded in a `plugbox-manifest`
//!   custom section ([`SourceForm::Embedded`]).
//!
//! A lone `.wasm` with no manifest at all is refused: without a manifest the
//! host knows neither the plugin's name nor its hooks, and an operator could
//! not see what it asks for. Hidden files and editor/partial-download leftovers
//! (`.*`, `*~`, `*.tmp`, `*.part`, `*.swp`) are ignored.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_SECTION, Manifest, ManifestError};

/// How a plugin was found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSource {
    /// The manifest file, or `None` when the manifest is embedded in the component.
    pub manifest: Option<PathBuf>,
    /// The `.wasm` component file.
    pub component: PathBuf,
    /// Which of the directory layouts the plugin was found in.
    pub form: SourceForm,
}

/// The three plugin directory forms the loader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceForm {
    /// `plugins/<name>/plugin.yaml` with its `.wasm`.
    Directory,
    /// `plugins/<name>.wasm` with `plugins/<name>.yaml` beside it.
    Sidecar,
    /// A lone `plugins/<name>.wasm` carrying its manifest in a custom section.
    Embedded,
}

/// The manifest file name of the directory form.
pub const MANIFEST_FILE: &str = "plugin.yaml";

/// Something in a plugin directory that could not be turned into a plugin source.
#[derive(Debug)]
pub struct DiscoveryProblem {
    /// The offending file or directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// Walks `dir` recursively and returns the plugin sources found, sorted by path,
/// plus what could not be understood. One bad entry never hides the others.
pub fn discover(dir: &Path) -> Result<(Vec<PluginSource>, Vec<DiscoveryProblem>)> {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    if !dir.is_dir() {
        return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory")));
    }
    walk(dir, &mut sources, &mut problems)?;
    sources.sort_by(|a, b| a.component.cmp(&b.component));
    Ok((sources, problems))
}

pub(crate) fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".swp", ".crdownload"].iter().any(|s| name.ends_with(s))
}

fn walk(dir: &Path, sources: &mut Vec<PluginSource>, problems: &mut Vec<DiscoveryProblem>) -> Result<()> {
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.is_file() {
        // A plugin directory: its component is found when the manifest is read.
        sources.push(PluginSource {
            manifest: Some(manifest),
            component: dir.to_path_buf(),
            form: SourceForm::Directory,
        });
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_none_or(ignored))
        .collect();
    entries.sort();
    for path in &entries {
        if path.is_dir() {
            walk(path, sources, problems)?;
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        match ext {
            "wasm" => {
                let sidecar = ["yaml", "yml"].iter().map(|e| path.with_extension(e)).find(|p| p.is_file());
                let form = if sidecar.is_some() { SourceForm::Sidecar } else { SourceForm::Embedded };
                sources.push(PluginSource { manifest: sidecar, component: path.clone(), form });
            }
            "yaml" | "yml" if !path.with_extension("wasm").is_file() => {
                problems.push(DiscoveryProblem {
                    path: path.clone(),
                    message: format!(
                        "manifest without a component: expected `{}` beside it",
                        path.with_extension("wasm").file_name().unwrap_or_default().to_string_lossy()
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Turns a path given by a user (plugin directory, manifest file, or `.wasm`)
/// into a plugin source.
pub fn source_for_path(path: &Path) -> Result<PluginSource> {
    if path.is_dir() {
        let manifest = path.join(MANIFEST_FILE);
        if !manifest.is_file() {
            return Err(Error::io(
                &manifest,
                std::io::Error::new(std::io::ErrorKind::NotFound, "a plugin directory needs a plugin.yaml"),
            ));
        }
        return Ok(PluginSource {
            manifest: Some(manifest),
            component: path.to_path_buf(),
            form: SourceForm::Directory,
        });
    }
    if !path.is_file() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("wasm") => {
            let sidecar = ["yaml", "yml"].iter().map(|e| path.with_extension(e)).find(|p| p.is_file());
            let form = if sidecar.is_some() { SourceForm::Sidecar } else { SourceForm::Embedded };
            Ok(PluginSource { manifest: sidecar, component: path.to_path_buf(), form })
        }
        _ if path.file_name().is_some_and(|n| n == MANIFEST_FILE) => {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            Ok(PluginSource { manifest: Some(path.to_path_buf()), component: dir, form: SourceForm::Directory })
        }
        _ => Ok(PluginSource {
            manifest: Some(path.to_path_buf()),
            component: path.with_extension("wasm"),
            form: SourceForm::Sidecar,
        }),
    }
}

/// A plugin's manifest, the path of its component, and the component's bytes.
pub(crate) struct ReadPlugin {
    pub manifest: Manifest,
    pub source: PluginSource,
    /// Directory relative paths in the manifest resolve against.
    pub base_dir: PathBuf,
    pub wasm: Vec<u8>,
    /// SHA-256 of the manifest text and the component bytes: what was loaded.
    pub fingerprint: [u8; 32],
}

/// Reads the manifest and the component bytes of `source`.
pub(crate) fn read_plugin(source: &PluginSource) -> Result<ReadPlugin> {
    let mut source = source.clone();
    match source.form {
        SourceForm::Directory | SourceForm::Sidecar => {
            let manifest_path = source.manifest.clone().expect("file forms have a manifest path");
            let text = crate::manifest::read_manifest(&manifest_path)?;
            let manifest = Manifest::from_str(&text, &manifest_path)?;
            let base_dir = manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf();
            source.component = match (&manifest.component, source.form) {
                (Some(rel), _) => base_dir.join(rel),
                (None, SourceForm::Sidecar) => source.component.clone(),
                (None, _) => only_wasm_in(&base_dir, &manifest_path)?,
            };
            let wasm = std::fs::read(&source.component).map_err(|e| Error::io(&source.component, e))?;
            let fingerprint = fingerprint(text.as_bytes(), &wasm);
            Ok(ReadPlugin { manifest, source, base_dir, wasm, fingerprint })
        }
        SourceForm::Embedded => {
            let wasm = std::fs::read(&source.component).map_err(|e| Error::io(&source.component, e))?;
            let text = embedded_manifest(&wasm).ok_or_else(|| {
                Error::Manifest(ManifestError::Invalid {
                    path: source.component.clone(),
                    line: None,
                    message: format!(
                        "no manifest: put `{}` beside it, or embed one with `plugbox pack`",
                        source.component.with_extension("yaml").file_name().unwrap_or_default().to_string_lossy()
                    ),
                })
            })?;
            let text = String::from_utf8(text).map_err(|_| {
                Error::Manifest(ManifestError::Invalid {
                    path: source.component.clone(),
                    line: None,
                    message: format!("the embedded `{MANIFEST_SECTION}` section is not UTF-8"),
                })
            })?;
            let origin = PathBuf::from(format!("{}#{MANIFEST_SECTION}", source.component.display()));
            let manifest = Manifest::from_str(&text, &origin)?;
            let base_dir = source.component.parent().unwrap_or(Path::new(".")).to_path_buf();
            let fingerprint = fingerprint(b"", &wasm);
            Ok(ReadPlugin { manifest, source, base_dir, wasm, fingerprint })
        }
    }
}

/// SHA-256 over a manifest's text and a component's bytes (length-prefixed, so
/// moving bytes from one to the other changes it).
pub(crate) fn fingerprint(manifest: &[u8], wasm: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((manifest.len() as u64).to_le_bytes());
    h.update(manifest);
    h.update(wasm);
    h.finalize().into()
}

fn only_wasm_in(dir: &Path, manifest_path: &Path) -> Result<PathBuf> {
    let mut wasm: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    wasm.sort();
    match wasm.len() {
        1 => Ok(wasm.remove(0)),
        n => Err(Error::Manifest(ManifestError::Invalid {
            path: manifest_path.to_path_buf(),
            line: None,
            message: if n == 0 {
                "no `.wasm` file beside the manifest".to_string()
            } else {
                format!("{n} `.wasm` files beside the manifest: name one with `component:`")
            },
        })),
    }
}

/// The text of the last `plugbox-manifest` custom section in `wasm`, searching
/// nested modules and components too (the SDK embeds it in the core module,
/// `plugbox pack` appends it at the top level, so the packed one wins).
pub fn embedded_manifest(wasm: &[u8]) -> Option<Vec<u8>> {
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(reader)) if reader.name() == MANIFEST_SECTION => {
                found = Some(reader.data().to_vec());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

/// Returns `wasm` with `manifest` appended as a top-level `plugbox-manifest`
/// custom section (what `plugbox pack` writes).
pub fn pack(wasm: &[u8], manifest: &str) -> Vec<u8> {
    use wasm_encoder::Encode;
    let section = wasm_encoder::CustomSection {
        name: MANIFEST_SECTION.into(),
        data: std::borrow::Cow::Borrowed(manifest.as_bytes()),
    };
    let mut out = wasm.to_vec();
    out.push(0); // custom section id, the same in core modules and components
    section.encode(&mut out);
    out
}
