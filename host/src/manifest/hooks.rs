//! [`Hook`] names, the `hooks` list, and [`OnError`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A hook a plugin implements; the host calls only the hooks listed in the
/// manifest, and checks at load that the component exports their interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Sees (and may change or answer) a request before the provider call.
    PreRequest,
    /// Sees (and may change) the response after the provider call.
    PostResponse,
    /// Sees each streamed chunk; may change or drop it.
    OnChunk,
    /// Runs once when a stream ends.
    OnStreamEnd,
    /// Decides on a tool call: allow, deny, rewrite, or answer it.
    OnToolCall,
    /// The plugin is an LLM provider.
    Provider,
    /// Sees device probe results; may adjust, annotate or filter them.
    OnDeviceProbe,
    /// The plugin reports devices of its own.
    DeviceProbe,
    /// The plugin declares endpoints, validates requests and checks health.
    Endpoint,
}

/// Names from the seed format and the hook each one means.
const SEED_NAMES: [(&str, Hook); 4] = [
    ("on_chat_message", Hook::PreRequest),
    ("on_before_response", Hook::PostResponse),
    ("on_after_response", Hook::PostResponse),
    ("on_tool_call", Hook::OnToolCall),
];

impl Hook {
    /// Every hook, in the order of the WIT interfaces.
    pub const ALL: [Hook; 9] = [
        Hook::PreRequest,
        Hook::PostResponse,
        Hook::OnChunk,
        Hook::OnStreamEnd,
        Hook::OnToolCall,
        Hook::Provider,
        Hook::OnDeviceProbe,
        Hook::DeviceProbe,
        Hook::Endpoint,
    ];

    /// The hook's name in a manifest, such as `pre-request`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Hook::PreRequest => "pre-request",
            Hook::PostResponse => "post-response",
            Hook::OnChunk => "on-chunk",
            Hook::OnStreamEnd => "on-stream-end",
            Hook::OnToolCall => "on-tool-call",
            Hook::Provider => "provider",
            Hook::OnDeviceProbe => "on-device-probe",
            Hook::DeviceProbe => "device-probe",
            Hook::Endpoint => "endpoint",
        }
    }

    /// The exported WIT interface (of `plugbox:plugin`) that provides the hook.
    pub const fn interface(&self) -> &'static str {
        match self {
            Hook::PreRequest | Hook::PostResponse => "request-hooks",
            Hook::OnChunk | Hook::OnStreamEnd => "stream-hooks",
            Hook::OnToolCall => "tool-hooks",
            Hook::Provider => "provider",
            Hook::OnDeviceProbe => "device-hooks",
            Hook::DeviceProbe => "device-probe",
            Hook::Endpoint => "endpoint",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a hook name, including the seed format's names
/// (`on_chat_message`, `on_before_response`, `on_after_response`,
/// `on_tool_call`).
impl FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(hook) = Hook::ALL.into_iter().find(|h| h.as_str() == s) {
            return Ok(hook);
        }
        if let Some((_, hook)) = SEED_NAMES.into_iter().find(|(name, _)| *name == s) {
            return Ok(hook);
        }
        let names: Vec<String> = Hook::ALL.iter().map(|h| format!("`{h}`")).collect();
        Err(format!("unknown hook `{s}`, expected one of {}", names.join(", ")))
    }
}

impl Serialize for Hook {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::de::parsed(deserializer, "a hook name", str::parse)
    }
}

impl JsonSchema for Hook {
    fn schema_name() -> Cow<'static, str> {
        "Hook".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut names: Vec<&str> = Hook::ALL.iter().map(Hook::as_str).collect();
        names.extend(SEED_NAMES.iter().map(|(name, _)| *name));
        json_schema!({
            "type": "string",
            "enum": names,
            "description": "A hook the plugin implements. The seed format's names are accepted too: \
                `on_chat_message` (= `pre-request`), `on_before_response` and `on_after_response` \
                (= `post-response`), `on_tool_call` (= `on-tool-call`).",
        })
    }
}

/// Deserializes the `hooks` list: at least one hook, none written twice.
/// Seed names that mean the same hook are merged (first one wins the place).
pub(super) fn deserialize_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Hook>, D::Error> {
    deserializer.deserialize_seq(ListVisitor)
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<Hook>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of hooks, such as `[pre-request, post-response]`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Hook>, A::Error> {
        let mut written = Vec::new();
        let mut hooks = Vec::new();
        while let Some(hook) = seq.next_element_seed(ItemSeed { written: &mut written })? {
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
        if hooks.is_empty() {
            let names: Vec<&str> = Hook::ALL.iter().map(Hook::as_str).collect();
            return Err(de::Error::custom(format_args!("list at least one hook: {}", names.join(", "))));
        }
        Ok(hooks)
    }
}

/// One item of the list; refuses a name already written, at the item.
struct ItemSeed<'a> {
    written: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Hook;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Hook, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for ItemSeed<'_> {
    type Value = Hook;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hook name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Hook, E> {
        let hook = v.parse::<Hook>().map_err(E::custom)?;
        if self.written.iter().any(|w| w == v) {
            return Err(E::custom(format_args!("duplicate hook `{v}`")));
        }
        self.written.push(v.to_owned());
        Ok(hook)
    }
}

/// What the host does when one of the plugin's hooks fails (traps, times out,
/// exceeds a limit, or returns an internal error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Skip the plugin for that call, count the failure, and go on (default).
    #[default]
    FailOpen,
    /// Fail the request with an error naming the plugin.
    FailClosed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for hook in Hook::ALL {
            assert_eq!(hook.as_str().parse::<Hook>(), Ok(hook));
        }
        assert_eq!("on_after_response".parse::<Hook>(), Ok(Hook::PostResponse));
        assert_eq!(Hook::OnStreamEnd.interface(), "stream-hooks");
        assert!("pre_request".parse::<Hook>().unwrap_err().starts_with("unknown hook `pre_request`"));
    }
}
