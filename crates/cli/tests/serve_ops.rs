//! Operating `tether serve`: logs, `--check-config`, `/metrics` and the
//! admin listener, reloading with SIGHUP.

mod serve_support;

use serve_support::{status_of, Server};
use std::process::{Command, Stdio};

#[test]
fn logs_to_a_pipe_have_no_ansi_escapes() {
    let server = Server::with_args(&[]);
    assert_eq!(status_of(&server.get("/healthz")), 200);
    // The log is a file (not a terminal): plain text only.
    let log = server.log();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escape in a log written to a file:\n{log:?}"
    );
    drop(server);
    // And on a pipe, for a command that fails at once.
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "not-an-address"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.is_empty());
    assert!(!err.contains('\x1b'), "{err:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::with_args(&["--log-format", "json"]);
    assert_eq!(status_of(&server.get("/healthz")), 200);
    let log = server.log();
    let mut saw_listening = false;
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        saw_listening |= msg.contains("listening on");
    }
    assert!(saw_listening, "{log}");
}

fn check_config(toml: &str) -> (bool, String, String) {
    let dir = serve_support::TempDir::new();
    let toml = toml.replace("$DIR", dir.path().to_str().unwrap());
    let cfg = dir.write("tether.toml", &toml);
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--check-config", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_good_file_with_a_one_line_summary() {
    let (ok, out, err) = check_config(
        "[[listen]]\naddr = \"127.0.0.1:0\"\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n\
         [[route]]\npath = \"/chat/{room}\"\nkind = \"room\"\n",
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("configuration OK"), "{out}");
    assert!(out.contains("2 routes"), "{out}");
    // The built-in setup checks too, and nothing is bound.
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_config_fails_on_every_kind_of_problem() {
    let cases = [
        // Validation: a missing key of the route's kind.
        ("[[route]]\npath = \"/x\"\nkind = \"exec\"\n", "`command`"),
        // Parsing: a typo.
        ("[limits]\nmax_conections = 5\n", "max_conections"),
        // Not TOML at all.
        ("[[route]\n", "config"),
        // Startup checks: TLS files that cannot be loaded.
        (
            "[[listen]]\naddr = \"127.0.0.1:0\"\ntls_cert = \"$DIR/nope.pem\"\ntls_key = \"$DIR/nope.key\"\n",
            "nope.pem",
        ),
        ("[[listen]]\naddr = \"localhost\"\n", "listen[0].addr"),
    ];
    for (toml, want) in cases {
        let (ok, out, err) = check_config(toml);
        assert!(!ok, "accepted:\n{toml}\nstdout: {out}");
        assert!(err.contains(want), "{toml}\nstderr: {err}");
        assert!(!out.contains("configuration OK"), "{out}");
    }
}
