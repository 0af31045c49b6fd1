//! The client side: URL rules, TCP connect, the opening handshake.
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
use crate::error::{Error, Result};
use crate::head::read_head;
use crate::socket::WebSocket;
use crate::stream::MaybeTlsStream;
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use tether_proto::handshake::{
    generate_key, parse_response, parse_target, validate_response, Target,
};
use tether_proto::Role;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect to `url` with default settings.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>)> {
    ClientBuilder::new(url).connect().await
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

    /// The parsed target of the URL.
    pub fn target(&self) -> Result<Target> {
        Ok(parse_target(&self.url)?)
    }

    /// Connect over TCP and perform the handshake.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>)> {
        let target = self.target()?;
        if target.secure {
            return Err(Error::Tls("wss:// is not supported by this build".into()));
        }
        let addr = (
            target
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            target.port,
        );
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                what: "TCP connect",
                after: self.connect_timeout,
            })??;
        tcp.set_nodelay(true)?;
        self.handshake_on(MaybeTlsStream::Plain(tcp), &target).await
    }

    /// Perform the handshake over an already connected stream.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, http::Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = self.target()?;
        self.handshake_on(stream, &target).await
    }

    async fn handshake_on<S>(
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
        let key = generate_key();
        let bytes = req.encode(&key)?;
        let timeout = self.config.handshake_timeout;
        let limits = self.config.handshake_limits.clone();
        let exchange = async {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            let mut buf = BytesMut::new();
            let response = read_head(&mut stream, &mut buf, &limits, parse_response).await?;
            Ok::<_, Error>((response, buf))
        };
        let (response, leftover) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Timeout {
                    what: "opening handshake",
                    after: timeout,
                })??;
        validate_response(&response, &key, &self.protocols, &[])?;
        let ws = WebSocket::from_raw(stream, Role::Client, self.config, &leftover);
        Ok((ws, response))
    }
}
