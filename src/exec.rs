//! One wrapper for every external command: argv built in one place, logged at debug level,
//! stdout and stderr captured, and a failure carries the command line and the tail of stderr.
//! Never a shell: arguments reach the program literally.

use std::ffi::{OsStr, OsString};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// How many trailing stderr lines a failure carries (enough for podman's error, not a build log).
const STDERR_TAIL_LINES: usize = 15;

/// Lines podman prints on stderr that are noise in this environment, not errors.
const NOISE: &[&str] = &["failed to connect to syslog"];

/// A command to run: program plus arguments, built by the typed wrappers (`podman.rs` …).
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A command exited non-zero. Callers downcast to inspect stderr (e.g. "name already in use").
#[derive(Debug)]
pub struct CommandFailed {
    pub command_line: String,
    pub code: i32,
    pub stderr: String,
}

impl CommandFailed {
    /// The failure of `cmd` that produced `out` (stderr redacted).
    pub fn new(cmd: &Cmd, out: &Output) -> Self {
        CommandFailed {
            command_line: cmd.display(),
            code: out.code,
            stderr: crate::output::redact(&out.stderr),
        }
    }

    /// The last lines of stderr, without known noise.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr, STDERR_TAIL_LINES)
    }
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` exited with code {}", self.command_line, self.code)?;
        let tail = self.stderr_tail();
        if !tail.is_empty() {
            write!(f, ": {tail}")?;
        }
        Ok(())
    }
}
impl std::error::Error for CommandFailed {}

/// Parse JSON a command printed where empty output or `null` means "none" (`T::default()`).
pub fn parse_json<T: DeserializeOwned + Default>(text: &str) -> serde_json::Result<T> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str::<Option<T>>(text).map(Option::unwrap_or_default)
}

/// The last `n` meaningful lines of a command's stderr.
pub fn tail(stderr: &str, n: usize) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !NOISE.iter().any(|noise| l.contains(noise)))
        .collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Feed these bytes on stdin (otherwise stdin is /dev/null).
    pub fn stdin_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// The program as given (an `OsStr`, so a bare name is looked up in PATH, not taken as a
    /// relative path).
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn argv(&self) -> &[OsString] {
        &self.args
    }

    /// The command line as a readable string for logs and errors (secrets redacted).
    pub fn display(&self) -> String {
        let mut parts = vec![self.program.to_string_lossy().into_owned()];
        for arg in &self.args {
            let text = arg.to_string_lossy();
            if text.is_empty()
                || text.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                parts.push(format!("'{}'", text.replace('\'', "'\\''")));
            } else {
                parts.push(text.into_owned());
            }
        }
        crate::output::redact(&parts.join(" "))
    }

    /// Run to completion and return its output whatever the exit code.
    pub fn run_unchecked(&self) -> Result<Output> {
        tracing::debug!(command = %self.display(), "running");
        let mut expr = duct::cmd(&self.program, &self.args)
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        expr = match &self.stdin {
            Some(bytes) => expr.stdin_bytes(bytes.clone()),
            None => expr.stdin_null(),
        };
        let out = expr
            .run()
            .map_err(|e| anyhow::anyhow!("failed to start `{}`: {e}", self.display()))?;
        let output = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !output.success() {
            tracing::debug!(command = %self.display(), code = output.code, stderr = %tail(&output.stderr, STDERR_TAIL_LINES), "command failed");
        }
        Ok(output)
    }

    /// Run and fail with [`CommandFailed`] (command line + stderr tail) on a non-zero exit.
    pub fn run(&self) -> Result<Output> {
        let output = self.run_unchecked()?;
        if output.success() {
            Ok(output)
        } else {
            Err(self.failure(&output))
        }
    }

    /// The error for this command having produced `out` (a non-zero exit): the same
    /// [`CommandFailed`] `run` gives, for callers that ran it unchecked.
    pub fn failure(&self, out: &Output) -> anyhow::Error {
        anyhow::Error::new(CommandFailed::new(self, out))
    }

    /// `run`, then parse stdout as JSON; empty output or `null` (podman's and runc's "none")
    /// give `T::default()`. A parse error names the command line.
    pub fn run_json<T: DeserializeOwned + Default>(&self) -> Result<T> {
        let out = self.run()?;
        parse_json(&out.stdout)
            .with_context(|| format!("failed to parse the JSON output of `{}`", self.display()))
    }
}

/// The stderr of a failed command somewhere in an error chain, if any.
pub fn failed_stderr(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|c| c.downcast_ref::<CommandFailed>())
        .map(|c| c.stderr.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_takes_empty_or_null_output_as_none() {
        let list: Vec<u32> = Cmd::new("printf").arg("").run_json().unwrap();
        assert!(list.is_empty());
        let list: Vec<u32> = Cmd::new("printf").arg("null\n").run_json().unwrap();
        assert!(list.is_empty());
        let list: Vec<u32> = Cmd::new("printf").arg("[1, 2]").run_json().unwrap();
        assert_eq!(list, vec![1, 2]);
        let err = Cmd::new("printf")
            .arg("{oops")
            .run_json::<Vec<u32>>()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("failed to parse the JSON output of `printf {oops`"),
            "{err:#}"
        );
        let err = Cmd::new("false").run_json::<Vec<u32>>().unwrap_err();
        let failed = err
            .downcast_ref::<CommandFailed>()
            .expect("a CommandFailed");
        assert_eq!((failed.command_line.as_str(), failed.code), ("false", 1));
    }

    #[test]
    fn failure_of_an_unchecked_run_is_the_error_run_gives() {
        let cmd = Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]);
        let out = cmd.run_unchecked().unwrap();
        let unchecked = format!("{:#}", cmd.failure(&out));
        let checked = format!("{:#}", cmd.run().unwrap_err());
        assert_eq!(unchecked, checked);
        assert!(checked.contains("exited with code 3: boom"), "{checked}");
    }

    #[test]
    fn tail_drops_noise_and_keeps_last_lines() {
        let stderr = "a\nfailed to connect to syslog: Initialization\nb\n\nc\n";
        assert_eq!(tail(stderr, 2), "b\nc");
        assert_eq!(tail(stderr, 10), "a\nb\nc");
    }

    #[test]
    fn failure_carries_command_line_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited with code 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert_eq!(failed_stderr(&err), Some("boom\n"));
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let out = Cmd::new("echo").arg("$(id); rm -rf /").run().unwrap();
        assert_eq!(out.stdout, "$(id); rm -rf /\n");
    }
}
