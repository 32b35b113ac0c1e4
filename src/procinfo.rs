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

/// Whether this process may lower an OOM score (`oom_score_adj` below 0): the kernel asks for
/// CAP_SYS_RESOURCE (proc(5)), which podman's runtime inherits from archy. Root in a container
/// or a sandbox may lack it (runc then fails "can't get final child's PID from pipe"), as does
/// any rootless user. Read once per process from `/proc/self/status` (`CapEff`, bit 24).
pub fn can_lower_oom_score() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            })
            .is_some_and(|caps| caps & (1 << 24) != 0)
    })
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

/// A `podman exec` session of a container, found from its conmon (which outlives a killed
/// `podman exec` client and keeps the session's process running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSession {
    pub conmon: u32,
    /// The session's process (host pid), a child of the conmon; None once it exited.
    pub process: Option<u32>,
    /// Its argv.
    pub argv: Vec<String>,
}

/// Whether a conmon's argv is an exec session's (`-e`/`--exec-process-spec`) for the
/// container with this full id (`-c ID`), and its pidfile (`-p PATH`). Pure.
fn exec_conmon_pidfile(argv: &[String], container_id: &str) -> Option<String> {
    if !argv.first().is_some_and(|a| a.ends_with("conmon")) {
        return None;
    }
    let value = |flag: &str| argv.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let exec = argv.iter().any(|a| a == "--exec-process-spec" || a == "-e");
    (exec && value("-c").as_deref() == Some(container_id)).then(|| value("-p"))?
}

/// The parent pid of `pid` (`/proc/PID/stat` field 4), None if it is gone.
pub fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The live `podman exec` sessions of the container with this full id: one `/proc` scan.
pub fn exec_sessions(container_id: &str) -> Vec<ExecSession> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut sessions = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let argv = cmdline_of(pid);
        let Some(pidfile) = exec_conmon_pidfile(&argv, container_id) else {
            continue;
        };
        let process = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|child| ppid_of(*child) == Some(pid));
        sessions.push(ExecSession {
            conmon: pid,
            process,
            argv: process.map(cmdline_of).unwrap_or_default(),
        });
    }
    sessions
}

/// `MAJOR:MINOR` of a device number as `/proc/locks` prints it (two-digit hex each).
fn proc_locks_device(dev: u64) -> String {
    format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev))
}

/// Pids holding (not waiting for) a lock on the file with this device and inode, from
/// `/proc/locks` (lines like `1: FLOCK  ADVISORY  WRITE 2785 00:19:1331 0 EOF`; waiters are
/// marked `->`).
///
/// `/proc/locks` names the process that *took* a lock; an `flock` belongs to the open file,
/// so when that process exited and a child inherited the descriptor (a shell's `flock 9`, a
/// daemonised fork) it names a dead or innocent pid. The processes that hold it now are those
/// with a descriptor on the file whose `/proc/PID/fdinfo` lists a lock: they are returned when
/// any are found (one `/proc` scan; only a run whose lock stayed busy asks).
pub fn lock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let listed = parse_lock_holders(&text, &format!("{}:{ino}", proc_locks_device(dev)));
    if listed.is_empty() {
        return listed;
    }
    let holding = fd_lock_holders(dev, ino);
    if holding.is_empty() {
        listed
    } else {
        holding
    }
}

/// Pids with an open descriptor on the file (device, inode) whose fdinfo shows a lock.
fn fd_lock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
                    && std::fs::read_to_string(format!(
                        "/proc/{pid}/fdinfo/{}",
                        fd.file_name().to_string_lossy()
                    ))
                    .is_ok_and(|info| info.lines().any(|l| l.starts_with("lock:")))
            })
        })
        .collect();
    pids.sort_unstable();
    pids
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
    fn exec_conmons_are_told_from_the_containers_own() {
        let argv = |text: &str| text.split(' ').map(String::from).collect::<Vec<_>>();
        let exec = argv("/usr/bin/conmon --api-version 1 -c abc -u f0e -r /usr/bin/runc -p /run/x/f0e/exec_pid -n web -e --exec-attach --exec-process-spec /run/x/f0e/exec-process-1");
        assert_eq!(
            exec_conmon_pidfile(&exec, "abc").as_deref(),
            Some("/run/x/f0e/exec_pid")
        );
        assert_eq!(exec_conmon_pidfile(&exec, "abd"), None);
        let main = argv("/usr/bin/conmon --api-version 1 -c abc -u abc -r /usr/bin/runc -p /run/x/pidfile -n web");
        assert_eq!(exec_conmon_pidfile(&main, "abc"), None);
        assert_eq!(
            exec_conmon_pidfile(&argv("/bin/sleep -c abc -e -p x"), "abc"),
            None
        );
        assert_eq!(
            ppid_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }

    /// The lock was taken by `flock 9` (a process that exits at once) on a descriptor a
    /// background `sleep` inherited: the holder named is the sleep, not the dead taker.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test makes the lock holders itself
    fn the_holder_is_the_process_holding_the_lock_not_the_one_that_took_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reconcile.lock");
        std::fs::write(&file, "").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 9>>\"$0\"; flock -x 9; sleep 30 >/dev/null 2>&1 & echo $!")
            .arg(&file)
            .output()
            .unwrap();
        let sleeper: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let holders = lock_holders(meta.dev(), meta.ino());
        // SAFETY: kill(2) on the pid this test started.
        unsafe {
            libc::kill(sleeper as i32, libc::SIGKILL);
        }
        assert_eq!(holders, vec![sleeper]);
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
