//! Plain HTTP on the WebSocket port: the demo page, static files,
//! `/healthz` and `/metrics` (see [`super::admin`]) and the pub/sub publish
//! endpoint.
//!
//! [`answer`] is the one request→response function, for HTTP/1.1 ([`serve`])
//! and HTTP/2 ([`super::http2`]) alike; each brings its [`RequestBody`].
//!
//! Deliberately small: HTTP/1.1 with keep-alive, `GET`/`HEAD` for pages
//! (`405` otherwise), request bodies only with `Content-Length` (bounded by
//! `limits.max_body_size`: `413`; no length: `411`). Framing a proxy in
//! front could read differently is refused and the connection closed
//! ([`body_length`]). Responses always carry `Content-Length`.

use super::auth::constant_time_eq;
use super::body::ResponseBody;
use super::cluster::EngineError;
use super::config::{Route, RouteKind};
use super::policy::Refusal;
use super::pubsub::{history_fields, presence_fields, publish, valid_channel};
use super::query::query_param;
use super::state::State;
use super::transport::Conn;
use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The embedded demo page.
pub const DEMO_PAGE: &str = include_str!("assets/index.html");

/// A response body.
pub enum Body {
    /// In memory.
    Bytes(Vec<u8>),
    /// A file and its length.
    File(tokio::fs::File, u64),
}

/// A response to write.
pub struct Response {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Response {
    /// A text response.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(body.into().into_bytes()),
        }
    }

    /// A response with this `Content-Type`.
    pub fn typed(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("content-type", content_type.into())],
            body: Body::Bytes(body),
        }
    }

    /// A JSON response.
    pub fn json(status: StatusCode, v: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Body::Bytes(v.to_string().into_bytes()),
        }
    }

    /// The answer to a refused request.
    pub fn refused(r: &Refusal) -> Response {
        let mut resp = if r.status() == StatusCode::NO_CONTENT {
            Response::typed(r.status(), "text/plain", Vec::new())
        } else {
            Response::text(r.status(), r.body())
        };
        for (name, value) in r.headers() {
            resp = resp.header(name, *value);
        }
        resp
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Bytes of its body.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// As an `http::Response` for hyper, with the same headers as
    /// [`write_response`] writes (but no `Connection`); `head_only` for HEAD
    /// requests: the length of the body, without it.
    pub fn into_http(self, head_only: bool) -> http::Response<ResponseBody> {
        let len = self.body_len();
        let body = match (head_only, self.body) {
            (true, _) => ResponseBody::empty(),
            (false, Body::Bytes(b)) => ResponseBody::bytes(b),
            (false, Body::File(f, n)) => ResponseBody::file(f, n),
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = http::HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        headers.insert(http::header::CONTENT_LENGTH, len.into());
        resp
    }
}

/// Write `resp`; `head_only` for HEAD requests.
pub async fn write_response(
    io: &mut Conn,
    resp: Response,
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let len = match &resp.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, n) => *n,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status.as_u16(),
        resp.status.canonical_reason().unwrap_or("")
    );
    for (k, v) in &resp.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("x-content-type-options: nosniff\r\n");
    head.push_str(if keep_alive {
        "connection: keep-alive\r\n"
    } else {
        "connection: close\r\n"
    });
    head.push_str(&format!("content-length: {len}\r\n\r\n"));
    io.write_all(head.as_bytes()).await?;
    if !head_only {
        match resp.body {
            Body::Bytes(b) => io.write_all(&b).await?,
            Body::File(mut f, n) => {
                tokio::io::copy(&mut (&mut f).take(n), io).await?;
            }
        }
    }
    io.flush().await
}

/// How the body of `req` is delimited (RFC 9112 §6): its `Content-Length`
/// (`None`: no body), or the status and text to answer before closing the connection
/// when the framing is ambiguous or unsupported: more than one length or a
/// length that is not 1*DIGIT (400, §6.3), `Transfer-Encoding` beside a
/// length or in HTTP/1.0 (400, §6.1), chunked (411: send a length) or any
/// other coding (501).
pub fn body_length(req: &http::Request<()>) -> Result<Option<u64>, (StatusCode, String)> {
    let headers = req.headers();
    let bad = |why: &str| Err((StatusCode::BAD_REQUEST, format!("{why}\n")));
    let lengths = headers.get_all(http::header::CONTENT_LENGTH);
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        if headers.contains_key(http::header::CONTENT_LENGTH) {
            return bad("both Transfer-Encoding and Content-Length: send one");
        }
        if req.version() == http::Version::HTTP_10 {
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        }
        let codings: Vec<String> = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| {
                let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
                v.split(',')
                    .map(|c| c.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        return Err(if codings.iter().all(|c| c == "chunked") {
            (
                StatusCode::LENGTH_REQUIRED,
                "chunked request bodies are not accepted: send the body with Content-Length\n"
                    .to_owned(),
            )
        } else {
            (
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "Transfer-Encoding `{}` is not implemented: send the body with Content-Length\n",
                    codings.join(", ")
                ),
            )
        });
    }
    let mut values = lengths.iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return bad("more than one Content-Length");
    }
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return bad("Content-Length is not a decimal number");
    }
    match std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
    {
        Some(n) => Ok(Some(n)),
        None => bad("Content-Length is too large"),
    }
}

/// How reading a request's body ended.
pub enum BodyRead {
    /// The whole body.
    Read(Vec<u8>),
    /// Longer than `limits.max_body_size` (413); not read.
    TooLarge,
    /// HTTP/1.1 without `Content-Length` (411); not read.
    LengthRequired,
    /// The client stopped sending or timed out: close without answering.
    Failed,
}

/// A request body, read only by the requests that take one (a publish).
pub trait RequestBody: Send {
    /// The whole body, at most `max` bytes.
    fn read(&mut self, max: usize) -> Pin<Box<dyn Future<Output = BodyRead> + Send + '_>>;
}

/// Answer one plain HTTP request, whatever HTTP version carried it: the
/// HTTP API, `/metrics` and `/healthz`, pages and static files. `None`:
/// the body could not be read, close without an answer.
pub async fn answer(
    state: &State,
    req: &http::Request<()>,
    body: &mut dyn RequestBody,
    routes: &[Route],
) -> Option<Response> {
    state
        .metrics
        .http_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = req.uri().path();
    let method = req.method();
    let api = routes.iter().find_map(|r| match &r.kind {
        RouteKind::Pubsub {
            publish_path: Some(p),
            ..
        } => {
            if p == path {
                Some((r, Api::Publish))
            } else if sibling(p, "history") == path {
                Some((r, Api::History))
            } else if sibling(p, "presence") == path {
                Some((r, Api::Presence))
            } else {
                None
            }
        }
        _ => None,
    });
    Some(match api {
        Some((route, Api::Publish)) => {
            if method != Method::POST {
                Response::text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n").header("allow", "POST")
            } else {
                match body.read(state.config.limits.max_body_size).await {
                    BodyRead::Read(b) => publish_request(state, route, req, &b).await,
                    BodyRead::TooLarge => {
                        Response::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")
                    }
                    BodyRead::LengthRequired => Response::text(
                        StatusCode::LENGTH_REQUIRED,
                        "send the body with Content-Length\n",
                    ),
                    BodyRead::Failed => return None,
                }
            }
        }
        Some((route, read)) => {
            if method != Method::GET && method != Method::HEAD {
                Response::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                    .header("allow", "GET, HEAD")
            } else {
                read_request(state, route, req, read).await
            }
        }
        None => match super::admin::answer_public(state, req) {
            Some(r) => r,
            None => page(path, method, routes).await,
        },
    })
}

/// The body of an HTTP/1.1 request: `length` bytes (its `Content-Length`),
/// the first of them maybe already read into `leftover`.
struct Http1Body<'a> {
    io: &'a mut Conn,
    leftover: &'a mut BytesMut,
    length: Option<u64>,
    timeout: std::time::Duration,
    /// Whether the body was read off the connection.
    taken: bool,
}

impl RequestBody for Http1Body<'_> {
    fn read(&mut self, max: usize) -> Pin<Box<dyn Future<Output = BodyRead> + Send + '_>> {
        Box::pin(async move {
            let Some(n) = self.length else {
                return BodyRead::LengthRequired;
            };
            if n > max as u64 {
                return BodyRead::TooLarge;
            }
            self.taken = true;
            match read_body(self.io, self.leftover, n as usize, self.timeout).await {
                Some(b) => BodyRead::Read(b),
                None => BodyRead::Failed,
            }
        })
    }
}

/// Answer one plain HTTP/1.1 request (its framing checked by
/// [`body_length`]: `length`). Returns the bytes read past it when the
/// connection stays open for another request, `None` to close it.
pub async fn serve(
    state: &State,
    io: &mut Conn,
    req: http::Request<()>,
    length: Option<u64>,
    mut leftover: BytesMut,
    routes: &[Route],
) -> Option<BytesMut> {
    let headers = req.headers();
    let mut keep_alive = req.version() == http::Version::HTTP_11
        && !headers.get_all(http::header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
    let head_only = req.method() == Method::HEAD;
    let mut body = Http1Body {
        io,
        leftover: &mut leftover,
        length,
        timeout: state.config.limits.handshake_timeout,
        taken: false,
    };
    let resp = answer(state, &req, &mut body, routes).await?;
    // A body left unread would be taken for the next request (and a
    // POST without a length has one of unknown size).
    if !body.taken && (length.is_some_and(|n| n > 0) || resp.status == StatusCode::LENGTH_REQUIRED)
    {
        keep_alive = false;
    }
    let body = if head_only { 0 } else { resp.body_len() };
    let deadline = state.config.limits.http_response_deadline(body);
    let ok = match tokio::time::timeout(deadline, write_response(io, resp, keep_alive, head_only))
        .await
    {
        Ok(written) => written.is_ok(),
        Err(_) => {
            tracing::info!(
                body,
                ?deadline,
                "HTTP response not taken within limits.http_response_timeout plus the body at limits.min_send_rate: closing"
            );
            false
        }
    };
    (ok && keep_alive).then_some(leftover)
}

async fn read_body(
    io: &mut Conn,
    leftover: &mut BytesMut,
    n: usize,
    timeout: std::time::Duration,
) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(n);
    let take = n.min(leftover.len());
    body.extend_from_slice(&leftover[..take]);
    leftover.advance(take);
    if body.len() < n {
        let start = body.len();
        body.resize(n, 0);
        match tokio::time::timeout(timeout, io.read_exact(&mut body[start..])).await {
            Ok(Ok(_)) => {}
            _ => return None,
        }
    }
    Some(body)
}

/// The HTTP API of a pubsub route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// `POST` its `publish_path`.
    Publish,
    /// `GET` the sibling `history?channel=…&limit=…`.
    History,
    /// `GET` the sibling `presence?channel=…`.
    Presence,
}

/// The path beside `publish_path` named `name` (`/api/publish` →
/// `/api/history`).
pub fn sibling(publish_path: &str, name: &str) -> String {
    match publish_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => format!("/{name}"),
    }
}

/// `None` when the request carries the route's publish token; else the
/// 401 to answer.
fn refuse_unless_token(route: &Route, req: &http::Request<()>) -> Option<Response> {
    let RouteKind::Pubsub { publish_token, .. } = &route.kind else {
        return Some(Response::text(StatusCode::NOT_FOUND, "not found\n"));
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let authorized = match (publish_token, given) {
        (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
        _ => false,
    };
    if authorized {
        return None;
    }
    Some(
        Response::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "missing or wrong bearer token"}),
        )
        .header("www-authenticate", "Bearer"),
    )
}

fn bad_request(why: &str) -> Response {
    Response::json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": why}))
}

/// `GET …/history` and `GET …/presence`, with the publish token.
async fn read_request(state: &State, route: &Route, req: &http::Request<()>, api: Api) -> Response {
    if let Some(refused) = refuse_unless_token(route, req) {
        return refused;
    }
    let RouteKind::Pubsub {
        history_size,
        presence,
        ..
    } = &route.kind
    else {
        return Response::text(StatusCode::NOT_FOUND, "not found\n");
    };
    let Some(engine) = state.engines[route.id].clone() else {
        return Response::text(StatusCode::INTERNAL_SERVER_ERROR, "no engine\n");
    };
    let query = req.uri().query().unwrap_or("");
    let Some(channel) = query_param(query, "channel").filter(|c| valid_channel(c)) else {
        return bad_request("`channel` (a channel name) is required in the query");
    };
    let fields = match api {
        Api::History if *history_size == 0 => {
            return bad_request("this route keeps no history (set `history_size` on the route)")
        }
        Api::History => {
            let limit = match query_param(query, "limit") {
                None => *history_size,
                Some(l) => match l.parse::<usize>() {
                    Ok(n) => n.min(*history_size),
                    Err(_) => return bad_request("`limit` must be a number"),
                },
            };
            let max_bytes = state.config.limits.max_message_size;
            match engine.history(&channel, limit, max_bytes).get().await {
                Ok(h) => history_fields(&h),
                Err(e) => return unavailable(&e),
            }
        }
        Api::Presence if !presence => {
            return bad_request("this route keeps no presence (set `presence = true` on the route)")
        }
        Api::Presence => match engine.presence(&channel).get().await {
            Ok(clients) => presence_fields(clients),
            Err(e) => return unavailable(&e),
        },
        Api::Publish => unreachable!("POST is handled by publish_request"),
    };
    let body = format!(
        r#"{{"channel":{},{fields}}}"#,
        serde_json::Value::from(channel)
    );
    Response {
        status: StatusCode::OK,
        headers: vec![("content-type", "application/json".into())],
        body: Body::Bytes(body.into_bytes()),
    }
}

/// 503 for an engine that could not answer (unreachable or timed out).
fn unavailable(e: &EngineError) -> Response {
    Response::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({"error": e.to_string()}),
    )
    .header("retry-after", "1")
}

async fn publish_request(
    state: &State,
    route: &Route,
    req: &http::Request<()>,
    body: &[u8],
) -> Response {
    if let Some(refused) = refuse_unless_token(route, req) {
        return refused;
    }
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Response::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("body is not JSON: {e}")}),
            )
        }
    };
    let Some(channel) = v
        .get("channel")
        .and_then(|c| c.as_str())
        .filter(|c| valid_channel(c))
    else {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "`channel` (a string) is required"}),
        );
    };
    let data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
    let key = match v.get("idempotency_key") {
        None => None,
        Some(serde_json::Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.as_str()),
        Some(_) => return bad_request("`idempotency_key` must be a string of 1 to 256 bytes"),
    };
    let Some(engine) = state.engines[route.id].as_deref() else {
        return Response::text(StatusCode::INTERNAL_SERVER_ERROR, "no engine\n");
    };
    let p = match publish(engine, channel, &data, key).get().await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    let mut answer = serde_json::json!({"delivered": p.delivered});
    if let Some(pos) = &p.position {
        answer["epoch"] = serde_json::Value::from(&*pos.epoch);
        answer["offset"] = serde_json::Value::from(pos.offset);
    }
    if p.duplicate {
        answer["duplicate"] = serde_json::Value::Bool(true);
    }
    Response::json(StatusCode::OK, &answer)
}

async fn page(path: &str, method: &Method, routes: &[Route]) -> Response {
    let get = method == Method::GET || method == Method::HEAD;
    let not_allowed = || {
        Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            .header("allow", "GET, HEAD")
    };
    let pages = routes.iter().filter(|r| !r.kind.is_websocket());
    for r in pages.chain(routes.iter().filter(|r| r.kind.is_websocket())) {
        let Some((_, rest)) = r.pattern.matches(path) else {
            continue;
        };
        if !get {
            return not_allowed();
        }
        return match &r.kind {
            RouteKind::Demo => Response {
                status: StatusCode::OK,
                headers: vec![
                    ("content-type", "text/html; charset=utf-8".into()),
                    ("cache-control", "no-cache".into()),
                ],
                body: Body::Bytes(DEMO_PAGE.as_bytes().to_vec()),
            },
            RouteKind::Static { dir } => static_file(dir, rest, path).await,
            _ => Response::text(
                StatusCode::UPGRADE_REQUIRED,
                "this is a WebSocket endpoint: connect with a WebSocket client\n",
            )
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13"),
        };
    }
    Response::text(StatusCode::NOT_FOUND, "not found\n")
}

/// Decode `%XX` in a path (no `+` rule); `None` for bad escapes or UTF-8.
fn decode_path(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file for `rest` under `root`, refusing anything that could leave it:
/// `..`, hidden names (`.git`), backslashes, NUL, and symlinks pointing out.
pub fn resolve(root: &Path, rest: &str) -> Option<PathBuf> {
    let decoded = decode_path(rest)?;
    let mut path = root.to_path_buf();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg.contains(['\\', '\0']) {
            return None;
        }
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) => path.push(seg),
            _ => return None,
        }
    }
    Some(path)
}

async fn static_file(root: &Path, rest: &str, req_path: &str) -> Response {
    let not_found = || Response::text(StatusCode::NOT_FOUND, "not found\n");
    let Some(mut path) = resolve(root, rest) else {
        return not_found();
    };
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return not_found();
    };
    if meta.is_dir() {
        if !req_path.ends_with('/') {
            return Response::text(StatusCode::MOVED_PERMANENTLY, "moved\n")
                .header("location", directory_location(req_path));
        }
        path.push("index.html");
    }
    // Symlinks must not lead out of the root.
    let Ok(real) = tokio::fs::canonicalize(&path).await else {
        return not_found();
    };
    if !real.starts_with(root) {
        return not_found();
    }
    // Regular files only: opening a FIFO would wait for a writer, and a
    // device or socket is not a page. Non-blocking, so that a file swapped
    // for a FIFO after the check cannot hang the open either.
    if !tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_file()) {
        return not_found();
    }
    let Ok(file) = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&real)
        .await
    else {
        return not_found();
    };
    let Ok(meta) = file.metadata().await else {
        return not_found();
    };
    if !meta.is_file() {
        return not_found();
    }
    Response {
        status: StatusCode::OK,
        headers: vec![("content-type", content_type(&real).into())],
        body: Body::File(file, meta.len()),
    }
}

/// Where a directory requested without its trailing slash is: the same
/// path with empty segments dropped, so that `//name` never becomes the
/// scheme-relative `//name/` (another host).
fn directory_location(req_path: &str) -> String {
    let mut location = String::with_capacity(req_path.len() + 1);
    for seg in req_path.split('/').filter(|s| !s.is_empty()) {
        location.push('/');
        location.push_str(seg);
    }
    location.push('/');
    location
}

/// The `Content-Type` for a file name.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let root = Path::new("/srv/www");
        assert_eq!(
            resolve(root, "a/b.css"),
            Some(PathBuf::from("/srv/www/a/b.css"))
        );
        assert_eq!(resolve(root, "../etc/passwd"), None);
        assert_eq!(resolve(root, "%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(root, "a/%2E%2E%2F%2E%2E/x"), None);
        assert_eq!(resolve(root, ".git/config"), None);
        assert_eq!(resolve(root, "a\\..\\b"), None);
        assert_eq!(resolve(root, "%zz"), None);
        assert_eq!(resolve(root, ""), Some(PathBuf::from("/srv/www")));
    }

    #[test]
    fn directory_redirects_stay_on_this_host() {
        assert_eq!(directory_location("/docs"), "/docs/");
        assert_eq!(directory_location("//evil.example"), "/evil.example/");
        assert_eq!(directory_location("///a//b"), "/a/b/");
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/INDEX.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
