//! `tether::connect` takes what a tungstenite user passes: a URL string, a
//! parsed URL, or an `http::Request` carrying headers and subprotocols.

use tether::{Accept, Reject};
use tokio::net::TcpListener;

/// A server that accepts when `x-token: secret` is present, chooses the
/// client's first subprotocol, and echoes the `Origin` in `x-origin`.
async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let incoming = tether::ServerBuilder::new().read_request(tcp).await?;
                if incoming.header("x-token").map(|v| v.as_bytes()) != Some(b"secret") {
                    return incoming.reject(Reject::forbidden("no token\n")).await;
                }
                let mut accept = Accept::default();
                if let Some(p) = incoming.protocols().first() {
                    accept = accept.protocol(p.clone());
                }
                if let Some(o) = incoming.origin() {
                    accept = accept.header(
                        http::HeaderName::from_static("x-origin"),
                        http::HeaderValue::from_str(o).unwrap(),
                    );
                }
                let mut ws = incoming.accept(accept).await?;
                while let Some(Ok(_)) = ws.recv().await {}
                Ok::<_, tether::Error>(())
            });
        }
    });
    addr
}

#[tokio::test]
async fn connect_takes_a_request_with_headers_subprotocols_and_origin() {
    let addr = server().await;
    let request = http::Request::get(format!("ws://{addr}/chat"))
        .header("x-token", "secret")
        .header("sec-websocket-protocol", "chat.v2, chat.v1")
        .header("origin", "https://app.example")
        .body(())
        .unwrap();
    let (_ws, response) = tether::connect(request).await.expect("handshake");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(response.headers()["x-origin"], "https://app.example");
}

#[tokio::test]
async fn connect_takes_strings_and_urls() {
    let addr = server().await;
    let url = format!("ws://{addr}/chat");
    let err = tether::connect(url.as_str()).await.expect_err("no token");
    assert_eq!(err.refused_status(), Some(http::StatusCode::FORBIDDEN));
    let err = tether::connect(&url).await.expect_err("no token");
    assert_eq!(err.refused_status(), Some(http::StatusCode::FORBIDDEN));
    let parsed = url::Url::parse(&url).unwrap();
    let err = tether::connect(parsed).await.expect_err("no token");
    assert_eq!(err.refused_status(), Some(http::StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn a_request_whose_handshake_headers_are_set_still_connects() {
    // Requests built for tungstenite carry the handshake's own headers.
    let addr = server().await;
    let request = http::Request::get(format!("ws://{addr}/chat"))
        .header("host", addr.to_string())
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("x-token", "secret")
        .body(())
        .unwrap();
    tether::connect(request).await.expect("handshake");
}

#[test]
fn a_request_with_a_bad_uri_scheme_names_it() {
    use tether::IntoClientRequest;
    let request = http::Request::get("ftp://example.com/").body(()).unwrap();
    let builder = request.into_client_request().expect("converted");
    let err = builder.target().expect_err("ftp is not a WebSocket scheme");
    assert!(err.to_string().contains("ftp"), "{err}");
}
