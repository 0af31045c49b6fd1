//! Where `tether connect` reports what happens, in three styles:
//!
//! * plain (scripts): received data on stdout, one message per line; status
//!   and errors on stderr, so pipelines see only data;
//! * JSON lines (`--jsonl`): every event as one JSON object on stdout;
//! * interactive: human-readable lines with direction and time, printed
//!   above the line editor's prompt.

use super::session::Outcome;
use base64::Engine;
use rustyline::ExternalPrinter;
use serde_json::json;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tether::{CloseFrame, Message};

/// The output style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    Plain,
    Jsonl,
    Interactive,
}

/// Prints events in one style.
pub struct Output {
    mode: OutputMode,
    printer: Option<Mutex<Box<dyn ExternalPrinter + Send>>>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
        .round()
}

/// `HH:MM:SS.mmm` (UTC).
fn clock() -> String {
    let ms = now_ms() as u64;
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn hex_preview(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(32)
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if b.len() > 32 {
        s.push_str(" …");
    }
    s
}

impl Output {
    pub fn new(mode: OutputMode) -> Self {
        Output {
            mode,
            printer: None,
        }
    }

    pub fn interactive(printer: Box<dyn ExternalPrinter + Send>) -> Self {
        Output {
            mode: OutputMode::Interactive,
            printer: Some(Mutex::new(printer)),
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }

    fn human(&self, line: String) {
        match &self.printer {
            Some(p) => {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                if p.print(format!("{line}\n")).is_err() {
                    eprintln!("{line}");
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// The connection is open (`http2`: as a stream of an HTTP/2
    /// connection).
    pub fn open(&self, url: &str, protocol: Option<&str>, tls: Option<&str>, http2: bool) {
        let http = if http2 { "2" } else { "1.1" };
        match self.mode {
            OutputMode::Jsonl => self.json(json!({
                "event": "open", "time": now_ms(), "url": url, "protocol": protocol, "tls": tls,
                "http": http,
            })),
            _ => {
                let details: Vec<String> = http2
                    .then(|| "HTTP/2".to_owned())
                    .into_iter()
                    .chain(tls.map(str::to_owned))
                    .chain(protocol.map(|p| format!("subprotocol {p}")))
                    .collect();
                let details = if details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", details.join(", "))
                };
                self.human(format!("connected to {url}{details}"))
            }
        }
    }

    /// A received message or control frame.
    pub fn message(&self, m: &Message) {
        match self.mode {
            OutputMode::Plain => {
                if m.is_data() {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(m.as_bytes());
                    let _ = out.write_all(b"\n");
                    let _ = out.flush();
                }
            }
            OutputMode::Jsonl => {
                let (event, kind) = match m {
                    Message::Text(_) => ("message", "text"),
                    Message::Binary(_) => ("message", "binary"),
                    Message::Ping(_) => ("ping", "binary"),
                    Message::Pong(_) => ("pong", "binary"),
                    Message::Close(_) => return,
                };
                let mut v =
                    json!({ "event": event, "time": now_ms(), "type": kind, "len": m.len() });
                match m.as_text() {
                    Some(t) => v["data"] = json!(t),
                    None => {
                        v["base64"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(m.as_bytes()))
                    }
                }
                self.json(v);
            }
            OutputMode::Interactive => {
                let t = clock();
                let line = match m {
                    Message::Text(s) => format!("< {t} {s}"),
                    Message::Binary(b) => {
                        format!("< {t} [binary, {} bytes] {}", b.len(), hex_preview(b))
                    }
                    Message::Ping(p) => format!("< {t} [ping] {}", String::from_utf8_lossy(p)),
                    Message::Pong(p) => format!("< {t} [pong] {}", String::from_utf8_lossy(p)),
                    Message::Close(_) => return,
                };
                self.human(line);
            }
        }
    }

    /// The peer's Close frame arrived.
    pub fn close_received(&self, frame: Option<&CloseFrame>) {
        match self.mode {
            OutputMode::Jsonl => self.json(json!({
                "event": "close_frame", "time": now_ms(),
                "code": frame.map_or(1005, |f| f.code.as_u16()),
                "reason": frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            })),
            OutputMode::Interactive => self.human(format!(
                "< {} [close] {}",
                clock(),
                frame.map_or("no status code (1005)".into(), |f| format!(
                    "{} {}",
                    f.code,
                    f.reason.as_str()
                ))
            )),
            OutputMode::Plain => {}
        }
    }

    /// The connection is over.
    pub fn closed(&self, outcome: &Outcome) {
        let Outcome::Closed {
            peer_close,
            error,
            counts,
            ..
        } = outcome;
        if counts.cut_off() {
            self.error(&format!(
                "sent {} messages, received {} replies: the server's Close cut off the rest \
                 (our Close went out at once; without --linger 0 tether connect waits for replies)",
                counts.sent, counts.received
            ));
        }
        let code = outcome.close_code();
        let clean = error.is_none() && peer_close.is_some();
        let reason = peer_close
            .as_ref()
            .and_then(|f| f.as_ref())
            .map(|f| f.reason.to_string())
            .unwrap_or_default();
        match self.mode {
            OutputMode::Jsonl => self.json(json!({
                "event": "close", "time": now_ms(), "code": code, "reason": reason,
                "clean": clean, "error": error.as_ref().map(|e| e.to_string()),
                "exit_status": outcome.exit_code(),
                "sent": counts.sent, "received": counts.received,
            })),
            _ => {
                let mut line = format!(
                    "closed: {} {reason}{}",
                    tether::CloseCode(code),
                    if clean { "" } else { " (not clean)" }
                );
                if let Some(e) = error {
                    line.push_str(&format!(": {e}"));
                }
                if self.mode == OutputMode::Interactive {
                    // The last line: the process exits right after, before
                    // the editor thread could print it; write it directly,
                    // over the prompt (the terminal is in raw mode).
                    eprint!("\r\x1b[K{line}\n");
                } else {
                    self.human(line);
                }
            }
        }
    }

    /// Something for the user to know.
    pub fn status(&self, msg: &str) {
        match self.mode {
            OutputMode::Jsonl => {
                self.json(json!({"event": "status", "time": now_ms(), "message": msg}))
            }
            _ => self.human(msg.to_owned()),
        }
    }

    /// Something went wrong.
    pub fn error(&self, msg: &str) {
        match self.mode {
            OutputMode::Jsonl => {
                self.json(json!({"event": "error", "time": now_ms(), "message": msg}))
            }
            // Possibly the last line before exiting: write it directly
            // (see `closed`).
            OutputMode::Interactive => eprint!("\r\x1b[Kerror: {msg}\n"),
            OutputMode::Plain => self.human(format!("error: {msg}")),
        }
    }
}
