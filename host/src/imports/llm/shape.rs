//! What the host accepts as a response or a chunk a plugin hands it (a
//! `respond` body, a provider's answer or stream chunk, a chunk appended at
//! the end of a stream), beyond parsing: the right `object`, at most
//! [`MAX_CHOICES`] choices, and in a chunk choice indexes below it (held
//! chunks are merged by index, so an index is a slot, not a free number).

use std::fmt::Display;

use crate::budget::MAX_CHOICES;
use crate::openai::{ChatChunk, ChatResponse};

fn object(path: &dyn Display, found: &str, expected: &str) -> Result<(), String> {
    if found == expected {
        return Ok(());
    }
    Err(format!("`{path}.object` is `{found}`, not `{expected}`"))
}

fn choices(path: &dyn Display, n: usize) -> Result<(), String> {
    if n <= MAX_CHOICES {
        return Ok(());
    }
    Err(format!("`{path}.choices` has {n} elements; at most {MAX_CHOICES} are accepted (the largest `n`)"))
}

/// Checks a `chat.completion` body at `path` (`$.respond`, `$`).
pub(crate) fn check_response(path: &dyn Display, r: &ChatResponse) -> Result<(), String> {
    object(path, &r.object, "chat.completion")?;
    choices(path, r.choices.len())
}

/// Checks a `chat.completion.chunk` at `path` (`$.stream[3]`, `$.append[0]`).
pub(crate) fn check_chunk(path: &dyn Display, c: &ChatChunk) -> Result<(), String> {
    object(path, &c.object, "chat.completion.chunk")?;
    choices(path, c.choices.len())?;
    match c.choices.iter().enumerate().find(|(_, c)| c.index as usize >= MAX_CHOICES) {
        None => Ok(()),
        Some((i, c)) => Err(format!(
            "`{path}.choices[{i}].index` is {}; a choice index is below {MAX_CHOICES} (the largest `n`)",
            c.index
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChunkChoice;

    #[test]
    fn objects_choice_counts_and_indexes_are_checked() {
        let mut r = ChatResponse::text("r", "m", "hi");
        check_response(&"$", &r).unwrap();
        r.choices = vec![r.choices[0].clone(); MAX_CHOICES + 1];
        assert!(check_response(&"$", &r).unwrap_err().contains("`$.choices` has 129 elements; at most 128"));
        r.object = "list".into();
        assert_eq!(check_response(&"$", &r).unwrap_err(), "`$.object` is `list`, not `chat.completion`");

        let mut c = ChatChunk::text("x");
        check_chunk(&"$.stream[0]", &c).unwrap();
        c.choices.push(ChunkChoice { index: 128, ..Default::default() });
        let e = check_chunk(&"$.stream[0]", &c).unwrap_err();
        assert!(e.contains("`$.stream[0].choices[1].index` is 128; a choice index is below 128"), "{e}");
        c.choices[1].index = 127;
        check_chunk(&"$.stream[0]", &c).unwrap();
        c.object = "chat.completion".into();
        assert!(check_chunk(&"$.stream[0]", &c).unwrap_err().contains("not `chat.completion.chunk`"));
    }
}
