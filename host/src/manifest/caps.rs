//! Size caps on a manifest: how large the text may be, how long its
//! free-text fields, how many entries its lists and maps may hold. A
//! manifest is read by the host before any grant is checked, so it must not
//! be able to make the host spend memory or time on it.

use std::io::Read;
use std::path::Path;

use super::{Manifest, ManifestError, error};

/// The largest manifest accepted, in bytes: a `plugin.yaml` or an embedded
/// manifest. A larger one is refused before it is parsed.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// The longest free-text field accepted, in bytes: `author`, `description`,
/// and each config field's `description`.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The longest config key accepted, in bytes.
pub const MAX_CONFIG_KEY_BYTES: usize = 128;

/// The most entries in `config`.
pub const MAX_CONFIG_FIELDS: usize = 128;

/// The most entries in `permissions.network`.
pub const MAX_NETWORK_PATTERNS: usize = 64;

/// The most entries in `permissions.filesystem`.
pub const MAX_FILESYSTEM_GRANTS: usize = 16;

/// The most entries in `permissions.env`.
pub const MAX_ENV_NAMES: usize = 64;

fn too_large(path: &Path, size: u64) -> ManifestError {
    ManifestError::Invalid {
        path: path.to_owned(),
        line: None,
        message: format!(
            "the manifest is too large: `{size}` bytes, the limit is {MAX_MANIFEST_BYTES} bytes ({} KiB)",
            MAX_MANIFEST_BYTES / 1024
        ),
    }
}

/// Refuses a manifest text over [`MAX_MANIFEST_BYTES`].
pub(super) fn check_size(src: &str, origin: &Path) -> Result<(), ManifestError> {
    if src.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(origin, src.len() as u64));
    }
    Ok(())
}

/// Reads a manifest file, refusing one over [`MAX_MANIFEST_BYTES`] without
/// reading it whole.
pub(crate) fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    let io = |source| ManifestError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_MANIFEST_BYTES as u64 {
        return Err(too_large(path, size));
    }
    // The file may grow between the size check and the read.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_MANIFEST_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// The field-length and entry-count caps of a parsed manifest.
pub(super) fn check_fields(m: &Manifest, src: &str, origin: &Path) -> Result<(), ManifestError> {
    let fail = |keys: &[&str], message: String| {
        Err(ManifestError::Invalid { path: origin.to_owned(), line: error::key_line(src, keys), message })
    };
    let text = |keys: &[&str], field: &str, value: &Option<String>| match value {
        Some(v) if v.len() > MAX_TEXT_BYTES => {
            fail(keys, format!("{field}: `{}` bytes is too long, the limit is {MAX_TEXT_BYTES} bytes", v.len()))
        }
        _ => Ok(()),
    };
    text(&["author"], "author", &m.author)?;
    text(&["description"], "description", &m.description)?;
    let count = |keys: &[&str], field: &str, n: usize, max: usize| {
        if n > max {
            return fail(keys, format!("{field}: `{n}` entries are too many, the limit is {max}"));
        }
        Ok(())
    };
    let p = &m.permissions;
    count(&["permissions", "network"], "permissions.network", p.network.len(), MAX_NETWORK_PATTERNS)?;
    count(&["permissions", "filesystem"], "permissions.filesystem", p.filesystem.len(), MAX_FILESYSTEM_GRANTS)?;
    count(&["permissions", "env"], "permissions.env", p.env.len(), MAX_ENV_NAMES)?;
    count(&["config"], "config", m.config.len(), MAX_CONFIG_FIELDS)?;
    for (key, field) in &m.config {
        if key.len() > MAX_CONFIG_KEY_BYTES {
            let shown: String = key.chars().take(32).collect();
            return fail(
                &["config"],
                format!(
                    "config: the key `{shown}...` is too long: `{}` bytes, the limit is {MAX_CONFIG_KEY_BYTES} bytes",
                    key.len()
                ),
            );
        }
        text(&["config", key, "description"], &format!("config.{key}.description"), &field.description)?;
    }
    Ok(())
}
