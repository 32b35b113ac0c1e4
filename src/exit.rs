//! Exit codes shared by every subcommand, and the one place errors are printed.
//!
//! 0 success / converged, 1 failed (at least one unit of work failed, or a check found a
//! problem), 2 invalid input, 75 (EX_TEMPFAIL) a lock stayed busy past `--lock-wait`.

use crate::output::OutputFormat;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const INVALID_INPUT: u8 = 2;
pub const LOCK_BUSY: u8 = 75;

/// Marks an error as the user's input being wrong (bad manifest, bad flag value): exit 2.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InvalidInput {}

/// Build an invalid-input error (exit 2).
pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InvalidInput(msg.into()))
}

/// Choose the exit code for an error that escaped a subcommand.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<crate::lock::LockBusy>().is_some() {
            return LOCK_BUSY;
        }
        if cause.downcast_ref::<InvalidInput>().is_some() {
            return INVALID_INPUT;
        }
    }
    FAILURE
}

/// Print an error chain, one cause per line (text), or as one JSON document.
pub fn print_error(err: &anyhow::Error, format: OutputFormat) {
    let causes: Vec<String> = err
        .chain()
        .map(|c| crate::output::redact(&c.to_string()))
        .collect();
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({"ok": false, "exit_code": code_for(err), "error": causes});
            println!("{doc}");
        }
        OutputFormat::Text => {
            let mut lines = causes.iter();
            if let Some(first) = lines.next() {
                eprintln!("error: {first}");
            }
            for cause in lines {
                eprintln!("  -> {cause}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_lock_anywhere_in_the_chain_exits_75() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let mode = crate::lock::Mode::Exclusive;
        let _held = crate::lock::acquire(&path, mode, std::time::Duration::ZERO).unwrap();
        let err = crate::lock::acquire(&path, mode, std::time::Duration::ZERO)
            .unwrap_err()
            .context("failed to start");
        assert_eq!(code_for(&err), LOCK_BUSY);
        assert_eq!(code_for(&invalid("bad")), INVALID_INPUT);
        assert_eq!(code_for(&anyhow::anyhow!("other")), FAILURE);
    }
}
