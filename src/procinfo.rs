//! Facts about other processes from `/proc` (owner, executable, command line, file locks) and
//! user names from `/etc/passwd`, for reporting who holds a lock and for identifying processes
//! before acting on them. Read-only; a process that vanishes mid-read yields `None`s.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The effective uid of this process. A syscall, not a read of `/proc/self/status`: archy asks
/// once per manifest and lock, and generating that file cost ~50 µs of kernel time a call
/// (a quarter of a no-op tick's own CPU, BENCHMARKS.md (c)).
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and always succeeds.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process (a syscall, like [`euid`]).
pub fn egid() -> u32 {
    // SAFETY: getegid(2) takes no arguments, touches no memory and always succeeds.
    unsafe { libc::getegid() }
}

/// Effective uid of `pid` (field 2 of the `Uid:` line), None if it is gone.
pub fn uid_of(pid: u32) -> Option<u32> {
    status_uid(&pid.to_string())
}

fn status_uid(pid: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
}

/// The executable `pid` runs (`/proc/PID/exe`), without a ` (deleted)` suffix. None if it is
/// gone or not ours to inspect.
pub fn exe_of(pid: u32) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let text = link.to_string_lossy();
    Some(PathBuf::from(
        text.strip_suffix(" (deleted)").unwrap_or(&text),
    ))
}

/// The argv of `pid` (empty if it is gone or a kernel thread).
pub fn cmdline_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The name of `uid` from `/etc/passwd`, or the number.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Whether two executables are the same file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// One process as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub command: Option<String>,
    pub exe: Option<PathBuf>,
}

impl Process {
    pub fn inspect(pid: u32) -> Self {
        let uid = uid_of(pid);
        let argv = cmdline_of(pid);
        Process {
            pid,
            uid,
            user: uid.map(user_name),
            command: (!argv.is_empty()).then(|| argv.join(" ")),
            exe: exe_of(pid),
        }
    }

    /// Whether this is archy (the same executable as this process) run by this process's user.
    pub fn is_our_archy(&self) -> bool {
        let ours = std::env::current_exe().ok();
        self.uid == Some(euid())
            && match (&self.exe, &ours) {
                (Some(theirs), Some(ours)) => theirs == ours || same_file(theirs, ours),
                _ => false,
            }
    }
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.user, self.uid) {
            (Some(user), Some(uid)) => write!(f, "pid {} (user {user}, uid {uid}", self.pid)?,
            _ => write!(f, "pid {} (exited or not visible", self.pid)?,
        }
        match &self.command {
            Some(command) => write!(f, ", command `{command}`)"),
            None => write!(f, ")"),
        }
    }
}

/// `MAJOR:MINOR` of a device number as `/proc/locks` prints it (two-digit hex each).
fn proc_locks_device(dev: u64) -> String {
    format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev))
}

/// Pids holding (not waiting for) a lock on the file with this device and inode, from
/// `/proc/locks` (lines like `1: FLOCK  ADVISORY  WRITE 2785 00:19:1331 0 EOF`; waiters are
/// marked `->`).
pub fn lock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    parse_lock_holders(&text, &format!("{}:{ino}", proc_locks_device(dev)))
}

fn parse_lock_holders(text: &str, file: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"->") || fields.get(5) != Some(&file) {
                return None;
            }
            fields.get(4)?.parse().ok()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_holders_skip_waiters_and_other_files() {
        let text = "1: FLOCK  ADVISORY  WRITE 2785 00:19:1331 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 2786 00:19:1331 0 EOF\n\
                    2: POSIX  ADVISORY  READ 99 00:19:1332 0 EOF\n\
                    3: OFDLCK ADVISORY  READ -1 00:19:1331 0 EOF\n";
        assert_eq!(parse_lock_holders(text, "00:19:1331"), vec![2785]);
        assert_eq!(proc_locks_device(libc::makedev(8, 1)), "08:01");
        assert_eq!(proc_locks_device(libc::makedev(259, 3)), "103:03");
    }

    #[test]
    fn this_process_is_described_and_recognised() {
        let me = Process::inspect(std::process::id());
        assert_eq!(me.uid, Some(euid()));
        assert!(me.is_our_archy());
        assert!(me
            .to_string()
            .starts_with(&format!("pid {} (user ", me.pid)));
        assert_eq!(user_name(0), "root");
    }
}
