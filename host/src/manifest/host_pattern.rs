//! [`HostPattern`]: one entry of `permissions.network`.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::de::parsed;

/// A host (and optionally a port) a plugin may send HTTP requests to.
///
/// | written                | matches                                        |
/// |------------------------|------------------------------------------------|
/// | `api.openai.com:443`   | that host, port 443                            |
/// | `api.openai.com`       | that host, any port                            |
/// | `*.example.com`        | any subdomain (`a.example.com`, `a.b.example.com`), not `example.com` itself |
/// | `*.example.com:8443`   | any subdomain, port 8443                       |
/// | `127.0.0.1:8080`       | that IPv4 address, port 8080                   |
/// | `[::1]:80`             | that IPv6 address, port 80                     |
/// | `*`                    | any host: see [`is_wildcard`](Self::is_wildcard) |
///
/// Host names match case-insensitively. Schemes (`https://`) and paths are
/// refused: a pattern names a host, not a URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    written: String,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostMatch {
    Any,
    /// A DNS name, lowercase.
    Name(String),
    /// Strict subdomains of a DNS name, lowercase.
    Subdomains(String),
    Ip(IpAddr),
}

impl HostPattern {
    /// The pattern as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The port the pattern is limited to; `None` means any port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the pattern is `*` (or `*:port`): any host at all. It parses, but
    /// the operator's policy must allow wildcard network explicitly.
    pub fn is_wildcard(&self) -> bool {
        self.host == HostMatch::Any
    }

    /// Whether the pattern matches more than one host name: `*` or
    /// `*.suffix`. Such grants need the operator's policy.
    pub fn has_wildcard(&self) -> bool {
        matches!(self.host, HostMatch::Any | HostMatch::Subdomains(_))
    }

    /// Whether a request to `host` on `port` is allowed by this pattern.
    ///
    /// `host` is compared case-insensitively; a trailing dot and the brackets
    /// of an IPv6 literal (`[::1]`) are ignored. An IP address matches only an
    /// IP pattern (or `*`), never a name pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let ip = unbracketed.parse::<IpAddr>().ok();
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Ip(want) => ip == Some(*want),
            HostMatch::Name(name) => ip.is_none() && host.eq_ignore_ascii_case(name),
            HostMatch::Subdomains(domain) => {
                let (host, domain) = (host.as_bytes(), domain.as_bytes());
                ip.is_none()
                    && host.len() > domain.len() + 1
                    && host[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
            }
        }
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid host pattern `{s}`: {why}");
        let (host, port) = split_port(s).map_err(|why| invalid(&why))?;
        let host = parse_host(host).map_err(|why| invalid(&why))?;
        Ok(HostPattern { written: s.to_owned(), host, port })
    }
}

const FORM: &str = "write `host` or `host:port`, such as `api.openai.com:443`";

/// Splits off `:port`, refusing URLs.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(at) = s.find("://") {
        return Err(format!("remove the scheme `{}`; {FORM}", &s[..at + 3]));
    }
    if s.contains('/') {
        return Err(format!("remove the path; {FORM}"));
    }
    if s.is_empty() {
        return Err(format!("the pattern is empty; {FORM}"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("remove the spaces".to_owned());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("missing `]` after the IPv6 address".to_owned());
        };
        match after {
            "" => (&s[..inside.len() + 2], None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&s[..inside.len() + 2], Some(port)),
                None => return Err("expected `:port` after `]`".to_owned()),
            },
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => s.split_once(':').map(|(h, p)| (h, Some(p))).unwrap_or((s, None)),
            _ => return Err("write IPv6 addresses in brackets, such as `[::1]:80`".to_owned()),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!("the port `{p}` is not a number from 1 to 65535"));
            }
            Ok(port) => Some(port),
        },
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<HostMatch, String> {
    if host.is_empty() {
        return Err(format!("the host is empty; {FORM}"));
    }
    if host == "*" {
        return Ok(HostMatch::Any);
    }
    if let Some(inside) = host.strip_prefix('[') {
        let inside = inside.strip_suffix(']').unwrap_or(inside);
        return inside
            .parse::<Ipv6Addr>()
            .map(|ip| HostMatch::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("`{inside}` is not an IPv6 address"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(HostMatch::Ip(IpAddr::V4(ip)));
    }
    let (name, subdomains) = match host.strip_prefix("*.") {
        Some(domain) => (domain, true),
        None => (host, false),
    };
    if name.contains('*') {
        return Err("`*` may only be the whole first label, as in `*.example.com`, or the whole host".to_owned());
    }
    check_dns_name(name)?;
    let name = name.to_ascii_lowercase();
    Ok(if subdomains { HostMatch::Subdomains(name) } else { HostMatch::Name(name) })
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("a host name has at most 253 characters".to_owned());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{label}` is not a valid host name label: use 1-63 letters, digits and `-`, separated by `.`"
            ));
        }
    }
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err("not a valid IPv4 address".to_owned());
    }
    Ok(())
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed(deserializer, "a host pattern such as `api.openai.com:443`", str::parse)
    }
}

impl JsonSchema for HostPattern {
    fn schema_name() -> Cow<'static, str> {
        "HostPattern".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`host`, `host:port`, `*.domain` (subdomains only), `*.domain:port`, an IP address \
                (`127.0.0.1:8080`, `[::1]:80`), or `*` (any host: needs the operator's explicit policy). \
                No scheme, no path.",
            "examples": ["api.openai.com:443", "*.example.com", "[::1]:8080"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn exact_host_with_and_without_port() {
        assert!(p("api.openai.com:443").matches("api.openai.com", 443));
        assert!(p("api.openai.com:443").matches("API.OpenAI.com.", 443));
        assert!(!p("api.openai.com:443").matches("api.openai.com", 80));
        assert!(p("api.openai.com").matches("api.openai.com", 8080));
        assert!(!p("api.openai.com").matches("openai.com", 443));
        assert!(!p("api.openai.com").matches("evil-api.openai.com", 443));
        assert!(p("API.example.com").matches("api.example.com", 1));
    }

    #[test]
    fn subdomain_wildcards() {
        let pat = p("*.example.com");
        assert!(pat.matches("a.example.com", 443));
        assert!(pat.matches("a.b.EXAMPLE.com", 443));
        assert!(!pat.matches("example.com", 443));
        assert!(!pat.matches("badexample.com", 443));
        assert!(!pat.matches(".example.com", 443));
        assert!(!pat.is_wildcard());
        let with_port = p("*.example.com:8443");
        assert!(with_port.matches("x.example.com", 8443));
        assert!(!with_port.matches("x.example.com", 443));
    }

    #[test]
    fn ip_addresses() {
        assert!(p("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(!p("127.0.0.1:8080").matches("127.0.0.2", 8080));
        assert!(p("[::1]:80").matches("[::1]", 80));
        assert!(p("[::1]:80").matches("0:0::1", 80));
        assert!(!p("[::1]:80").matches("::1", 81));
        assert!(p("[::1]").matches("::1", 9));
        assert!(!p("localhost").matches("127.0.0.1", 80));
    }

    #[test]
    fn any_host() {
        assert!(p("*").is_wildcard());
        assert!(p("*").matches("anything.at.all", 1));
        assert!(p("*:443").is_wildcard());
        assert!(!p("*:443").matches("a.b", 80));
    }

    #[test]
    fn display_is_the_written_form() {
        for s in ["API.openai.com:443", "*.example.com", "[::1]:80", "*"] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn refused_patterns() {
        let err = |s: &str| s.parse::<HostPattern>().unwrap_err();
        assert_eq!(
            err("https://api.openai.com"),
            "invalid host pattern `https://api.openai.com`: remove the scheme `https://`; \
             write `host` or `host:port`, such as `api.openai.com:443`"
        );
        assert!(err("api.openai.com/v1").contains("remove the path"));
        assert!(err("api.*.com").contains("`*` may only be"));
        assert!(err("*example.com").contains("`*` may only be"));
        assert!(err("host:0").contains("the port `0`"));
        assert!(err("host:http").contains("the port `http`"));
        assert!(err("::1").contains("brackets"));
        assert!(err("[::1").contains("missing `]`"));
        assert!(err("[nope]:80").contains("not an IPv6 address"));
        assert!(err("").contains("empty"));
        assert!(err(":443").contains("the host is empty"));
        assert!(err("-bad.com").contains("`-bad`"));
        assert!(err("a..b").contains("``"));
        assert!(err("under_score.com").contains("`under_score`"));
        assert!(err("999.1.1.1").contains("IPv4"));
        assert!(err("a b").contains("spaces"));
    }
}
