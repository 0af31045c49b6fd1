//! The three pipes of an exec program, each served on its own so that no
//! direction waits for another: a writer task feeds stdin from a queue
//! bounded in bytes (every write must make progress within
//! `stdin_timeout`), a reader task turns stdout into messages, and stderr
//! lines go to the log, bounded in length and with control characters
//! escaped.

use crate::serve::logsafe::esc;
use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tether::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest piece of input queued at once.
pub const STDIN_CHUNK: usize = 16 << 10;
/// Pieces queued for the writer: with the one it writes, at most
/// `(STDIN_QUEUE + 1) * STDIN_CHUNK` bytes of input wait per session.
const STDIN_QUEUE: usize = 4;
/// Longest stderr line logged; the rest is counted, not logged.
pub const STDERR_LINE_MAX: usize = 4096;

/// How the stdin writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinEnd {
    /// Everything queued was written and the queue closed.
    Done,
    /// The program closed its stdin (or the write failed).
    Closed,
    /// A write made no progress for `stdin_timeout`.
    Stalled,
}

/// The queue into a program's stdin and the task writing it.
pub struct StdinFeed {
    /// `None` once closing (see [`finish`](Self::finish)).
    tx: Option<mpsc::Sender<Bytes>>,
    writer: JoinHandle<StdinEnd>,
}

impl StdinFeed {
    /// Start the writer task.
    pub fn start(pipe: ChildStdin, timeout: Duration) -> StdinFeed {
        let (tx, rx) = mpsc::channel(STDIN_QUEUE);
        StdinFeed {
            tx: Some(tx),
            writer: tokio::spawn(write_stdin(pipe, rx, timeout)),
        }
    }

    /// The writer task and the queue (`None` while closing), borrowed
    /// together. The task's handle must not be polled once it has ended.
    pub fn parts(&mut self) -> (&mut JoinHandle<StdinEnd>, Option<&mpsc::Sender<Bytes>>) {
        (&mut self.writer, self.tx.as_ref())
    }

    /// Close stdin once what is queued is written (bounded by the timeout).
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

impl Drop for StdinFeed {
    /// Closes stdin now, whatever is still queued.
    fn drop(&mut self) {
        self.writer.abort();
    }
}

async fn write_stdin(
    mut pipe: ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
    timeout: Duration,
) -> StdinEnd {
    let mut buf = BytesMut::new();
    while let Some(piece) = rx.recv().await {
        buf.extend_from_slice(&piece);
        // Small messages queued together go out in one write.
        while buf.len() < STDIN_CHUNK {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        while buf.has_remaining() {
            match tokio::time::timeout(timeout, pipe.write(&buf)).await {
                Err(_) => return StdinEnd::Stalled,
                Ok(Ok(0)) | Ok(Err(_)) => return StdinEnd::Closed,
                Ok(Ok(n)) => buf.advance(n),
            }
        }
    }
    StdinEnd::Done
}

/// Split a received message into pieces for the stdin queue: `next` takes
/// the next one (the newline of lines mode joins the last piece when it
/// fits).
#[derive(Debug)]
pub struct Input {
    rest: Bytes,
    newline: bool,
}

impl Input {
    /// A message's payload; `newline`: lines mode.
    pub fn new(payload: Bytes, newline: bool) -> Input {
        Input {
            rest: payload,
            newline,
        }
    }

    /// True once every piece is taken.
    pub fn is_done(&self) -> bool {
        self.rest.is_empty() && !self.newline
    }

    /// The next piece; `None` when the message is all taken.
    pub fn next(&mut self) -> Option<Bytes> {
        if self.rest.len() > STDIN_CHUNK || (self.rest.len() == STDIN_CHUNK && self.newline) {
            return Some(self.rest.split_to(STDIN_CHUNK));
        }
        if self.newline {
            self.newline = false;
            let mut piece = BytesMut::with_capacity(self.rest.len() + 1);
            piece.extend_from_slice(&std::mem::take(&mut self.rest));
            piece.extend_from_slice(b"\n");
            return Some(piece.freeze());
        }
        (!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest))
    }
}

/// Turn stdout into messages until end of file or until the receiver is
/// gone: lines (without `\n` or `\r\n`, split every `max` bytes, invalid
/// UTF-8 replaced) or, in binary mode, one message per read.
pub async fn read_stdout(stdout: ChildStdout, binary: bool, max: usize, tx: mpsc::Sender<Message>) {
    let mut reader = BufReader::new(stdout);
    if binary {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(max as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                let text = match String::from_utf8(line) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                if tx.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Log each stderr line of the program (at most [`STDERR_LINE_MAX`] bytes
/// of it, invalid UTF-8 replaced, control characters escaped by
/// [`esc`]) until end of file.
pub async fn log_stderr(stderr: ChildStderr, program: String, pid: u32) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = STDERR_LINE_MAX as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut cut = 0;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > STDERR_LINE_MAX {
            line.truncate(STDERR_LINE_MAX);
            cut = 1 + skip_line(&mut reader).await;
        }
        let line = String::from_utf8_lossy(&line);
        let text = esc(&line);
        if cut > 0 {
            tracing::info!(%program, pid, "stderr: {text}[... {cut} more bytes]");
        } else {
            tracing::info!(%program, pid, "stderr: {text}");
        }
    }
}

/// Discard the rest of a line; the bytes discarded (without the `\n`).
async fn skip_line(reader: &mut BufReader<ChildStderr>) -> usize {
    let mut skipped = 0;
    loop {
        let Ok(buf) = reader.fill_buf().await else {
            return skipped;
        };
        if buf.is_empty() {
            return skipped;
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return skipped + i;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_cut_into_bounded_pieces_with_its_newline() {
        let pieces = |len: usize, newline: bool| {
            let mut input = Input::new(Bytes::from(vec![b'x'; len]), newline);
            std::iter::from_fn(|| input.next())
                .map(|p| p.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(pieces(5, true), vec![6]);
        assert_eq!(pieces(5, false), vec![5]);
        assert_eq!(pieces(0, true), vec![1]);
        assert_eq!(pieces(0, false), Vec::<usize>::new());
        assert_eq!(pieces(STDIN_CHUNK, true), vec![STDIN_CHUNK, 1]);
        assert_eq!(
            pieces(2 * STDIN_CHUNK + 3, true),
            vec![STDIN_CHUNK, STDIN_CHUNK, 4]
        );
    }
}
