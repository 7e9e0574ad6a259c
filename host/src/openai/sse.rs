//! Server-sent events as Chat Completions streams use them: each event is
//! `data: <chat.completion.chunk JSON>` followed by a blank line, and the
//! stream ends with `data: [DONE]`.

use super::ChatChunk;

/// The `data` of the event that ends an OpenAI stream.
pub const DONE: &str = "[DONE]";

/// The `data` of every event in `body`, in order, as the SSE format defines
/// it: events end at a blank line; an event's `data:` lines (one leading
/// space removed) are joined with `\n`; comments (`:`), other fields
/// (`event:`, `id:`, `retry:`) and events without data are skipped. `\r\n`
/// and `\r` line ends are accepted. A last event without its blank line
/// still counts.
pub fn data_events(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        }
    }
    events.extend(data);
    events
}

impl ChatChunk {
    /// The chunk as one server-sent event: `data: <json>` and a blank line.
    pub fn to_sse(&self) -> String {
        format!("data: {}\n\n", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines_and_data_lines_joined() {
        let body = ": keep-alive\r\nevent: message\r\ndata: {\"a\":\r\ndata:1}\r\n\r\nid: 7\n\ndata: [DONE]";
        assert_eq!(data_events(body), vec!["{\"a\":\n1}".to_string(), DONE.to_string()]);
    }

    #[test]
    fn a_chunk_is_written_as_one_event() {
        let sse = ChatChunk::text("hi").to_sse();
        assert!(sse.starts_with("data: {") && sse.ends_with("}\n\n"), "{sse}");
        assert_eq!(ChatChunk::from_json(&data_events(&sse)[0]).unwrap(), ChatChunk::text("hi"));
    }
}
