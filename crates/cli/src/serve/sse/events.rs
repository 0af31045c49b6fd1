//! The event stream of one reader: what it resumes from, its channels'
//! messages framed as `text/event-stream` chunks, heartbeats and its end.

use super::*;

/// Where a stream starts: nowhere in particular, or the positions of a
/// `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// A new stream: live messages only.
    Fresh,
    /// Each channel's (epoch, offset), in the order of the channels.
    At(Vec<(String, u64)>),
    /// An id that does not describe these channels: every channel is reset.
    Unreadable,
}

impl Resume {
    /// Read a `Last-Event-ID` for `channels` channels.
    pub fn parse(id: Option<&str>, channels: usize) -> Resume {
        let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) else {
            return Resume::Fresh;
        };
        let positions: Option<Vec<(String, u64)>> = id
            .split(',')
            .map(|p| {
                let (epoch, offset) = p.split_once(':')?;
                let offset = offset.parse().ok()?;
                (!epoch.is_empty()).then(|| (epoch.to_owned(), offset))
            })
            .collect();
        match positions {
            Some(p) if p.len() == channels => Resume::At(p),
            _ => Resume::Unreadable,
        }
    }

    /// The position to resume channel `i` from, if any.
    pub(super) fn since(&self, i: usize) -> Option<(&str, u64)> {
        match self {
            Resume::Fresh => None,
            Resume::At(p) => p.get(i).map(|(e, o)| (e.as_str(), *o)),
            // No epoch is empty: the resume fails, and says so.
            Resume::Unreadable => Some(("", 0)),
        }
    }
}

/// One channel of a stream and the position its client has reached.
pub(super) struct Channel {
    pub(super) name: Box<str>,
    /// `{"op":"message","channel":NAME,"offset":` as the hub's messages
    /// start on this channel.
    pub(super) prefix: Vec<u8>,
    pub(super) epoch: Arc<str>,
    pub(super) offset: u64,
}

/// Why a stream ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reader fell too far behind (`limits.send_queue`, the queued
    /// byte limits).
    SlowConsumer,
    /// `sse_max_lifetime` passed.
    Lifetime,
}

impl End {
    pub(super) fn reason(self) -> &'static str {
        match self {
            End::SlowConsumer => "slow consumer",
            End::Lifetime => "sse_max_lifetime reached",
        }
    }
}

/// A piece of the event stream.
#[derive(Debug)]
pub struct Chunk {
    /// Bytes to send as they are.
    pub bytes: Bytes,
    /// Message events in it (heartbeats and subscribe events excluded).
    pub messages: u64,
}

/// The event stream of one subscription to a route's channels: the
/// `retry:` line, one `subscribed` (or `reset`) event per channel, then
/// every message as an event with the positions as its id, and a comment
/// after each `heartbeat` of silence. Independent of the HTTP version:
/// the caller sends each [`Chunk`] and, while a send waits on the client,
/// polls [`Events::poll_stalled`] to cut off a reader that fell behind.
pub struct Events {
    pub(super) member: Member,
    pub(super) channels: Vec<Channel>,
    pub(super) buf: BytesMut,
    /// When the stream last sent something.
    pub(super) spoke: tokio::time::Instant,
    pub(super) heartbeat: tokio::time::Interval,
    pub(super) lifetime: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) ended: Option<End>,
}

/// Fields of the own replies and resets the slow path reads.
#[derive(Deserialize)]
pub(super) struct Control<'a> {
    pub(super) op: &'a str,
    #[serde(default)]
    pub(super) channel: Option<String>,
    #[serde(default)]
    pub(super) epoch: Option<String>,
    #[serde(default)]
    pub(super) offset: Option<u64>,
}

/// How a stream is set up.
pub struct Settings {
    /// `retry:` sent first.
    pub retry: Duration,
    /// Silence after which a comment is sent.
    pub heartbeat: Duration,
    /// End the stream after about this long.
    pub max_lifetime: Option<Duration>,
}

impl Settings {
    /// A route's settings.
    pub fn of(route: &SseRoute) -> Settings {
        Settings {
            retry: route.retry,
            heartbeat: route.heartbeat,
            max_lifetime: route.max_lifetime,
        }
    }
}

impl Events {
    /// Subscribe `user` to `channels` (valid, allowed, deduplicated) in
    /// `hub`, resuming from `resume`.
    pub fn open(
        hub: &Arc<Hub>,
        user: Option<Arc<str>>,
        channels: &[String],
        resume: &Resume,
        settings: &Settings,
    ) -> Events {
        let mut member = hub.member_as(user);
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"retry: ");
        put_u64(&mut buf, settings.retry.as_millis() as u64);
        buf.put_slice(b"\n\n");
        let mut list = Vec::with_capacity(channels.len());
        for (i, name) in channels.iter().enumerate() {
            let since = resume.since(i);
            let mut joined = None;
            member.subscribe(name, since, |j: &Joined| {
                joined = Some(j.clone());
                subscribed(name, j)
            });
            let j = joined.expect("a new subscription is acknowledged");
            // Where this client is: the resume position when everything
            // after it follows, else the channel's position now.
            let offset = match (j.recovered, since) {
                (Some(true), Some((_, o))) => o,
                _ => j.position.offset,
            };
            let json_name = serde_json::Value::from(name.as_str()).to_string();
            list.push(Channel {
                name: name.as_str().into(),
                prefix: format!(r#"{{"op":"message","channel":{json_name},"offset":"#).into_bytes(),
                epoch: j.position.epoch,
                offset,
            });
        }
        let start = tokio::time::Instant::now() + settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(start, settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lifetime = settings.max_lifetime.map(|l| {
            // Spread over the last tenth, so streams opened together do
            // not all reconnect at once.
            let l = l.mul_f64(0.9 + 0.1 * rand::random::<f64>());
            Box::pin(tokio::time::sleep(l))
        });
        Events {
            member,
            channels: list,
            buf,
            spoke: tokio::time::Instant::now(),
            heartbeat,
            lifetime,
            ended: None,
        }
    }

    /// The id of the next event: every channel's position.
    pub(super) fn put_id(&mut self) {
        self.buf.put_slice(b"id: ");
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                self.buf.put_u8(b',');
            }
            self.buf.put_slice(c.epoch.as_bytes());
            self.buf.put_u8(b':');
            put_u64(&mut self.buf, c.offset);
        }
        self.buf.put_u8(b'\n');
    }

    /// Append the event for `msg`; true for a message event.
    pub(super) fn put_event(&mut self, msg: &Message) -> bool {
        let text = msg.as_bytes();
        // The common case: a message on one of the channels.
        let found = self
            .channels
            .iter()
            .position(|c| text.starts_with(&c.prefix));
        if let Some(i) = found {
            let rest = &text[self.channels[i].prefix.len()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if let Some(offset) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                self.channels[i].offset = offset;
                self.put_id();
                put_data(&mut self.buf, text);
                return true;
            }
        }
        // Acknowledgements and resets.
        let control: Option<Control<'_>> = serde_json::from_slice(text).ok();
        let event = match control {
            Some(c) if c.op == "reset" => {
                let i = c.channel.as_deref().and_then(|n| self.index_of(n));
                if let (Some(i), Some(epoch), Some(offset)) = (i, c.epoch, c.offset) {
                    self.channels[i].epoch = epoch.into();
                    self.channels[i].offset = offset;
                }
                Some("reset")
            }
            Some(c) if c.op == "ack" => Some("subscribed"),
            _ => None,
        };
        if let Some(event) = event {
            self.buf.put_slice(b"event: ");
            self.buf.put_slice(event.as_bytes());
            self.buf.put_u8(b'\n');
        }
        self.put_id();
        put_data(&mut self.buf, text);
        false
    }

    pub(super) fn index_of(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| &*c.name == name)
    }

    /// The next piece of the stream: what the subscription has now (at
    /// most [`BATCH`] messages), a heartbeat, or the end. When nothing is
    /// there the task is woken by the next message or timer.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Chunk, End>> {
        if let Some(end) = self.ended {
            return Poll::Ready(Err(end));
        }
        if self
            .lifetime
            .as_mut()
            .is_some_and(|l| l.as_mut().poll(cx).is_ready())
        {
            return self.end(End::Lifetime);
        }
        let mut messages = 0u64;
        for _ in 0..BATCH {
            match self.member.poll_next(cx) {
                Poll::Ready(Next::Message(m)) => messages += u64::from(self.put_event(&m)),
                Poll::Ready(Next::SlowConsumer) => return self.end(End::SlowConsumer),
                Poll::Pending => break,
            }
        }
        let now = tokio::time::Instant::now();
        if !self.buf.is_empty() {
            self.spoke = now;
        }
        while self.heartbeat.poll_tick(cx).is_ready() {
            let due = self.spoke + self.heartbeat.period();
            if due > now {
                // Not silent for a whole period: the next tick is a period
                // after the last write.
                self.heartbeat.reset_at(due);
            } else {
                self.buf.put_slice(b": heartbeat\n\n");
                self.spoke = now;
            }
        }
        if self.buf.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(Ok(Chunk {
            bytes: self.buf.split().freeze(),
            messages,
        }))
    }

    /// For a caller whose send of the last chunk waits on the client:
    /// ready once the stream must end instead (the reader fell behind
    /// while blocked, or its lifetime passed).
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if self
            .lifetime
            .as_mut()
            .is_some_and(|l| l.as_mut().poll(cx).is_ready())
        {
            self.ended = Some(End::Lifetime);
            return Poll::Ready(End::Lifetime);
        }
        match self.member.poll_lagged(cx) {
            Poll::Ready(()) => {
                self.ended = Some(End::SlowConsumer);
                Poll::Ready(End::SlowConsumer)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub(super) fn end(&mut self, end: End) -> Poll<Result<Chunk, End>> {
        self.ended = Some(end);
        Poll::Ready(Err(end))
    }
}

/// The stream as bytes (for HTTP bodies built from a `Stream`), ending
/// where [`Events::poll_chunk`] ends.
impl futures_util::Stream for Events {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.get_mut().poll_chunk(cx) {
            Poll::Ready(Ok(c)) => Poll::Ready(Some(c.bytes)),
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `data:` lines for `text` and the blank line that ends the event (a
/// line break in `text` starts another `data:` line).
pub(super) fn put_data(buf: &mut BytesMut, text: &[u8]) {
    buf.reserve(text.len() + 8);
    for line in text.split(|&b| b == b'\n') {
        buf.put_slice(b"data: ");
        buf.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
}

pub(super) fn put_u64(buf: &mut BytesMut, n: u64) {
    buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The data of a channel's first event: its position, or a `reset` when
/// a resume was asked for and is impossible.
pub(super) fn subscribed(channel: &str, j: &Joined) -> Message {
    let name = serde_json::Value::from(channel);
    let epoch = serde_json::Value::from(&*j.position.epoch);
    let offset = j.position.offset;
    Message::text(match j.recovered {
        Some(false) => {
            format!(r#"{{"op":"reset","channel":{name},"epoch":{epoch},"offset":{offset}}}"#)
        }
        Some(true) => format!(
            r#"{{"op":"ack","channel":{name},"epoch":{epoch},"offset":{offset},"recovered":true}}"#
        ),
        None => format!(r#"{{"op":"ack","channel":{name},"epoch":{epoch},"offset":{offset}}}"#),
    })
}
