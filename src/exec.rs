//! One wrapper for every external command: argv built in one place, logged at debug level,
//! stdout and stderr captured, and a failure carries the command line and the tail of stderr.
//! Never a shell: arguments reach the program literally.

use std::ffi::{OsStr, OsString};

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// How many trailing stderr lines a failure carries (enough for podman's error, not a build log).
const STDERR_TAIL_LINES: usize = 15;

/// Lines podman prints on stderr that are noise in this environment, not errors.
const NOISE: &[&str] = &["failed to connect to syslog"];

/// What kind of work a command does: each kind has its own time limit ([`Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Queries that return at once on a healthy engine: `ps`, `inspect`, `info`, `images` …
    Listing,
    /// Creating, starting, stopping, removing a container: the app's stop timeout plus
    /// [`Limits::stop_margin`] (podman may wait the whole stop timeout before SIGKILL).
    Lifecycle { stop_timeout_secs: u32 },
    /// `podman build`.
    Build,
    /// An app's `restart_command`.
    RestartCommand,
    /// A health probe (`podman exec`): its own limit, given with [`Cmd::with_limit`].
    Probe,
    /// Everything else (runc, ip, iptables, CNI plugins, umount …).
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Listing => "listing",
            Kind::Lifecycle { .. } => "start/stop",
            Kind::Build => "build",
            Kind::RestartCommand => "restart command",
            Kind::Probe => "health probe",
            Kind::Other => "command",
        }
    }
}

/// Time limits per [`Kind`], set once per process from the global options.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub listing: Duration,
    pub stop_margin: Duration,
    pub build: Duration,
    pub restart_command: Duration,
    pub other: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            listing: Duration::from_secs(60),
            stop_margin: Duration::from_secs(60),
            build: Duration::from_secs(600),
            restart_command: Duration::from_secs(120),
            other: Duration::from_secs(120),
        }
    }
}

impl Limits {
    pub fn for_kind(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Listing => self.listing,
            Kind::Lifecycle { stop_timeout_secs } => {
                Duration::from_secs(u64::from(stop_timeout_secs)) + self.stop_margin
            }
            Kind::Build => self.build,
            Kind::RestartCommand => self.restart_command,
            Kind::Probe | Kind::Other => self.other,
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();
/// The run's deadline (a tick's budget): no command runs past it.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Set the per-kind limits for this process (first call wins).
pub fn set_limits(limits: Limits) {
    let _ = LIMITS.set(limits);
}

pub fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// Bound every later command of this process by `deadline` (a tick's total budget).
pub fn set_deadline(deadline: Option<Instant>) {
    *DEADLINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = deadline;
}

pub fn deadline() -> Option<Instant> {
    *DEADLINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A command ran past its time limit; its process group was killed.
#[derive(Debug)]
pub struct TimedOut {
    pub command_line: String,
    pub kind: Kind,
    pub limit: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` did not finish within its {} time limit of {}; killed it and its process group",
            self.command_line,
            self.kind.as_str(),
            humantime::format_duration(Duration::from_secs(self.limit.as_secs().max(1)))
        )
    }
}
impl std::error::Error for TimedOut {}

/// Whether an error chain holds a timeout (the command did not answer).
pub fn timed_out(err: &anyhow::Error) -> Option<&TimedOut> {
    err.chain().find_map(|c| c.downcast_ref::<TimedOut>())
}

/// Process groups of the children running now, ended when archy gets SIGTERM/SIGINT.
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn unregister_child(pgid: i32) {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|p| *p != pgid);
}

/// SIGKILL one process that is not archy's child (a `podman exec` session's process, which
/// its conmon keeps after the client is killed). The caller identified it from `/proc`.
pub fn kill_process(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 1 {
            // SAFETY: kill(2) on one pid; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// SIGKILL a whole process group.
fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the group; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// On SIGTERM or SIGINT: kill every running child's process group and exit 128+signal. Locks
/// are flocks, released when the process exits; temp files are swept by the next run.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) else {
        tracing::warn!("could not install SIGTERM/SIGINT handlers");
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            // Held until the exit, so no new child starts after the kill.
            let groups = CHILDREN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for pgid in groups.iter() {
                kill_group(*pgid);
            }
            eprintln!(
                "archy: got signal {sig}; ended {} child process group(s), exiting",
                groups.len()
            );
            std::process::exit(128 + sig);
        }
    });
}

/// A command to run: program plus arguments, built by the typed wrappers (`podman.rs` …).
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    kind: Kind,
    /// A limit set by the caller instead of its kind's.
    limit: Option<Duration>,
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
            env: Vec::new(),
            stdin: None,
            kind: Kind::Other,
            limit: None,
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

    /// Set an environment variable for the child (inherited environment otherwise).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Which time limit applies (default [`Kind::Other`]).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Use this time limit instead of the kind's (still cut to the run's deadline).
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
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

    /// This command's time limit: its kind's limit, cut to the run's deadline.
    pub fn limit(&self) -> Duration {
        let limit = self.limit.unwrap_or_else(|| limits().for_kind(self.kind));
        match deadline() {
            Some(deadline) => limit.min(deadline.saturating_duration_since(Instant::now())),
            None => limit,
        }
    }

    /// Run to completion and return its output whatever the exit code. Past its time limit the
    /// child's whole process group is killed and the error is [`TimedOut`].
    pub fn run_unchecked(&self) -> Result<Output> {
        let mut stdout = Vec::new();
        let (code, stderr) = self.spawn_and_wait(Stdout::Capture(&mut stdout), &mut |_| {})?;
        Ok(self.output_of(code, stdout, stderr))
    }

    /// The [`Output`] of a finished child (a failure logged at debug).
    fn output_of(&self, code: i32, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
        let output = Output {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        if !output.success() {
            tracing::debug!(command = %self.display(), code = output.code, stderr = %tail(&output.stderr, STDERR_TAIL_LINES), "command failed");
        }
        output
    }

    /// Run with stderr merged into stdout, handing each output line (decoded lossily: a
    /// non-UTF-8 byte never ends the read) to `on_line`; returns the exit code and every line.
    pub fn run_lines(&self, on_line: &mut dyn FnMut(&str)) -> Result<(i32, Vec<String>)> {
        let mut lines = Vec::new();
        let mut collect = |line: &str| {
            on_line(line);
            lines.push(line.to_string());
        };
        let (code, _) = self.spawn_and_wait(Stdout::MergedLines, &mut collect)?;
        Ok((code, lines))
    }

    fn spawn_and_wait(
        &self,
        mode: Stdout<'_>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(i32, Vec<u8>)> {
        self.spawn()?.wait(self, mode, on_line)
    }

    /// Start the child (its own process group, registered for the signal handler, a watchdog
    /// for its time limit); [`Started::wait`] collects it.
    fn spawn(&self) -> Result<Started> {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        tracing::debug!(command = %self.display(), "running");
        let limit = self.limit();
        if limit.is_zero() {
            return Err(anyhow::Error::new(TimedOut {
                command_line: self.display(),
                kind: self.kind,
                limit,
            }))
            .context("the run's time budget is used up");
        }
        #[allow(clippy::disallowed_methods)] // the one place archy spawns a process
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout or archy's SIGTERM ends the whole tree.
            .process_group(0);
        // Spawned and registered under the registry's lock, which the signal handler holds
        // from its kill to the exit: no child can start unseen by it.
        let mut registry = CHILDREN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("failed to start `{}`: {e}", self.display()))?;
        let pgid = child.id() as i32;
        registry.push(pgid);
        drop(registry);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let fired = fired.clone();
            std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(limit)
                {
                    fired.store(true, std::sync::atomic::Ordering::SeqCst);
                    kill_group(pgid);
                }
            })
        };
        let stdin_thread = match (child.stdin.take(), &self.stdin) {
            (Some(mut pipe), Some(bytes)) => {
                let bytes = bytes.clone();
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(&bytes);
                }))
            }
            _ => None,
        };
        Ok(Started {
            child,
            pgid,
            limit,
            done_tx,
            fired,
            watchdog,
            stdin_thread,
        })
    }

    /// Start the command now, in this thread (its child runs at once, with no wait for another
    /// thread to be scheduled first), and collect it later, from any thread, with
    /// [`Pending::json`]. The same time limit, process group, registration and errors as
    /// [`Cmd::run_json`].
    pub fn start(self) -> Result<Pending> {
        let started = self.spawn()?;
        Ok(Pending { cmd: self, started })
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

/// A child [`Cmd::spawn`] started, not yet waited for.
struct Started {
    child: std::process::Child,
    pgid: i32,
    limit: Duration,
    done_tx: std::sync::mpsc::Sender<()>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watchdog: std::thread::JoinHandle<()>,
    stdin_thread: Option<std::thread::JoinHandle<()>>,
}

impl Started {
    /// Read its output (as `mode` says) and wait for it; its exit code and stderr. `cmd` is the
    /// command it was started from (for errors and logs).
    fn wait(
        self,
        cmd: &Cmd,
        mode: Stdout<'_>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(i32, Vec<u8>)> {
        use std::io::{BufRead, Read};
        let Started {
            mut child,
            pgid,
            limit,
            done_tx,
            fired,
            watchdog,
            stdin_thread,
        } = self;
        let mut stderr_pipe = child.stderr.take();
        let mut stdout_pipe = child.stdout.take();
        let mut stderr = Vec::new();
        match mode {
            Stdout::Capture(buf) => {
                let err_thread = stderr_pipe.take().map(|mut p| {
                    std::thread::spawn(move || {
                        let mut b = Vec::new();
                        let _ = p.read_to_end(&mut b);
                        b
                    })
                });
                if let Some(p) = stdout_pipe.as_mut() {
                    let _ = p.read_to_end(buf);
                }
                if let Some(t) = err_thread {
                    stderr = t.join().unwrap_or_default();
                }
            }
            Stdout::MergedLines => {
                let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
                let mut readers = Vec::new();
                for pipe in [
                    stdout_pipe
                        .take()
                        .map(|p| Box::new(p) as Box<dyn Read + Send>),
                    stderr_pipe
                        .take()
                        .map(|p| Box::new(p) as Box<dyn Read + Send>),
                ]
                .into_iter()
                .flatten()
                {
                    let tx = tx.clone();
                    readers.push(std::thread::spawn(move || {
                        let mut reader = std::io::BufReader::new(pipe);
                        let mut line = Vec::new();
                        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                            let _ = tx.send(std::mem::take(&mut line));
                        }
                    }));
                }
                drop(tx);
                for raw in rx {
                    on_line(String::from_utf8_lossy(&raw).trim_end());
                }
                for r in readers {
                    let _ = r.join();
                }
            }
        }
        let status = child.wait();
        let _ = done_tx.send(());
        let _ = watchdog.join();
        if let Some(t) = stdin_thread {
            let _ = t.join();
        }
        unregister_child(pgid);
        let status =
            status.map_err(|e| anyhow::anyhow!("failed to wait for `{}`: {e}", cmd.display()))?;
        if fired.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(command = %cmd.display(), "timed out after {limit:?}; process group killed");
            return Err(anyhow::Error::new(TimedOut {
                command_line: cmd.display(),
                kind: cmd.kind,
                limit,
            }));
        }
        Ok((status.code().unwrap_or(-1), stderr))
    }
}

/// A command started with [`Cmd::start`]: collect it with [`Pending::json`].
pub struct Pending {
    cmd: Cmd,
    started: Started,
}

impl Pending {
    /// Wait for it and parse its stdout as JSON, exactly as [`Cmd::run_json`] would have.
    pub fn json<T: DeserializeOwned + Default>(self) -> Result<T> {
        let mut stdout = Vec::new();
        let (code, stderr) =
            self.started
                .wait(&self.cmd, Stdout::Capture(&mut stdout), &mut |_| {})?;
        let output = self.cmd.output_of(code, stdout, stderr);
        if !output.success() {
            return Err(self.cmd.failure(&output));
        }
        parse_json(&output.stdout).with_context(|| {
            format!(
                "failed to parse the JSON output of `{}`",
                self.cmd.display()
            )
        })
    }
}

/// Where a child's stdout goes.
enum Stdout<'a> {
    /// Into this buffer (stderr captured separately).
    Capture(&'a mut Vec<u8>),
    /// Lines of stdout and stderr, merged, to a callback.
    MergedLines,
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
    fn a_command_past_its_limit_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        // The shell starts a grandchild (same process group) that would outlive a plain kill.
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        set_deadline(None);
        let err = Cmd::new("sh")
            .args(["-c", &script])
            .kind(Kind::Lifecycle {
                stop_timeout_secs: 0,
            })
            .with_limit(Duration::from_millis(300))
            .run()
            .unwrap_err();
        let timeout = timed_out(&err).expect("a TimedOut error");
        assert_eq!(timeout.kind.as_str(), "start/stop");
        assert!(err.to_string().contains("did not finish within"), "{err:#}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL takes effect asynchronously; reaped by init once dead (a zombie counts).
        let dead = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty()
                || state
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        };
        let started = Instant::now();
        while !dead() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            dead(),
            "grandchild {pid} survived SIGKILL of its process group"
        );
    }

    #[test]
    fn non_utf8_output_is_read_to_the_end_lossily() {
        let mut seen = Vec::new();
        let (code, lines) = Cmd::new("printf")
            .arg(r"a\377b\nsecond\n")
            .run_lines(&mut |l| seen.push(l.to_string()))
            .unwrap();
        assert_eq!(code, 0);
        assert_eq!(lines, vec!["a\u{FFFD}b".to_string(), "second".to_string()]);
        assert_eq!(seen, lines);
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let out = Cmd::new("echo").arg("$(id); rm -rf /").run().unwrap();
        assert_eq!(out.stdout, "$(id); rm -rf /\n");
    }
}
