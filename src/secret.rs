//! The canonical bitcoind RPC secret: `<state-dir>/secrets/bitcoin-rpc.json`, dir 0700, file
//! 0600. Created once with 32 random bytes from the OS; changed only by an explicit rotation.
//! Every value loaded is registered for redaction so it never reaches logs or output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// User name in a newly created secret.
pub const DEFAULT_USER: &str = "archy";
/// Random bytes in a new password (hex encoded: 64 characters).
pub const PASSWORD_BYTES: usize = 32;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
}

pub fn secrets_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("secrets")
}

pub fn secret_path(state_dir: &Path) -> PathBuf {
    secrets_dir(state_dir).join("bitcoin-rpc.json")
}

/// Register the password and the forms it travels in (user:password, HTTP basic token).
pub fn register_for_redaction(secret: &Secret) {
    use base64::Engine;
    crate::output::register_secret(&secret.password);
    crate::output::register_secret(&format!("{}:{}", secret.user, secret.password));
    crate::output::register_secret(
        &base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", secret.user, secret.password)),
    );
}

/// Generate a fresh secret (not saved).
pub fn generate(user: &str) -> Result<Secret> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("failed to read the OS random number generator: {e}"))?;
    Ok(Secret {
        user: user.to_string(),
        password: hex::encode(bytes),
    })
}

/// Read the secret if it exists; a malformed file is an error (never silently replaced).
pub fn load(state_dir: &Path) -> Result<Option<Secret>> {
    let path = secret_path(state_dir);
    let Some(bytes) = crate::fsutil::read_optional(&path)? else {
        return Ok(None);
    };
    // serde's message quotes the offending value (a numeric password, say): report only
    // where and what kind of problem, never the text.
    let secret: Secret = serde_json::from_slice(&bytes).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "is not valid JSON"
            }
            _ => "has a missing, unknown or non-string field",
        };
        anyhow::anyhow!(
            "secret file {} {kind} (line {}, column {}); expected {{\"user\": \"…\", \"password\": \"…\"}} with string values",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if secret.user.is_empty()
        || secret.user.contains([':', '\n', '\r'])
        || secret.password.len() < 16
        || secret.password.contains(['\n', '\r'])
    {
        bail!("secret file {}: field `user` must be non-empty without `:` and `password` at least 16 characters on one line", path.display());
    }
    register_for_redaction(&secret);
    Ok(Some(secret))
}

/// Write a secret atomically with dir 0700 / file 0600.
/// Replace the canonical secret with a fresh one for the same RPC user (the default user when
/// none exists yet); the new one is redacted from every output from now on.
pub fn rotate(state_dir: &Path) -> Result<()> {
    let user = load(state_dir)?.map_or_else(|| DEFAULT_USER.to_string(), |s| s.user);
    let fresh = generate(&user)?;
    register_for_redaction(&fresh);
    save(state_dir, &fresh)?;
    tracing::info!(
        "rotated the canonical secret {}",
        secret_path(state_dir).display()
    );
    Ok(())
}

pub fn save(state_dir: &Path, secret: &Secret) -> Result<()> {
    let dir = secrets_dir(state_dir);
    crate::fsutil::ensure_dir(&dir, 0o700)?;
    let text = serde_json::to_string_pretty(secret).context("failed to encode the secret")?;
    crate::fsutil::write_atomic(&secret_path(state_dir), text.as_bytes(), 0o600)
}

/// Load the secret, creating it on first need (unless `create` is false: then None).
pub fn load_or_create(state_dir: &Path, create: bool) -> Result<(Option<Secret>, bool)> {
    if let Some(secret) = load(state_dir)? {
        return Ok((Some(secret), false));
    }
    if !create {
        return Ok((None, false));
    }
    let secret = generate(DEFAULT_USER)?;
    register_for_redaction(&secret);
    save(state_dir, &secret)?;
    tracing::info!(
        "created the canonical RPC secret {}",
        secret_path(state_dir).display()
    );
    Ok((Some(secret), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_strict_modes_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create(dir.path(), true).unwrap();
        assert!(created);
        let first = first.unwrap();
        assert_eq!(first.password.len(), 64);
        assert!(first.password.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secrets_dir(dir.path())), 0o700);
        assert_eq!(mode(&secret_path(dir.path())), 0o600);
        let (again, created) = load_or_create(dir.path(), true).unwrap();
        assert!(!created);
        assert_eq!(again.unwrap(), first);
        assert!(!format!("{first:?}").contains(&first.password));
    }

    #[test]
    fn a_numeric_password_is_never_quoted_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        crate::fsutil::ensure_dir(&secrets_dir(dir.path()), 0o700).unwrap();
        let password = "98765432109876543210";
        std::fs::write(
            secret_path(dir.path()),
            format!("{{\"user\": \"u\", \"password\": {password}}}"),
        )
        .unwrap();
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(!err.contains(password), "{err}");
        assert!(
            err.contains("non-string field") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn malformed_secret_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        crate::fsutil::ensure_dir(&secrets_dir(dir.path()), 0o700).unwrap();
        std::fs::write(secret_path(dir.path()), "{\"user\": \"u\"}").unwrap();
        let err = load_or_create(dir.path(), true).unwrap_err();
        assert!(format!("{err:#}").contains("bitcoin-rpc.json"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(secret_path(dir.path())).unwrap(),
            "{\"user\": \"u\"}"
        );
    }
}
