//! The content-coding decoders for upstream answers (engine_api::content_encoding): gzip,
//! deflate (zlib), br, zstd, stacked. The first input byte picks the `Content-Encoding` (a
//! fixed list, or past it, the next line of the input is the header value). Properties: the
//! decoded body is never larger than the limit (a compression bomb is refused, not inflated);
//! no coding or `identity` leaves the body as sent; an unknown coding is refused as such.

use bytes::Bytes;
use engine_api::content_encoding::{self, DecodeError};
use http::HeaderValue;

/// Small enough that short inputs reach it.
const LIMIT: usize = 8192;

const CODINGS: &[&str] = &[
    "gzip",
    "deflate",
    "br",
    "zstd",
    "x-gzip",
    "identity",
    "gzip, br",
    "br, zstd",
    "GZIP",
    "gzip,identity",
    "gzip, gzip, gzip",
];

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    afl::fuzz!(|data: &[u8]| {
        let (pick, rest) = engine_mux_fuzz::split_first(data);
        let (header, body) = match CODINGS.get(usize::from(pick)) {
            Some(c) => (Some(HeaderValue::from_static(c)), rest),
            None if pick == u8::MAX => (None, rest),
            None => {
                let mut parts = rest.splitn(2, |b| *b == b'\n');
                let value = parts.next().unwrap_or_default();
                let Ok(h) = HeaderValue::from_bytes(value) else {
                    return;
                };
                (Some(h), parts.next().unwrap_or_default())
            }
        };
        let identity = header.as_ref().is_none_or(|h| {
            h.to_str().is_ok_and(|t| {
                t.split(',')
                    .map(str::trim)
                    .all(|t| t.is_empty() || t.eq_ignore_ascii_case("identity"))
            })
        });
        let out = rt.block_on(content_encoding::decode(
            header.as_ref(),
            Bytes::copy_from_slice(body),
            LIMIT,
        ));
        match out {
            Ok(decoded) => {
                if identity {
                    assert_eq!(&decoded[..], body, "identity changed the body");
                } else {
                    assert!(decoded.len() <= LIMIT, "decoded {} bytes", decoded.len());
                }
            }
            Err(DecodeError::TooLarge { limit, .. }) => assert_eq!(limit, LIMIT),
            Err(DecodeError::Unsupported(_) | DecodeError::Corrupt { .. }) => {
                assert!(!identity, "identity was refused");
            }
        }
    });
}
