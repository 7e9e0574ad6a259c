//! The gateway load benchmark: an open-loop load generator (hyper +
//! hdrhistogram) and the suite that compares calling the mock upstream
//! directly with calling it through `plugbox serve`, in the same run.
//!
//! ```text
//! gateway-load rate   --url URL --rps R [--seconds S] [--stream-chunks N]
//! gateway-load max    --url URL [--connections C] [--seconds S]
//! gateway-load stream --url URL --chunks N [--count K]
//! gateway-load suite  --plugbox BIN --bare DIR --four DIR [--all DIR] [--rates 500,1000,2000] [--seconds S]
//! ```
//!
//! `rate` sends R requests per second on a fixed schedule whatever the
//! answers do (open loop; a request's latency is measured from the moment it
//! is sent), `max` runs C connections back to back (closed loop) and reports
//! the throughput, `stream` runs K streams of N chunks one after the other.
//! URLs name the endpoint (`http://127.0.0.1:PORT/v1/chat/completions`).
//! `suite` starts `gateway-load-mock` (next to this binary) and two gateways
//! (plugin directories `--bare`, usually empty, and `--four`), then prints the
//! figures as markdown; benches/gateway-load/run.sh runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Http = Client<HttpConnector, Full<Bytes>>;

const PROMPT: &str = "Hello, please summarise the plan for tomorrow in two sentences: the team meets at nine, \
                      reviews the release, then ships it after lunch.";

fn chat_body(model: &str, stream: bool) -> Bytes {
    let v = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
        "temperature": 0.2,
    });
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

fn client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// One request; the number of SSE events (`data:` lines) or 1 for JSON.
async fn one(client: &Http, url: &hyper::Uri, body: &Bytes) -> Result<usize, String> {
    let req =
        Request::post(url.clone()).header(CONTENT_TYPE, "application/json").body(Full::new(body.clone())).unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let events = bytes.windows(6).filter(|w| w == b"data: ").count();
    Ok(events.max(1))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

/// What one measurement found (latencies in microseconds).
#[derive(Debug, Clone, Default)]
struct Figures {
    ok: u64,
    errors: u64,
    first_errors: Vec<String>,
    late: u64,
    seconds: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
    events: u64,
}

impl Figures {
    fn from(h: &Histogram<u64>, ok: u64, errors: u64, first_errors: Vec<String>, seconds: f64) -> Figures {
        Figures {
            ok,
            errors,
            first_errors,
            seconds,
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            ..Figures::default()
        }
    }
    fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what}: ok {} errors {} late {} | {:.0} req/s | p50 {} us p99 {} us p99.9 {} us max {} us{}",
            self.ok,
            self.errors,
            self.late,
            self.rps(),
            self.p50,
            self.p99,
            self.p999,
            self.max,
            if self.first_errors.is_empty() {
                String::new()
            } else {
                format!(" | first errors: {:?}", self.first_errors)
            }
        )
    }
}

struct Shared {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_errors: Vec<String>,
    events: u64,
}

impl Shared {
    fn empty() -> Shared {
        Shared { hist: histogram(), ok: 0, errors: 0, first_errors: Vec::new(), events: 0 }
    }
    fn new() -> Arc<Mutex<Shared>> {
        Arc::new(Mutex::new(Shared::empty()))
    }
    fn merge(&mut self, other: Shared) {
        self.hist.add(&other.hist).unwrap();
        self.ok += other.ok;
        self.errors += other.errors;
        self.events += other.events;
        for e in other.first_errors {
            if self.first_errors.len() < 3 {
                self.first_errors.push(e);
            }
        }
    }
    fn record(&mut self, r: Result<usize, String>, took: Duration) {
        match r {
            Ok(events) => {
                self.ok += 1;
                self.events += events as u64;
                let _ = self.hist.record(took.as_micros().max(1) as u64);
            }
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e);
                }
            }
        }
    }
    fn figures(&self, seconds: f64) -> Figures {
        let mut f = Figures::from(&self.hist, self.ok, self.errors, self.first_errors.clone(), seconds);
        f.events = self.events;
        f
    }
}

/// Open loop: `rps` requests a second for `seconds`, each sent on schedule.
async fn rate(url: &str, body: Bytes, rps: f64, seconds: f64) -> Figures {
    let (shared, late, elapsed) = rate_raw(url, body, rps, seconds).await;
    let mut f = shared.figures(elapsed);
    f.late = late;
    f
}

/// [`rate`]'s counts, to merge rounds: (counts, requests sent late, seconds).
async fn rate_raw(url: &str, body: Bytes, rps: f64, seconds: f64) -> (Shared, u64, f64) {
    let client = client();
    let url: hyper::Uri = url.parse().unwrap();
    let shared = Shared::new();
    let n = (rps * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rps);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut late = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        if tokio::time::Instant::now() - at > Duration::from_millis(5) {
            late += 1;
        }
        let (client, url, body, shared) = (client.clone(), url.clone(), body.clone(), shared.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let r = one(&client, &url, &body).await;
            let took = sent.elapsed();
            shared.lock().unwrap().record(r, took);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = (tokio::time::Instant::now() - start).as_secs_f64();
    let shared = std::mem::replace(&mut *shared.lock().unwrap(), Shared::empty());
    (shared, late, elapsed)
}

/// Closed loop: `connections` clients back to back for `seconds`.
async fn max(url: &str, body: Bytes, connections: usize, seconds: f64) -> Figures {
    let client = client();
    let url: hyper::Uri = url.parse().unwrap();
    let shared = Shared::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, body, shared) = (client.clone(), url.clone(), body.clone(), shared.clone());
        tasks.spawn(async move {
            while Instant::now() < end {
                let sent = Instant::now();
                let r = one(&client, &url, &body).await;
                shared.lock().unwrap().record(r, sent.elapsed());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    shared.lock().unwrap().figures(start.elapsed().as_secs_f64())
}

/// `count` streams of `chunks` chunks, one after the other.
async fn streams(url: &str, chunks: usize, count: usize) -> Figures {
    let client = client();
    let url: hyper::Uri = url.parse().unwrap();
    let body = chat_body(&format!("stream-{chunks}"), true);
    let shared = Shared::new();
    let start = Instant::now();
    for _ in 0..count {
        let sent = Instant::now();
        let r = one(&client, &url, &body).await;
        shared.lock().unwrap().record(r, sent.elapsed());
    }
    shared.lock().unwrap().figures(start.elapsed().as_secs_f64())
}

// --- the suite --------------------------------------------------------------

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Starts `cmd`, waits for its `... listening on http://ADDR` line.
    fn start(mut cmd: Command, ready: &str) -> (Proc, String) {
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = ready.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix(&prefix) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| panic!("no `{ready}` line"));
        (Proc(child), url)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn gateway(plugbox: &Path, plugins: &Path, config: &Path) -> (Proc, String) {
    let mut cmd = Command::new(plugbox);
    cmd.arg("serve").arg("--plugins").arg(plugins).arg("--config").arg(config).args(["--listen", "127.0.0.1:0"]);
    cmd.env("PLUGBOX_LOG", "error");
    Proc::start(cmd, "plugbox serve: listening on ")
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    arg(args, name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}")))
}

async fn suite(args: &[String]) {
    let plugbox = PathBuf::from(arg(args, "--plugbox").expect("--plugbox BIN"));
    let bare = PathBuf::from(arg(args, "--bare").expect("--bare DIR"));
    let four = PathBuf::from(arg(args, "--four").expect("--four DIR"));
    let all = arg(args, "--all").map(PathBuf::from);
    let seconds: f64 = num(args, "--seconds", 5.0);
    let rates: Vec<f64> =
        arg(args, "--rates").unwrap_or("500,1000,2000").split(',').map(|r| r.parse().expect("--rates")).collect();
    let connections: usize = num(args, "--connections", 64);
    let chunks: usize = num(args, "--chunks", 100);

    let mock_bin = std::env::current_exe().unwrap().with_file_name("gateway-load-mock");
    let mut mock_cmd = Command::new(&mock_bin);
    mock_cmd.args(["--threads", "1"]);
    let (_mock, mock) = Proc::start(mock_cmd, "gateway-load-mock: listening on ");
    let tmp = std::env::temp_dir().join(format!("gateway-load-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let config = tmp.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  mock:\n    type: openai-compatible\n    base-url: {mock}/v1\n\
             routes:\n  - model: \"*\"\n    targets: [{{ provider: mock }}]\n"
        ),
    )
    .unwrap();

    let (gw0, gw0_url) = gateway(&plugbox, &bare, &config);
    let (gw4, gw4_url) = gateway(&plugbox, &four, &config);
    let gw_all = all.as_ref().map(|dir| gateway(&plugbox, dir, &config));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle0 = rss(gw0.pid()).0;
    let idle4 = rss(gw4.pid()).0;
    let idle_all = gw_all.as_ref().map(|(p, _)| rss(p.pid()).0);
    drop(gw_all);

    let targets = [("direct", mock.clone()), ("gateway, no plugins", gw0_url), ("gateway, 4 plugins", gw4_url)];
    let chat = |base: &str| format!("{base}/v1/chat/completions");
    let body = chat_body("bench", false);

    // Warm up every path (connections, plugin instances, caches).
    for (_, base) in &targets {
        let f = rate(&chat(base), body.clone(), 500.0, 1.0).await;
        assert_eq!(f.errors, 0, "warm-up of {base} failed: {:?}", f.first_errors);
    }

    println!(
        "## Fixed rates (open loop; {seconds} s per path, in 1 s rounds taking the paths in turn, so that the \
         machine's hiccups fall on every path alike)\n"
    );
    println!("| rate | path | p50 | p90 | p99 | p99.9 | added p50 | added p99 | errors |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut added_p99_at = Vec::new();
    for &r in &rates {
        let mut merged: Vec<(Shared, u64, f64)> = targets.iter().map(|_| (Shared::empty(), 0, 0.0)).collect();
        for _ in 0..(seconds.round() as usize).max(1) {
            for (i, (_, base)) in targets.iter().enumerate() {
                let (counts, late, took) = rate_raw(&chat(base), body.clone(), r, 1.0).await;
                merged[i].0.merge(counts);
                merged[i].1 += late;
                merged[i].2 += took;
            }
        }
        let figures: Vec<Figures> = merged
            .iter()
            .map(|(counts, late, took)| {
                let mut f = counts.figures(*took);
                f.late = *late;
                f.p90 = counts.hist.value_at_quantile(0.90);
                f
            })
            .collect();
        let direct = &figures[0];
        for ((name, _), f) in targets.iter().zip(&figures) {
            eprintln!("{}", f.line(&format!("rate {r} {name}")));
            let (a50, a99) = if std::ptr::eq(f, direct) {
                (String::from("-"), String::from("-"))
            } else {
                (format!("{} us", f.p50 as i64 - direct.p50 as i64), format!("{} us", f.p99 as i64 - direct.p99 as i64))
            };
            println!(
                "| {r} rps | {name} | {} us | {} us | {} us | {} us | {a50} | {a99} | {}{} |",
                f.p50,
                f.p90,
                f.p99,
                f.p999,
                f.errors,
                if f.late > 0 { format!(" ({} sent late)", f.late) } else { String::new() }
            );
        }
        added_p99_at.push((r, figures[2].p99 as i64 - direct.p99 as i64));
    }

    println!("\n## Maximum throughput ({connections} connections, closed loop, {seconds} s)\n");
    println!("| path | req/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut max_rps = Vec::new();
    let mut load_rss = (f64::NAN, f64::NAN);
    for (name, base) in &targets {
        let sampler = if *name == "gateway, 4 plugins" {
            let pid = gw4.pid();
            let half = Duration::from_secs_f64(seconds / 2.0);
            Some(tokio::spawn(async move {
                tokio::time::sleep(half).await;
                rss(pid).0
            }))
        } else {
            None
        };
        let f = max(&chat(base), body.clone(), connections, seconds).await;
        eprintln!("{}", f.line(&format!("max {name}")));
        if let Some(s) = sampler {
            load_rss = (s.await.unwrap(), rss(gw4.pid()).1);
        }
        println!("| {name} | {:.0} | {} us | {} us | {} |", f.rps(), f.p50, f.p99, f.errors);
        max_rps.push(f.rps());
    }

    println!("\n## Streams ({chunks} chunks each, one after the other)\n");
    println!("| path | per stream p50 | mean | added per chunk (mean) | events seen per stream |");
    println!("|---|---:|---:|---:|---:|");
    let mut direct_mean = None;
    let mut per_chunk = Vec::new();
    for (name, base) in &targets {
        let count = (seconds * 40.0) as usize;
        let f = streams(&chat(base), chunks, count).await;
        eprintln!("{}", f.line(&format!("stream {name}")));
        let added = direct_mean.map(|d: f64| (f.mean - d) / chunks as f64);
        println!(
            "| {name} | {} us | {:.0} us | {} | {} |",
            f.p50,
            f.mean,
            added.map_or("-".into(), |a| format!("{a:.1} us")),
            f.events / f.ok.max(1)
        );
        if let Some(a) = added {
            per_chunk.push(a);
        }
        direct_mean.get_or_insert(f.mean);
    }

    println!("\n## Resident memory (VmRSS)\n");
    println!("| gateway | idle | under load (mid-run) | peak (VmHWM) |");
    println!("|---|---:|---:|---:|");
    println!("| no plugins | {idle0:.1} MiB | | |");
    println!("| 4 plugins | {idle4:.1} MiB | {:.1} MiB | {:.1} MiB |", load_rss.0, load_rss.1);
    if let Some(a) = idle_all {
        println!("| every example plugin | {a:.1} MiB | | |");
    }

    println!("\n## Targets\n");
    let at2000 = added_p99_at.iter().find(|(r, _)| *r == 2000.0).map(|(_, a)| *a);
    match at2000 {
        Some(a) => println!(
            "* added p99 <= 1 ms at 2,000 rps with 4 plugins: {} ({a} us)",
            if a <= 1000 { "met" } else { "NOT met" }
        ),
        None => println!("* added p99 at 2,000 rps: not measured (--rates has no 2000)"),
    }
    let ratio = max_rps[2] / max_rps[1];
    println!(
        "* throughput with 4 plugins >= 80% of no plugins: {} ({:.0}%)",
        if ratio >= 0.8 { "met" } else { "NOT met" },
        ratio * 100.0
    );
    let idle_mem = idle_all.unwrap_or(idle4);
    println!(
        "* idle RSS <= 50 MB with the examples loaded: {} ({idle_mem:.1} MiB{})",
        if idle_mem * 1.048_576 <= 50.0 { "met" } else { "NOT met" },
        if idle_all.is_some() { ", every example" } else { ", 4 plugins" }
    );
    if !per_chunk.is_empty() {
        println!(
            "* streaming cost per chunk: {:.1} us with no plugins, {:.1} us with 4 plugins",
            per_chunk[0],
            per_chunk.get(1).copied().unwrap_or(f64::NAN)
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("usage: gateway-load rate|max|stream|suite ... (see the module docs)");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        match cmd.as_str() {
            "rate" => {
                let url = arg(&args, "--url").expect("--url URL");
                let chunks: usize = num(&args, "--stream-chunks", 0);
                let body =
                    if chunks > 0 { chat_body(&format!("stream-{chunks}"), true) } else { chat_body("bench", false) };
                let f = rate(url, body, num(&args, "--rps", 1000.0), num(&args, "--seconds", 5.0)).await;
                println!("{}", f.line("rate"));
            }
            "max" => {
                let url = arg(&args, "--url").expect("--url URL");
                let f =
                    max(url, chat_body("bench", false), num(&args, "--connections", 64), num(&args, "--seconds", 5.0))
                        .await;
                println!("{}", f.line("max"));
            }
            "stream" => {
                let url = arg(&args, "--url").expect("--url URL");
                let f = streams(url, num(&args, "--chunks", 100), num(&args, "--count", 200)).await;
                println!("{}", f.line("stream"));
            }
            "suite" => suite(&args).await,
            other => {
                eprintln!("unknown command `{other}`: rate, max, stream or suite");
                std::process::exit(2);
            }
        }
    });
}
