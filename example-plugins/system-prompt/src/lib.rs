//! Inserts a system message into every request, unless an identical system
//! message is already there.
//!
//! Config: `prompt` (string, required): the system message;
//! `position` (string, `first` by default): `first` puts it before every
//! other message, `after-system` after the request's own leading system
//! messages, `last` at the end of the conversation.

use plugbox_sdk::{Config, Message, Plugin, PreAction, Request, RequestInfo, Role};

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

    fn pre_request(&mut self, _info: &RequestInfo, mut req: Request) -> Result<PreAction, String> {
        if req.system_messages().any(|m| m.content == self.prompt) {
            return Ok(PreAction::Continue);
        }
        let at = match self.position {
            Position::First => 0,
            Position::AfterSystem => req.messages.iter().take_while(|m| m.role == Role::System).count(),
            Position::Last => req.messages.len(),
        };
        req.messages.insert(at, Message::system(self.prompt.clone()));
        Ok(PreAction::Modify(req))
    }
}

plugbox_sdk::export!(SystemPrompt);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(position: &str) -> SystemPrompt {
        let json = format!(r#"{{"prompt": "be brief", "position": "{position}"}}"#);
        SystemPrompt::init(Config::from_json(&json).unwrap()).unwrap()
    }

    fn run(p: &mut SystemPrompt, messages: Vec<Message>) -> PreAction {
        p.pre_request(&RequestInfo::new("r", "m"), Request::new("m", messages)).unwrap()
    }

    #[test]
    fn inserts_first() {
        let PreAction::Modify(req) = run(&mut plugin("first"), vec![Message::user("hi")]) else {
            panic!("expected modify")
        };
        assert_eq!(req.messages[0], Message::system("be brief"));
        assert_eq!(req.messages.len(), 2);
    }

    #[test]
    fn after_system_and_last() {
        let msgs = vec![Message::system("own"), Message::user("hi")];
        let PreAction::Modify(req) = run(&mut plugin("after-system"), msgs.clone()) else { panic!() };
        assert_eq!(req.messages[1], Message::system("be brief"));
        let PreAction::Modify(req) = run(&mut plugin("last"), msgs) else { panic!() };
        assert_eq!(req.messages[2], Message::system("be brief"));
    }

    #[test]
    fn skips_duplicates() {
        let msgs = vec![Message::system("be brief"), Message::user("hi")];
        assert!(matches!(run(&mut plugin("first"), msgs), PreAction::Continue));
    }

    #[test]
    fn config_errors() {
        assert!(SystemPrompt::init(Config::empty()).is_err());
        let bad = Config::from_json(r#"{"prompt": "x", "position": "middle"}"#).unwrap();
        assert!(SystemPrompt::init(bad).unwrap_err().contains("`middle`"));
    }
}
