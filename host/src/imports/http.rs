//! Outgoing HTTP (`wasi:http`), checked by the host on every request.
//!
//! A plugin may reach only the `host[:port]` patterns it was granted
//! ([`crate::capability::Capabilities::network`]). The check runs in
//! [`NetHooks::send_request`] for every request the guest sends, so a redirect
//! (which a `wasi:http` guest must follow itself, with a new request) is
//! checked again at each hop. Everything else is denied with
//! `HTTP-request-denied`, and the attempt is logged with the plugin's name.
//!
//! Concurrency is bounded per plugin ([`HttpLimits::concurrent`], default 8)
//! and host-wide ([`HttpLimits::host_concurrent`], default 256): a request
//! takes one permit of each before it connects, and holds them until its
//! response body has been read to the end or dropped, and its connection has
//! closed (each request has its own connection, so connections are bounded by
//! the same permits). Over either cap the guest gets
//! `connection-limit-reached` and the host logs the plugin and the limit.
//! An instance never keeps requests between calls: see [`holds_http`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::HostPattern;

/// Bounds on outgoing HTTP.
///
/// Defaults ([`HttpLimits::DEFAULT`]): 8 requests at once per plugin, 256 for
/// the whole host. The operator's policy sets other values (`resources.http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HttpLimits {
    /// Requests (and connections) one plugin may have open at once.
    pub concurrent: u32,
    /// Requests (and connections) all plugins together may have open at once.
    pub host_concurrent: u32,
}

impl HttpLimits {
    /// 8 per plugin, 256 host-wide.
    pub const DEFAULT: HttpLimits = HttpLimits { concurrent: 8, host_concurrent: 256 };
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::DEFAULT
    }
}

/// The permits outgoing requests take: one semaphore per plugin (shared by
/// its instances) and one for the host.
pub(crate) struct HttpPermits {
    plugin: Arc<Semaphore>,
    plugin_max: u32,
    host: Arc<Semaphore>,
    host_max: u32,
}

impl HttpPermits {
    /// Permits for one plugin, drawing on the host-wide `host` semaphore of `host_max` permits.
    pub(crate) fn new(concurrent: u32, host: Arc<Semaphore>, host_max: u32) -> Self {
        HttpPermits { plugin: Arc::new(Semaphore::new(concurrent as usize)), plugin_max: concurrent, host, host_max }
    }

    /// One permit of each, or the limit that refused it.
    fn take(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), String> {
        let plugin = self.plugin.clone().try_acquire_owned().map_err(|_| {
            format!(
                "the plugin's limit of {} concurrent outgoing requests (`resources.http.concurrent`)",
                self.plugin_max
            )
        })?;
        let host = self.host.clone().try_acquire_owned().map_err(|_| {
            format!(
                "the host-wide limit of {} concurrent outgoing requests (`resources.http.host-concurrent`)",
                self.host_max
            )
        })?;
        Ok((plugin, host))
    }

    /// Requests of this plugin open now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u32 {
        self.plugin_max - self.plugin.available_permits() as u32
    }
}

/// The per-instance `wasi:http` hooks: the plugin's network grant and permits.
pub(crate) struct NetHooks {
    pub(crate) plugin: Arc<str>,
    pub(crate) allowed: Arc<[HostPattern]>,
    pub(crate) permits: Arc<HttpPermits>,
}

/// Whether an instance's resource table still holds an outgoing request, a
/// pending or received response, a body or trailers: things that keep a
/// socket (and permits) alive. Such an instance is not put back in the pool.
pub(crate) fn holds_http(table: &mut ResourceTable) -> bool {
    table.iter_mut().any(|entry| {
        let entry: &dyn std::any::Any = entry;
        entry.is::<HostFutureIncomingResponse>()
            || entry.is::<HostIncomingResponse>()
            || entry.is::<HostIncomingBody>()
            || entry.is::<HostFutureTrailers>()
            || entry.is::<HostOutgoingRequest>()
            || entry.is::<HostOutgoingBody>()
    })
}

type Pending = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

/// Host and port a request is addressed to (the port defaulted from the scheme).
fn destination(uri: &http::Uri) -> Option<(String, u16)> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTP) { 80 } else { 443 });
    Some((host, port))
}

impl NetHooks {
    /// Whether the grant allows `uri`.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        match destination(uri) {
            Some((host, port)) => self.allowed.iter().any(|p| p.matches(&host, port)),
            None => false,
        }
    }
}

impl WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Pending {
        if !self.allows(request.uri()) {
            tracing::warn!(plugin = &*self.plugin, uri = %request.uri(), "outgoing HTTP denied: not in the plugin's network grant");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let permit = match self.permits.take() {
            Ok(p) => Arc::new(p),
            Err(limit) => {
                tracing::warn!(plugin = &*self.plugin, uri = %request.uri(), "outgoing HTTP refused: over {limit}");
                return Box::new(async { Err(HttpError::ConnectionLimitReached) });
            }
        };
        tracing::debug!(plugin = &*self.plugin, uri = %request.uri(), "outgoing HTTP");
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            // The body and the connection each hold the permits until they end or are dropped.
            let body_permit = permit.clone();
            let res = res.map(move |b| b.map_frame(move |f| (&body_permit, f).1).boxed_unsync());
            let io = async move {
                let _permit = permit;
                io.await
            };
            Ok((res, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(patterns: &[&str]) -> NetHooks {
        let allowed: Vec<HostPattern> = patterns.iter().map(|p| p.parse().unwrap()).collect();
        let permits = Arc::new(HttpPermits::new(2, Arc::new(Semaphore::new(3)), 3));
        NetHooks { plugin: Arc::from("t"), allowed: allowed.into(), permits }
    }

    #[test]
    fn permits_bound_per_plugin_and_host_wide() {
        let host = Arc::new(Semaphore::new(3));
        let a = HttpPermits::new(2, host.clone(), 3);
        let b = HttpPermits::new(2, host, 3);
        let a1 = a.take().unwrap();
        let _a2 = a.take().unwrap();
        let err = a.take().unwrap_err();
        assert!(err.contains("plugin's limit of 2"), "{err}");
        assert_eq!(a.in_use(), 2);
        let _b1 = b.take().unwrap();
        let err = b.take().unwrap_err();
        assert!(err.contains("host-wide limit of 3"), "{err}");
        assert_eq!(b.in_use(), 1, "a refused request keeps no permit");
        drop(a1);
        let _b2 = b.take().unwrap();
    }

    #[test]
    fn deny_by_default() {
        let h = hooks(&[]);
        assert!(!h.allows(&"http://127.0.0.1:8080/".parse().unwrap()));
        assert!(!h.allows(&"https://api.openai.com/".parse().unwrap()));
    }

    #[test]
    fn host_and_port_checked() {
        let h = hooks(&["127.0.0.1:8080", "*.example.com", "api.openai.com:443"]);
        assert!(h.allows(&"http://127.0.0.1:8080/x".parse().unwrap()));
        assert!(!h.allows(&"http://127.0.0.1:8081/x".parse().unwrap()));
        assert!(!h.allows(&"http://localhost:8080/x".parse().unwrap()));
        assert!(h.allows(&"https://a.example.com/".parse().unwrap()));
        assert!(h.allows(&"http://a.b.example.com:9000/".parse().unwrap()));
        assert!(!h.allows(&"https://example.com/".parse().unwrap()));
        assert!(h.allows(&"https://API.openai.com/v1".parse().unwrap()));
        assert!(!h.allows(&"http://api.openai.com/v1".parse().unwrap()), "port 80 is not 443");
    }
}
