//! The text a reconcile tick prints about its backups: one line per file that was copied or
//! waits, one more per failed target. Pure.

use super::perform::{FileOutcome, FileResult, TargetOutcome};

/// The tick's backup lines (empty when every file was unchanged), redacted.
pub fn render_tick(backups: &[FileResult]) -> String {
    let mut out = String::new();
    for b in backups {
        let head = format!("backup {} {}", b.app, b.file);
        let copied: Vec<&str> = b
            .targets
            .iter()
            .filter(|t| t.result == TargetOutcome::Copied)
            .map(|t| t.target.as_str())
            .collect();
        if !copied.is_empty() {
            out.push_str(&format!("{head}: copied to {}\n", copied.join(", ")));
        }
        if let (FileOutcome::Pending | FileOutcome::Failed, Some(detail)) = (b.result, &b.detail) {
            out.push_str(&format!("{head}: {detail}\n"));
        }
        for t in b
            .targets
            .iter()
            .filter(|t| t.result == TargetOutcome::Failed)
        {
            let error = t.error.as_deref().unwrap_or("failed");
            out.push_str(&format!("{head}: target {} FAILED: {error}\n", t.target));
        }
    }
    crate::output::redact(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::perform::TargetResult;

    #[test]
    fn copies_waits_and_failures_each_get_a_line() {
        let target = |target: &str, result, error: Option<&str>| TargetResult {
            target: target.into(),
            result,
            error: error.map(String::from),
        };
        let file = |result, detail: Option<&str>, targets| FileResult {
            app: "lnd".into(),
            file: "d:/channel.backup".into(),
            result,
            sha256: None,
            detail: detail.map(String::from),
            targets,
        };
        let text = render_tick(&[
            file(
                FileOutcome::Unchanged,
                None,
                vec![target("/a", TargetOutcome::Ok, None)],
            ),
            file(
                FileOutcome::Failed,
                None,
                vec![
                    target("/a", TargetOutcome::Copied, None),
                    target("/b", TargetOutcome::Failed, Some("directory /b is missing")),
                ],
            ),
            file(FileOutcome::Pending, Some("is being written"), vec![]),
        ]);
        assert_eq!(
            text,
            "backup lnd d:/channel.backup: copied to /a\n\
             backup lnd d:/channel.backup: target /b FAILED: directory /b is missing\n\
             backup lnd d:/channel.backup: is being written\n"
        );
    }
}
