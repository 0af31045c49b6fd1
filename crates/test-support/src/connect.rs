//! `tether connect` run as a user would: arguments, standard input, and
//! what it printed and returned.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// What one run of `tether connect` printed and returned.
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// `tether connect ARGS` started with its standard streams piped, ignoring
/// any proxy set in the environment; killed when dropped.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(crate::serve::tether_bin())
        .arg("connect")
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Run `tether connect ARGS` with `stdin` as its input (see [`spawn`]);
/// panics if it takes more than 30 s.
pub async fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = spawn(args);
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).await.unwrap();
    drop(pipe);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tether connect finished within 30 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
