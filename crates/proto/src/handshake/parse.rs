//! Incremental HTTP/1.x head parsing (httparse) into `http` types.
//!
//! The caller owns the buffer: it appends whatever the transport delivered
//! and calls again with the whole buffer until a head is complete. This
//! keeps the parser stateless and the buffering policy in one place. The
//! cost of re-parsing is bounded by [`HandshakeLimits::max_head_bytes`],
//! because only that many bytes are ever examined.
//!
//! The head length returned with a parsed head is the offset of the first
//! byte after the empty line; every later byte is WebSocket data.

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::{HandshakeError, HandshakeLimits};

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// * `Ok(None)`: the head is not complete yet; read more and call again
///   with the grown buffer.
/// * `Ok(Some((request, head_len)))`: `head_len` bytes (request line, header
///   fields and the final empty line) were consumed; `buf[head_len..]`
///   already belongs to the WebSocket stream.
/// * [`HandshakeError::HeadTooLarge`]: no complete head within
///   `limits.max_head_bytes` bytes, or more than `limits.max_headers`
///   fields (answer 431).
/// * [`HandshakeError::MalformedHead`] / [`HandshakeError::InvalidRequestTarget`]:
///   not a valid head (answer 400), a line ending in a bare LF included.
///
/// Header field values are kept byte-for-byte (obs-text included); repeated
/// fields are kept in order. Only the first `limits.max_head_bytes` bytes of
/// `buf` are examined, so the bytes after a complete head are never parsed.
pub fn parse_request(
    buf: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut headers = vec![httparse::EMPTY_HEADER; header_capacity(window, limits)];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits),
        Err(e) => return Err(map_httparse_error(e)),
    };
    if has_bare_lf(&window[..head_len]) {
        return Err(HandshakeError::MalformedHead(
            "bare LF line ending (use CRLF)",
        ));
    }

    let method = parsed
        .method
        .ok_or(HandshakeError::MalformedHead("missing method"))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| HandshakeError::MalformedHead("invalid method"))?;
    let target = parsed
        .path
        .ok_or(HandshakeError::MalformedHead("missing request target"))?;
    // httparse admits any byte above 0x20 here; a request-target is ASCII
    // only (RFC 3986 §2), and '#' never appears in one (RFC 6455 §3, RFC
    // 7230 §5.3). `http::Uri` would otherwise drop a fragment silently.
    if !target
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'#')
    {
        return Err(HandshakeError::InvalidRequestTarget);
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| HandshakeError::InvalidRequestTarget)?;
    let version = map_version(parsed.version)?;

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let map = request.headers_mut();
    map.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (name, value) = convert_header(h)?;
        map.append(name, value);
    }
    Ok(Some((request, head_len)))
}

/// Parses an HTTP/1.x response head from the start of `buf`; the contract
/// is the same as [`parse_request`]'s.
///
/// The reason phrase is not kept (RFC 7230 §3.1.2: a client SHOULD ignore
/// it).
pub fn parse_response(
    buf: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut headers = vec![httparse::EMPTY_HEADER; header_capacity(window, limits)];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits),
        Err(e) => return Err(map_httparse_error(e)),
    };

    let code = parsed
        .code
        .ok_or(HandshakeError::MalformedHead("missing status code"))?;
    let status = StatusCode::from_u16(code)
        .map_err(|_| HandshakeError::MalformedHead("status code out of range"))?;
    let version = map_version(parsed.version)?;

    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    let map = response.headers_mut();
    map.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (name, value) = convert_header(h)?;
        map.append(name, value);
    }
    Ok(Some((response, head_len)))
}

/// True if a line of `head` ends in LF without CR. httparse accepts such
/// lines (RFC 9112 §2.2 lets a recipient), but a proxy in front may not
/// split them the same way, so a server refuses them (request smuggling).
/// Responses, read by a client, are parsed leniently.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// How many header slots to give httparse.
///
/// `max_headers`, but never more than the window could hold: the shortest
/// field line is `a:` plus a newline, 3 bytes. This keeps an absurd
/// configured limit from turning into an absurd allocation, and since the
/// clamp can never be reached by real input it never causes a spurious
/// `TooManyHeaders`.
fn header_capacity(window: &[u8], limits: &HandshakeLimits) -> usize {
    limits.max_headers.min(window.len() / 3 + 1)
}

fn incomplete<T>(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<T>, HandshakeError> {
    // The window was all of `buf` (or its first max_head_bytes bytes) and
    // held no complete head: once max_head_bytes bytes are present, no
    // amount of further input can complete a head within the limit.
    if buf.len() >= limits.max_head_bytes {
        Err(HandshakeError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

fn map_httparse_error(e: httparse::Error) -> HandshakeError {
    HandshakeError::MalformedHead(match e {
        httparse::Error::TooManyHeaders => return HandshakeError::HeadTooLarge,
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::Version => "invalid HTTP version",
    })
}

fn map_version(minor: Option<u8>) -> Result<Version, HandshakeError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(HandshakeError::MalformedHead("invalid HTTP version")),
    }
}

fn convert_header(h: &httparse::Header<'_>) -> Result<(HeaderName, HeaderValue), HandshakeError> {
    let name = HeaderName::from_bytes(h.name.as_bytes())
        .map_err(|_| HandshakeError::MalformedHead("invalid header name"))?;
    let value = HeaderValue::from_bytes(h.value)
        .map_err(|_| HandshakeError::MalformedHead("invalid header value"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn limits() -> HandshakeLimits {
        HandshakeLimits::default()
    }

    /// `http::Request` has no `PartialEq`; compare head lengths instead.
    fn req_len(buf: &[u8], l: &HandshakeLimits) -> Result<Option<usize>, HandshakeError> {
        parse_request(buf, l).map(|o| o.map(|(_, n)| n))
    }

    fn resp_len(buf: &[u8], l: &HandshakeLimits) -> Result<Option<usize>, HandshakeError> {
        parse_response(buf, l).map(|o| o.map(|(_, n)| n))
    }

    #[test]
    fn parses_rfc6455_section_1_2_request() {
        let (req, n) = parse_request(RFC_REQUEST, &limits()).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/chat");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "server.example.com");
        assert_eq!(req.headers()["sec-websocket-protocol"], "chat, superchat");
        assert_eq!(req.headers().len(), 7);
    }

    #[test]
    fn every_strict_prefix_needs_more_bytes() {
        for i in 0..RFC_REQUEST.len() {
            assert_eq!(
                req_len(&RFC_REQUEST[..i], &limits()),
                Ok(None),
                "prefix {i}"
            );
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        let (_, n) = parse_request(&buf, &limits()).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(buf[n], 0x81);
    }

    #[test]
    fn parser_rejects_head_over_max_bytes() {
        let l = HandshakeLimits {
            max_head_bytes: 64,
            ..limits()
        };
        assert_eq!(req_len(&RFC_REQUEST[..63], &l), Ok(None));
        assert_eq!(
            req_len(&RFC_REQUEST[..64], &l),
            Err(HandshakeError::HeadTooLarge)
        );
        assert_eq!(req_len(RFC_REQUEST, &l), Err(HandshakeError::HeadTooLarge));
    }

    #[test]
    fn head_of_exactly_max_bytes_is_accepted() {
        let l = HandshakeLimits {
            max_head_bytes: RFC_REQUEST.len(),
            ..limits()
        };
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(b"trailing frame bytes");
        assert_eq!(req_len(&buf, &l), Ok(Some(RFC_REQUEST.len())));
        let l = HandshakeLimits {
            max_head_bytes: RFC_REQUEST.len() - 1,
            ..limits()
        };
        assert_eq!(req_len(&buf, &l), Err(HandshakeError::HeadTooLarge));
    }

    #[test]
    fn parser_rejects_too_many_headers() {
        let l = HandshakeLimits {
            max_headers: 6,
            ..limits()
        };
        assert_eq!(req_len(RFC_REQUEST, &l), Err(HandshakeError::HeadTooLarge));
        let l = HandshakeLimits {
            max_headers: 7,
            ..limits()
        };
        assert!(parse_request(RFC_REQUEST, &l).unwrap().is_some());
    }

    #[test]
    fn huge_configured_limits_do_not_allocate_hugely() {
        let l = HandshakeLimits {
            max_head_bytes: usize::MAX,
            max_headers: usize::MAX,
        };
        assert!(parse_request(RFC_REQUEST, &l).unwrap().is_some());
        assert_eq!(req_len(b"GET / HTTP/1.1\r\n", &l), Ok(None));
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(
                matches!(
                    parse_request(bad, &limits()),
                    Err(HandshakeError::MalformedHead(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bare_lf_line_endings_are_rejected_in_requests() {
        // RFC 9112 §2.2: a proxy in front may split these lines differently.
        for bad in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                req_len(bad, &limits()),
                Err(HandshakeError::MalformedHead(
                    "bare LF line ending (use CRLF)"
                )),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A bare LF after the head is WebSocket data, not the head's business.
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(b"\n\n");
        assert_eq!(req_len(&buf, &limits()), Ok(Some(RFC_REQUEST.len())));
    }

    #[test]
    fn request_target_with_fragment_or_non_ascii_is_rejected() {
        for bad in [
            &b"GET /a#b HTTP/1.1\r\n\r\n"[..],
            b"GET /a?b#c HTTP/1.1\r\n\r\n",
            b"GET /\xc3\xa4 HTTP/1.1\r\n\r\n",
            b"GET /a<b HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                req_len(bad, &limits()),
                Err(HandshakeError::InvalidRequestTarget)
            );
        }
    }

    #[test]
    fn obs_text_header_values_are_kept_not_panicked_on() {
        let (req, _) = parse_request(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n", &limits())
            .unwrap()
            .unwrap();
        assert_eq!(req.headers()["x"].as_bytes(), b"caf\xe9");
    }

    #[test]
    fn repeated_headers_are_all_kept_in_order() {
        let (req, _) = parse_request(
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: h\r\nConnection: Upgrade\r\n\r\n",
            &limits(),
        )
        .unwrap()
        .unwrap();
        let all: Vec<_> = req.headers().get_all("connection").iter().collect();
        assert_eq!(all, ["keep-alive", "Upgrade"]);
    }

    #[test]
    fn http10_request_parses_and_is_left_to_validation() {
        let (req, _) = parse_request(b"GET / HTTP/1.0\r\n\r\n", &limits())
            .unwrap()
            .unwrap();
        assert_eq!(req.version(), Version::HTTP_10);
    }

    #[test]
    fn absolute_form_target_is_kept() {
        let (req, _) = parse_request(b"GET ws://h.example/x?y HTTP/1.1\r\n\r\n", &limits())
            .unwrap()
            .unwrap();
        assert_eq!(req.uri().host(), Some("h.example"));
        assert_eq!(req.uri().query(), Some("y"));
    }

    #[test]
    fn parses_rfc6455_section_1_3_response() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Protocol: chat\r\n\r\n\x81\x05Hello";
        let (resp, n) = parse_response(raw, &limits()).unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(&raw[n..], b"\x81\x05Hello");
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        for i in 0..n {
            assert_eq!(resp_len(&raw[..i], &limits()), Ok(None), "prefix {i}");
        }
    }

    #[test]
    fn response_status_must_be_in_range() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 099 Odd\r\n\r\n", &limits()),
            Err(HandshakeError::MalformedHead(_))
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 10 Odd\r\n\r\n", &limits()),
            Err(HandshakeError::MalformedHead(_))
        ));
    }

    #[test]
    fn response_over_limit_is_too_large() {
        let l = HandshakeLimits {
            max_head_bytes: 10,
            ..limits()
        };
        assert_eq!(
            resp_len(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &l),
            Err(HandshakeError::HeadTooLarge)
        );
    }
}
