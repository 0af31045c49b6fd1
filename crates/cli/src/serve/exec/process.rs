//! The program of an exec session: finding it at startup, starting it in
//! its own process group, signalling that group and ending it (stdin closed,
//! then SIGTERM, then SIGKILL), and the per-route count of running programs.

use super::pipes::{self, StdinFeed};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tether::Message;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Messages read from stdout that may wait for the socket.
const STDOUT_QUEUE: usize = 16;

/// Resolve a route's program as `execvp` would: a name with a `/` is a
/// path (relative to the server's directory), any other name is looked up
/// in `path` (`PATH`). It must be a regular file with an execute bit.
pub fn find_program(program: &str, path: Option<&OsStr>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = Path::new(program);
        return executable(p).map(|()| p.to_owned());
    }
    let path = path.unwrap_or(OsStr::new(super::env::DEFAULT_PATH));
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "program `{program}` is not an executable file in any PATH directory ({})",
        path.to_string_lossy()
    ))
}

/// Is `p` a regular file (after symlinks) with an execute bit?
fn executable(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = p.display();
    let meta = std::fs::metadata(p).map_err(|e| format!("program `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("program `{shown}` is not a regular file"));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "program `{shown}` is not executable (mode {:o}; chmod +x it)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// One running program's place in its route's count, freed on drop (after
/// the program has been waited for).
#[derive(Debug)]
pub struct ProcessSlot<'a>(&'a AtomicUsize);

impl<'a> ProcessSlot<'a> {
    /// A place for one more program, if fewer than `max` run (`running`
    /// counts them).
    pub fn acquire(running: &'a AtomicUsize, max: usize) -> Option<ProcessSlot<'a>> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ProcessSlot(running))
    }
}

impl Drop for ProcessSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running program and its pipes.
pub struct Program {
    child: Child,
    /// Its pid, which is also its process group's id.
    pid: u32,
    /// Its name, for the log.
    pub name: String,
    /// Its stdin, fed by a writer task (`None` once closed).
    pub stdin: Option<StdinFeed>,
    /// Messages made of its stdout; `None` from `recv` at end of file.
    pub stdout: mpsc::Receiver<Message>,
    stdout_task: JoinHandle<()>,
    reaped: bool,
}

impl Program {
    /// Start `command` with exactly `env`, in a new process group.
    pub fn spawn(
        command: &[String],
        env: Vec<(OsString, OsString)>,
        binary: bool,
        max_message_size: usize,
        stdin_timeout: Duration,
    ) -> std::io::Result<Program> {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let name = command[0].clone();
        let stdin = child
            .stdin
            .take()
            .map(|pipe| StdinFeed::start(pipe, stdin_timeout));
        let stdout = child.stdout.take().expect("piped stdout");
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pipes::log_stderr(stderr, name.clone(), pid));
        }
        let (tx, rx) = mpsc::channel(STDOUT_QUEUE);
        let stdout_task = tokio::spawn(pipes::read_stdout(stdout, binary, max_message_size, tx));
        Ok(Program {
            child,
            pid,
            name,
            stdin,
            stdout: rx,
            stdout_task,
            reaped: false,
        })
    }

    /// Close stdin now, dropping whatever input is still queued.
    pub fn close_stdin_now(&mut self) {
        self.stdin = None;
    }

    /// Close stdin once the input already queued is written.
    pub fn close_stdin_after_queued(&mut self) {
        if let Some(feed) = self.stdin.as_mut() {
            feed.finish();
        }
    }

    /// End the program: it has until `deadline` to exit by itself (its
    /// stdin is closed), then its process group gets SIGTERM, and SIGKILL
    /// `grace` later. Whatever is left of the group afterwards (background
    /// jobs) is killed too. Returns the exit code (`None`: a signal ended
    /// it).
    pub async fn finish(&mut self, deadline: Instant, grace: Duration) -> Option<i32> {
        self.close_stdin_now();
        let pid = self.pid;
        let status = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                tracing::info!(pid, program = %self.name, "program still running after its input closed: SIGTERM");
                self.signal_group(Signal::Term);
                match tokio::time::timeout(grace, self.child.wait()).await {
                    Ok(s) => s.ok(),
                    Err(_) => {
                        tracing::info!(pid, program = %self.name, "program still running {grace:?} after SIGTERM: SIGKILL");
                        self.signal_group(Signal::Kill);
                        // Kills the leader (if the group kill missed it) and waits.
                        let _ = self.child.kill().await;
                        None
                    }
                }
            }
        };
        self.reaped = true;
        // Background jobs the program left behind (its group outlives it).
        self.signal_group(Signal::Kill);
        status.and_then(|s| s.code())
    }

    fn signal_group(&self, signal: Signal) {
        signal_group(self.pid, signal);
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stdout_task.abort();
        if !self.reaped {
            // Cancelled or panicked before `finish`: `kill_on_drop` gets
            // the leader (tokio reaps it), the group kill the rest.
            self.signal_group(Signal::Kill);
        }
    }
}

/// The signals sent to a program's group.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Signal every process in the group `pgid`; a group already gone is fine.
fn signal_group(pgid: u32, signal: Signal) {
    use rustix::process::{kill_process_group, Pid, Signal as S};
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    let sig = match signal {
        Signal::Term => S::TERM,
        Signal::Kill => S::KILL,
    };
    if let Err(e) = kill_process_group(pid, sig) {
        if e != rustix::io::Errno::SRCH {
            tracing::warn!(pgid, "cannot signal the program's process group: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        let path = std::env::var_os("PATH");
        assert!(find_program("sh", path.as_deref()).unwrap().ends_with("sh"));
        let e = find_program("no-such-program-x", Some(OsStr::new("/bin:/usr/bin"))).unwrap_err();
        assert!(
            e.contains("no-such-program-x") && e.contains("/bin:/usr/bin"),
            "{e}"
        );
        let e = find_program("/nonexistent/program", None).unwrap_err();
        assert!(e.contains("/nonexistent/program"), "{e}");
        let e = find_program("/", None).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_count_refuses_beyond_its_maximum_and_frees_on_drop() {
        let running = AtomicUsize::new(0);
        let a = ProcessSlot::acquire(&running, 2).unwrap();
        let _b = ProcessSlot::acquire(&running, 2).unwrap();
        assert!(ProcessSlot::acquire(&running, 2).is_none());
        drop(a);
        assert_eq!(running.load(Ordering::Relaxed), 1);
        assert!(ProcessSlot::acquire(&running, 2).is_some());
    }
}
