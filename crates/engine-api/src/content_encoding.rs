//! Decoding the content codings an upstream may put on its answers: op-geth gzips every answer
//! whose request accepts gzip (op-node's Go client always does), reth's HTTP server speaks gzip,
//! deflate, br and zstd. Decoded output is capped, so a small compressed body cannot expand into
//! unbounded memory.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most codings stacked in one `Content-Encoding` that are undone.
const MAX_STACKED_CODINGS: usize = 2;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A coding this client does not implement (or too many stacked).
    #[error("unsupported Content-Encoding {0:?}")]
    Unsupported(String),
    /// The decoded body is larger than the cap.
    #[error("{coding} body decodes to more than {limit} bytes")]
    TooLarge {
        /// The coding being undone.
        coding: &'static str,
        /// The cap.
        limit: usize,
    },
    /// The body is not valid in its coding.
    #[error("{coding} body does not decode: {detail}")]
    Corrupt {
        /// The coding being undone.
        coding: &'static str,
        /// What the decoder reported.
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn parse(token: &str) -> Option<Self> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "br" => Some(Self::Brotli),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// Undoes the codings `content_encoding` lists (applied in order, so undone in reverse);
/// no header or `identity` returns `body` unchanged. No layer may decode to more than `limit` bytes.
pub async fn decode(
    content_encoding: Option<&HeaderValue>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    let Some(value) = content_encoding else {
        return Ok(body);
    };
    let text = value
        .to_str()
        .map_err(|_| DecodeError::Unsupported(String::from_utf8_lossy(value.as_bytes()).into()))?;
    let codings = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("identity"))
        .map(|t| Coding::parse(t).ok_or_else(|| DecodeError::Unsupported(t.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if codings.len() > MAX_STACKED_CODINGS {
        return Err(DecodeError::Unsupported(text.to_string()));
    }
    let mut data = body;
    for coding in codings.into_iter().rev() {
        data = decode_one(coding, &data, limit).await?;
    }
    Ok(data)
}

async fn decode_one(coding: Coding, input: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    match coding {
        Coding::Gzip => {
            // Go's and most gzip writers emit one member; concatenated members are valid gzip too.
            let mut decoder = GzipDecoder::new(input);
            decoder.multiple_members(true);
            read_capped(coding, decoder, limit).await
        }
        Coding::Deflate => read_capped(coding, ZlibDecoder::new(input), limit).await,
        Coding::Brotli => read_capped(coding, BrotliDecoder::new(input), limit).await,
        Coding::Zstd => read_capped(coding, ZstdDecoder::new(input), limit).await,
    }
}

async fn read_capped(
    coding: Coding,
    decoder: impl AsyncRead + Unpin,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "over it".
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| DecodeError::Corrupt {
            coding: coding.name(),
            detail: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge {
            coding: coding.name(),
            limit,
        });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};

    use super::*;

    async fn encode(coding: &str, data: &[u8]) -> Bytes {
        let mut out = Vec::new();
        match coding {
            "gzip" => GzipEncoder::new(data).read_to_end(&mut out).await,
            "deflate" => ZlibEncoder::new(data).read_to_end(&mut out).await,
            "br" => BrotliEncoder::new(data).read_to_end(&mut out).await,
            "zstd" => ZstdEncoder::new(data).read_to_end(&mut out).await,
            _ => unreachable!(),
        }
        .unwrap();
        out.into()
    }

    #[tokio::test]
    async fn every_coding_round_trips_and_identity_passes_through() {
        let json = br#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#;
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let body = encode(coding, json).await;
            assert_ne!(&body[..], json);
            let header = HeaderValue::from_static(coding);
            let got = decode(Some(&header), body, 1024).await.unwrap();
            assert_eq!(&got[..], json, "{coding}");
        }
        let plain = Bytes::from_static(json);
        for header in [None, Some(HeaderValue::from_static("identity"))] {
            assert_eq!(
                decode(header.as_ref(), plain.clone(), 1024).await.unwrap(),
                plain
            );
        }
    }

    #[tokio::test]
    async fn stacked_codings_are_undone_in_reverse() {
        let json = br#"{"result":[1,2,3]}"#;
        let once = encode("gzip", json).await;
        let twice = encode("br", &once).await;
        let header = HeaderValue::from_static("gzip, br");
        assert_eq!(&decode(Some(&header), twice, 1024).await.unwrap()[..], json);
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 1 << 20];
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let body = encode(coding, &zeros).await;
            assert!(body.len() < 64 * 1024, "{coding} compresses zeros well");
            let header = HeaderValue::from_static(coding);
            let err = decode(Some(&header), body, 64 * 1024).await.unwrap_err();
            assert!(
                matches!(err, DecodeError::TooLarge { .. }),
                "{coding}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_and_unknown_codings_are_errors_not_panics() {
        let header = HeaderValue::from_static("gzip");
        let err = decode(Some(&header), Bytes::from_static(b"not gzip"), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
        let header = HeaderValue::from_static("compress");
        let err = decode(Some(&header), Bytes::from_static(b"x"), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, DecodeError::Unsupported(_)), "{err}");
    }
}
