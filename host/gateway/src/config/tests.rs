use std::path::{Path, PathBuf};

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-upstream".into()),
        "TEAM_A_KEY" => Some("key-a".into()),
        "PORT" => Some("9191".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(src: &str) -> Result<GatewayConfig, String> {
    GatewayConfig::from_str_with_env(src, Path::new("gw.yaml"), env).map_err(|e| e.to_string())
}

fn err(src: &str) -> String {
    parse(src).expect_err("the config is refused")
}

const FULL: &str = "\
listen: 127.0.0.1:${PORT}
providers:
  local: { type: plugin, provider-type: echo }
  openai:
    type: openai-compatible
    base-url: https://api.openai.com/v1/
    api-key: ${OPENAI_API_KEY}
    headers: { OpenAI-Organization: org-1 }
    timeouts: { connect: 5s, first-byte: 60s, total: 10m }
    retries: { max: 3, initial-backoff: 200ms, max-backoff: 5s }
routes:
  - model: gpt-4o
    targets:
      - { provider: openai, model: gpt-4o-2024-08-06, weight: 3 }
      - local
  - model: '*'
    targets: [local]
api-keys:
  - { key: \"${TEAM_A_KEY}\", caller: team-a }
limits: { max-body: 2MiB, request-timeout: 120s, max-concurrent: 64, max-tool-rounds: 2 }
models:
  gpt-4o: { mode: chat, aliases: [gpt4] }
";

#[test]
fn a_full_config_parses() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9191".parse().unwrap());
    assert_eq!(c.providers["local"], ProviderConfig::Plugin { provider_type: "echo".into() });
    let ProviderConfig::OpenAiCompatible(up) = &c.providers["openai"] else { panic!("{:?}", c.providers) };
    assert_eq!(up.base_url, "https://api.openai.com/v1");
    assert_eq!(up.api_key.as_deref(), Some("sk-upstream"));
    assert_eq!(up.headers["openai-organization"], "org-1");
    assert_eq!(up.connect_timeout, Duration::from_secs(5));
    assert_eq!(up.first_byte_timeout, Duration::from_secs(60));
    assert_eq!(up.total_timeout, Duration::from_secs(600));
    assert_eq!(
        (up.max_retries, up.initial_backoff, up.max_backoff),
        (3, Duration::from_millis(200), Duration::from_secs(5))
    );
    assert_eq!(c.routes.len(), 2);
    assert_eq!(
        c.routes[0].targets,
        vec![
            RouteTarget { provider: "openai".into(), model: Some("gpt-4o-2024-08-06".into()), weight: Some(3) },
            RouteTarget { provider: "local".into(), model: None, weight: None },
        ]
    );
    assert_eq!(c.routes[1].model, "*");
    assert_eq!(c.api_keys, vec![ApiKey { key: "key-a".into(), caller: "team-a".into() }]);
    assert!(!format!("{:?}", c).contains("key-a"), "keys are redacted in Debug");
    assert!(!format!("{:?}", c).contains("sk-upstream"), "upstream keys are redacted in Debug");
    assert_eq!(c.limits.max_body, 2 << 20);
    assert_eq!(c.limits.request_timeout, Duration::from_secs(120));
    assert_eq!((c.limits.max_concurrent, c.limits.max_tool_rounds), (64, 2));
    assert_eq!(c.models.get("gpt4").unwrap().name, "gpt-4o");
}

#[test]
fn an_empty_file_is_loopback_with_nothing_routed_and_defaults() {
    let c = parse("{}").unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert!(c.providers.is_empty() && c.routes.is_empty() && c.api_keys.is_empty());
    assert_eq!(c.limits, Limits::default());
    let c = parse("providers:\n  openai: { type: openai-compatible, base-url: 'http://127.0.0.1:1/v1' }\n").unwrap();
    let ProviderConfig::OpenAiCompatible(up) = &c.providers["openai"] else { panic!() };
    assert_eq!(up, &UpstreamConfig::new("http://127.0.0.1:1/v1"));
    assert_eq!(
        parse("providers:\n  echo: { type: plugin }\n").unwrap().providers["echo"],
        ProviderConfig::Plugin { provider_type: "echo".into() }
    );
}

#[test]
fn default_echo_routes_everything_to_the_echo_plugin() {
    let c = GatewayConfig::default_echo();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert!(c.listen.ip().is_loopback());
    assert_eq!(c.providers["echo"], ProviderConfig::Plugin { provider_type: "echo".into() });
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].model, "*");
    assert_eq!(c.routes[0].targets[0].provider, "echo");
    assert!(c.api_keys.is_empty());
}

#[test]
fn errors_name_file_line_column_and_field() {
    assert_eq!(
        err("listen: 127.0.0.1:8080\nlimit: {}\n"),
        "gw.yaml:2:1: unknown field `limit`, expected one of `listen`, `providers`, `routes`, `api-keys`, `limits`, `models`"
    );
    assert_eq!(
        err("limits:\n  request-timeout: 5 parsecs\n"),
        "gw.yaml:2:20: limits.request-timeout: invalid duration `5 parsecs`: unknown time unit \"parsecs\", supported \
         units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); write a number and a \
         unit, such as `5s`, `200ms` or `10m`"
    );
    assert_eq!(
        err("providers:\n  a: { type: plugin }\nroutes:\n  - model: m\n    targets: [a, b]\n"),
        "gw.yaml:5:18: routes[0].targets[1]: unknown provider `b`: `providers` defines `a`"
    );
    assert_eq!(
        err("providers:\n  a: { type: plugin }\nroutes:\n  - model: m\n    targets:\n      - provider: nope\n"),
        "gw.yaml:6:19: routes[0].targets[0].provider: unknown provider `nope`: `providers` defines `a`"
    );
    assert_eq!(
        err("providers:\n  o:\n    type: openai-compatible\n    base-url: http://h/v1\n    api-key: ${NOT_SET}\n"),
        "gw.yaml:5:14: providers.o.api-key: environment variable `NOT_SET` is not set"
    );
    assert_eq!(
        err("api-keys:\n  - { key: '${EMPTY}', caller: c }\n"),
        "gw.yaml:2:12: api-keys[0].key: `${EMPTY}` expands to an empty string"
    );
    assert_eq!(
        err("providers:\n  o: { type: openai-compatible, base-url: 'ftp://h' }\n"),
        "gw.yaml:2:43: providers.o.base-url: invalid base URL `ftp://h`: use an `http://` or `https://` URL with a host"
    );
    assert_eq!(
        err("listen: localhost\n"),
        "gw.yaml:1:9: listen: invalid listen address `localhost`: write an IP address and a port, such as `127.0.0.1:8080` or `[::1]:8080`"
    );
    assert_eq!(
        err("limits:\n  max-body: 4 furlongs\n").split(": invalid size").next().unwrap(),
        "gw.yaml:2:13: limits.max-body"
    );
    assert!(err("providers:\n\ta: {type: plugin}\n").contains("a tab in the indentation"));
}

#[test]
fn rules_across_fields_are_placed_too() {
    assert_eq!(
        err(
            "providers:\n  a: { type: plugin }\nroutes:\n  - { model: m, targets: [a] }\n  - { model: m, targets: [a] }\n"
        ),
        "gw.yaml:5:14: routes[1].model: a route for model `m` is already defined: each model has one route"
    );
    assert_eq!(
        err("providers:\n  a: { type: plugin }\nroutes:\n  - model: m\n    targets: []\n"),
        "gw.yaml:5:14: routes[0].targets: a route needs at least one target provider"
    );
    assert!(err("routes:\n  - model: m\n").contains("routes[0]: missing field `targets`"));
    assert_eq!(
        err("limits: { max-concurrent: 0 }\n"),
        "gw.yaml:1:27: limits.max-concurrent: `0` is out of range: use 1 to 1000000"
    );
    assert_eq!(
        err("limits: { request-timeout: 0s }\n"),
        "gw.yaml:1:28: limits.request-timeout: `0s` is zero: use a duration above zero"
    );
    assert_eq!(
        err("limits: { max-body: 0MiB }\n"),
        "gw.yaml:1:21: limits.max-body: `0MiB` is zero: use a size above zero"
    );
    assert!(
        err("providers:\n  a: { type: plugin }\nroutes:\n  - { model: m, targets: [{ provider: a, weight: 0 }] }\n")
            .contains("weight: `0` is out of range: use 1 to 1000000")
    );
    assert_eq!(
        err("providers:\n  a:\n    type: openai-compatible\n    api-key: x\n"),
        "gw.yaml:2:3: providers.a: an `openai-compatible` provider needs `base-url`, such as `https://api.openai.com/v1`"
    );
    assert_eq!(
        err("providers:\n  a:\n    type: plugin\n    base-url: http://h\n"),
        "gw.yaml:4:5: providers.a.base-url: only `openai-compatible` providers take `base-url`; a `plugin` provider takes `provider-type`"
    );
    assert_eq!(
        err(
            "providers:\n  a:\n    type: openai-compatible\n    base-url: http://h\n    timeouts: { first-byte: 2m, total: 1m }\n"
        ),
        "gw.yaml:5:17: providers.a.timeouts: `first-byte` (2m) is longer than `total` (1m)"
    );
    assert_eq!(
        err("api-keys:\n  - { key: k, caller: a }\n  - { key: k, caller: b }\n"),
        "gw.yaml:1:1: api-keys: caller `b` has the same key as an earlier entry: each key names one caller"
    );
    assert_eq!(
        err("models:\n  a: { mode: chat, aliases: [x] }\n  b: { mode: chat, aliases: [x] }\n"),
        "gw.yaml:3:3: models.b: model `b`: the name `x` already names model `a`"
    );
}

#[test]
fn env_expansion_and_its_escape() {
    let c = parse("api-keys:\n  - { key: 'a-${TEAM_A_KEY}-$${LITERAL}-$x', caller: c }\n").unwrap();
    assert_eq!(c.api_keys[0].key, "a-key-a-${LITERAL}-$x");
    assert_eq!(
        err("api-keys:\n  - { key: '${1BAD}', caller: c }\n"),
        "gw.yaml:2:12: api-keys[0].key: `${1BAD}` is not an environment variable name: use letters, digits and `_`, \
         not starting with a digit (write `$${` for a literal `${`)"
    );
    assert!(err("api-keys:\n  - { key: '${OPEN', caller: c }\n").contains("without its closing `}`"));
    // A reference in a comment or a field that does not expand is not looked up.
    parse("# api-key: ${NOT_SET}\nlimits: {}\n").unwrap();
    // `from_str` reads the process environment.
    let path = std::env::var("PATH").unwrap();
    let c = GatewayConfig::from_str(
        "providers:\n  o: { type: openai-compatible, base-url: 'http://h', api-key: '${PATH}' }\n",
        Path::new("x"),
    )
    .unwrap();
    let ProviderConfig::OpenAiCompatible(up) = &c.providers["o"] else { panic!() };
    assert_eq!(up.api_key.as_deref(), Some(path.as_str()));
}

#[test]
fn from_path_reads_the_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, "limits: { max-concurrent: 7 }\n").unwrap();
    assert_eq!(GatewayConfig::from_path(&file).unwrap().limits.max_concurrent, 7);
    std::fs::write(&file, "nope: 1\n").unwrap();
    let e = GatewayConfig::from_path(&file).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:1:1: unknown field `nope`", file.display())), "{e}");
    let e = GatewayConfig::from_path(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing.yaml"), "{e}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn schema_file_is_up_to_date() {
    let path = repo_root().join("manifests/gateway.schema.json");
    let actual = serde_json::to_string_pretty(&GatewayConfig::json_schema()).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    let same = serde_json::from_str::<serde_json::Value>(&expected).ok()
        == Some(serde_json::from_str::<serde_json::Value>(&actual).unwrap());
    assert!(same, "{} is not the schema of the config types: run with BLESS=1 to regenerate it", path.display());
}

#[test]
fn the_schema_describes_the_file() {
    let schema = GatewayConfig::json_schema();
    let props = schema["properties"].as_object().unwrap();
    let keys: Vec<&str> = props.keys().map(String::as_str).collect();
    assert_eq!(keys, ["api-keys", "limits", "listen", "models", "providers", "routes"]);
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn the_example_config_parses() {
    let path = repo_root().join("manifests/gateway.example.yaml");
    let src = std::fs::read_to_string(&path).unwrap();
    let c = GatewayConfig::from_str_with_env(&src, &path, |name| Some(format!("value-of-{name}"))).unwrap();
    assert!(!c.routes.is_empty());
    crate::routes::Routes::new(&c).unwrap();
}

#[test]
fn the_watcher_reports_changes_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, "limits: { max-concurrent: 1 }\n").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = ConfigWatcher::start_with(&file, Duration::from_millis(50), move |r| {
        let _ = tx.send(r.map_err(|e| e.to_string()));
    })
    .unwrap();
    // Written in place.
    std::fs::write(&file, "limits: { max-concurrent: 2 }\n").unwrap();
    assert_eq!(rx.recv().unwrap().unwrap().limits.max_concurrent, 2);
    // Refused: the caller keeps its config; the error names the place.
    std::fs::write(&file, "limits: { max-concurrent: 0 }\n").unwrap();
    let e = rx.recv().unwrap().unwrap_err();
    assert!(e.contains("gateway.yaml:1:27: limits.max-concurrent"), "{e}");
    // Written elsewhere and renamed into place, as editors do.
    let tmp = dir.path().join(".gateway.yaml.tmp");
    std::fs::write(&tmp, "limits: { max-concurrent: 3 }\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert_eq!(rx.recv().unwrap().unwrap().limits.max_concurrent, 3);
    // Other files in the directory are not the config.
    std::fs::write(dir.path().join("other.yaml"), "x").unwrap();
    std::fs::write(&file, "limits: { max-concurrent: 4 }\n").unwrap();
    assert_eq!(rx.recv().unwrap().unwrap().limits.max_concurrent, 4);
    watcher.stop();
}

#[test]
fn empty_files_duplicates_and_wrong_types() {
    assert_eq!(parse("").unwrap().listen, DEFAULT_LISTEN);
    assert_eq!(parse("# only a comment\n").unwrap().limits, Limits::default());
    assert_eq!(
        err("providers:\n  a: { type: plugin }\n  a: { type: plugin }\n"),
        "gw.yaml:3:3: providers: provider `a` is defined twice"
    );
    assert_eq!(err("routes: 3\n"), "gw.yaml:1:9: routes: invalid type: integer `3`, expected a sequence");
    assert_eq!(
        err("providers:\n  o: { type: openai, base-url: 'http://h' }\n"),
        "gw.yaml:2:14: providers.o.type: unknown variant `openai`, expected `plugin` or `openai-compatible`"
    );
}
