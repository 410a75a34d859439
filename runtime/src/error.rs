//! The runtime's error: a clear message about inputs, sizes or values.

use std::fmt;

/// An error binding inputs or evaluating a loss: a shape mismatch, a missing input, an index
/// out of range. The message is complete on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    /// What went wrong, in words.
    pub message: String,
}

impl RunError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> RunError {
        RunError {
            message: message.into(),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunError {}
