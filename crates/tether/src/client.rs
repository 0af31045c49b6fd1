//! The client side: URL rules, proxies, TCP connect, TLS, the opening
//! handshake.
//!
//! By default the proxy comes from the environment (`https_proxy`,
//! `http_proxy`, `all_proxy`, `no_proxy`; see [`crate::proxy`]) and
//! `wss://` trusts the system's root certificates (see [`crate::tls`]).
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! let (ws, response) = tether::ClientBuilder::new("ws://127.0.0.1:8080/chat")
//!     .origin("http://127.0.0.1:8080")
//!     .protocol("chat.v1")
//!     .connect()
//!     .await?;
//! println!("subprotocol: {:?}", response.headers().get("sec-websocket-protocol"));
//! # drop(ws); Ok(()) }
//! ```

use crate::config::WebSocketConfig;
use crate::error::{Error, Result, REFUSAL_BODY_LIMIT};
use crate::head::read_head;
use crate::proxy::Proxy;
use crate::socket::WebSocket;
use crate::stream::MaybeTlsStream;
#[cfg(feature = "tls")]
use crate::tls::TlsOptions;
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use tether_proto::handshake::{
    generate_key_from, parse_response, parse_target, validate_response, HandshakeError, Target,
};
use tether_proto::Role;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect with default settings to a URL (`&str`, `String`, `url::Url`,
/// `http::Uri`) or as an `http::Request` describes (its headers, `Origin`
/// and `Sec-WebSocket-Protocol` included); see [`IntoClientRequest`].
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>)> {
    request.into_client_request()?.connect().await
}

/// What [`connect`] accepts: anything that describes a client handshake.
///
/// An `http::Request<()>` gives its URI (`ws://`, `wss://`, `http(s)://`),
/// its `Origin`, its `Sec-WebSocket-Protocol` values as the offered
/// subprotocols (in order), and its other headers as extra request headers.
/// The headers the handshake writes itself (`Host`, `Upgrade`,
/// `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`,
/// `Sec-WebSocket-Extensions`) are ignored, so requests built for
/// tungstenite work unchanged.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// let request = http::Request::get("wss://api.example/stream")
///     .header("authorization", "Bearer s3cret")
///     .header("sec-websocket-protocol", "v2.stream, v1.stream")
///     .body(())
///     .expect("a valid request");
/// let (ws, response) = tether::connect(request).await?;
/// # drop((ws, response)); Ok(()) }
/// ```
pub trait IntoClientRequest {
    /// The client this describes, with default settings otherwise.
    fn into_client_request(self) -> Result<ClientBuilder>;
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(ClientBuilder::new(self))
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(ClientBuilder::new(self))
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(ClientBuilder::new(self.as_str()))
    }
}

impl IntoClientRequest for url::Url {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(ClientBuilder::new(String::from(self)))
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(ClientBuilder::new(self.to_string()))
    }
}

impl IntoClientRequest for ClientBuilder {
    fn into_client_request(self) -> Result<ClientBuilder> {
        Ok(self)
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<ClientBuilder> {
        use http::header::{
            CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
            SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
        };
        let mut builder = ClientBuilder::new(self.uri().to_string());
        for (name, value) in self.headers() {
            if name == ORIGIN {
                let origin = value
                    .to_str()
                    .map_err(|_| Error::InvalidRequest(HandshakeError::InvalidOrigin))?;
                builder = builder.origin(origin);
            } else if name == SEC_WEBSOCKET_PROTOCOL {
                let list = value.to_str().map_err(|_| {
                    Error::InvalidRequest(HandshakeError::InvalidSubprotocol(
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    ))
                })?;
                for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    builder = builder.protocol(p);
                }
            } else if ![
                HOST,
                UPGRADE,
                CONNECTION,
                SEC_WEBSOCKET_KEY,
                SEC_WEBSOCKET_VERSION,
                SEC_WEBSOCKET_EXTENSIONS,
            ]
            .contains(name)
            {
                builder = builder.header(name.clone(), value.clone());
            }
        }
        Ok(builder)
    }
}

/// A client connection being configured.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: HeaderMap,
    config: WebSocketConfig,
    connect_timeout: Duration,
    proxy: ProxySetting,
    #[cfg(feature = "tls")]
    tls: TlsSetting,
}

/// Where the proxy for a connection comes from.
#[derive(Clone, Debug, Default)]
enum ProxySetting {
    /// `http_proxy`/`https_proxy`/`all_proxy`/`no_proxy` (the default).
    #[default]
    Env,
    /// Always connect directly.
    Direct,
    /// Always use this one.
    Fixed(Proxy),
}

#[cfg(feature = "tls")]
#[derive(Clone, Debug)]
enum TlsSetting {
    Options(TlsOptions),
    Config(std::sync::Arc<rustls::ClientConfig>),
}

impl ClientBuilder {
    /// A client for `url` (`ws://`, `wss://`, or `http(s)://` mapped to them).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            origin: None,
            protocols: Vec::new(),
            headers: HeaderMap::new(),
            config: WebSocketConfig::default(),
            connect_timeout: Duration::from_secs(10),
            proxy: ProxySetting::Env,
            #[cfg(feature = "tls")]
            tls: TlsSetting::Options(TlsOptions::default()),
        }
    }

    /// Send this `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offer a subprotocol (call again for more, in preference order).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Add a request header (e.g. `Authorization`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Use these settings.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// Limit the TCP connect (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Tunnel through this proxy (`http://`, `socks5://`, `socks5h://`),
    /// ignoring the environment.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxySetting::Fixed(proxy);
        self
    }

    /// Connect directly, ignoring `http_proxy` and friends.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// TLS settings for `wss://` (roots, CA files, client certificate, SNI).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: TlsOptions) -> Self {
        self.tls = TlsSetting::Options(options);
        self
    }

    /// Use a ready-made rustls configuration for `wss://` (shared between
    /// connections, it also shares the session cache: resumption).
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = TlsSetting::Config(config);
        self
    }

    /// The settings the connection will use.
    pub fn get_config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// What the handshake sends besides the URL: the origin and the extra
    /// headers.
    #[cfg(feature = "http2")]
    pub(crate) fn request_extras(&self) -> (Option<&str>, &HeaderMap) {
        (self.origin.as_deref(), &self.headers)
    }

    /// The subprotocols offered, in preference order.
    pub fn offered_protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The URL this builder connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The parsed target of the URL.
    pub fn target(&self) -> Result<Target> {
        parse_target(&self.url).map_err(Error::InvalidRequest)
    }

    /// Connect (through a proxy if one applies), set up TLS for `wss://`,
    /// and perform the handshake.
    ///
    /// The TCP connect (including the proxy tunnel) is bounded by
    /// [`connect_timeout`](Self::connect_timeout); TLS and the HTTP exchange
    /// by the config's `handshake_timeout`.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>)> {
        let target = self.target()?;
        let tcp = self.connect_tcp(&target).await?;
        let stream = self.wrap_tls(tcp, &target).await?;
        self.handshake_on(stream, &target).await
    }

    /// The proxy this builder would use for its URL, if any.
    pub fn effective_proxy(&self) -> Result<Option<Proxy>> {
        let target = self.target()?;
        match &self.proxy {
            ProxySetting::Direct => Ok(None),
            ProxySetting::Fixed(p) => Ok(Some(p.clone())),
            ProxySetting::Env => Proxy::from_env(target.secure, &target.host, target.port),
        }
    }

    pub(crate) async fn connect_tcp(&self, target: &Target) -> Result<TcpStream> {
        let proxy = self.effective_proxy()?;
        let attempt = async {
            match &proxy {
                Some(p) => p.connect(&target.host, target.port).await,
                None => {
                    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
                    tcp.set_nodelay(true)?;
                    Ok(tcp)
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| Error::Timeout {
                what: if proxy.is_some() {
                    "TCP connect through the proxy"
                } else {
                    "TCP connect"
                },
                after: self.connect_timeout,
            })?
    }

    #[cfg(feature = "tls")]
    async fn wrap_tls(&self, tcp: TcpStream, target: &Target) -> Result<MaybeTlsStream> {
        self.wrap_tls_alpn(tcp, target, None).await
    }

    /// TLS for `wss://`, offering `alpn` when given instead of the
    /// configuration's protocols (`http/1.1`).
    #[cfg(feature = "tls")]
    #[cfg_attr(not(feature = "http2"), allow(dead_code))]
    pub(crate) async fn wrap_tls_alpn(
        &self,
        tcp: TcpStream,
        target: &Target,
        alpn: Option<&[&[u8]]>,
    ) -> Result<MaybeTlsStream> {
        if !target.secure {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let (mut config, name) = match &self.tls {
            TlsSetting::Options(o) => (o.build()?, o.server_name_for(&target.host)?),
            TlsSetting::Config(c) => (
                c.clone(),
                TlsOptions::default().server_name_for(&target.host)?,
            ),
        };
        if let Some(alpn) = alpn {
            let mut changed = (*config).clone();
            changed.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config = std::sync::Arc::new(changed);
        }
        let shown = name.to_str().into_owned();
        let connector = tokio_rustls::TlsConnector::from(config);
        let timeout = self.config.handshake_timeout;
        let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::Timeout {
                what: "TLS handshake",
                after: timeout,
            })?
            .map_err(|e| crate::tls::describe_handshake_error(e, &shown))?;
        Ok(MaybeTlsStream::Tls(Box::new(tls)))
    }

    #[cfg(not(feature = "tls"))]
    async fn wrap_tls(&self, tcp: TcpStream, target: &Target) -> Result<MaybeTlsStream> {
        if target.secure {
            return Err(Error::Config(
                "wss:// needs the `tls` feature of tether-ws, which this build lacks".into(),
            ));
        }
        Ok(MaybeTlsStream::Plain(tcp))
    }

    /// Perform the handshake over an already connected stream.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, http::Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = self.target()?;
        self.handshake_on(stream, &target).await
    }

    pub(crate) async fn handshake_on<S>(
        self,
        mut stream: S,
        target: &Target,
    ) -> Result<(WebSocket<S>, http::Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut req = target.client_request();
        req.origin = self.origin.clone();
        req.protocols = self.protocols.clone();
        req.headers = self.headers.clone();
        let (offer, offered_extensions) = crate::extensions::client_offer(&self.config);
        req.extensions = offer;
        let key = generate_key_from(self.config.protocol.random);
        let bytes = req.encode(&key).map_err(Error::InvalidRequest)?;
        let timeout = self.config.handshake_timeout;
        let limits = self.config.handshake_limits.clone();
        let exchange = async {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            let mut buf = BytesMut::new();
            let response = read_head(&mut stream, &mut buf, &limits, parse_response)
                .await
                .map_err(|e| match (target.secure, looks_like_tls(&buf)) {
                    (false, true) => Error::Tls(format!(
                        "{}:{} answered with TLS, not HTTP; is it wss://?",
                        target.host, target.port
                    )),
                    _ => e,
                })?;
            if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                let body = read_refusal_body(&mut stream, buf, response.headers()).await;
                return Err(Error::Refused {
                    status: response.status(),
                    body,
                });
            }
            Ok::<_, Error>((response, buf))
        };
        let (response, leftover) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Timeout {
                    what: "opening handshake",
                    after: timeout,
                })??;
        let accepted = validate_response(&response, &key, &self.protocols, offered_extensions)?;
        let mut config = self.config;
        crate::extensions::client_accepted(&mut config, &accepted)?;
        let ws = WebSocket::from_raw(stream, Role::Client, config, &leftover);
        Ok((ws, response))
    }
}

/// How long a refusal's body is waited for.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);

/// The bytes start like a TLS record (handshake or alert, version 3.x): a
/// TLS server answering a plain `ws://` request.
fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x15 | 0x16, 0x03, ..])
}

/// The start of a refusal's body (what follows the head in `buf`, then the
/// stream), at most [`REFUSAL_BODY_LIMIT`] bytes: up to `Content-Length`,
/// else until the server closes. A chunked body is not read (its framing
/// would show). A read error, or [`REFUSAL_BODY_WAIT`] passing, ends the
/// body where it is (the status is what matters). Control characters (a
/// hostile server's terminal escapes) become U+FFFD.
async fn read_refusal_body<S>(
    stream: &mut S,
    mut buf: BytesMut,
    headers: &http::HeaderMap,
) -> String
where
    S: AsyncRead + Unpin,
{
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let chunked = header(http::header::TRANSFER_ENCODING).is_some();
    let length = header(http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<usize>().ok());
    let want = match (chunked, length) {
        (true, _) => 0,
        (false, Some(n)) => n.min(REFUSAL_BODY_LIMIT),
        (false, None) => REFUSAL_BODY_LIMIT,
    };
    let read = async {
        while buf.len() < want {
            buf.reserve(want - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, read).await;
    buf.truncate(want);
    String::from_utf8_lossy(&buf)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}
