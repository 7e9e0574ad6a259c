//! The checks every `llm` method goes through ([`CallRules`]: the calling
//! plugin's `messages` permission, the hook that owns the data, its output
//! budget) and the copy-on-write data an entry edits ([`Draft`]).

use std::fmt::Display;
use std::sync::Arc;

use crate::bindings::types::AccessError;
use crate::budget::OutputBudget;
use crate::manifest::MessageAccess;

/// What one hook call may do with the `llm` resources it is handed, and what
/// it did wrong: set by the pipeline before the call, taken back after it.
#[derive(Debug)]
pub(crate) struct CallRules {
    /// The hook being called (named in read-only refusals).
    pub(crate) hook: &'static str,
    /// The plugin's `messages` permission.
    pub(crate) access: MessageAccess,
    /// What the plugin may still hand to the host in this call.
    pub(crate) budget: OutputBudget,
    /// The first refused read or edit, naming the JSON path.
    pub(crate) violation: Option<String>,
}

impl Default for CallRules {
    fn default() -> Self {
        CallRules::new("", MessageAccess::None, 0)
    }
}

impl CallRules {
    /// The rules of one call of `hook` by a plugin with `access` and a
    /// `max-output` of `max_output` bytes.
    pub(crate) fn new(hook: &'static str, access: MessageAccess, max_output: u64) -> Self {
        CallRules { hook, access, budget: OutputBudget::new(max_output), violation: None }
    }

    pub(super) fn violate(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(message);
        }
    }

    pub(super) fn deny(&mut self, message: String) -> AccessError {
        self.violate(message.clone());
        AccessError::Denied(message)
    }

    /// Reading message data at `path` needs `read`.
    pub(super) fn read(&mut self, path: &dyn Display) -> Result<(), AccessError> {
        match self.access {
            MessageAccess::Read | MessageAccess::Write => Ok(()),
            MessageAccess::None => {
                Err(self.deny(format!("reading message data at `{path}` needs `messages: read` permission")))
            }
        }
    }

    /// A change outside message data (model, parameters, usage): any level,
    /// in the hook that owns the data.
    pub(super) fn edit(&mut self, editable: bool, what: &str, path: &dyn Display) -> Result<(), AccessError> {
        if editable {
            return Ok(());
        }
        let hook = self.hook;
        Err(self.deny(format!("the {what} is read-only in `{hook}`: the change at `{path}` is refused")))
    }

    /// A change to message data: `write`, in the hook that owns the data.
    pub(super) fn write(&mut self, editable: bool, what: &str, path: &dyn Display) -> Result<(), AccessError> {
        self.edit(editable, what, path)?;
        match self.access {
            MessageAccess::Write => Ok(()),
            _ => Err(self.deny(format!("a change to message data at `{path}` needs `messages: write` permission"))),
        }
    }

    /// Charges `bytes` an edit adds at `path`.
    pub(super) fn charge(&mut self, path: &dyn Display, bytes: usize) -> Result<(), AccessError> {
        self.budget.charge(path, bytes as u64).map_err(|e| {
            self.violate(e);
            AccessError::TooLarge
        })
    }

    /// Refuses a list growing past `max` elements.
    pub(super) fn count(&mut self, path: &dyn Display, n: usize, max: usize) -> Result<(), AccessError> {
        if n <= max {
            return Ok(());
        }
        self.violate(format!("`{path}` would have {n} elements; at most {max} are accepted"));
        Err(AccessError::TooLarge)
    }
}

/// Host data a hook may edit, copy-on-write: the shared `base` until the
/// first edit, then an edited copy. The copy is boxed so that an entry stays
/// small: entries are moved into and out of the store's table on every call.
#[derive(Debug)]
pub(crate) struct Draft<T: Clone> {
    base: Arc<T>,
    edited: Option<Box<T>>,
}

impl<T: Clone> Draft<T> {
    pub(crate) fn new(base: Arc<T>) -> Self {
        Draft { base, edited: None }
    }
    /// The data as it stands (edited or not).
    pub(crate) fn get(&self) -> &T {
        self.edited.as_deref().unwrap_or(&self.base)
    }
    /// The data to edit: the copy, made on the first call.
    pub(crate) fn edit(&mut self) -> &mut T {
        let base = &self.base;
        self.edited.get_or_insert_with(|| Box::new(T::clone(base)))
    }
    /// Whether an edit was made.
    pub(crate) fn is_edited(&self) -> bool {
        self.edited.is_some()
    }
    /// The edited copy, if an edit was made.
    pub(crate) fn into_edited(self) -> Option<T> {
        self.edited.map(|b| *b)
    }
}
