//! The gateway: state, router, serving with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use plugbox_host::Host;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::{ConfigError, GatewayConfig};
use crate::error::ApiError;
use crate::routes::Routes;
use crate::state::{Active, InFlight, Shared};

/// The request id header, honoured when the client sends one and echoed in
/// every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A gateway's shared state and its HTTP router. Cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn run(host: plugbox_host::Host, config: plugbox_gateway::config::GatewayConfig) -> std::io::Result<()> {
/// use plugbox_gateway::GatewayBuilder;
/// let gateway = GatewayBuilder::new(host, config).build().expect("a valid config");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// gateway.serve(listener, async { tokio::signal::ctrl_c().await.ok(); }).await
/// # }
/// ```
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    host: Host,
    config: GatewayConfig,
    allow_unauthenticated: bool,
}

impl GatewayBuilder {
    /// A gateway over `host` (plugins loaded by the caller) with `config`.
    pub fn new(host: Host, config: GatewayConfig) -> Self {
        GatewayBuilder { host, config, allow_unauthenticated: false }
    }

    /// Serves clients that are not on loopback even though the config has no
    /// API keys (`plugbox serve --allow-unauthenticated`). Off by default:
    /// without keys only loopback clients are served (others get 403).
    pub fn allow_unauthenticated(mut self, allow: bool) -> Self {
        self.allow_unauthenticated = allow;
        self
    }

    /// The gateway; fails when the config's routes cannot be built.
    pub fn build(self) -> Result<Gateway, ConfigError> {
        let active = activate(self.config, None)?;
        Ok(Gateway { shared: Arc::new(Shared::new(self.host, active, self.allow_unauthenticated)) })
    }
}

/// Builds the routes of `config`; keeps `previous`'s semaphore when the
/// concurrency limit did not change (so permits held stay counted).
fn activate(config: GatewayConfig, previous: Option<&Active>) -> Result<Active, ConfigError> {
    let routes = Routes::new(&config)?;
    let max = config.limits.max_concurrent.max(1);
    let permits = match previous {
        Some(p) if p.config.limits.max_concurrent.max(1) == max => p.permits.clone(),
        _ => Arc::new(tokio::sync::Semaphore::new(max)),
    };
    Ok(Active { config, routes, permits })
}

/// Stops a gateway started by [`Gateway::serve`]: it stops accepting, lets
/// requests and streams in flight finish, then `serve` returns.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Begins the shutdown (`/readyz` answers 503 from now on).
    pub fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("in_flight", &self.in_flight()).finish_non_exhaustive()
    }
}

impl Gateway {
    /// The HTTP routes: `POST /v1/chat/completions`, `POST /v1/embeddings`,
    /// `GET /v1/models`, `GET /healthz`, `GET /readyz`. An embedder may nest
    /// or extend it; serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that the
    /// loopback rule can see the client's address (without it, and without
    /// API keys, every client is refused unless unauthenticated access was
    /// allowed).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(crate::chat::chat_completions))
            .route("/v1/embeddings", post(crate::embeddings::embeddings))
            .route("/v1/models", get(crate::models::list_models))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(not_found)
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` completes (or
    /// [`ShutdownHandle::shutdown`] is called): then it stops accepting,
    /// lets the requests and streams in flight finish, and returns. A caller
    /// that wants a grace period wraps this future in a timeout.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let signal = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = shared.shutdown.cancelled() => {}
            }
            shared.draining.store(true, Ordering::SeqCst);
        };
        let service = self.router().into_make_service_with_connect_info::<SocketAddr>();
        // No Nagle delay: an SSE stream is many small writes, and with Nagle
        // a client's delayed ACK stalls each stream by about 40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
            }
        });
        axum::serve(listener, service).with_graceful_shutdown(signal).await
    }

    /// A handle that stops [`Gateway::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Validates `config` (its routes and upstream clients are built first)
    /// and then swaps it in at once. Requests in flight keep the config they
    /// started with; on error nothing changes.
    pub fn set_config(&self, config: GatewayConfig) -> Result<(), ConfigError> {
        let current = self.shared.active();
        let next = activate(config, Some(&current))?;
        self.shared.swap(next);
        Ok(())
    }

    /// The config requests starting now use.
    pub fn config(&self) -> GatewayConfig {
        self.shared.active().config.clone()
    }

    /// The host whose plugins the requests pass through.
    pub fn host(&self) -> &Host {
        &self.shared.host
    }

    /// Requests (streams included) being served now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "draining"}))).into_response();
    }
    let missing = shared.missing_providers();
    if !missing.is_empty() {
        let body = json!({"status": "not ready", "missing_provider_plugins": missing});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(json!({"status": "ready", "plugins": shared.host.plugins().len()})).into_response()
}

async fn not_found(parts: Parts) -> Response {
    ApiError::new(404, format!("no route for {} {}", parts.method, parts.uri.path()))
        .with_code("unknown_url")
        .into_response()
}

/// The longest wait for a request's body (or `limits.request-timeout`,
/// when that is shorter): past it the request is refused with 408.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request past the door: its config, its concurrency permit, its id and
/// caller, its body.
pub(crate) struct Admitted {
    pub active: Arc<Active>,
    pub request_id: String,
    pub caller: Option<String>,
    pub body: Bytes,
    pub permit: OwnedSemaphorePermit,
    pub in_flight: InFlight,
}

/// The request id of `parts`: the client's `x-request-id` when it is 1 to
/// 128 visible ASCII characters, a new one otherwise.
pub(crate) fn request_id(parts: &Parts) -> String {
    parts
        .headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{:016x}", rand::random::<u64>()))
}

/// Sets the `x-request-id` header of `response`.
pub(crate) fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// The door every API request passes: concurrency limit (503), caller
/// (401/403), body size (413). Errors come with the request id.
pub(crate) async fn admit(shared: &Arc<Shared>, parts: &Parts, body: Body) -> Result<Admitted, (ApiError, String)> {
    let request_id = request_id(parts);
    let active = shared.active();
    let fail = |e: ApiError| (e, request_id.clone());
    let Ok(permit) = active.permits.clone().try_acquire_owned() else {
        return Err(fail(
            ApiError::new(
                503,
                format!("the gateway is at its limit of {} concurrent requests", active.config.limits.max_concurrent),
            )
            .with_code("overloaded")
            .with_retry_after(Some(std::time::Duration::from_secs(1))),
        ));
    };
    let in_flight = InFlight::new(shared);
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let caller =
        crate::auth::caller(&active.config, &parts.headers, peer, shared.allow_unauthenticated).map_err(fail)?;
    let max = active.config.limits.max_body;
    let too_large = || {
        ApiError::new(413, format!("the request body is larger than the limit of {max} bytes"))
            .with_code("request_too_large")
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(fail(too_large()));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    // A body that trickles in must not hold its permit for long.
    let read_limit = active.config.limits.request_timeout.min(BODY_READ_TIMEOUT);
    let Ok(read) = tokio::time::timeout(read_limit, axum::body::to_bytes(body, limit)).await else {
        return Err(fail(
            ApiError::new(
                408,
                format!("the request body did not arrive within {}", humantime::format_duration(read_limit)),
            )
            .with_code("request_timeout"),
        ));
    };
    let body = match read {
        Ok(b) => b,
        Err(e) => {
            // axum wraps http-body-util's `LengthLimitError`; look for it by its message.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut length_limit = false;
            while let Some(err) = source {
                length_limit |= err.to_string().contains("length limit exceeded");
                source = err.source();
            }
            return Err(fail(if length_limit {
                too_large()
            } else {
                ApiError::new(400, format!("reading the request body: {e}"))
            }));
        }
    };
    Ok(Admitted { active, request_id, caller, body, permit, in_flight })
}

/// An error response with the request id header.
pub(crate) fn error_response(e: ApiError, request_id: &str) -> Response {
    with_request_id(e.into_response(), request_id)
}
