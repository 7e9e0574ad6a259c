//! Deserialization helpers that check values *inside* the deserializer, so
//! that serde_norway reports an error at the value's own line and column,
//! and the per-parse context they check against (environment variables,
//! provider names, route models seen so far).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// What the checks of one parse know: set for the parse's duration on the
/// parsing thread (serde_norway parses synchronously).
#[derive(Default)]
pub(super) struct Context {
    /// The value of every `${NAME}` the file mentions (`None`: not set).
    pub env: HashMap<String, Option<String>>,
    /// Provider names of the file; `None` in the first pass, which finds them.
    pub providers: Option<BTreeSet<String>>,
    /// Route models seen so far in this pass.
    pub route_models: BTreeSet<String>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with `context` installed for the helpers below.
pub(super) fn with_context<T>(context: Context, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CONTEXT.with(|c| c.borrow_mut().take());
        }
    }
    CONTEXT.with(|c| *c.borrow_mut() = Some(context));
    let _reset = Reset;
    f()
}

fn context<T>(f: impl FnOnce(&mut Context) -> T) -> T {
    CONTEXT.with(|c| f(c.borrow_mut().get_or_insert_with(Context::default)))
}

/// The names of the `${NAME}` references in `src` (escaped `$${` skipped).
pub(super) fn env_references(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find("${") {
        let escaped = rest[..at].ends_with('$');
        rest = &rest[at + 2..];
        if escaped {
            continue;
        }
        if let Some(end) = rest.find('}') {
            names.insert(rest[..end].to_string());
        }
    }
    names
}

/// Expands `${NAME}` in `s` from the context's environment; `$${` is a
/// literal `${`.
pub(super) fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| format!("`${{` without its closing `}}` in `{s}`"))?;
            let name = &after[..end];
            if !valid_env_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not an environment variable name: use letters, digits and `_`, not starting \
                     with a digit (write `$${{` for a literal `${{`)"
                ));
            }
            match context(|c| c.env.get(name).cloned().flatten()) {
                Some(value) => out.push_str(&value),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a string scalar with `parse`; its `Err` text becomes the error,
/// reported at the string.
pub(super) fn parsed<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(&'static str, F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.1)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, parse))
}

/// A secret: a non-empty string with `${NAME}` expanded. The error never
/// shows the value.
pub(super) fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, "a string, usually `${NAME}` to read an environment variable", |s| {
        let value = expand_env(s)?;
        if value.is_empty() {
            return Err(if s.is_empty() {
                "the secret is empty".to_string()
            } else {
                format!("`{s}` expands to an empty string")
            });
        }
        Ok(value)
    })
}

/// A duration such as `5s`, `200ms` or `10m` (humantime), more than zero.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parsed(d, "a duration such as `5s`, `200ms` or `10m`", parse_duration)
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration `{s}`: {e}; write a number and a unit, such as `5s`, `200ms` or `10m`")
    })?;
    if d.is_zero() {
        return Err(format!("`{s}` is zero: use a duration above zero"));
    }
    Ok(d)
}

/// A duration that may be zero (`0s`: no wait).
pub(super) fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parsed(d, "a duration such as `200ms` or `5s`", |s| {
        humantime::parse_duration(s)
            .map_err(|e| format!("invalid duration `{s}`: {e}; write a number and a unit, such as `200ms` or `5s`"))
    })
}

/// A size such as `4MiB` or `512KiB` (bytesize), more than zero.
pub(super) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parsed(d, "a size such as `4MiB` or `512KiB`", |s| {
        let size: bytesize::ByteSize = s
            .parse()
            .map_err(|e| format!("invalid size `{s}`: {e}; write a number and a unit, such as `4MiB` or `512KiB`"))?;
        if size.as_u64() == 0 {
            return Err(format!("`{s}` is zero: use a size above zero"));
        }
        Ok(size.as_u64())
    })
}

/// An integer in `min..=max`.
pub(super) fn bounded<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    struct V(u64, u64);
    impl V {
        fn check<E: de::Error>(&self, v: i128) -> Result<u64, E> {
            if v < i128::from(self.0) || v > i128::from(self.1) {
                return Err(E::custom(format!("`{v}` is out of range: use {} to {}", self.0, self.1)));
            }
            Ok(v as u64)
        }
    }
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer from {} to {}", self.0, self.1)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            self.check(i128::from(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            self.check(i128::from(v))
        }
    }
    d.deserialize_any(V(min, max))
}

/// A name of providers and route models: 1-128 characters without spaces.
pub(super) fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} `{}` must be 1-128 characters without spaces", s.escape_debug()));
    }
    Ok(())
}

/// A route target's `provider`: one of the file's providers.
pub(super) fn provider_ref(s: &str) -> Result<String, String> {
    context(|c| match &c.providers {
        Some(known) if !known.contains(s) => {
            let known: Vec<String> = known.iter().map(|p| format!("`{p}`")).collect();
            Err(if known.is_empty() {
                format!("unknown provider `{s}`: `providers` defines none")
            } else {
                format!("unknown provider `{s}`: `providers` defines {}", known.join(", "))
            })
        }
        _ => Ok(s.to_string()),
    })
}

/// A route's `model`: a name (or `*`) no earlier route has.
pub(super) fn route_model<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, "a model name, or `*` for every other model", |s| {
        check_name("model", s)?;
        context(|c| {
            if !c.route_models.insert(s.to_string()) {
                return Err(format!("a route for model `{s}` is already defined: each model has one route"));
            }
            Ok(s.to_string())
        })
    })
}
