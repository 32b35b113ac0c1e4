//! Output format selection and secret redaction for everything archy prints.

use std::sync::{Mutex, OnceLock};

/// How results are printed on stdout (`--output`, parsed in `cli.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Text,
    Json,
}

/// What replaces a secret in any output.
pub const REDACTED: &str = "<redacted>";

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Register a secret value: from now on `redact` replaces it wherever it appears.
/// Values shorter than 8 bytes are ignored (they would redact ordinary words).
pub fn register_secret(value: &str) {
    if value.len() < 8 {
        return;
    }
    let mut list = secrets()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !list.iter().any(|s| s == value) {
        list.push(value.to_string());
    }
}

/// Replace every registered secret in `text`.
pub fn redact(text: &str) -> String {
    let list = secrets()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = text.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Print a JSON document on stdout (redacted), one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{}", redact(&value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted() {
        register_secret("s3cr3t-value-xyz");
        assert_eq!(redact("pass=s3cr3t-value-xyz;"), "pass=<redacted>;");
        register_secret("short");
        assert_eq!(redact("short"), "short");
    }
}
