//! The example plugins and test fixtures, built for `wasm32-wasip2`.
//!
//! The build script runs a nested `cargo build --release` of the guest
//! workspace (`example-plugins/`, whose members include `tests/fixtures/*`)
//! with a target directory of its own next to the outer one
//! (`<target>/guest-target`, or `$PLUGBOX_GUEST_TARGET_DIR`), so it stays warm
//! between builds. It fails the build, with a message saying how to fix it,
//! when the `wasm32-wasip2` target is missing or a guest does not compile:
//! tests never silently skip a plugin.
//!
//! What it generates:
//!
//! * one constant per component, named after its crate in SHOUTY_CASE, with
//!   the absolute path of the `.wasm` file: [`HELLO_WORLD`], [`SCRIPTED`], …;
//! * [`EXAMPLES`]: each example plugin with its manifest in `manifests/`;
//! * [`FIXTURES`]: each fixture with the `plugin.yaml` beside its crate;
//! * [`REPO_ROOT`], [`MANIFESTS_DIR`], [`SDK_DIR`], [`WIT_DIR`];
//! * [`foreach_example!`] and [`foreach_fixture!`], which call a macro once
//!   per artifact with its snake_case name, so a test module can make a missing
//!   test for a new fixture a compile error:
//!
//! ```
//! macro_rules! assert_has_test {
//!     ($name:ident) => {
//!         // e.g. `let _ = tests::$name;` where each fixture has a test fn
//!         let _ = stringify!($name);
//!     };
//! }
//! plugbox_artifacts::foreach_fixture!(assert_has_test);
//! ```
//!
//! The example plugins embed their manifests (`plugbox-manifest` custom
//! section), so each can also be loaded as a lone `.wasm`; the fixtures do
//! not (a lone fixture `.wasm` is a component without a manifest).

use std::path::Path;

/// A built component and the manifest that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The plugin's name (its crate's directory name): `hello-world`, `scripted`.
    pub name: &'static str,
    /// Absolute path of the component (`.wasm`).
    pub wasm: &'static str,
    /// Absolute path of its manifest: `manifests/<name>.yaml` for an example,
    /// the `plugin.yaml` beside the crate for a fixture.
    pub manifest: &'static str,
}

impl Artifact {
    /// The component's path.
    pub fn wasm_path(&self) -> &'static Path {
        Path::new(self.wasm)
    }

    /// The manifest's path.
    pub fn manifest_path(&self) -> &'static Path {
        Path::new(self.manifest)
    }
}

/// The example plugin called `name`.
pub fn example(name: &str) -> Option<&'static Artifact> {
    EXAMPLES.iter().find(|a| a.name == name)
}

/// The test fixture called `name`.
pub fn fixture(name: &str) -> Option<&'static Artifact> {
    FIXTURES.iter().find(|a| a.name == name)
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_artifact_exists() {
        assert!(!EXAMPLES.is_empty() && !FIXTURES.is_empty());
        for a in EXAMPLES.iter().chain(FIXTURES) {
            assert!(a.wasm_path().is_file(), "{} is missing", a.wasm);
            assert!(a.manifest_path().is_file(), "{} is missing", a.manifest);
        }
        assert_eq!(example("hello-world").unwrap().wasm, HELLO_WORLD);
        assert_eq!(fixture("scripted").unwrap().wasm, SCRIPTED);
        assert!(Path::new(MANIFESTS_DIR).join("hello-world.yaml").is_file());
    }

    #[test]
    fn foreach_covers_every_fixture() {
        let mut names = Vec::new();
        macro_rules! collect {
            ($name:ident) => {
                names.push(stringify!($name).replace('_', "-"));
            };
        }
        foreach_fixture!(collect);
        let expected: Vec<String> = FIXTURES.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(names, expected);
    }
}
