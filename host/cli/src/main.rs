//! The `plugbox` command line: a thin clap front-end over the public API of
//! the `plugbox-host` library. `anyhow` is used here only, never in the library.

mod check;
mod demo;
mod devices;
mod samples;
mod scaffold;
mod serve;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use plugbox_host::{Hook, HostBuilder, Policy};

#[derive(Parser)]
#[command(name = "plugbox", version, about = "WebAssembly-sandboxed plugin host for LLM services")]
struct Cli {
    /// Operator policy file (YAML): what plugins may be granted.
    #[arg(long, global = true, env = "PLUGBOX_POLICY")]
    policy: Option<PathBuf>,
    /// Compile cache directory (default: ~/.cache/plugbox/compiled).
    #[arg(long, global = true, env = "PLUGBOX_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Root of the per-plugin data directories (`data-dir`); must lie outside
    /// every plugin directory (default: $XDG_DATA_HOME/plugbox/data, else
    /// ~/.local/share/plugbox/data).
    #[arg(long, global = true, env = "PLUGBOX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `plugbox=debug`.
    /// Default: `warn` for `serve`, `error` for the commands that print their
    /// findings themselves.
    #[arg(long, global = true, env = "PLUGBOX_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate plugins (a plugin directory, a plugin.yaml, or a .wasm): load,
    /// compile and initialise each, then print what it is and what it may do.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load every plugin of a directory and list them (and what failed).
    List {
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run one hook of a plugin with JSON input and print the JSON result.
    Call {
        /// Plugin directory, plugin.yaml or .wasm.
        path: PathBuf,
        /// pre-request, post-response, on-chunk, on-stream-end, on-tool-call,
        /// provider, on-device-probe, device-probe or endpoint.
        hook: String,
        /// JSON input file, or `-` for stdin.
        #[arg(long, short, default_value = "-")]
        input: String,
        /// Operator config for the plugin, as a JSON object.
        #[arg(long)]
        config: Option<String>,
        /// Print a complete sample input for HOOK and exit (edit it, then pass it with --input).
        #[arg(long)]
        sample: bool,
    },
    /// Create a new plugin crate from the template.
    New {
        /// Plugin name ([a-z0-9-]).
        name: String,
        /// Parent directory of the new crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to plugbox's plugin-sdk crate (default: the one this binary was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Embed a manifest into a component, so the .wasm alone is a plugin.
    Pack {
        /// The plugin.yaml to embed (validated first).
        #[arg(long)]
        manifest: PathBuf,
        /// The component to embed it into.
        #[arg(long)]
        component: PathBuf,
        /// Output file (default: overwrite the component).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of plugin.yaml.
    Schema,
    /// Probe devices (CPU, memory, NVIDIA GPUs, and those of device plugins),
    /// run the device hooks, and print what is free.
    Devices {
        /// Load device plugins and device hooks from this directory.
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Print JSON (raw and adjusted reports, problems, hook calls).
        #[arg(long)]
        json: bool,
    },
    /// Load the example plugins and run requests through the pipeline with the
    /// echo provider, showing what each plugin did.
    Demo {
        /// Use plugins from this directory instead of the bundled examples.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Run the OpenAI-compatible gateway: `POST /v1/chat/completions` (JSON
    /// and SSE), `POST /v1/embeddings`, `GET /v1/models`, `/healthz`,
    /// `/readyz`, every request, stream and tool call through the plugins.
    /// Without `--plugins` (or when the directory has no `echo` provider) the
    /// embedded echo provider answers, so it works with no key and no network.
    /// Prints `plugbox serve: listening on http://ADDR` once it accepts. The
    /// plugin directory and the config file are watched and hot-reloaded;
    /// SIGHUP reloads the plugins; Ctrl-C or SIGTERM stops accepting, lets
    /// requests in flight finish within `--grace`, and exits 0.
    Serve {
        /// The plugin directory (default: none, the embedded echo provider only).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// The gateway config file (YAML; see docs/gateway.md). Default: every
        /// model answered by the echo provider, loopback only, no keys.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (default: the config's `listen`, 127.0.0.1:8080);
        /// port 0 picks a free port.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve clients that are not on loopback although no API keys are
        /// configured (needed to listen on a non-loopback address without keys).
        #[arg(long)]
        allow_unauthenticated: bool,
        /// How long requests and streams in flight may take to finish after
        /// SIGTERM or Ctrl-C.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Do not watch the plugin directory and the config file: reload the
        /// plugins only on SIGHUP.
        #[arg(long)]
        no_watch: bool,
        /// Keep a new version that gains permissions, and a plugin that
        /// appears while serving, waiting until `plugbox approve` (the default;
        /// the policy's `approval` section approves named grants ahead).
        #[arg(long, hide = true)]
        require_approval: bool,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Disable a plugin without deleting it (persisted in the directory's
    /// .plugbox-state.yaml; a running `serve` unloads it at once).
    Disable {
        name: String,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
    /// Enable a disabled plugin again.
    Enable {
        name: String,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
    /// Approve a plugin's new version (its files as they are now) that gains
    /// permissions, or a plugin that appeared while `serve` runs on the directory.
    Approve {
        name: String,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that print their own findings (and the demo, which prints the
    // events and traces) would only repeat them as warnings.
    let default_log = match cli.command {
        Command::Serve { .. } => "warn",
        _ => "error",
    };
    let filter = cli.log.as_deref().unwrap_or(default_log);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn builder(cli: &Cli) -> Result<HostBuilder> {
    let mut b = HostBuilder::new();
    if let Some(p) = &cli.policy {
        b = b.policy(Policy::from_path(p)?);
    }
    if let Some(dir) = &cli.cache_dir {
        b = b.cache_dir(Some(dir.clone()));
    }
    if let Some(dir) = &cli.data_dir {
        b = b.data_root(dir.clone());
    }
    Ok(b)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Check { paths, json } => check::check(builder(&cli)?.build()?, paths, *json).await,
        Command::List { plugins, json } => check::list(builder(&cli)?.build()?, plugins, *json).await,
        Command::Call { path, hook, input, config, sample } => {
            let hook: Hook = hook.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            if *sample {
                println!("{}", serde_json::to_string_pretty(&samples::hook_input(hook))?);
                return Ok(ExitCode::SUCCESS);
            }
            let input = read_input(input)?;
            let mut b = builder(&cli)?;
            let source = plugbox_host::loader::source_for_path(path)?;
            let name = check::plugin_name(&source)?;
            if let Some(config) = config {
                let values: serde_json::Value = serde_json::from_str(config).context("--config is not JSON")?;
                let serde_json::Value::Object(map) = values else { bail!("--config must be a JSON object") };
                b = b.plugin_config(name.clone(), map);
            }
            let host = b.build()?;
            host.load_plugin(path).await?;
            let out = host.call_hook_json(&name, hook, &input).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, dir, sdk_path } => scaffold::new_plugin(name, dir, sdk_path.as_deref()),
        Command::Pack { manifest, component, output } => scaffold::pack(manifest, component, output.as_deref()),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&plugbox_host::manifest::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices { plugins, json } => devices::run(builder(&cli)?, plugins.as_deref(), *json).await,
        Command::Demo { plugins } => demo::run(builder(&cli)?, plugins.as_deref()).await,
        Command::Serve {
            plugins,
            config,
            listen,
            allow_unauthenticated,
            grace,
            no_watch,
            require_approval: _,
            json,
        } => {
            let opts = serve::ServeOptions {
                plugins: plugins.clone(),
                config: config.clone(),
                listen: *listen,
                allow_unauthenticated: *allow_unauthenticated,
                grace: *grace,
                watch: !no_watch,
                json: *json,
            };
            serve::serve(builder(&cli)?, opts).await
        }
        Command::Disable { name, plugins } => serve::set_disabled(plugins, name, true),
        Command::Enable { name, plugins } => serve::set_disabled(plugins, name, false),
        Command::Approve { name, plugins } => serve::approve(plugins, name),
    }
}

fn read_input(input: &str) -> Result<serde_json::Value> {
    let text = if input == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(input).with_context(|| format!("reading `{input}`"))?
    };
    serde_json::from_str(&text).with_context(|| format!("`{input}` is not valid JSON"))
}
