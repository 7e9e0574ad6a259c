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
        let loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
        if loopback || allow_unauthenticated {
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
