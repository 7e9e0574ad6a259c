//! Tests of the manifest as a whole: parsing, config resolution, redaction.
//! The golden files in `tests/manifests` cover the error messages.

use std::env::VarError;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::*;

const RATE_LIMIT: &str = "\
name: rate-limit
version: 1.2.0
hooks: [pre-request]
config:
  rps:     { type: number,  default: 10 }
  burst:   { type: integer, default: 20 }
  api_key: { type: string,  required: true, secret: true }
  tags:    { type: array }
  verbose: { type: boolean, default: false }
";

fn manifest(src: &str) -> Manifest {
    Manifest::from_str(src, Path::new("plugin.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Resolves with a fake environment holding `KEY=sk-env`, `RPS=2.5`,
/// `BURST=7`, `TAGS=["a"]` and `WORD=fast`.
fn resolve(m: &Manifest, operator: Value) -> Result<Value, String> {
    let env = |name: &str| match name {
        "KEY" => Ok("sk-env".to_owned()),
        "RPS" => Ok("2.5".to_owned()),
        "BURST" => Ok("7".to_owned()),
        "TAGS" => Ok(r#"["a"]"#.to_owned()),
        "WORD" => Ok("fast".to_owned()),
        _ => Err(VarError::NotPresent),
    };
    config::resolve(&m.config, &map(operator), env).map(Value::Object)
}

#[test]
fn resolve_config_merges_defaults_and_operator_values() {
    let m = manifest(RATE_LIMIT);
    let resolved = resolve(&m, json!({"api_key": "sk-1", "rps": 3.5, "burst": 40.0})).unwrap();
    // burst 40.0 is a whole number: it becomes the integer 40. `tags` has
    // neither a value nor a default, so it is left out.
    assert_eq!(resolved, json!({"api_key": "sk-1", "rps": 3.5, "burst": 40, "verbose": false}));
}

#[test]
fn resolve_config_reads_environment_variables() {
    let m = manifest(RATE_LIMIT);
    let operator = json!({"api_key": "${KEY}", "rps": "${RPS}", "burst": "${BURST}", "tags": "${TAGS}"});
    let resolved = resolve(&m, operator).unwrap();
    assert_eq!(resolved, json!({"api_key": "sk-env", "rps": 2.5, "burst": 7, "tags": ["a"], "verbose": false}));
    // Only the exact form `${NAME}` is a reference.
    let literal = resolve(&m, json!({"api_key": "x${KEY}", "tags": []})).unwrap();
    assert_eq!(literal["api_key"], "x${KEY}");
}

#[test]
fn resolve_config_through_the_public_api_uses_the_process_environment() {
    // Cargo sets CARGO_PKG_NAME for the test process.
    let m = manifest(RATE_LIMIT);
    let resolved = m.resolve_config(&map(json!({"api_key": "${CARGO_PKG_NAME}"}))).unwrap();
    assert_eq!(resolved["api_key"], env!("CARGO_PKG_NAME"));
    let err = m.resolve_config(&map(json!({"api_key": "${PLUGBOX_SURELY_UNSET_1234}"}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `rate-limit`: config: `api_key`: environment variable `PLUGBOX_SURELY_UNSET_1234` is not set"
    );
}

#[test]
fn resolve_config_errors() {
    let m = manifest(RATE_LIMIT);
    assert_eq!(resolve(&m, json!({})).unwrap_err(), "missing required key `api_key`");
    assert_eq!(
        resolve(&m, json!({"api_key": "k", "rsp": 1})).unwrap_err(),
        "unknown key `rsp`, expected one of `api_key`, `burst`, `rps`, `tags`, `verbose`"
    );
    assert_eq!(
        resolve(&m, json!({"api_key": "k", "rps": "fast"})).unwrap_err(),
        "`rps`: expected a number, found a string `\"fast\"`"
    );
    assert_eq!(
        resolve(&m, json!({"api_key": "k", "burst": 2.5})).unwrap_err(),
        "`burst`: expected an integer, found a number `2.5`"
    );
    assert_eq!(
        resolve(&m, json!({"api_key": "k", "verbose": "${WORD}"})).unwrap_err(),
        "`verbose`: environment variable `WORD` (`fast`) is not a boolean"
    );
    // Several problems are reported together; a secret's value never shows.
    assert_eq!(
        resolve(&m, json!({"api_key": 12345, "tags": {}, "x": 1})).unwrap_err(),
        "unknown key `x`, expected one of `api_key`, `burst`, `rps`, `tags`, `verbose`; \
         `api_key`: expected a string, found a number; `tags`: expected an array, found an object"
    );
    let none = manifest("{name: n, version: 1.0.0, hooks: [provider]}");
    assert_eq!(resolve(&none, json!({"a": 1})).unwrap_err(), "unknown key `a`: this plugin takes no configuration");
}

#[test]
fn config_errors_name_the_plugin() {
    let m = manifest(RATE_LIMIT);
    let err = m.resolve_config(&Map::new()).unwrap_err();
    assert!(matches!(&err, ManifestError::Config { plugin, .. } if plugin == "rate-limit"));
    assert_eq!(err.to_string(), "plugin `rate-limit`: config: missing required key `api_key`");
}

#[test]
fn redact_config_hides_secrets_and_undeclared_keys() {
    let m = manifest(RATE_LIMIT);
    let config = map(json!({"api_key": "sk-live", "rps": 3, "api_kye": "sk-typo"}));
    let redacted = m.redact_config(&config);
    assert_eq!(Value::Object(redacted), json!({"api_key": "***", "rps": 3, "api_kye": "***"}));
}

#[test]
fn config_types_check_values() {
    use ConfigType::*;
    assert_eq!(Integer.check(&json!(20.0)), Some(json!(20)));
    assert_eq!(Integer.check(&json!(-3)), Some(json!(-3)));
    assert_eq!(Integer.check(&json!(u64::MAX)), Some(json!(u64::MAX)));
    assert_eq!(Integer.check(&json!(0.5)), None);
    assert_eq!(Integer.check(&json!(1e300)), None);
    assert_eq!(Number.check(&json!(7)), Some(json!(7)));
    assert_eq!(String.check(&json!(7)), None);
    assert_eq!(Boolean.check(&json!("true")), None);
    assert_eq!(Array.check(&json!([])), Some(json!([])));
    assert_eq!(Object.check(&json!({})), Some(json!({})));
}

#[test]
fn defaults_and_accessors() {
    let m = manifest("name: echo\nversion: 0.1.0\nhooks: [provider, endpoint]\n");
    assert_eq!(m.api, semver::VersionReq::parse("^0.2").unwrap());
    assert!(m.api.matches(&crate::WIT_VERSION));
    assert_eq!(m.priority, 0);
    assert_eq!(m.on_error, OnError::FailOpen);
    assert_eq!(m.permissions, Permissions::default());
    assert_eq!(m.limits.resolve(), ResolvedLimits::DEFAULT);
    assert_eq!(m.hooks, [Hook::Provider, Hook::Endpoint]);
    assert!(m.component.is_none() && m.config.is_empty());
}

#[test]
fn component_paths() {
    for ok in ["a.wasm", "./a.wasm", "build/a.wasm", "build/../a.wasm"] {
        assert!(parse_component(ok).is_ok(), "{ok}");
    }
    for bad in ["", "../a.wasm", "build/../../a.wasm", "/abs/a.wasm", "./.."] {
        assert!(parse_component(bad).is_err(), "{bad}");
    }
}

#[test]
fn api_mismatch_without_api_key_explains_the_default() {
    // The default `^0.2` always matches this host; simulate a host check
    // against an `api` that is not written by removing the key after parsing.
    let mut m = manifest("name: x\nversion: 1.0.0\nhooks: [provider]\n");
    m.api = semver::VersionReq::parse("^9").unwrap();
    let err = m.validate("name: x\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "p.yaml: plugin needs plugbox API `^9` (the default when `api` is not set), but this host provides `0.2.0`: \
         upgrade plugbox, or rebuild it with plugbox-sdk 0.2 (`cargo build --release --target wasm32-wasip2`) and set `api: \"^0.2\"`"
    );
}

#[test]
fn schema_describes_both_permission_forms() {
    let schema = json_schema();
    let forms = &schema["$defs"]["Permissions"]["anyOf"];
    assert_eq!(forms.as_array().map(Vec::len), Some(2), "{forms}");
    assert_eq!(schema["properties"]["hooks"]["minItems"], 1);
    assert_eq!(schema["additionalProperties"], false);
}
