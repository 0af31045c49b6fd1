//! `tether bench --soak` against a real `tether serve`: a short run with
//! every kind of connection must pass its own checks, and its counts must
//! agree with the server's `/metrics`.

use serde_json::Value;
use test_support::serve::Server;

const CONFIG: &str = r#"
[[listen]]
addr = "127.0.0.1:0"

[[route]]
path = "/echo"
kind = "echo"

[[route]]
path = "/chat/{room}"
kind = "room"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_path = "/api/publish"
publish_token = "soak-token"

[[route]]
path = "/exec"
kind = "exec"
command = ["cat"]
"#;

/// Run `tether bench --soak` for a few seconds against `server`.
fn soak(server: &Server, extra: &[&str]) -> (bool, Value, String) {
    let pid = server.pid().to_string();
    let url = format!("ws://{}", server.addr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", "--soak", &url, "--server-pid", &pid])
        .args([
            "-c",
            "24",
            "-t",
            "4s",
            "--lifetime",
            "1s",
            "--interval",
            "100ms",
        ])
        .args([
            "--sample-every",
            "500ms",
            "--warmup",
            "1s",
            "--drain-timeout",
            "10s",
        ])
        .args(["--publish-token", "soak-token", "--publish-rate", "50"])
        // Three seconds of two dozen connections say nothing about growth:
        // the memory checks run, but on a loose bound.
        .args(["--tolerance", "100"])
        .args(["--json", "--log", "warn"])
        .args(extra)
        .output()
        .expect("run tether bench --soak");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), report, stderr)
}

#[test]
fn a_short_soak_with_every_kind_of_connection_passes_and_matches_the_servers_counts() {
    let server = Server::with_config(CONFIG);
    let (ok, r, stderr) = soak(&server, &[]);
    let failed: Vec<&Value> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(
        ok && failed.is_empty(),
        "failed: {failed:?}\nerrors: {}\n{stderr}",
        r["totals"]["error_samples"]
    );

    let t = &r["totals"];
    for kind in ["echo", "room", "pubsub", "exec", "slow", "reset"] {
        assert!(t["connected"][kind].as_u64().unwrap() > 0, "no {kind}: {t}");
    }
    let made = t["connected_total"].as_u64().unwrap();
    assert!(made > 24, "connections were not replaced: {made}");
    // The server's own counters, read independently of the generator.
    assert_eq!(server.metric("tether_connections_total"), made);
    assert_eq!(server.metric("tether_connections_open"), 0);
    let counted: u64 = r["server_closes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, made);
    assert_eq!(
        r["server_closes"]["1000"], t["seen"]["1000"],
        "normal closes differ: {r}"
    );
    assert!(t["seen"]["reset"].as_u64().unwrap() > 0, "{t}");
    assert!(t["messages_received"].as_u64().unwrap() > 0);
    assert!(t["http_publishes"]["200"].as_u64().unwrap() > 0, "{t}");
}

#[test]
fn a_soak_fails_when_the_server_refuses_connections() {
    // One connection per IP: the generator's others are refused (429),
    // which the "connections opened" check does not accept; the refusals
    // themselves are accounted on both sides.
    let server = Server::with_config(&format!("{CONFIG}\n[limits]\nmax_connections_per_ip = 1\n"));
    let (ok, r, _) = soak(&server, &["--mix", "echo=1"]);
    assert!(!ok, "{r}");
    let check = |name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .clone()
    };
    assert_eq!(check("refusals accounted")["passed"], true, "{r}");
    assert_eq!(check("close codes accounted")["passed"], true, "{r}");
    assert!(r["totals"]["rejected"]["429"].as_u64().unwrap() > 0, "{r}");
}
