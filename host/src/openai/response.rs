//! The response body: [`ChatResponse`], its choices and usage.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Extra;
use super::content::{Nullable, flat, nullable};
use super::request::{ChatMessage, present};

/// A Chat Completions response (`object: chat.completion`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The completion's id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The answers (one unless the request set `n`).
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub usage: Option<Nullable<Usage>>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub system_fingerprint: Option<Nullable<String>>,
    /// The tier that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub service_tier: Option<Nullable<String>>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    "chat.completion".into()
}

impl ChatResponse {
    /// A response of `model` with one assistant choice saying `text`
    /// (`finish_reason: stop`).
    pub fn text(id: impl Into<String>, model: impl Into<String>, text: impl Into<String>) -> Self {
        ChatResponse {
            id: id.into(),
            object: completion_object(),
            model: model.into(),
            choices: vec![Choice {
                index: 0,
                message: ChatMessage::assistant(text),
                finish_reason: Some(Nullable::Value("stop".into())),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Parses a JSON body.
    pub fn from_json(body: &str) -> serde_json::Result<Self> {
        serde_json::from_str(body)
    }

    /// The body as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ChatResponse always serialises")
    }

    /// Builder: sets `usage`.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(Nullable::Value(usage));
        self
    }

    /// Token counts, when reported.
    pub fn usage(&self) -> Option<&Usage> {
        flat(&self.usage)
    }

    /// The text of the first choice.
    pub fn first_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.choices.first().and_then(|c| c.message.text())
    }

    /// The top-level field `name` as JSON (`choices` included), `None` when
    /// absent. Serialises that one field only.
    pub fn param(&self, name: &str) -> Option<Value> {
        match name {
            "id" => Some(Value::String(self.id.clone())),
            "object" => Some(Value::String(self.object.clone())),
            "created" => Some(Value::from(self.created)),
            "model" => Some(Value::String(self.model.clone())),
            "choices" => Some(super::to_value(&self.choices)),
            "usage" => self.usage.as_ref().map(super::to_value),
            "system_fingerprint" => self.system_fingerprint.as_ref().map(super::to_value),
            "service_tier" => self.service_tier.as_ref().map(super::to_value),
            _ => self.extra.get(name).cloned(),
        }
    }

    /// Sets (`Some`) or removes (`None`) the top-level field `name`, touching
    /// no other field; a field this type does not model is kept in
    /// [`extra`](ChatResponse::extra).
    ///
    /// # Errors
    ///
    /// A value that does not fit the field's type, or removing `id`,
    /// `object`, `created`, `model` or `choices`; the message names the JSON
    /// path. The response is unchanged then.
    pub fn set_param(&mut self, name: &str, value: Option<Value>) -> Result<(), String> {
        match name {
            "id" => self.id = super::required(name, value)?,
            "object" => self.object = super::required(name, value)?,
            "created" => self.created = super::required(name, value)?,
            "model" => self.model = super::required(name, value)?,
            "choices" => self.choices = super::required(name, value)?,
            "usage" => self.usage = super::optional(name, value)?,
            "system_fingerprint" => self.system_fingerprint = super::optional(name, value)?,
            "service_tier" => self.service_tier = super::optional(name, value)?,
            _ => super::set_extra(&mut self.extra, name, value),
        }
        Ok(())
    }
}

/// One answer of a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the choices.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: ChatMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub finish_reason: Option<Nullable<String>>,
    /// Log probabilities (`{content: [...], refusal: [...]}` or `null`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub logprobs: Option<Value>,
    /// Every other field (vLLM's `stop_reason` ...), verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Choice {
    /// The finish reason, if any.
    pub fn finish_reason(&self) -> Option<&str> {
        flat(&self.finish_reason).map(String::as_str)
    }
}

/// Token counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
    /// `cached_tokens`, `audio_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub prompt_tokens_details: Option<Value>,
    /// `reasoning_tokens`, `audio_tokens`, `accepted_prediction_tokens`, `rejected_prediction_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub completion_tokens_details: Option<Value>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: super::Extra,
}

impl Usage {
    /// Counts with `total = prompt + completion`.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            ..Default::default()
        }
    }
}
