//! Response bodies served by hyper (HTTP/2): bytes in memory or a file read
//! a piece at a time, with their exact length, or a stream produced as it
//! goes (an event stream).

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from a file per DATA frame's worth of body.
const FILE_PIECE: usize = 64 << 10;

/// A response body.
pub enum ResponseBody {
    /// In memory (`None` once sent).
    Bytes(Option<Bytes>),
    /// A file's remaining bytes.
    File(Box<FileBody>),
    /// Produced as it goes (an event stream).
    Stream(Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = io::Error> + Send>>),
}

/// A file sent a piece at a time.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl ResponseBody {
    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::Bytes(None)
    }

    /// These bytes.
    pub fn bytes(b: impl Into<Bytes>) -> ResponseBody {
        let b = b.into();
        ResponseBody::Bytes((!b.is_empty()).then_some(b))
    }

    /// The first `len` bytes of `file`.
    pub fn file(file: tokio::fs::File, len: u64) -> ResponseBody {
        ResponseBody::File(Box::new(FileBody {
            file,
            remaining: len,
            buf: Vec::new(),
        }))
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::File(f) => f.poll_piece(cx),
            ResponseBody::Stream(s) => s.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Bytes(b) => b.is_none(),
            ResponseBody::File(f) => f.remaining == 0,
            ResponseBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Bytes(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::File(f) => SizeHint::with_exact(f.remaining),
            ResponseBody::Stream(s) => s.size_hint(),
        }
    }
}

impl FileBody {
    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = FILE_PIECE.min(self.remaining as usize);
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        let mut read = ReadBuf::new(&mut self.buf[..n]);
        ready!(Pin::new(&mut self.file).poll_read(cx, &mut read))?;
        let got = read.filled().len();
        if got == 0 {
            // The file shrank since its length was taken.
            return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
        }
        self.remaining -= got as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
            &self.buf[..got],
        )))))
    }
}
