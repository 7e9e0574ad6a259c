//! A small blocking HTTP client over `wasi:http/outgoing-handler`, shared by
//! the interface example plugins (`chat-mode`, `embedding-mode`).
//!
//! The host decides where a plugin may connect: a request to a host its
//! manifest was not granted (`permissions.network`) fails with
//! `HTTP-request-denied` before any connection is made, which [`request`]
//! reports as "network access to `<host>` is not granted to this plugin".

use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasi::io::streams::StreamError;

/// Most bytes of a response body read.
pub const MAX_BODY: usize = 1024 * 1024;

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `http://host:port/prefix` split into its parts.
struct Url<'a> {
    scheme: Scheme,
    authority: &'a str,
    prefix: &'a str,
}

fn parse(url: &str) -> Result<Url<'_>, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(Url { scheme, authority, prefix: prefix.trim_end_matches('/') })
}

/// Says what an HTTP error code means, in words an operator can act on.
pub fn describe(code: &ErrorCode, authority: &str) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            format!("network access to `{authority}` is not granted to this plugin")
        }
        ErrorCode::ConnectionRefused => format!("connection to `{authority}` refused"),
        ErrorCode::ConnectionTimeout => format!("connecting to `{authority}` timed out"),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            format!("`{authority}` did not answer in time")
        }
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            format!("`{authority}` not found")
        }
        other => format!("request to `{authority}` failed: {other:?}"),
    }
}

/// Sends `method` to `base_url` + `path` and reads the whole response.
/// `body` is `(content type, bytes)`. `timeout` bounds connecting and each
/// wait for data.
pub fn request(
    method: &str,
    base_url: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Reply, String> {
    let url = parse(base_url)?;
    let headers = match body {
        // A length, not chunked encoding: small model servers handle it best.
        Some((content_type, bytes)) => Fields::from_list(&[
            ("content-type".to_string(), content_type.as_bytes().to_vec()),
            ("content-length".to_string(), bytes.len().to_string().into_bytes()),
        ])
        .map_err(|e| format!("bad header: {e:?}"))?,
        None => Fields::new(),
    };
    let req = OutgoingRequest::new(headers);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    req.set_method(&method).map_err(|()| "bad method".to_string())?;
    req.set_scheme(Some(&url.scheme)).map_err(|()| "bad scheme".to_string())?;
    req.set_authority(Some(url.authority)).map_err(|()| format!("bad host `{}`", url.authority))?;
    let full_path = format!("{}{path}", url.prefix);
    req.set_path_with_query(Some(&full_path)).map_err(|()| format!("bad path `{full_path}`"))?;
    let outgoing = req.body().map_err(|()| "request body already taken".to_string())?;

    let options = RequestOptions::new();
    let nanos = Some(timeout.as_nanos().min(u64::MAX as u128) as u64);
    // A host may not support every timeout; the hook's own deadline still applies.
    let _ = options.set_connect_timeout(nanos);
    let _ = options.set_first_byte_timeout(nanos);
    let _ = options.set_between_bytes_timeout(nanos);

    let pending = outgoing_handler::handle(req, Some(options)).map_err(|e| describe(&e, url.authority))?;
    if let Some((_, bytes)) = body {
        let stream = outgoing.write().map_err(|()| "request body stream unavailable".to_string())?;
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("writing the request body: {e:?}"))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e, url.authority))?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(describe(&e, url.authority)),
        Some(Err(())) => return Err("response already taken".to_string()),
        None => return Err("no response after waiting for it".to_string()),
    };
    let status = response.status();
    let incoming = response.consume().map_err(|()| "response body already taken".to_string())?;
    let stream = incoming.stream().map_err(|()| "response body stream unavailable".to_string())?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                data.extend_from_slice(&chunk);
                if data.len() > MAX_BODY {
                    return Err(format!("response body larger than {MAX_BODY} bytes"));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the response: {}", e.to_debug_string()));
            }
        }
    }
    Ok(Reply { status, body: data })
}
