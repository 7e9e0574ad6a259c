//! [`ManifestError`], and the helpers that give errors a file location.

use std::path::{Path, PathBuf};

/// Why a manifest could not be read, parsed, validated, or configured.
///
/// Every variant except [`Config`](ManifestError::Config) names the manifest
/// file, and a line wherever one is known, so that `Display` alone is a
/// complete message for a plugin author.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or a field is unknown, missing, or has a bad
    /// value.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Parse {
        /// The manifest file (or the origin given to [`Manifest::from_str`]).
        ///
        /// [`Manifest::from_str`]: super::Manifest::from_str
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong, prefixed by the field's path (`limits.memory: ...`).
        message: String,
    },
    /// The manifest parsed, but a check that spans fields (or that compares it
    /// with this host, such as `api`) failed.
    #[error("{}{}: {message}", .path.display(), line_suffix(.line))]
    Invalid {
        /// The manifest file (or the origin given to [`Manifest::from_str`]).
        ///
        /// [`Manifest::from_str`]: super::Manifest::from_str
        path: PathBuf,
        /// 1-based line of the offending key, when it is written in the file.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The operator's configuration does not fit the manifest's `config`
    /// section. The message never contains the value of a secret field.
    #[error("plugin `{plugin}`: config: {message}")]
    Config {
        /// The plugin's name.
        plugin: String,
        /// What is wrong; several problems are separated by `; `.
        message: String,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|line| format!(":{line}")).unwrap_or_default()
}

/// Converts a serde_norway error into [`ManifestError::Parse`], moving its
/// location into the prefix.
/// `src` is used for hints, such as a tab in the indentation.
pub(crate) fn from_yaml(err: serde_norway::Error, src: &str, path: &Path) -> ManifestError {
    let text = err.to_string();
    match err.location() {
        Some(loc) => {
            let own = format!(" at line {} column {}", loc.line(), loc.column());
            let mut message = text.replacen(&own, "", 1);
            let line = src.lines().nth(loc.line().saturating_sub(1)).unwrap_or("");
            let indent = &line[..line.len() - line.trim_start().len()];
            if indent.contains('\t') {
                message.push_str(" (a tab in the indentation: YAML is indented with spaces)");
            }
            ManifestError::Parse { path: path.to_owned(), line: loc.line(), column: loc.column(), message }
        }
        None => ManifestError::Invalid { path: path.to_owned(), line: None, message: text },
    }
}

/// Finds the 1-based line where a key is written, for errors found after
/// parsing. `keys` is a path from the top level, such as `["limits", "memory"]`;
/// if the full path is not found, the line of the deepest key found is
/// returned. Understands block mappings and keys inside a flow mapping on the
/// parent's line; that covers manifests as people write them.
pub(super) fn key_line(src: &str, keys: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut depth = 0;
    for (index, line) in src.lines().enumerate() {
        let Some(&key) = keys.get(depth) else { break };
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if let Some(parent) = parent_indent {
            if indent <= parent {
                break;
            }
        } else if indent != 0 {
            continue;
        }
        let content = content.strip_prefix("- ").unwrap_or(content);
        if starts_with_key(content, key) {
            found = Some(index + 1);
            parent_indent = Some(indent);
            depth += 1;
            // The remaining keys may sit in a flow mapping on this line.
            let rest = &content[key.len()..];
            if keys[depth..].iter().all(|k| contains_key(rest, k)) {
                return found;
            }
        }
    }
    found
}

fn starts_with_key(content: &str, key: &str) -> bool {
    [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")].iter().any(|k| content.starts_with(k.as_str()))
}

fn contains_key(flow: &str, key: &str) -> bool {
    flow.match_indices(key).any(|(at, _)| {
        let before = flow[..at].chars().next_back();
        let after = &flow[at + key.len()..];
        matches!(before, Some('{' | ',' | ' ' | '"' | '\'')) && after.trim_start_matches(['"', '\'']).starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
name: x
# limits: {memory: 1}
limits:
  timeout: 20ms

  memory: 1MiB
permissions: { network: [a], kv: true }
api: \"^9\"
";

    #[test]
    fn key_line_finds_top_level_and_nested_keys() {
        assert_eq!(key_line(SRC, &["name"]), Some(1));
        assert_eq!(key_line(SRC, &["limits"]), Some(3));
        assert_eq!(key_line(SRC, &["limits", "memory"]), Some(6));
        assert_eq!(key_line(SRC, &["permissions", "kv"]), Some(7));
        assert_eq!(key_line(SRC, &["api"]), Some(8));
        assert_eq!(key_line(SRC, &["limits", "stack"]), Some(3));
        assert_eq!(key_line(SRC, &["hooks"]), None);
    }

    #[test]
    fn display_forms() {
        let invalid = |line| ManifestError::Invalid { path: "p.yaml".into(), line, message: "bad".into() };
        assert_eq!(invalid(Some(3)).to_string(), "p.yaml:3: bad");
        assert_eq!(invalid(None).to_string(), "p.yaml: bad");
        let config = ManifestError::Config { plugin: "rl".into(), message: "bad".into() };
        assert_eq!(config.to_string(), "plugin `rl`: config: bad");
    }
}
