//! Who is calling: the caller identity of an API key, or loopback-only
//! access when no keys are configured.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::config::GatewayConfig;
use crate::error::ApiError;

/// The caller plugins see (`None`: no keys configured), or why the request
/// is refused: 401 for a missing or unknown key, 403 for a client that is
/// not on loopback when no keys are configured (unless
/// `allow_unauthenticated`).
pub(crate) fn caller(
    config: &GatewayConfig,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    allow_unauthenticated: bool,
) -> Result<Option<String>, ApiError> {
    if config.api_keys.is_empty() {
        if allow_unauthenticated {
            return Ok(None);
        }
        let loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
        if loopback {
            browser_check(headers)?;
            return Ok(None);
        }
        return Err(ApiError::new(
            403,
            "this gateway has no API keys configured and serves loopback clients only \
             (configure `api-keys`, or start it with --allow-unauthenticated)",
        )
        .with_code("loopback_only"));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(
            ApiError::new(401, "missing API key: send `Authorization: Bearer <key>`").with_code("missing_api_key")
        );
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    // Every key compared in constant time, none skipped.
    let mut found = None;
    for k in &config.api_keys {
        if bool::from(k.key.as_bytes().ct_eq(presented.as_bytes())) && found.is_none() {
            found = Some(k.caller.clone());
        }
    }
    found.map(Some).ok_or_else(|| ApiError::new(401, "invalid API key").with_code("invalid_api_key"))
}

/// Without keys, loopback clients are trusted; a web page in the user's
/// browser is on loopback too, and must not drive the gateway: a request
/// whose `Origin` is not a loopback one (a cross-site page) or whose `Host`
/// is not a loopback name (a page whose DNS name was rebound to 127.0.0.1)
/// is refused (403). Clients such as SDKs and curl send neither header, or
/// loopback ones.
fn browser_check(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |what: String| {
        ApiError::new(
            403,
            format!(
                "{what}: this gateway has no API keys configured and serves only local clients, \
                 not web pages (configure `api-keys` to serve browsers)"
            ),
        )
        .with_code("loopback_only")
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default());
        if !host.is_some_and(is_loopback_authority) {
            return Err(refuse(format!(
                "a request from the web origin `{}`",
                String::from_utf8_lossy(origin.as_bytes())
            )));
        }
    }
    if let Some(host) = headers.get(header::HOST)
        && !host.to_str().is_ok_and(is_loopback_authority)
    {
        return Err(refuse(format!("a request for the host `{}`", String::from_utf8_lossy(host.as_bytes()))));
    }
    Ok(())
}

/// Whether `authority` (`host` or `host:port`) names this machine's loopback:
/// `localhost` (or a name under it), a loopback IPv4 or IPv6 address.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority }),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn ask(pairs: &[(&str, &str)], peer: &str) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        caller(&GatewayConfig::default_echo(), &headers, Some(peer.parse::<SocketAddr>().unwrap()), false)
    }

    #[test]
    fn loopback_clients_pass_in_every_spelling() {
        for peer in ["127.0.0.1:5000", "127.9.9.9:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            assert_eq!(ask(&[], peer).unwrap(), None, "{peer}");
        }
        for host in ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080", "api.localhost", "LOCALHOST."] {
            let origin = format!("http://{host}");
            assert!(ask(&[("host", host), ("origin", &origin)], "127.0.0.1:1").is_ok(), "{host}");
        }
    }

    #[test]
    fn other_peers_are_refused_without_keys() {
        for peer in ["10.0.0.1:5000", "[::ffff:10.0.0.1]:5000", "[fe80::1]:5000", "0.0.0.0:1"] {
            assert_eq!(ask(&[], peer).unwrap_err().status, 403, "{peer}");
        }
        // A forwarded-for header is not believed.
        assert_eq!(ask(&[("x-forwarded-for", "127.0.0.1")], "10.0.0.1:1").unwrap_err().status, 403);
    }

    #[test]
    fn web_pages_on_loopback_are_refused_without_keys() {
        for (name, value) in [
            ("origin", "https://evil.example"),
            ("origin", "null"),
            ("origin", "http://127.0.0.1.evil.example"),
            ("host", "rebound.evil.example:8080"),
            ("host", "localhost.evil.example"),
        ] {
            let e = ask(&[(name, value)], "127.0.0.1:1").unwrap_err();
            assert_eq!((e.status, e.code.as_deref()), (403, Some("loopback_only")), "{name}: {value}");
            assert!(e.message.contains(value), "{}", e.message);
        }
    }
}
