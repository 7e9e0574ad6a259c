//! The non-Rust tools some tests run: a Python virtual environment with the
//! `openai` SDK and componentize-py, and jco with componentize-js from npm.
//! `scripts/install-test-tools` installs them, pinned, into
//! `$PLUGBOX_TOOLS_DIR` (default: `.tools` in the repository root); the first
//! test that needs them runs it (it is quick once installed). A machine
//! without python3 or node fails here with what to install: no test skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the tools are.
pub struct Tools {
    pub dir: PathBuf,
}

/// The installed tools (installing them on first use).
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = Path::new(plugbox_artifacts::REPO_ROOT);
        let dir = std::env::var_os("PLUGBOX_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".tools"));
        let script = root.join("scripts/install-test-tools");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("running `bash {}`: {e}", script.display()));
        assert!(
            out.status.success(),
            "`bash {} {}` failed; these tests need python3 (with venv) and node >= 18 with npm:\n{}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tools { dir }
    })
}

impl Tools {
    /// The venv's Python (has `openai` and `componentize_py`).
    pub fn python(&self) -> PathBuf {
        self.dir.join("venv/bin/python")
    }
    /// The `componentize-py` command.
    pub fn componentize_py(&self) -> PathBuf {
        self.dir.join("venv/bin/componentize-py")
    }
    /// The `componentize-js` command (JavaScript source to component).
    pub fn componentize_js(&self) -> PathBuf {
        self.dir.join("node_modules/.bin/componentize-js")
    }
    /// The WASI 0.2 WIT packages jco ships (`wasi-io`, `wasi-filesystem`,
    /// `wasi-http` ...), for worlds that import WASI interfaces by name.
    pub fn wasi_wit(&self) -> PathBuf {
        self.dir.join("node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12")
    }
}
