//! Roles, message content and the `null`-preserving [`Nullable`].

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Extra;

/// Who wrote a message. Roles this version does not name are kept as
/// [`Role::Other`] with their original text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// `system`
    System,
    /// `developer` (OpenAI's successor of `system` for reasoning models)
    Developer,
    /// `user`
    #[default]
    User,
    /// `assistant`
    Assistant,
    /// `tool`
    Tool,
    /// `function` (deprecated by OpenAI, still accepted)
    Function,
    /// Any other role, verbatim.
    Other(String),
}

impl Role {
    /// The role as it appears in JSON.
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
            Role::Other(s) => s,
        }
    }

    /// The role for a JSON string.
    pub fn parse(s: &str) -> Role {
        match s {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            other => Role::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Ok(Role::parse(&s))
    }
}

/// A field the OpenAI reference documents as nullable: either `null` or a
/// value. Used as `Option<Nullable<T>>`, so that absent, `null` and a value
/// are three different things and each round-trips.
#[derive(Debug, Clone, PartialEq)]
pub enum Nullable<T> {
    /// The field was `null`.
    Null,
    /// The field had a value.
    Value(T),
}

impl<T> Nullable<T> {
    /// The value, if not `null`.
    pub fn as_value(&self) -> Option<&T> {
        match self {
            Nullable::Null => None,
            Nullable::Value(v) => Some(v),
        }
    }
    /// The value, if not `null`, mutably.
    pub fn as_value_mut(&mut self) -> Option<&mut T> {
        match self {
            Nullable::Null => None,
            Nullable::Value(v) => Some(v),
        }
    }
    /// The value, if not `null`.
    pub fn into_value(self) -> Option<T> {
        match self {
            Nullable::Null => None,
            Nullable::Value(v) => Some(v),
        }
    }
}

impl<T> From<T> for Nullable<T> {
    fn from(v: T) -> Self {
        Nullable::Value(v)
    }
}

impl<T: Serialize> Serialize for Nullable<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Nullable::Null => s.serialize_none(),
            Nullable::Value(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Nullable::Null,
            Some(v) => Nullable::Value(v),
        })
    }
}

/// The `deserialize_with` of `Option<Nullable<T>>` fields: a present field,
/// `null` included, is `Some`.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Nullable<T>>, D::Error> {
    Nullable::deserialize(d).map(Some)
}

/// `Option<Nullable<T>>` read as a plain option (absent and `null` are both none).
pub(crate) fn flat<T>(field: &Option<Nullable<T>>) -> Option<&T> {
    field.as_ref().and_then(Nullable::as_value)
}

/// A message's `content`: a string, or an array of parts (text, images,
/// audio, files, refusals).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts, in order.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text: the string, or the text parts joined (refusal, image, audio
    /// and file parts are not text). `None` when there is no text part.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            MessageContent::Text(s) => Some(Cow::Borrowed(s)),
            MessageContent::Parts(parts) => {
                let mut texts = parts.iter().filter_map(ContentPart::text);
                let first = texts.next()?;
                match texts.next() {
                    None => Some(Cow::Borrowed(first)),
                    Some(second) => {
                        let mut joined = String::from(first);
                        joined.push_str(second);
                        texts.for_each(|t| joined.push_str(t));
                        Some(Cow::Owned(joined))
                    }
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = MessageContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<MessageContent, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_string())
    }
}

/// One part of an array `content`. `kind` is the part's `type` (`text`,
/// `image_url`, `input_audio`, `file`, `refusal`, or any newer one); the
/// part's other fields (`image_url`, `input_audio`, `file`, ...) stay in
/// `extra` as they came.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The refusal of a `refusal` part (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Every other field (`image_url: {url, detail}`, `input_audio: {data,
    /// format}`, `file: {file_id | file_data, filename}`, `cache_control`).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ContentPart {
    /// A `text` part.
    pub fn text_part(text: impl Into<String>) -> Self {
        ContentPart { kind: "text".into(), text: Some(text.into()), ..Default::default() }
    }
    /// An `image_url` part.
    pub fn image_url(url: impl Into<String>) -> Self {
        let mut extra = Extra::new();
        extra.insert("image_url".into(), serde_json::json!({ "url": url.into() }));
        ContentPart { kind: "image_url".into(), extra, ..Default::default() }
    }
    /// An `input_audio` part: base64 `data` in `format` (`wav`, `mp3`).
    pub fn input_audio(data: impl Into<String>, format: impl Into<String>) -> Self {
        let mut extra = Extra::new();
        extra.insert("input_audio".into(), serde_json::json!({ "data": data.into(), "format": format.into() }));
        ContentPart { kind: "input_audio".into(), extra, ..Default::default() }
    }
    /// A `file` part referring to an uploaded file.
    pub fn file_id(file_id: impl Into<String>) -> Self {
        let mut extra = Extra::new();
        extra.insert("file".into(), serde_json::json!({ "file_id": file_id.into() }));
        ContentPart { kind: "file".into(), extra, ..Default::default() }
    }
    /// The text of a `text` part.
    pub fn text(&self) -> Option<&str> {
        (self.kind == "text").then_some(self.text.as_deref()).flatten()
    }
    /// The URL (or `data:` URL) of an `image_url` part.
    pub fn image_url_str(&self) -> Option<&str> {
        self.extra.get("image_url")?.get("url")?.as_str()
    }
    /// The object named by the part's type (`image_url`, `input_audio`,
    /// `file` ...): the part's payload, as JSON.
    pub fn payload(&self) -> Option<&serde_json::Value> {
        self.extra.get(&self.kind)
    }
}
