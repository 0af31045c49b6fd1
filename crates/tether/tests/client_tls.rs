//! `wss://` against an in-process TLS server with the test-support PKI: a
//! private CA, a server certificate for `localhost`/127.0.0.1, and a client
//! certificate for mutual TLS.

use futures_util::StreamExt;
use std::sync::Arc;
use test_support::peer::tls_echo_server;
use test_support::tls::Pki;
use tether::tls::{acceptor_from_pem, load_certs, Roots, TlsOptions};
use tether::{ClientBuilder, Error, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn client_connects_over_tls_with_a_private_ca() {
    let pki = Pki::new();
    let port = tls_echo_server(pki.acceptor()).await;
    for host in ["localhost", "127.0.0.1"] {
        let (mut ws, _) = ClientBuilder::new(format!("wss://{host}:{port}/echo"))
            .no_proxy()
            .tls(
                TlsOptions::new()
                    .roots(Roots::None)
                    .ca_file(pki.path("ca.pem")),
            )
            .connect()
            .await
            .unwrap();
        assert!(ws.get_ref().is_tls());
        let session = ws.get_ref().tls_session().unwrap();
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        ws.send(Message::text("over tls")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
        let big = Message::binary(vec![7u8; 1 << 20]);
        ws.send(big.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), big);
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn client_rejects_certificate_from_unknown_ca() {
    let pki = Pki::new();
    let port = tls_echo_server(pki.acceptor()).await;
    let err = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .no_proxy()
        .tls(TlsOptions::new().roots(Roots::Mozilla))
        .connect()
        .await
        .unwrap_err();
    match err {
        Error::Tls(msg) => assert!(msg.contains("not signed by a trusted CA"), "{msg}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn client_rejects_certificate_for_another_name() {
    let pki = Pki::new();
    let port = tls_echo_server(pki.acceptor()).await;
    let err = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .no_proxy()
        .tls(
            TlsOptions::new()
                .roots(Roots::None)
                .ca_file(pki.path("ca.pem"))
                .server_name("other.example"),
        )
        .connect()
        .await
        .unwrap_err();
    match err {
        Error::Tls(msg) => assert!(msg.contains("not valid for that name"), "{msg}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn insecure_option_accepts_an_untrusted_certificate() {
    let pki = Pki::new();
    let port = tls_echo_server(pki.acceptor()).await;
    let (mut ws, _) = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .no_proxy()
        .tls(TlsOptions::new().danger_accept_invalid_certs(true))
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("x"));
}

#[tokio::test]
async fn tls_client_against_plain_http_server_explains_the_mismatch() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
    });
    let err = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .no_proxy()
        .tls(TlsOptions::new().danger_accept_invalid_certs(true))
        .connect()
        .await
        .unwrap_err();
    match err {
        Error::Tls(msg) => assert!(msg.contains("did not speak TLS"), "{msg}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn client_certificate_is_presented_when_the_server_requires_one() {
    let pki = Pki::new();
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&pki.path("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certs(&pki.path("server.pem")).unwrap(),
            tether::tls::load_key(&pki.path("server.key")).unwrap(),
        )
        .unwrap();
    let port = tls_echo_server(tokio_rustls::TlsAcceptor::from(Arc::new(config))).await;
    let url = format!("wss://localhost:{port}/");
    let trusting = || {
        TlsOptions::new()
            .roots(Roots::None)
            .ca_file(pki.path("ca.pem"))
    };

    let (mut ws, _) = ClientBuilder::new(&url)
        .no_proxy()
        .tls(trusting().client_cert(pki.path("client.pem"), pki.path("client.key")))
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("mutual")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("mutual"));

    // Without one, TLS 1.3 reports the refusal after the client's handshake
    // completes: the failure shows up at the latest when reading.
    let result = ClientBuilder::new(&url)
        .no_proxy()
        .tls(trusting())
        .connect()
        .await;
    match result {
        Err(e) => assert!(matches!(e, Error::Tls(_) | Error::Io(_)), "{e:?}"),
        Ok((mut ws, _)) => {
            let _ = ws.send(Message::text("x")).await;
            assert!(matches!(ws.next().await, Some(Err(_)) | None));
        }
    }
}

#[test]
fn tls_options_report_missing_and_invalid_files() {
    let err = TlsOptions::new()
        .ca_file("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot read certificate file"),
        "{err}"
    );
    let empty = std::env::temp_dir().join(format!("tether-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "not pem").unwrap();
    let err = TlsOptions::new().ca_file(&empty).build().unwrap_err();
    assert!(
        err.to_string().contains("contains no PEM certificate"),
        "{err}"
    );
    let Err(err) = acceptor_from_pem(&empty, &empty) else {
        panic!("an acceptor from a file without PEM")
    };
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    std::fs::remove_file(&empty).unwrap();
}
