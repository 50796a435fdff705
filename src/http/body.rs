//! Response bodies: small in-memory ones, streamed files, and bodies
//! produced on a blocking thread (decompression, reports read from the index)
//! and handed over through a bounded channel, so memory does not grow with
//! the body's size or the client's slowness.

use std::io::{self, Read};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// The body type of every response.
pub type Body = BoxBody<Bytes, io::Error>;

const CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with a small body and a content type.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    with_type(status, "application/json", value.to_string())
}

/// A whole request body of at most `limit` bytes, arrived `within` that
/// time; beyond it a 413 naming `what`, after it a 408 (a body that cannot be
/// read is a 400).
pub async fn read_bounded(
    body: hyper::body::Incoming,
    limit: usize,
    what: &str,
    within: std::time::Duration,
) -> crate::Result<Bytes> {
    let read = http_body_util::Limited::new(body, limit).collect();
    let Ok(read) = tokio::time::timeout(within, read).await else {
        return Err(crate::Error::Timeout(format!(
            "{what} did not arrive within {} s",
            within.as_secs()
        )));
    };
    match read {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(crate::Error::TooLarge(
            format!("{what} is at most {limit} bytes"),
        )),
        Err(_) => Err(crate::Error::BadRequest(
            "the body could not be read".into(),
        )),
    }
}

/// A range of a blob's stored bytes, streamed: a local file with the
/// runtime's file IO, any other reader from a blocking thread.
pub async fn blob_range(read: crate::store::BlobRead) -> io::Result<Body> {
    match read {
        crate::store::BlobRead::File { file, start, len } => file_range(file, start, len).await,
        crate::store::BlobRead::Stream(mut reader) => Ok(from_blocking(move |send| {
            loop {
                // Filled before it is sent: a reader that yields small pieces
                // (an object store's stream) does not cost a chunk each.
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    match reader.read(&mut buf[n..])? {
                        0 => break,
                        k => n += k,
                    }
                }
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if !send(Bytes::from(buf)) {
                    return Ok(()); // the client went away
                }
            }
        })),
    }
}

/// `len` bytes of an open file from `start`, streamed.
async fn file_range(file: std::fs::File, start: u64, len: u64) -> io::Result<Body> {
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = ReaderStream::with_capacity(file.take(len), CHUNK);
    Ok(StreamBody::new(stream.map_ok(Frame::data)).boxed())
}

/// A gzip file decompressed on the fly on a blocking thread: `len` bytes of
/// the decompressed content from `start`.
pub fn gunzip_range(stored: crate::store::BlobRead, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            let stored: Box<dyn Read + Send> = match stored {
                crate::store::BlobRead::File {
                    mut file,
                    start,
                    len,
                } => {
                    io::Seek::seek(&mut file, io::SeekFrom::Start(start))?;
                    Box::new(file.take(len))
                }
                crate::store::BlobRead::Stream(reader) => reader,
            };
            let mut gz = flate2::read::GzDecoder::new(io::BufReader::with_capacity(CHUNK, stored));
            io::copy(&mut (&mut gz).take(start), &mut io::sink())?;
            let mut rest = gz.take(len);
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = rest.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // the client went away
                }
            }
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    StreamBody::new(stream.map_ok(Frame::data)).boxed()
}

/// Chunks in flight between a blocking producer and the connection.
const IN_FLIGHT: usize = 4;

/// A body produced on a blocking thread by `produce`, which hands each chunk
/// to `send`. `send` blocks while [`IN_FLIGHT`] chunks wait for the client and
/// answers `false` once the client has gone (the producer should stop). An
/// error ends the body with that error. Sent with chunked transfer encoding.
pub fn from_blocking<F>(produce: F) -> Body
where
    F: FnOnce(&mut dyn FnMut(Bytes) -> bool) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut send = |chunk: Bytes| tx.blocking_send(Ok(chunk)).is_ok();
        if let Err(e) = produce(&mut send) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    StreamBody::new(stream.map_ok(Frame::data)).boxed()
}

/// `body`, holding `held` until it is sent or dropped (a share of memory
/// kept for answers waiting for their clients).
pub fn holding(body: Body, held: tokio::sync::OwnedSemaphorePermit) -> Body {
    Holding { body, _held: held }.boxed()
}

struct Holding {
    body: Body,
    _held: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Holding {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlobRead;
    use http_body_util::BodyExt;

    async fn collect(body: Body) -> Vec<u8> {
        body.collect()
            .await
            .expect("a whole body")
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_blob_range_streams_from_a_file_or_any_reader() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, &data).unwrap();
        let from_file = BlobRead::File {
            file,
            start: 1000,
            len: 300_000,
        };
        assert_eq!(
            collect(blob_range(from_file).await.unwrap()).await,
            &data[1000..301_000]
        );
        let from_reader = BlobRead::Stream(Box::new(io::Cursor::new(data.clone())));
        assert_eq!(collect(blob_range(from_reader).await.unwrap()).await, data);
    }
}
