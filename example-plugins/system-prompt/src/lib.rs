//! Inserts a system message into every request, unless an identical system
//! message is already there.
//!
//! Config: `prompt` (string, required): the system message;
//! `position` (string, `first` by default): `first` puts it before every
//! other message, `after-system` after the request's own leading system
//! messages, `last` at the end of the conversation.

use plugbox_sdk::{Config, Plugin, PreAction, Request, Role};

plugbox_sdk::embed_manifest!("../../../manifests/system-prompt.yaml");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Position {
    First,
    AfterSystem,
    Last,
}

#[derive(Debug)]
struct SystemPrompt {
    prompt: String,
    position: Position,
}

impl Plugin for SystemPrompt {
    fn init(config: Config) -> Result<Self, String> {
        let prompt = config.require_str("prompt")?.to_string();
        if prompt.trim().is_empty() {
            return Err("config `prompt` must not be empty".to_string());
        }
        let position = match config.get_str("position")?.unwrap_or("first") {
            "first" => Position::First,
            "after-system" => Position::AfterSystem,
            "last" => Position::Last,
            other => {
                return Err(format!("config `position` must be `first`, `after-system` or `last`, got `{other}`"));
            }
        };
        Ok(SystemPrompt { prompt, position })
    }

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        // Roles are free to read; only system messages' text is read.
        let mut leading_system = 0;
        let mut counting = true;
        for (i, role) in req.messages() {
            if role != Role::System {
                counting = false;
                continue;
            }
            if counting {
                leading_system += 1;
            }
            if req.text(i)?.as_deref() == Some(self.prompt.as_str()) {
                return Ok(PreAction::Continue);
            }
        }
        let at = match self.position {
            Position::First => 0,
            Position::AfterSystem => leading_system,
            Position::Last => req.message_count(),
        };
        req.insert_message(at, Role::System, &self.prompt)?;
        Ok(PreAction::Continue)
    }
}

plugbox_sdk::export!(SystemPrompt);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::Access;

    fn plugin(position: &str) -> SystemPrompt {
        let json = format!(r#"{{"prompt": "be brief", "position": "{position}"}}"#);
        SystemPrompt::init(Config::from_json(&json).unwrap()).unwrap()
    }

    fn request(messages: &[(Role, &str)]) -> Request {
        let mut builder = Request::builder("m").access(Access::Write);
        for (role, text) in messages {
            builder = builder.message(*role, *text);
        }
        builder.build()
    }

    fn roles_and_texts(req: &Request) -> Vec<(Role, String)> {
        req.messages().map(|(i, role)| (role, req.text(i).unwrap().unwrap_or_default())).collect()
    }

    #[test]
    fn inserts_first() {
        let req = request(&[(Role::User, "hi")]);
        assert_eq!(plugin("first").pre_request(&req).unwrap(), PreAction::Continue);
        assert_eq!(roles_and_texts(&req), vec![(Role::System, "be brief".to_string()), (Role::User, "hi".to_string())]);
    }

    #[test]
    fn after_system_and_last() {
        let msgs = [(Role::System, "own"), (Role::User, "hi")];
        let req = request(&msgs);
        plugin("after-system").pre_request(&req).unwrap();
        assert_eq!(roles_and_texts(&req)[1], (Role::System, "be brief".to_string()));
        let req = request(&msgs);
        plugin("last").pre_request(&req).unwrap();
        assert_eq!(roles_and_texts(&req)[2], (Role::System, "be brief".to_string()));
    }

    #[test]
    fn skips_duplicates() {
        let req = request(&[(Role::User, "hi"), (Role::System, "be brief")]);
        plugin("first").pre_request(&req).unwrap();
        assert_eq!(req.message_count(), 2);
    }

    #[test]
    fn needs_write() {
        let req = Request::builder("m").user("hi").access(Access::Read).build();
        let err = plugin("first").pre_request(&req).unwrap_err();
        assert!(err.contains("`$.messages[0]` needs `messages: write`"), "{err}");
        assert_eq!(req.message_count(), 1);
    }

    #[test]
    fn config_errors() {
        assert!(SystemPrompt::init(Config::empty()).is_err());
        let bad = Config::from_json(r#"{"prompt": "x", "position": "middle"}"#).unwrap();
        assert!(SystemPrompt::init(bad).unwrap_err().contains("`middle`"));
    }
}
