//! rpcauth salts: one per RPC user, kept stable under `<state-dir>` until the secret rotates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

use super::renderers::rpcauth_hmac;

/// Salt record for bitcoin.conf: kept while the password is unchanged, so re-rendering gives the
/// same bytes (a fresh salt every time would count as drift on every run). One salt per RPC
/// user: `salt` is the canonical user's, `users` each consumer's, added as consumers appear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SaltRecord {
    salt: String,
    hmac: String,
    /// None in a record written before salts were per user: its consumers were rendered with
    /// `salt`, and keep it (their lines stay as they are) until the password changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<BTreeMap<String, String>>,
}

/// Every RPC user's rpcauth salt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Salts {
    pub(super) canonical: String,
    pub(super) users: BTreeMap<String, String>,
}

pub(super) fn salt_path(state_dir: &Path) -> PathBuf {
    crate::secret::secrets_dir(state_dir).join("rpcauth-salt.json")
}

pub(super) fn random_salt() -> Result<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| anyhow::anyhow!("failed to read the OS random number generator: {e}"))?;
    Ok(hex::encode(raw))
}

/// The stored salts if they belong to this password (a consumer without one gets a new random
/// salt; a record from before per-user salts gives its consumers the shared one, so their
/// rendered lines do not change); otherwise new random ones. Saved when anything was added
/// and `persist`.
pub(super) fn salts_for(
    state_dir: &Path,
    secret: &Secret,
    consumers: &BTreeSet<String>,
    persist: bool,
) -> Result<Salts> {
    let stored = crate::fsutil::read_optional(&salt_path(state_dir))?
        .and_then(|bytes| serde_json::from_slice::<SaltRecord>(&bytes).ok())
        .filter(|record| rpcauth_hmac(&record.salt, &secret.password) == record.hmac);
    let fresh = stored.is_none();
    let mut record = match stored {
        Some(record) => record,
        None => {
            let salt = random_salt()?;
            SaltRecord {
                hmac: rpcauth_hmac(&salt, &secret.password),
                salt,
                users: Some(BTreeMap::new()),
            }
        }
    };
    let legacy = record.users.is_none();
    let mut changed = legacy;
    let users = record.users.get_or_insert_with(BTreeMap::new);
    for name in consumers {
        if !users.contains_key(name) {
            let salt = if legacy {
                record.salt.clone()
            } else {
                random_salt()?
            };
            users.insert(name.clone(), salt);
            changed = true;
        }
    }
    if persist && (changed || fresh) {
        crate::fsutil::ensure_dir(&crate::secret::secrets_dir(state_dir), 0o700)?;
        crate::fsutil::write_atomic(
            &salt_path(state_dir),
            serde_json::to_string(&record)?.as_bytes(),
            0o600,
        )?;
    }
    Ok(Salts {
        canonical: record.salt,
        users: record.users.unwrap_or_default(),
    })
}

/// The canonical secret (created on first need when `write`) and the rpcauth salts.
pub(super) fn secret_and_salt(
    state_dir: &Path,
    consumers: &BTreeSet<String>,
    write: bool,
) -> Result<(Secret, Salts)> {
    let (secret, created) = crate::secret::load_or_create(state_dir, write)?;
    if created {
        tracing::info!("new canonical secret: every credential-bearing config follows it");
    }
    // A dry run before the secret exists renders with a throwaway one: every file differs anyway.
    let secret = match secret {
        Some(s) => s,
        None => {
            let s = crate::secret::generate(crate::secret::DEFAULT_USER)?;
            crate::secret::register_for_redaction(&s);
            s
        }
    };
    let salts = salts_for(state_dir, &secret, consumers, write)?;
    Ok((secret, salts))
}
