//! The client's address and scheme behind a reverse proxy.
//!
//! * **Forwarding headers**: when the TCP peer is in the listener's
//!   `trusted_proxies`, `Forwarded` (RFC 7239) or else `X-Forwarded-For`
//!   give the client: walking the hops from the right (the nearest proxy
//!   first), the first address that is not a trusted proxy. Whatever a
//!   client wrote further left is not believed. The scheme comes from the
//!   chosen hop's `proto=` or from `X-Forwarded-Proto`. Headers from any
//!   other peer are ignored.
//! * **PROXY protocol** (v1 text, v2 binary; parsed by `ppp`): read before
//!   anything else on a listener with `proxy_protocol = true`, exactly the
//!   header's bytes (a TLS handshake follows), bounded in size and by the
//!   handshake timeout. It replaces the TCP peer's address.
//!
//! The result is used for connection limits, logs, `REMOTE_ADDR` and the
//! same-origin check.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The client as far as the server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Address (port 0 when a proxy did not say).
    pub addr: SocketAddr,
    /// Whether the client spoke HTTPS (to the server or to the proxy).
    pub https: bool,
}

/// Whether `ip` is in `list` (an IPv4-mapped IPv6 address as its IPv4).
pub fn trusted(list: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    list.iter().any(|net| net.contains(&ip))
}

/// One hop of a forwarding header: its address (`None`: `unknown` or an
/// obfuscated name) and scheme.
struct Hop {
    addr: Option<SocketAddr>,
    proto: Option<bool>,
}

/// The client of a request that arrived from `peer` over TLS or not.
pub fn client_of(
    trusted_proxies: &[IpNet],
    peer: SocketAddr,
    tls: bool,
    headers: &http::HeaderMap,
) -> Client {
    let mut client = Client {
        addr: peer,
        https: tls,
    };
    if trusted_proxies.is_empty() || !trusted(trusted_proxies, peer.ip()) {
        return client;
    }
    let hops = match joined(headers, "forwarded") {
        Some(v) => forwarded_hops(&v),
        None => xff_hops(headers),
    };
    let Some(hops) = hops else {
        return client;
    };
    for hop in hops.iter().rev() {
        if let Some(https) = hop.proto {
            client.https = https;
        }
        let Some(addr) = hop.addr else { break };
        client.addr = addr;
        if !trusted(trusted_proxies, addr.ip()) {
            break;
        }
    }
    client
}

/// All values of a header, comma-joined (`None` if absent or not text).
fn joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let v = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push(',');
                o.push_str(v);
            }
            None => out = Some(v.to_owned()),
        }
    }
    out
}

fn scheme(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "https" | "wss" => Some(true),
        "http" | "ws" => Some(false),
        _ => None,
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn node(s: &str) -> Option<SocketAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let ip = s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some(SocketAddr::new(ip, 0))
}

/// `X-Forwarded-For` with `X-Forwarded-Proto`: the proto list aligned with
/// the hops when it has one entry per hop, else its last entry (set by the
/// nearest proxy) for every hop.
fn xff_hops(headers: &http::HeaderMap) -> Option<Vec<Hop>> {
    let protos: Vec<Option<bool>> = joined(headers, "x-forwarded-proto")
        .map(|v| v.split(',').map(scheme).collect())
        .unwrap_or_default();
    let Some(xff) = joined(headers, "x-forwarded-for") else {
        // Only a scheme: it describes the proxy's own client.
        return protos.last().map(|&proto| vec![Hop { addr: None, proto }]);
    };
    let addrs: Vec<&str> = xff.split(',').collect();
    let aligned = protos.len() == addrs.len();
    Some(
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Hop {
                addr: node(a),
                proto: if aligned {
                    protos[i]
                } else {
                    protos.last().copied().flatten()
                },
            })
            .collect(),
    )
}

/// RFC 7239 `Forwarded`: elements separated by `,`, pairs by `;`.
fn forwarded_hops(value: &str) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    for element in value.split(',') {
        let mut hop = Hop {
            addr: None,
            proto: None,
        };
        for pair in element.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => hop.addr = node(v),
                "proto" => hop.proto = scheme(v.trim().trim_matches('"')),
                _ => {}
            }
        }
        hops.push(hop);
    }
    Some(hops)
}

/// The PROXY protocol v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes with its CRLF.
const V1_MAX: usize = 107;
/// The largest v2 header accepted (addresses and TLVs), beyond its 16
/// fixed bytes.
const V2_MAX_PAYLOAD: usize = 4096;

/// Read a PROXY protocol header (v1 or v2), no more bytes than it has,
/// within `timeout`. The client's address, or `None` when the header says
/// the connection is the proxy's own (v2 `LOCAL`, v1 `UNKNOWN`).
pub async fn read_proxy_header(
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, String> {
    match tokio::time::timeout(timeout, read_header_bytes(tcp)).await {
        Ok(Ok(bytes)) => parse_proxy_header(&bytes),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no complete PROXY protocol header within {timeout:?}"
        )),
    }
}

async fn read_header_bytes(tcp: &mut TcpStream) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| format!("reading the PROXY protocol header: {e}");
    // 15 bytes: the shortest v1 header ("PROXY UNKNOWN\r\n"), and less than
    // v2's fixed part.
    let mut buf = vec![0u8; 15];
    tcp.read_exact(&mut buf).await.map_err(io)?;
    if buf.starts_with(V2_SIGNATURE) {
        buf.push(0);
        tcp.read_exact(&mut buf[15..]).await.map_err(io)?;
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if len > V2_MAX_PAYLOAD {
            return Err(format!(
                "PROXY protocol v2 header of {len} bytes (at most {V2_MAX_PAYLOAD})"
            ));
        }
        buf.resize(16 + len, 0);
        tcp.read_exact(&mut buf[16..]).await.map_err(io)?;
        return Ok(buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    // The rest of the line: peek at what has arrived and take exactly up to
    // the CRLF.
    let mut peek = [0u8; V1_MAX];
    while !buf.ends_with(b"\r\n") {
        let room = V1_MAX - buf.len();
        if room == 0 {
            return Err("PROXY protocol v1 line longer than 107 bytes".into());
        }
        let n = tcp.peek(&mut peek[..room]).await.map_err(io)?;
        if n == 0 {
            return Err("connection closed in the PROXY protocol header".into());
        }
        let take = match peek[..n].iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => n,
        };
        let start = buf.len();
        buf.resize(start + take, 0);
        tcp.read_exact(&mut buf[start..]).await.map_err(io)?;
        if buf.ends_with(b"\n") && !buf.ends_with(b"\r\n") {
            return Err("PROXY protocol v1 line not ended by CRLF".into());
        }
    }
    Ok(buf)
}

/// Parse a complete header (as read by `read_header_bytes`).
pub fn parse_proxy_header(bytes: &[u8]) -> Result<Option<SocketAddr>, String> {
    use ppp::v1::Addresses as A1;
    use ppp::v2::Addresses as A2;
    let bad = |e: &dyn std::fmt::Display| format!("invalid PROXY protocol header: {e}");
    if bytes.starts_with(V2_SIGNATURE) {
        let h = ppp::v2::Header::try_from(bytes).map_err(|e| bad(&e))?;
        if h.command == ppp::v2::Command::Local {
            return Ok(None);
        }
        return Ok(match h.addresses {
            A2::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            A2::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            A2::Unspecified | A2::Unix(_) => None,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| bad(&e))?;
    let h = ppp::v1::Header::try_from(text).map_err(|e| bad(&e))?;
    Ok(match h.addresses {
        A1::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        A1::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        A1::Unknown => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const PROXY: &str = "10.0.0.2:5000";

    fn client(trust: &[&str], pairs: &[(&'static str, &str)]) -> (String, bool) {
        let c = client_of(&nets(trust), PROXY.parse().unwrap(), false, &headers(pairs));
        (c.addr.to_string(), c.https)
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let spoof = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(client(&[], &spoof), (PROXY.into(), false));
        assert_eq!(client(&["192.168.0.0/16"], &spoof), (PROXY.into(), false));
    }

    #[test]
    fn xff_gives_the_rightmost_untrusted_hop() {
        let t = ["10.0.0.0/8"];
        let xff = |v| client(&t, &[("x-forwarded-for", v)]).0;
        assert_eq!(xff("1.2.3.4"), "1.2.3.4:0");
        assert_eq!(xff("6.6.6.6, 1.2.3.4, 10.9.9.9"), "1.2.3.4:0");
        assert_eq!(xff("10.1.1.1, 10.2.2.2"), "10.1.1.1:0");
        assert_eq!(xff("2001:db8::1"), "[2001:db8::1]:0");
        assert_eq!(xff("[2001:db8::1]:443"), "[2001:db8::1]:443");
        // Garbage stops the walk at the last good hop.
        assert_eq!(xff("1.2.3.4, nonsense"), PROXY);
        let two = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ];
        assert_eq!(client(&t, &two).0, "1.2.3.4:0");
    }

    #[test]
    fn forwarded_takes_for_and_proto_of_the_chosen_element() {
        let t = ["10.0.0.0/8"];
        let fwd = |v| client(&t, &[("forwarded", v)]);
        assert_eq!(
            fwd("for=1.2.3.4;proto=https, for=10.0.0.9;proto=http"),
            ("1.2.3.4:0".into(), true)
        );
        assert_eq!(
            fwd("For=\"[2001:db8::7]:4711\";Proto=https"),
            ("[2001:db8::7]:4711".into(), true)
        );
        assert_eq!(fwd("for=unknown"), (PROXY.into(), false));
        assert_eq!(fwd("for=_hidden, for=1.2.3.4").0, "1.2.3.4:0");
        // Forwarded wins over X-Forwarded-For.
        let both = [("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "2.2.2.2")];
        assert_eq!(client(&t, &both).0, "1.1.1.1:0");
    }

    #[test]
    fn forwarded_proto_alone_sets_the_scheme() {
        let t = ["10.0.0.0/8"];
        assert_eq!(
            client(&t, &[("x-forwarded-proto", "https")]),
            (PROXY.into(), true)
        );
        assert_eq!(
            client(
                &t,
                &[
                    ("x-forwarded-for", "1.2.3.4, 10.0.0.1"),
                    ("x-forwarded-proto", "http, https")
                ]
            ),
            ("1.2.3.4:0".into(), false)
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let c = client_of(
            &nets(&["127.0.0.1/32"]),
            "[::ffff:127.0.0.1]:9".parse().unwrap(),
            false,
            &headers(&[("x-forwarded-for", "1.2.3.4")]),
        );
        assert_eq!(c.addr.to_string(), "1.2.3.4:0");
    }

    #[test]
    fn proxy_protocol_headers_parse() {
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n").unwrap(),
            Some("192.0.2.1:1000".parse().unwrap())
        );
        assert_eq!(
            parse_proxy_header(b"PROXY TCP6 2001:db8::1 ::1 1000 80\r\n").unwrap(),
            Some("[2001:db8::1]:1000".parse().unwrap())
        );
        assert_eq!(parse_proxy_header(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(parse_proxy_header(b"PROXY TCP4 999.0.0.1 1.1.1.1 1 2\r\n").is_err());
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            ppp::v2::IPv4::new([192, 0, 2, 7], [127, 0, 0, 1], 4000, 80),
        )
        .build()
        .unwrap();
        assert_eq!(
            parse_proxy_header(&v2).unwrap(),
            Some("192.0.2.7:4000".parse().unwrap())
        );
        let local = ppp::v2::Builder::new(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(parse_proxy_header(&local).unwrap(), None);
        let mut truncated = v2.clone();
        truncated.truncate(20);
        assert!(parse_proxy_header(&truncated).is_err());
    }

    proptest::proptest! {
        /// Whatever the headers say, the client is the peer or an address
        /// written in them, and nothing panics.
        #[test]
        fn any_forwarding_headers_give_the_peer_or_a_written_address(
            xff in "[0-9., ]{0,40}",
            fwd in proptest::option::of("((for|proto|by|[a-z]{1,3})=[a-zA-Z0-9.\"_]{0,16}[;, ]{0,2}){0,4}"),
            proto in "[a-z, ]{0,12}",
        ) {
            let mut pairs = vec![("x-forwarded-for", xff.as_str()), ("x-forwarded-proto", proto.as_str())];
            if let Some(f) = &fwd {
                pairs.push(("forwarded", f.as_str()));
            }
            let c = client_of(&nets(&["10.0.0.0/8"]), PROXY.parse().unwrap(), false, &headers(&pairs));
            let ip = c.addr.ip().to_string();
            proptest::prop_assert!(
                c.addr.to_string() == PROXY || xff.contains(&ip) || fwd.as_deref().is_some_and(|f| f.contains(&ip)),
                "{c:?} from {pairs:?}"
            );
        }

        /// Arbitrary bytes after a PROXY signature never panic the parser.
        #[test]
        fn any_proxy_header_bytes_parse_or_fail(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64), v2 in proptest::bool::ANY) {
            let mut bytes = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            bytes.extend_from_slice(&tail);
            let _ = parse_proxy_header(&bytes);
        }
    }

    #[tokio::test]
    async fn proxy_header_is_read_exactly_and_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let send = |bytes: Vec<u8>| async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut c, &bytes)
                .await
                .unwrap();
            c
        };
        let t = Duration::from_secs(5);
        // The header arrives in two pieces, followed by the next protocol.
        let c = send(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000".to_vec()).await;
        let (mut s, _) = listener.accept().await.unwrap();
        let mut c = c;
        let rest = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tokio::io::AsyncWriteExt::write_all(&mut c, b" 80\r\nGET / HTTP/1.1\r\n")
                .await
                .unwrap();
        };
        let (got, _) = tokio::join!(read_proxy_header(&mut s, t), rest);
        assert_eq!(got.unwrap(), Some("192.0.2.1:1000".parse().unwrap()));
        let mut next = [0u8; 3];
        s.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"GET");
        // Not a header, too long, or too slow.
        let _c = send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        let (mut s, _) = listener.accept().await.unwrap();
        assert!(read_proxy_header(&mut s, t).await.is_err());
        let _c = send([b"PROXY ".as_slice(), &[b'1'; 200]].concat()).await;
        let (mut s, _) = listener.accept().await.unwrap();
        assert!(read_proxy_header(&mut s, t)
            .await
            .unwrap_err()
            .contains("107"));
        let _c = send(b"PROXY TCP4 1.2.3".to_vec()).await;
        let (mut s, _) = listener.accept().await.unwrap();
        let e = read_proxy_header(&mut s, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.contains("within"), "{e}");
    }
}
