//! The few HTTP/1.1 exchanges the proxy needs before a socket becomes a WebSocket: read one
//! request head (bounded in size and time), answer with a short response.

use std::time::Duration;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::timeout,
};

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most headers parsed in a request.
pub const MAX_HEADERS: usize = 64;

/// Failure to read a request head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Peer closed before a full head arrived.
    #[error("connection closed before the request head")]
    Eof,
    /// Head larger than [`MAX_HEAD_BYTES`].
    #[error("request head too large")]
    TooLarge,
    /// Not [`HEAD_TIMEOUT`].
    #[error("request head timed out")]
    Timeout,
}

/// A raw request head and any bytes that followed it.
pub struct RawHead {
    /// Bytes read, head first.
    pub buf: Vec<u8>,
    /// Length of the head within `buf`.
    pub head_len: usize,
}

/// Reads until the blank line ending the head.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<RawHead, HeadError> {
    timeout(HEAD_TIMEOUT, async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(HeadError::Eof);
            }
            let search_from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf[search_from..].windows(4).position(|w| w == b"\r\n\r\n") {
                let head_len = search_from + pos + 4;
                return Ok(RawHead { buf, head_len });
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
        }
    })
    .await
    .map_err(|_| HeadError::Timeout)?
}

/// Writes a complete response with a text body and closes the exchange.
pub async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    reason: &str,
    body: &str,
    content_type: &str,
) {
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort: the peer may already be gone.
    let _ = timeout(HEAD_TIMEOUT, async {
        s.write_all(msg.as_bytes()).await?;
        s.shutdown().await
    })
    .await;
}
