//! `[http2]`: the HTTP/2 settings of listeners with `http2 = true` (how
//! many streams a connection may open, and the flow-control windows that
//! bound what a client can make the server hold per stream and per
//! connection). Raw TOML -> `Http2Settings`; every error names its key.

use super::raw::SizeValue;
use super::values::parse_size_value;
use serde::{Deserialize, Serialize};

/// `[http2]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Streams open at once per connection: WebSockets, event streams and
    /// requests together (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// Bytes a client may send on one stream ahead of the server's reads
    /// (default 128K). Larger windows carry big messages faster; each
    /// stream may hold this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_window: Option<SizeValue>,
    /// Bytes a client may send on the connection ahead of the server's
    /// reads (default: every stream's whole window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_window: Option<SizeValue>,
    /// Bytes queued on one stream for a client that takes nothing; beyond
    /// it the stream's writer waits (default 128K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_buffer: Option<SizeValue>,
}

/// Validated `[http2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub stream_window: u32,
    pub connection_window: u32,
    pub send_buffer: usize,
}

impl Http2Settings {
    /// Largest DATA frame a client may send: a message of up to a stream
    /// window crosses as one frame rather than in 16 KiB pieces (bounded by
    /// the protocol's 16 MiB - 1).
    pub fn max_frame_size(&self) -> u32 {
        self.stream_window.clamp(MIN_FRAME, MAX_FRAME)
    }
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: 128,
            stream_window: 128 << 10,
            connection_window: 128 * (128 << 10),
            send_buffer: 128 << 10,
        }
    }
}

/// SETTINGS_MAX_FRAME_SIZE's range (RFC 9113 §6.5.2).
const MIN_FRAME: u32 = 1 << 14;
const MAX_FRAME: u32 = (1 << 24) - 1;
/// The largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: usize = (1 << 31) - 1;
/// Below this a window would split every message into many round trips.
const MIN_WINDOW: usize = 16 << 10;

impl RawHttp2 {
    /// Fill every missing key with its default (`RawConfig::with_args`).
    pub fn with_defaults(mut self) -> Self {
        let d = Http2Settings::default();
        let streams = *self
            .max_concurrent_streams
            .get_or_insert(d.max_concurrent_streams);
        let window = self
            .stream_window
            .get_or_insert(SizeValue::Text(format!("{}K", d.stream_window >> 10)))
            .clone();
        if self.connection_window.is_none() {
            // Every stream's whole window, so a stalled stream never holds
            // what the others need.
            if let Ok(w) = size(&window, "stream_window") {
                let total = (w as u64 * u64::from(streams)).min(MAX_WINDOW as u64);
                self.connection_window = Some(SizeValue::Bytes(total));
            }
        }
        self.send_buffer
            .get_or_insert(SizeValue::Text(format!("{}K", d.send_buffer >> 10)));
        self
    }

    /// The validated settings.
    pub fn validate(&self) -> Result<Http2Settings, String> {
        let d = Http2Settings::default();
        let max_concurrent_streams = self
            .max_concurrent_streams
            .unwrap_or(d.max_concurrent_streams);
        if max_concurrent_streams == 0 {
            return Err("`http2.max_concurrent_streams` must be at least 1".into());
        }
        let stream_window = match &self.stream_window {
            Some(v) => window(v, "stream_window")?,
            None => d.stream_window,
        };
        let connection_window = match &self.connection_window {
            Some(v) => window(v, "connection_window")?,
            None => (u64::from(stream_window) * u64::from(max_concurrent_streams))
                .min(MAX_WINDOW as u64) as u32,
        };
        if connection_window < stream_window {
            return Err(format!(
                "`http2.connection_window` ({connection_window} bytes) is smaller than \
                 `http2.stream_window` ({stream_window} bytes): one stream could not use its window"
            ));
        }
        let send_buffer = match &self.send_buffer {
            Some(v) => size(v, "send_buffer")?,
            None => d.send_buffer,
        };
        if send_buffer < MIN_WINDOW {
            return Err(format!(
                "`http2.send_buffer` is {send_buffer} bytes; at least 16K"
            ));
        }
        Ok(Http2Settings {
            max_concurrent_streams,
            stream_window,
            connection_window,
            send_buffer,
        })
    }
}

fn window(v: &SizeValue, key: &str) -> Result<u32, String> {
    let w = size(v, key)?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&w) {
        return Err(format!(
            "`http2.{key}` is {w} bytes; it must be 16K..=2G-1 (HTTP/2's largest window)"
        ));
    }
    Ok(w as u32)
}

fn size(v: &SizeValue, key: &str) -> Result<usize, String> {
    parse_size_value(v, &format!("http2.{key}"))
}

#[cfg(test)]
mod tests {
    use super::{Http2Settings, RawHttp2};

    fn parse(text: &str) -> Result<Http2Settings, String> {
        let raw: RawHttp2 = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.with_defaults().validate()
    }

    #[test]
    fn defaults_hold_every_streams_window_on_the_connection() {
        let d = parse("").unwrap();
        assert_eq!(d, Http2Settings::default());
        assert_eq!(d.connection_window, 128 * d.stream_window);
        assert_eq!(d.max_frame_size(), d.stream_window);
    }

    #[test]
    fn every_key_is_applied_and_the_connection_window_follows_the_streams() {
        let c =
            parse("max_concurrent_streams = 16\nstream_window = \"1M\"\nsend_buffer = \"256K\"\n")
                .unwrap();
        assert_eq!(
            c,
            Http2Settings {
                max_concurrent_streams: 16,
                stream_window: 1 << 20,
                connection_window: 16 << 20,
                send_buffer: 256 << 10,
            }
        );
        let c = parse("stream_window = \"64M\"\nconnection_window = \"1G\"\n").unwrap();
        assert_eq!(
            (c.connection_window, c.max_frame_size()),
            (1 << 30, (1 << 24) - 1)
        );
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (text, key) in [
            ("max_concurrent_streams = 0", "max_concurrent_streams"),
            ("stream_window = 1000", "stream_window"),
            ("stream_window = \"4G\"", "stream_window"),
            (
                "stream_window = \"1M\"\nconnection_window = \"512K\"",
                "connection_window",
            ),
            ("send_buffer = \"1K\"", "send_buffer"),
            ("windows = 1", "windows"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
