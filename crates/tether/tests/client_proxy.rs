//! The client through proxies: tiny in-process SOCKS5 and HTTP CONNECT
//! proxies in front of a Tether echo server. (A real proxy, tinyproxy, is
//! exercised by scripts/interop/run.sh.)

use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use tether::proxy::{Proxy, ProxyKind};
use tether::{ClientBuilder, Error, Message};
use tokio::io::{copy_bidirectional, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tether::accept(tcp).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_data() {
                        ws.send(m).await.unwrap();
                    }
                }
            });
        }
    });
    port
}

/// What a proxy saw: the target of each tunnel.
type Log = Arc<Mutex<Vec<String>>>;

/// A SOCKS5 server (RFC 1928) accepting no-auth, or only user/pass
/// (RFC 1929) when `creds` is set. `localhost` is the only name it resolves.
async fn socks5_server(creds: Option<(&'static str, &'static str)>) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                c.read_exact(&mut head).await.unwrap();
                let mut methods = vec![0u8; head[1] as usize];
                c.read_exact(&mut methods).await.unwrap();
                let want = if creds.is_some() { 2 } else { 0 };
                if !methods.contains(&want) {
                    c.write_all(&[5, 0xFF]).await.unwrap();
                    return;
                }
                c.write_all(&[5, want]).await.unwrap();
                if let Some((user, pass)) = creds {
                    let mut v = [0u8; 2];
                    c.read_exact(&mut v).await.unwrap();
                    let mut u = vec![0u8; v[1] as usize];
                    c.read_exact(&mut u).await.unwrap();
                    let mut l = [0u8; 1];
                    c.read_exact(&mut l).await.unwrap();
                    let mut p = vec![0u8; l[0] as usize];
                    c.read_exact(&mut p).await.unwrap();
                    let ok = u == user.as_bytes() && p == pass.as_bytes();
                    c.write_all(&[1, if ok { 0 } else { 1 }]).await.unwrap();
                    if !ok {
                        return;
                    }
                }
                let mut req = [0u8; 4];
                c.read_exact(&mut req).await.unwrap();
                let host = match req[3] {
                    1 => {
                        let mut a = [0u8; 4];
                        c.read_exact(&mut a).await.unwrap();
                        std::net::Ipv4Addr::from(a).to_string()
                    }
                    3 => {
                        let mut l = [0u8; 1];
                        c.read_exact(&mut l).await.unwrap();
                        let mut n = vec![0u8; l[0] as usize];
                        c.read_exact(&mut n).await.unwrap();
                        String::from_utf8(n).unwrap()
                    }
                    t => panic!("address type {t}"),
                };
                let mut p = [0u8; 2];
                c.read_exact(&mut p).await.unwrap();
                let port = u16::from_be_bytes(p);
                seen.lock().unwrap().push(format!("{host}:{port}"));
                let addr = if host == "localhost" {
                    "127.0.0.1".into()
                } else {
                    host
                };
                match TcpStream::connect((addr.as_str(), port)).await {
                    Ok(mut up) => {
                        c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                            .await
                            .unwrap();
                        let _ = copy_bidirectional(&mut c, &mut up).await;
                    }
                    Err(_) => c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap(),
                }
            });
        }
    });
    (port, log)
}

/// An HTTP CONNECT proxy that requires `Proxy-Authorization` when `auth`
/// (the expected header value) is set.
async fn connect_proxy(auth: Option<&'static str>) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if c.read(&mut b).await.unwrap() == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8(head).unwrap();
                let target = text.split(' ').nth(1).unwrap().to_owned();
                seen.lock().unwrap().push(text.clone());
                if let Some(expected) = auth {
                    let line = format!("Proxy-Authorization: {expected}\r\n");
                    if !text.contains(&line) {
                        c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        return;
                    }
                }
                let mut up = TcpStream::connect(target.as_str()).await.unwrap();
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    (port, log)
}

async fn round_trip(builder: ClientBuilder) -> Result<(), Error> {
    let (mut ws, _) = builder.connect().await?;
    ws.send(Message::text("through the tunnel")).await?;
    assert_eq!(
        ws.next().await.unwrap()?,
        Message::text("through the tunnel")
    );
    ws.close(None).await
}

#[tokio::test]
async fn client_tunnels_through_socks5_with_local_and_remote_dns() {
    let echo = echo_server().await;
    let (proxy, log) = socks5_server(None).await;
    let url = format!("ws://localhost:{echo}/echo");
    round_trip(
        ClientBuilder::new(&url)
            .proxy(Proxy::parse(&format!("socks5h://127.0.0.1:{proxy}")).unwrap()),
    )
    .await
    .unwrap();
    round_trip(
        ClientBuilder::new(&url)
            .proxy(Proxy::parse(&format!("socks5://127.0.0.1:{proxy}")).unwrap()),
    )
    .await
    .unwrap();
    let seen = log.lock().unwrap().clone();
    // socks5h sends the name; socks5 resolves it locally and sends an address.
    assert_eq!(seen[0], format!("localhost:{echo}"));
    assert!(
        seen[1].ends_with(&format!(":{echo}")) && seen[1] != seen[0],
        "{seen:?}"
    );
}

#[tokio::test]
async fn client_authenticates_to_socks5_with_username_and_password() {
    let echo = echo_server().await;
    let (proxy, _) = socks5_server(Some(("alice", "s3cret"))).await;
    let url = format!("ws://127.0.0.1:{echo}/");
    let good = Proxy::parse(&format!("socks5://alice:s3cret@127.0.0.1:{proxy}")).unwrap();
    round_trip(ClientBuilder::new(&url).proxy(good))
        .await
        .unwrap();

    let bad = Proxy::parse(&format!("socks5://alice:wrong@127.0.0.1:{proxy}")).unwrap();
    let err = round_trip(ClientBuilder::new(&url).proxy(bad))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Proxy(m) if m.contains("refused the username")),
        "{err}"
    );

    let none = Proxy::parse(&format!("socks5://127.0.0.1:{proxy}")).unwrap();
    let err = round_trip(ClientBuilder::new(&url).proxy(none))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Proxy(m) if m.contains("requires authentication")),
        "{err}"
    );
}

#[tokio::test]
async fn socks5_connection_failure_is_reported_with_the_reply_code() {
    let (proxy, _) = socks5_server(None).await;
    // A port nobody listens on: bind one, then free it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = round_trip(
        ClientBuilder::new(format!("ws://127.0.0.1:{closed}/"))
            .proxy(Proxy::parse(&format!("socks5://127.0.0.1:{proxy}")).unwrap()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Proxy(m) if m.contains("connection refused")),
        "{err}"
    );
}

#[tokio::test]
async fn client_tunnels_through_http_connect_with_basic_auth() {
    let echo = echo_server().await;
    // base64("bob:p@ss word") — the URL carries it percent-encoded.
    let (proxy, log) = connect_proxy(Some("Basic Ym9iOnBAc3Mgd29yZA==")).await;
    let url = format!("ws://127.0.0.1:{echo}/echo");
    let p = Proxy::parse(&format!("http://bob:p%40ss%20word@127.0.0.1:{proxy}")).unwrap();
    assert_eq!(p.kind, ProxyKind::Http);
    round_trip(ClientBuilder::new(&url).proxy(p)).await.unwrap();
    let head = log.lock().unwrap()[0].clone();
    assert!(
        head.starts_with(&format!("CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{echo}\r\n")),
        "{head}"
    );

    let anonymous = Proxy::parse(&format!("http://127.0.0.1:{proxy}")).unwrap();
    let err = round_trip(ClientBuilder::new(&url).proxy(anonymous))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Proxy(m) if m.contains("407")),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_proxy_is_a_proxy_error() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = round_trip(
        ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(Proxy::parse(&format!("http://127.0.0.1:{closed}")).unwrap()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Proxy(m) if m.contains("cannot connect to proxy")),
        "{err}"
    );
}
