//! `tether connect` to a `wss://` server with a certificate from a private
//! CA (the test-support PKI): `--cacert`, the error without it, `--insecure`.

use std::path::PathBuf;
use std::process::Stdio;

/// A `wss://` echo server with the certificate in `dir` (`server.pem`,
/// `server.key`).
async fn wss_echo(dir: &std::path::Path) -> u16 {
    let acceptor =
        tether::tls::acceptor_from_pem(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
    test_support::peer::tls_echo_server(acceptor).await
}

async fn run(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let r = test_support::connect::run(args, input).await;
    (r.code, r.stdout, r.stderr)
}

#[tokio::test]
async fn connect_wss_with_cacert_without_it_and_insecure() {
    let pki = test_support::tls::Pki::new();
    let port = wss_echo(pki.dir()).await;
    let url = format!("wss://localhost:{port}/");
    let ca = pki.path("ca.pem");

    let (code, out, err) = run(&["--cacert", ca.to_str().unwrap(), &url], b"secret\n").await;
    assert_eq!((code, out.as_str()), (0, "secret\n"), "{err}");

    let (code, out, err) = run(&["--jsonl", "--cacert", ca.to_str().unwrap(), &url], b"").await;
    assert_eq!(code, 0, "{err}");
    let open: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(
        open["tls"].as_str().unwrap().starts_with("TLSv1_3"),
        "the open event names the TLS version: {open}"
    );

    let (code, out, err) = run(&[&url], b"secret\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    assert!(err.contains("--cacert"), "the error names the fix: {err}");

    let (code, out, err) = run(&["--insecure", &url], b"secret\n").await;
    assert_eq!((code, out.as_str()), (0, "secret\n"), "{err}");
    assert!(err.contains("WARNING: --insecure"), "{err}");
}

/// A self-signed certificate from the usual `openssl req -x509` one-liner
/// (CA:TRUE, as openssl marks it) into server.pem / server.key.
fn openssl_self_signed(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tether-connect-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    dir
}

#[tokio::test]
async fn connect_cacert_trusts_an_openssl_self_signed_server_certificate() {
    let dir = openssl_self_signed("pinned");
    let other = openssl_self_signed("other");
    let port = wss_echo(&dir).await;
    let cert = dir.join("server.pem");
    let cacert = cert.to_str().unwrap();

    let url = format!("wss://localhost:{port}/");
    let (code, out, err) = run(&["--cacert", cacert, &url], b"pinned\n").await;
    assert_eq!((code, out.as_str()), (0, "pinned\n"), "{err}");

    // The certificate is for `localhost`, not for the address.
    let by_address = format!("wss://127.0.0.1:{port}/");
    let (code, _, err) = run(&["--cacert", cacert, &by_address], b"x\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not valid for that name"), "{err}");

    // Another self-signed certificate in --cacert is not the server's.
    let wrong = other.join("server.pem");
    let (code, _, err) = run(&["--cacert", wrong.to_str().unwrap(), &url], b"x\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not the one in a CA file") && err.contains("--cacert"),
        "{err}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[tokio::test]
async fn connect_ws_to_a_tls_port_asks_whether_it_is_wss() {
    let dir = openssl_self_signed("plain");
    let port = wss_echo(&dir).await;
    let (code, _, err) = run(&[&format!("ws://localhost:{port}/")], b"x\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is it wss://"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
