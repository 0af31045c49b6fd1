//! Event streams on HTTP/2: the same admission and [`Events`], sent by
//! hyper as the response body.

use super::*;

/// Serve `GET PATH/events` of `route` on a stream of an HTTP/2 connection:
/// the admission of [`serve`], then the same [`Events`] as the response
/// body (hyper sends it as DATA frames; the end of the body ends the
/// stream, and the browser reconnects).
pub fn serve_http2(
    ctx: &Arc<Http2Conn>,
    req: http::Request<()>,
    host: &str,
    route: &Route,
    sse: &SseRoute,
    client: Client,
) -> http::Response<ResponseBody> {
    let state = &*ctx.state;
    let peer = client.addr;
    let path = req.uri().path().to_owned();
    let (grants, channels, slot, cors) = match admit(state, ctx.listener, host, &req, route, client)
    {
        Ok(a) => a,
        Err(refused) => {
            let resp = match refused {
                Some(r) => {
                    r.record(&state.metrics, "event stream", peer, &path);
                    Response::refused(&r)
                }
                None => Response::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                    .header("allow", "GET"),
            };
            return resp.into_http(false);
        }
    };
    let events = open_events(state, &req, route, sse, &grants, &channels);
    let metrics = state.route_metrics[route.id].clone();
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    metrics.open.fetch_add(1, Ordering::Relaxed);
    state.active.fetch_add(1, Ordering::AcqRel);
    ctx.session_opened();
    info!(%peer, path = %esc(&path), kind = "sse", channels = channels.len(), user = %esc(grants.subject.as_deref().unwrap_or("")), "open");
    let mut shutdown = state.shutdown.clone();
    let body = Http2Events {
        events,
        stop: Box::pin(async move { wait_shutdown(&mut shutdown).await }),
        ctx: ctx.clone(),
        metrics,
        _slot: slot,
        sent: (0, 0),
        started: Instant::now(),
        peer,
        path,
        ended: None,
    };
    let mut resp = http::Response::new(ResponseBody::Stream(Box::pin(body)));
    let headers = resp.headers_mut();
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-store"),
        ("x-accel-buffering", "no"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    if let Some(origin) = cors.and_then(|o| http::HeaderValue::try_from(o).ok()) {
        headers.insert("access-control-allow-origin", origin);
        headers.insert(
            "access-control-allow-credentials",
            http::HeaderValue::from_static("true"),
        );
        headers.insert("vary", http::HeaderValue::from_static("origin"));
    }
    resp
}

/// An event stream as an HTTP/2 response body. The stream ends (the body's
/// end) on shutdown, for a slow consumer or at `sse_max_lifetime`; a client
/// that resets the stream drops it. hyper polls a body only while its
/// stream has send capacity, so a reader that stops taking leaves its
/// messages in the hub (bounded like any subscriber's) and is cut off when
/// its stream is polled again; `send_timeout` cannot reach it, and it holds
/// its connection slot until the client resets the stream or the
/// connection ends.
pub(super) struct Http2Events {
    pub(super) events: Events,
    pub(super) stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    pub(super) ctx: Arc<Http2Conn>,
    pub(super) metrics: Arc<RouteMetrics>,
    pub(super) _slot: ConnSlot,
    pub(super) sent: (u64, u64),
    pub(super) started: Instant,
    pub(super) peer: std::net::SocketAddr,
    pub(super) path: String,
    pub(super) ended: Option<Ended>,
}

impl hyper::body::Body for Http2Events {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.ended.is_some() {
            return Poll::Ready(None);
        }
        if this.stop.as_mut().poll(cx).is_ready() {
            this.ended = Some(Ended::Shutdown);
            return Poll::Ready(None);
        }
        match this.events.poll_chunk(cx) {
            Poll::Ready(Ok(chunk)) => {
                if chunk.messages > 0 {
                    this.sent.0 += chunk.messages;
                    this.sent.1 += chunk.bytes.len() as u64;
                    this.metrics.sent(chunk.messages, chunk.bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk.bytes))))
            }
            Poll::Ready(Err(end)) => {
                if end == End::SlowConsumer {
                    this.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                }
                this.ended = Some(Ended::Server(end));
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Http2Events {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Ordering::Relaxed);
        self.ctx.session_closed();
        self.ctx.state.active.fetch_sub(1, Ordering::AcqRel);
        let ended = self.ended.take().unwrap_or(Ended::ClientClosed);
        info!(
            peer = %self.peer,
            path = %esc(&self.path),
            kind = "sse",
            duration_ms = self.started.elapsed().as_millis() as u64,
            messages_out = self.sent.0,
            bytes_out = self.sent.1,
            reason = %esc(&ended.describe()),
            "close"
        );
    }
}
