//! Outgoing HTTP (`wasi:http`), checked by the host on every request.
//!
//! A plugin may reach only the `host[:port]` patterns it was granted
//! ([`crate::capability::Capabilities::network`]). The check runs in
//! [`NetHooks::send_request`] for every request the guest sends, so a redirect
//! (which a `wasi:http` guest must follow itself, with a new request) is
//! checked again at each hop. Everything else is denied with
//! `HTTP-request-denied`, and the attempt is logged with the plugin's name.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::HostPattern;

/// The per-instance `wasi:http` hooks: the plugin's network grant.
pub(crate) struct NetHooks {
    pub(crate) plugin: Arc<str>,
    pub(crate) allowed: Arc<[HostPattern]>,
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
        tracing::debug!(plugin = &*self.plugin, uri = %request.uri(), "outgoing HTTP");
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(patterns: &[&str]) -> NetHooks {
        let allowed: Vec<HostPattern> = patterns.iter().map(|p| p.parse().unwrap()).collect();
        NetHooks { plugin: Arc::from("t"), allowed: allowed.into() }
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
