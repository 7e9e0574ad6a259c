//! [`OutputBudget`]: the one meter for everything a plugin hands to the host in
//! one call. Every text, every list element and every nested value a hook
//! returns is charged here, by JSON path, against the plugin's `max-output`
//! limit; the first charge that does not fit fails the call with an error that
//! names the field and the limit.
//!
//! Charging happens before the host keeps anything, so an oversized answer is
//! refused whole and cannot push the next plugin in a chain past its limits.

/// Bytes charged for each element of a list, on top of its contents, so that
/// 300,000 empty messages cost something.
pub const ELEMENT_COST: u64 = 16;

/// Remaining output allowance of one hook call.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    limit: u64,
    used: u64,
}

impl OutputBudget {
    /// A budget of `limit` bytes (the plugin's `max-output`).
    pub fn new(limit: u64) -> Self {
        OutputBudget { limit, used: 0 }
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The limit this budget was made with.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Charges `bytes` for the field at `path` (a JSON path such as
    /// `$.messages[3].content`).
    pub fn charge(&mut self, path: &dyn std::fmt::Display, bytes: u64) -> Result<(), String> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(format!(
                "output exceeds the plugin's max-output of {} bytes at `{path}` ({} bytes so far)",
                self.limit, self.used
            ));
        }
        Ok(())
    }

    /// Charges a string field.
    pub fn text(&mut self, path: &dyn std::fmt::Display, text: &str) -> Result<(), String> {
        self.charge(path, text.len() as u64)
    }

    /// Charges an optional string field.
    pub fn opt_text(&mut self, path: &dyn std::fmt::Display, text: Option<&str>) -> Result<(), String> {
        text.map_or(Ok(()), |t| self.text(path, t))
    }

    /// Charges `n` list elements at `path` ([`ELEMENT_COST`] each) and refuses
    /// more than `max` of them.
    pub fn elements(&mut self, path: &dyn std::fmt::Display, n: usize, max: usize) -> Result<(), String> {
        if n > max {
            return Err(format!("`{path}` has {n} elements; at most {max} are accepted"));
        }
        self.charge(path, n as u64 * ELEMENT_COST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_name_the_field() {
        let mut b = OutputBudget::new(10);
        b.text(&"$.model", "12345").unwrap();
        let e = b.text(&"$.messages[0].content", "123456").unwrap_err();
        assert!(e.contains("`$.messages[0].content`"), "{e}");
        assert!(e.contains("max-output of 10 bytes"), "{e}");
    }

    #[test]
    fn empty_elements_cost_something() {
        let mut b = OutputBudget::new(ELEMENT_COST * 3);
        b.elements(&"$.messages", 3, 100).unwrap();
        assert!(b.elements(&"$.tools", 1, 100).is_err());
        let mut b = OutputBudget::new(u64::MAX);
        assert!(b.elements(&"$.messages", 101, 100).unwrap_err().contains("at most 100"));
    }
}
