//! OpenAI-shaped error bodies with the right status.
//! OWNED BY THE SERVER WORK.

/// An error the gateway answers with: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.message`.
    pub message: String,
}
