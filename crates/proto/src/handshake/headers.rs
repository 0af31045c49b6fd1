//! Header-field grammar shared by both roles: RFC 7230 tokens and
//! comma-separated lists, and the RFC 6455 §9.1 extension list.
//!
//! HTTP lets a list-valued field be split over several field lines
//! (`Connection: keep-alive` + `Connection: Upgrade` means the same as
//! `Connection: keep-alive, Upgrade`, RFC 7230 §3.2.2), and lets list
//! elements be empty (`a, , b`, RFC 7230 §7). Handshake checks that look at
//! only the first field line, or split naively on commas inside quoted
//! strings, reject real browsers or accept malformed input; everything here
//! walks all field lines and follows the grammar instead.

use std::fmt;

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::HandshakeError;

/// The elements of a comma-separated list header, across every field line
/// with that name, trimmed of optional whitespace, with empty elements
/// skipped (RFC 7230 §7).
///
/// A field line that is not valid UTF-8 yields a single `"\u{FFFD}"`
/// element instead of being skipped, so that a caller validating elements
/// with [`is_token`] rejects it rather than silently ignoring it. Elements
/// are not unquoted: use this for token lists, not for lists whose elements
/// may contain quoted commas (see [`parse_extensions`] for those).
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONNECTION};
/// use tether_proto::handshake::header_tokens;
///
/// let mut h = HeaderMap::new();
/// h.append(CONNECTION, HeaderValue::from_static("keep-alive, "));
/// h.append(CONNECTION, HeaderValue::from_static(" Upgrade"));
/// assert_eq!(header_tokens(&h, CONNECTION).collect::<Vec<_>>(), ["keep-alive", "Upgrade"]);
/// ```
pub fn header_tokens<'a, K: AsHeaderName>(
    headers: &'a HeaderMap,
    name: K,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| {
            std::str::from_utf8(value.as_bytes())
                .unwrap_or("\u{FFFD}")
                .split(',')
        })
        .map(|element| element.trim_matches(is_ows))
        .filter(|element| !element.is_empty())
}

/// Optional whitespace: SP / HTAB (RFC 7230 §3.2.3).
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// True if `s` is an RFC 7230 §3.2.6 `token`: one or more `tchar`s
/// (`!#$%&'*+-.^_`|~`, digits, letters).
///
/// Subprotocol names, extension names and extension parameter names and
/// values are all tokens (RFC 6455 §4.1 item 10, §9.1).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// True if any element of the list header `name` equals `token`
/// ASCII-case-insensitively.
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The value of a header that must appear at most once.
pub(crate) fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, HandshakeError> {
    let mut values = headers.get_all(name).into_iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader(name.clone()));
    }
    Ok(first)
}

/// One element of a `Sec-WebSocket-Extensions` list: an extension name and
/// its parameters, in order (RFC 6455 §9.1).
///
/// In a request, each offer is one configuration the client can use; a
/// client may offer the same extension several times with different
/// parameters, in preference order. In a response, each element is an
/// extension the server accepted, in the order they are applied.
///
/// Parameter values are stored unquoted: `x="10"` and `x=10` both give
/// `("x", Some("10"))`. [`Display`](fmt::Display) writes the offer back in
/// header syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// `(name, value)` pairs; `None` for a parameter without `=`.
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// An offer with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionOffer {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push((name.into(), value.map(str::to_owned)));
        self
    }

    /// The parameters named `name` (ASCII case-insensitive), in order. More
    /// than one usually means a malformed offer; what to do about it is the
    /// extension's decision (RFC 7692 §7 declines such offers).
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.params
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for ExtensionOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            match value {
                None => {}
                Some(v) if is_token(v) => write!(f, "={v}")?,
                // Not a token, so not valid per §9.1, but never write
                // something that would parse as a different offer.
                Some(v) => {
                    f.write_str("=\"")?;
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

/// Serializes a list of extensions as a `Sec-WebSocket-Extensions` value
/// (elements joined by `", "`).
pub fn format_extensions(extensions: &[ExtensionOffer]) -> String {
    let mut out = String::new();
    for (i, e) in extensions.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&e.to_string());
    }
    out
}

/// Parses one `Sec-WebSocket-Extensions` field value (RFC 6455 §9.1):
///
/// ```text
/// extension-list  = 1#extension
/// extension       = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// Optional whitespace is allowed around `,`, `;` and `=` (RFC 6455 uses
/// RFC 2616's implied linear whitespace), and empty list elements are
/// skipped (RFC 7230 §7), but the list must contain at least one extension.
/// Quoted-string values are unescaped, and "the value after quoted-string
/// unescaping MUST conform to the 'token' ABNF" (§9.1), so `x="a b"` is an
/// error. When a request has several `Sec-WebSocket-Extensions` field lines,
/// parse each and concatenate the results.
///
/// ```
/// use tether_proto::handshake::parse_extensions;
/// let offers = parse_extensions("permessage-deflate; client_max_window_bits, x-foo; a=\"1\"").unwrap();
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_string(), None)]);
/// assert_eq!(offers[1].params, [("a".to_string(), Some("1".to_string()))]);
/// assert_eq!(offers[1].to_string(), "x-foo; a=1");
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<ExtensionOffer>, HandshakeError> {
    let mut p = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ows();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.i += 1; // empty list element
                continue;
            }
            Some(_) => {}
        }
        let name = p
            .token()
            .ok_or(malformed("expected an extension name token"))?;
        let mut offer = ExtensionOffer::new(name);
        loop {
            p.skip_ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.i += 1;
                    break;
                }
                Some(b';') => {
                    p.i += 1;
                    p.skip_ows();
                    let param = p
                        .token()
                        .ok_or(malformed("expected a parameter name token"))?;
                    p.skip_ows();
                    let value = if p.peek() == Some(b'=') {
                        p.i += 1;
                        p.skip_ows();
                        let value = if p.peek() == Some(b'"') {
                            let v = p.quoted_string()?;
                            if !is_token(&v) {
                                return Err(malformed(
                                    "quoted parameter value must be a token after unescaping",
                                ));
                            }
                            v
                        } else {
                            p.token().ok_or(malformed("expected a parameter value"))?
                        };
                        Some(value)
                    } else {
                        None
                    };
                    offer.params.push((param, value));
                }
                Some(_) => return Err(malformed("unexpected character after extension")),
            }
        }
        out.push(offer);
    }
    if out.is_empty() {
        return Err(malformed("the list must name at least one extension"));
    }
    Ok(out)
}

fn malformed(why: &'static str) -> HandshakeError {
    HandshakeError::MalformedExtensions(why)
}

/// A byte cursor over a header value; every method is bounds-checked.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A token, or `None` if there is none here.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let bytes = self.s.get(start..self.i)?;
        if bytes.is_empty() {
            return None;
        }
        // tchars are ASCII, so this never fails.
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    /// An RFC 7230 §3.2.6 quoted-string, unescaped. The cursor is on `"`.
    fn quoted_string(&mut self) -> Result<String, HandshakeError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(malformed("unterminated quoted-string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                        Some(c)
                            if c == b'\t'
                                || c == b' '
                                || (0x21..=0x7e).contains(&c)
                                || c >= 0x80 =>
                        {
                            out.push(c);
                            self.i += 1;
                        }
                        _ => return Err(malformed("invalid quoted-pair in quoted-string")),
                    }
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(c)
                    if c == b'\t'
                        || c == b' '
                        || c == 0x21
                        || (0x23..=0x7e).contains(&c)
                        || c >= 0x80 =>
                {
                    out.push(c);
                    self.i += 1;
                }
                Some(_) => return Err(malformed("invalid character in quoted-string")),
            }
        }
        String::from_utf8(out).map_err(|_| malformed("quoted-string is not valid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONNECTION, UPGRADE};

    fn map(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens_span_repeated_headers_and_skip_empty_elements() {
        let h = map(&[
            ("connection", b" keep-alive ,, "),
            ("connection", b"\tUpgrade\t"),
        ]);
        assert_eq!(
            header_tokens(&h, CONNECTION).collect::<Vec<_>>(),
            ["keep-alive", "Upgrade"]
        );
        assert!(has_token(&h, &CONNECTION, "upgrade"));
        assert!(!has_token(&h, &UPGRADE, "websocket"));
    }

    #[test]
    fn non_utf8_header_yields_a_non_token_element() {
        let h = map(&[("sec-websocket-protocol", b"chat, \xff")]);
        let got: Vec<_> = header_tokens(&h, "sec-websocket-protocol").collect();
        assert_eq!(got, ["\u{FFFD}"]);
        assert!(!is_token(got[0]));
    }

    #[test]
    fn token_grammar_is_rfc7230_tchar() {
        assert!(is_token("chat"));
        assert!(is_token("v2.bin.example_x-y~z|`^'*+!#$%&"));
        for bad in [
            "", "a b", "a,b", "a;b", "a=b", "\"a\"", "a/b", "a:b", "(a)", "é", "a\tb", "a@b",
            "[a]", "{a}", "a?b", "a\\b",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn single_rejects_duplicates() {
        let h = map(&[("host", b"a"), ("host", b"b")]);
        assert_eq!(
            single(&h, &http::header::HOST),
            Err(HandshakeError::DuplicateHeader(http::header::HOST))
        );
    }

    #[test]
    fn parses_rfc7692_style_offers() {
        let got = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10 , permessage-deflate",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                ExtensionOffer::new("permessage-deflate")
                    .with_param("client_max_window_bits", None)
                    .with_param("server_max_window_bits", Some("10")),
                ExtensionOffer::new("permessage-deflate"),
            ]
        );
    }

    #[test]
    fn parses_quoted_values_and_whitespace_around_separators() {
        let got = parse_extensions("foo ;\ta = \"b\\c\" ; d=\"12\",,bar").unwrap();
        assert_eq!(
            got,
            [
                ExtensionOffer::new("foo")
                    .with_param("a", Some("bc"))
                    .with_param("d", Some("12")),
                ExtensionOffer::new("bar"),
            ]
        );
    }

    #[test]
    fn quoted_commas_do_not_split_the_list_but_are_rejected_as_non_tokens() {
        assert!(parse_extensions("foo; a=\"x,y\"").is_err());
        assert!(parse_extensions("foo; a=\"x y\"").is_err());
        assert!(parse_extensions("foo; a=\"\"").is_err());
    }

    #[test]
    fn rejects_malformed_extension_lists() {
        for bad in [
            "",
            " , ",
            ";a",
            "foo;",
            "foo; =1",
            "foo; a=",
            "foo; a=\"1",
            "foo bar",
            "foo; a b",
            "foo; a==1",
            "f\u{e9}",
            "foo; a=1 2",
            "foo; a=\"\\\u{1}\"",
            "foo/1",
        ] {
            assert!(
                matches!(
                    parse_extensions(bad),
                    Err(HandshakeError::MalformedExtensions(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        let offer = ExtensionOffer::new("permessage-deflate")
            .with_param("client_max_window_bits", None)
            .with_param("server_max_window_bits", Some("10"));
        assert_eq!(
            offer.to_string(),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        );
        assert_eq!(
            parse_extensions(&offer.to_string()).unwrap(),
            std::slice::from_ref(&offer)
        );
        let two = format_extensions(&[offer.clone(), ExtensionOffer::new("x")]);
        assert_eq!(
            parse_extensions(&two).unwrap(),
            [offer, ExtensionOffer::new("x")]
        );
    }

    #[test]
    fn display_quotes_non_token_values_unambiguously() {
        let odd = ExtensionOffer::new("x").with_param("a", Some("b\"; c"));
        assert_eq!(odd.to_string(), "x; a=\"b\\\"; c\"");
    }

    #[test]
    fn params_named_is_case_insensitive() {
        let o = parse_extensions("x; A=1; b; a=2").unwrap().remove(0);
        assert_eq!(
            o.params_named("a").collect::<Vec<_>>(),
            [Some("1"), Some("2")]
        );
        assert_eq!(o.params_named("B").collect::<Vec<_>>(), [None]);
    }
}
