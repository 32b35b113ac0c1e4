//! heal-podman's decisions: [`parse`] what podman, runc and `/proc` report, classify it into
//! named [`probes`], and [`plan`] the next repair in escalating order. Everything here is pure
//! (no commands, no writes; the one file-system read is [`oci_state_root`]'s check whether
//! `/run/user/<uid>` exists) and unit tested on output captured from podman 4.3.1 (`tests/fixtures/heal-*`);
//! [`system`] gathers the facts and performs the repairs.
//!
//! Paths are never hard-coded: podman's own view comes from
//! `podman --log-level=debug info --format json` (the JSON names graph root, run root and volume
//! path; the debug lines on stderr name the static dir holding `bolt_state.db` and the tmp dir,
//! which the JSON of podman 4 lacks). When the database cannot be opened, podman's error names
//! its path. The OCI runtime's state root is the runtime's own default, which podman relies on
//! (it passes no `--root`): `/run/<runtime>` for root, `$XDG_RUNTIME_DIR/<runtime>` rootless.

pub mod boltdb;
pub mod engine;
pub mod ipam;
pub mod netavark;
pub mod netsys;
pub mod network;
pub mod parse;
pub mod plan;
pub mod probes;
pub mod system;

pub use parse::*;
pub use plan::*;
pub use probes::*;

#[cfg(test)]
mod tests;

/// The outcome of one repair step that touches several things: what it did, or an error naming
/// every failure and what was done before it (so a partial repair is never reported as none).
pub(crate) fn repair_outcome(
    touched: Vec<String>,
    errors: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    if errors.is_empty() {
        Ok(touched)
    } else {
        anyhow::bail!(
            "{} (done: {})",
            errors.join("; "),
            if touched.is_empty() {
                "nothing".to_string()
            } else {
                touched.join(", ")
            }
        )
    }
}
