//! A string that never shows itself in `Debug`, `Display` or serialised output.

use std::fmt;

/// A token, password or DSN. `Debug` and `Display` print `[redacted]`, it has no
/// `Serialize` impl, and the value is read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the secret value. Call it only where the value is sent to its
    /// destination (an HTTP header, a connection string).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_value() {
        let secret = Secret::new("sk-live-123");
        assert!(!format!("{secret:?}").contains("sk-live"));
        assert!(!format!("{secret}").contains("sk-live"));
        assert_eq!(secret.expose(), "sk-live-123");
    }
}
