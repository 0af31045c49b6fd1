//! `tether serve` behind a reverse proxy: the client's address and scheme
//! from `X-Forwarded-For`/`-Proto` and `Forwarded` (only from
//! `trusted_proxies`), and from the PROXY protocol (v1 and v2).

use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use std::time::Duration;
use test_support::serve::{eventually, rejected_status, Server};
use tether::{ClientBuilder, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The first listener's settings (its address is replaced by a free port)
/// and an exec route that reports what the server thinks of its client.
fn config(listen: &str, limits: &str) -> String {
    format!(
        r#"
[[listen]]
addr = "127.0.0.1:1"
{listen}

[limits]
{limits}

[[route]]
path = "/whoami"
kind = "exec"
command = ["sh", "-c", "echo \"$REMOTE_ADDR $REMOTE_PORT $HTTPS\"; read -r line"]

[[route]]
path = "/echo"
kind = "echo"
"#
    )
}

/// Connect over `tcp` (after anything the test wrote on it) with these
/// headers; the first message of `/whoami`.
async fn whoami_on(
    server: &Server,
    tcp: TcpStream,
    headers: &[(&'static str, &str)],
) -> tether::Result<String> {
    let mut b = ClientBuilder::new(server.ws_url("/whoami"));
    for (k, v) in headers {
        b = b.header(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (mut ws, _) = b.connect_on(tcp).await?;
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no message from /whoami")
        .expect("closed")?;
    let Message::Text(t) = msg else {
        panic!("{msg:?}")
    };
    Ok(t.as_str().trim().to_owned())
}

async fn whoami(server: &Server, headers: &[(&'static str, &str)]) -> tether::Result<String> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    whoami_on(server, tcp, headers).await
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let server = Server::with_config(&config("trusted_proxies = [\"10.0.0.0/8\"]", ""));
    let me = whoami(
        &server,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.1;proto=https"),
        ],
    )
    .await
    .unwrap();
    assert!(me.starts_with("127.0.0.1 "), "{me}");
    assert!(me.ends_with(" off"), "{me}");
}

#[tokio::test]
async fn a_trusted_proxy_gives_the_client_address_and_scheme() {
    let server = Server::with_config(&config(
        "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        "max_connections_per_ip = 1",
    ));
    // The rightmost address that is not a trusted proxy: what the client
    // put first is not believed.
    let me = whoami(
        &server,
        &[
            ("x-forwarded-for", "198.51.100.66, 203.0.113.7, 10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(me, "203.0.113.7 0 on");
    let me = whoami(
        &server,
        &[(
            "forwarded",
            "for=198.51.100.1, for=\"[2001:db8::7]:4711\";proto=https",
        )],
    )
    .await
    .unwrap();
    assert_eq!(me, "2001:db8::7 4711 on");
    // The per-IP limit counts the client, not the proxy.
    let open = |ip: &'static str| {
        let url = server.ws_url("/echo");
        async move {
            ClientBuilder::new(url)
                .header(
                    HeaderName::from_static("x-forwarded-for"),
                    HeaderValue::from_static(ip),
                )
                .connect()
                .await
        }
    };
    let _a = open("192.0.2.1").await.unwrap();
    let _b = open("192.0.2.2").await.unwrap();
    assert_eq!(rejected_status(&open("192.0.2.1").await.unwrap_err()), 429);
    assert!(eventually(Duration::from_secs(5), || server
        .log()
        .contains(
            "limits.max_connections_per_ip (1) reached for 192.0.2.1"
        )));
}

#[tokio::test]
async fn the_same_origin_check_uses_the_forwarded_scheme() {
    let server = Server::with_config(&config("trusted_proxies = [\"127.0.0.1/32\"]", ""));
    let host = server.addr.to_string();
    let https_origin = format!("https://{host}");
    let with = |proto: &'static str| {
        let url = server.ws_url("/echo");
        let origin = https_origin.clone();
        async move {
            ClientBuilder::new(url)
                .origin(origin)
                .header(
                    HeaderName::from_static("x-forwarded-proto"),
                    HeaderValue::from_static(proto),
                )
                .connect()
                .await
        }
    };
    with("https").await.unwrap();
    assert_eq!(rejected_status(&with("http").await.unwrap_err()), 403);
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let server = Server::with_config(&config("proxy_protocol = true", ""));
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n")
        .await
        .unwrap();
    assert_eq!(
        whoami_on(&server, tcp, &[]).await.unwrap(),
        "192.0.2.9 5555 off"
    );

    let v6: ppp::v2::Addresses = ppp::v2::IPv6::new(
        "2001:db8::9".parse::<std::net::Ipv6Addr>().unwrap(),
        "::1".parse::<std::net::Ipv6Addr>().unwrap(),
        6666,
        443,
    )
    .into();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        v6,
    )
    .write_tlv(ppp::v2::Type::NoOp, [0u8; 5].as_slice())
    .unwrap()
    .build()
    .unwrap();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    assert_eq!(
        whoami_on(&server, tcp, &[]).await.unwrap(),
        "2001:db8::9 6666 off"
    );

    // A connection without the header is refused.
    let err = whoami(&server, &[]).await.unwrap_err();
    assert!(!matches!(err, tether::Error::Refused { .. }), "{err}");
    assert!(eventually(Duration::from_secs(5), || server
        .log()
        .contains("PROXY protocol")));
}

#[tokio::test]
async fn a_proxy_protocol_header_is_refused_where_not_configured() {
    let server = Server::with_config(&config("", ""));
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n")
        .await
        .unwrap();
    assert!(whoami_on(&server, tcp, &[]).await.is_err());
}
