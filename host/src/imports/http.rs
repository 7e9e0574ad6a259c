//! Outgoing HTTP (`wasi:http/outgoing-handler`) for plugins, allowed only to
//! the hosts their capabilities grant (`permissions.network` ∩ policy).
//!
//! The check is made by the host on the request's own URI (host and port,
//! with the scheme's default port), never by trusting the guest. A request to
//! any other host fails with `HTTP-request-denied` before a connection is
//! attempted, and is logged once per call with the plugin's name.

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::StoreState;
use crate::manifest::HostPattern;

/// Per-instance HTTP state: the context wasmtime needs and the gate.
pub(crate) struct HttpState {
    ctx: WasiHttpCtx,
    gate: NetworkGate,
}

impl HttpState {
    pub(crate) fn new(plugin: Arc<str>, allowed: &[HostPattern]) -> Self {
        HttpState { ctx: WasiHttpCtx::new(), gate: NetworkGate { plugin, allowed: allowed.into() } }
    }
}

/// Lets a request through only to an allowed `host:port`.
struct NetworkGate {
    plugin: Arc<str>,
    allowed: Arc<[HostPattern]>,
}

impl NetworkGate {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        self.allowed.iter().any(|p| p.matches(host, port))
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for NetworkGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::warn!(
                plugin = %self.plugin,
                "outgoing HTTP to `{}` denied: not in the plugin's granted network hosts",
                request.uri().authority().map(|a| a.as_str()).unwrap_or("")
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http.ctx, table: &mut self.table, hooks: &mut self.http.gate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(patterns: &[&str]) -> NetworkGate {
        let allowed: Vec<HostPattern> = patterns.iter().map(|p| p.parse().unwrap()).collect();
        NetworkGate { plugin: "t".into(), allowed: allowed.into() }
    }

    #[test]
    fn deny_by_default_and_by_host_and_port() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(!gate(&[]).allows(&uri("http://127.0.0.1:8080/v1/models")));
        let g = gate(&["127.0.0.1:8080", "api.example.com"]);
        assert!(g.allows(&uri("http://127.0.0.1:8080/v1/models")));
        assert!(!g.allows(&uri("http://127.0.0.1:8081/")));
        assert!(!g.allows(&uri("http://localhost:8080/")));
        assert!(g.allows(&uri("https://api.example.com/x")));
        assert!(!gate(&["api.example.com:443"]).allows(&uri("http://api.example.com/")));
        assert!(gate(&["api.example.com:443"]).allows(&uri("https://api.example.com/")));
    }
}
