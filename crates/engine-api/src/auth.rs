//! Engine API JWT authentication (execution-apis `authentication.md`): a tower layer that
//! validates inbound bearer tokens (`jwt` feature), a layer that mints a fresh token per
//! outbound request, and the token minting itself.
//!
//! Outbound tokens are minted by [`mint`] (HMAC-SHA256 over the two JSON segments, which is all
//! HS256 is), so a client-only build needs neither jsonwebtoken nor its RSA/EC stack; inbound
//! ones are validated by alloy's `JwtSecret::validate` (jsonwebtoken) behind the `jwt` feature.

#[cfg(feature = "jwt")]
use std::{future::Future, pin::Pin};
use std::{
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

#[cfg(feature = "jwt")]
use alloy_rpc_types_engine::Claims;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, header::AUTHORIZATION};
#[cfg(feature = "jwt")]
use http::{Response, StatusCode};
use tower::{Layer, Service};

use crate::secret::JwtSecret;

/// The JOSE header of every token minted here, in the field order jsonwebtoken writes it, so a
/// token is byte for byte the one jsonwebtoken would mint for the same `iat`.
const HS256_HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// Mints an HS256 token with `iat` = `issued_at` (seconds since the epoch) and no other claim,
/// as the Engine API asks.
pub fn mint_at(secret: &JwtSecret, issued_at: u64) -> String {
    let claims = format!(r#"{{"iat":{issued_at}}}"#);
    let signing_input = format!(
        "{}.{}",
        base64_url(HS256_HEADER.as_bytes()),
        base64_url(claims.as_bytes())
    );
    // HMAC takes a key of any length, so this cannot fail for a 32-byte secret.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = base64_url(&mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Mints a fresh HS256 token with `iat` = now for one request.
pub fn mint(secret: &JwtSecret) -> String {
    // A clock before 1970 mints `iat` 0, which the upstream refuses with a 401 that says so.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    mint_at(secret, now)
}

/// Mints a fresh HS256 token with `iat` = now for one request, through jsonwebtoken.
#[cfg(feature = "jwt")]
pub fn mint_token(secret: &JwtSecret) -> Result<String, jsonwebtoken::errors::Error> {
    secret.encode(&Claims::with_current_timestamp())
}

#[cfg(feature = "jwt")]
/// Validates an inbound `Authorization` header against `secret` (HS256 only, signature, `iat`
/// within ±60 s); the error is why the request is refused, for the 401 body. Servers that
/// decide per request whether a token is needed call this instead of re-implementing it.
pub fn check_bearer(secret: &JwtSecret, header: Option<&HeaderValue>) -> Result<(), String> {
    let value = header
        .ok_or_else(|| "missing Authorization header".to_string())?
        .to_str()
        .map_err(|_| "Authorization header is not valid ASCII".to_string())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| "Authorization header is not a Bearer token".to_string())?;
    // `validate` enforces HS256 only (so `alg: none` fails), the signature and `iat` ±60 s.
    secret
        .validate(token.trim())
        .map_err(|e| format!("invalid JWT: {e}"))
}

/// Server-side layer: answers HTTP 401 with the reason unless the request carries a valid JWT.
#[cfg(feature = "jwt")]
#[derive(Clone)]
pub struct AuthLayer {
    secret: JwtSecret,
}

#[cfg(feature = "jwt")]
impl AuthLayer {
    /// Validates inbound tokens against `secret`.
    pub fn new(secret: JwtSecret) -> Self {
        Self { secret }
    }
}

#[cfg(feature = "jwt")]
impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer").finish_non_exhaustive()
    }
}

#[cfg(feature = "jwt")]
impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            secret: self.secret,
            inner,
        }
    }
}

/// The service produced by [`AuthLayer`].
#[cfg(feature = "jwt")]
#[derive(Clone)]
pub struct AuthService<S> {
    secret: JwtSecret,
    inner: S,
}

#[cfg(feature = "jwt")]
impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: From<String> + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check_bearer(&self.secret, req.headers().get(AUTHORIZATION)) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(reason) => {
                tracing::warn!(%reason, uri = %req.uri(), "rejected unauthenticated request");
                let mut res = Response::new(ResBody::from(reason));
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                Box::pin(async move { Ok(res) })
            }
        }
    }
}

/// Client-side layer: stamps every outbound request with a freshly minted JWT.
#[derive(Clone)]
pub struct MintLayer {
    secret: Option<JwtSecret>,
}

impl MintLayer {
    /// `None` sends requests without an Authorization header (an unauthenticated RPC port).
    pub fn new(secret: Option<JwtSecret>) -> Self {
        Self { secret }
    }
}

impl<S> Layer<S> for MintLayer {
    type Service = MintService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MintService {
            secret: self.secret,
            inner,
        }
    }
}

/// The service produced by [`MintLayer`].
#[derive(Clone)]
pub struct MintService<S> {
    secret: Option<JwtSecret>,
    inner: S,
}

impl<S, B> Service<Request<B>> for MintService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        crate::trace_context::inject(req.headers_mut());
        if let Some(secret) = &self.secret {
            match HeaderValue::from_str(&format!("Bearer {}", mint(secret))) {
                Ok(value) => {
                    req.headers_mut().insert(AUTHORIZATION, value);
                }
                // A token is base64url and dots, always a valid header value; if it ever is
                // not, the upstream answers 401 and the caller sees that error.
                Err(_) => tracing::error!("failed to mint JWT for outbound request"),
            }
        }
        self.inner.call(req)
    }
}

/// Test support: an unsigned token `<header>.<claims>.` from arbitrary JSON, to throw
/// `alg: none` and other forged headers at a server. Never accepted by [`AuthLayer`].
/// Only with the `test-utils` feature (tests of the crates that enable it), never in a build
/// that serves traffic.
#[cfg(any(test, feature = "test-utils"))]
pub fn unsigned_token(header_json: &str, claims_json: &str) -> String {
    format!(
        "{}.{}.",
        base64_url(header_json.as_bytes()),
        base64_url(claims_json.as_bytes())
    )
}

/// Unpadded base64url (RFC 4648 §5), enough to encode JWT segments.
fn base64_url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HS256 token for `{"iat":1700000000}` under 32 bytes of 0xab, computed apart from
    /// this code (Python's hmac and base64 over jsonwebtoken's header).
    const KNOWN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDB9.Ul0uOa5EFWRuqEViaPnhnjcHSXdjIuJc9ELnC0DYFi4";

    #[test]
    fn minting_matches_an_independently_computed_token() {
        let s = JwtSecret::from_hex("ab".repeat(32)).unwrap();
        assert_eq!(mint_at(&s, 1_700_000_000), KNOWN);
        let other = JwtSecret::from_hex("ac".repeat(32)).unwrap();
        assert_ne!(mint_at(&other, 1_700_000_000), KNOWN);
        assert_ne!(mint_at(&s, 1_700_000_001), KNOWN);
    }

    /// The light minting is what jsonwebtoken mints, and what the validator accepts.
    #[cfg(feature = "jwt")]
    #[test]
    fn minted_tokens_are_jsonwebtokens_and_validate() {
        let s = JwtSecret::random();
        assert_eq!(mint_at(&s, 1_700_000_000), token_with(&s, 1_700_000_000));
        assert!(check_bearer(&s, Some(&bearer(&mint(&s)))).is_ok());
        assert!(check_bearer(&JwtSecret::random(), Some(&bearer(&mint(&s)))).is_err());
        assert!(check_bearer(&s, Some(&bearer(&mint_at(&s, now() - 61)))).is_err());
    }

    #[cfg(feature = "jwt")]
    fn token_with(secret: &JwtSecret, iat: u64) -> String {
        let claims = Claims { iat, exp: None };
        secret.encode(&claims).unwrap()
    }

    #[cfg(feature = "jwt")]
    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[cfg(feature = "jwt")]
    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn fresh_token_is_accepted() {
        let s = JwtSecret::random();
        assert!(check_bearer(&s, Some(&bearer(&mint_token(&s).unwrap()))).is_ok());
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn wrong_secret_stale_iat_and_garbage_are_refused() {
        let s = JwtSecret::random();
        let other = JwtSecret::random();
        assert!(check_bearer(&s, Some(&bearer(&mint_token(&other).unwrap()))).is_err());
        assert!(check_bearer(&s, Some(&bearer(&token_with(&s, now() - 61)))).is_err());
        assert!(check_bearer(&s, Some(&bearer(&token_with(&s, now() + 61)))).is_err());
        assert!(check_bearer(&s, Some(&bearer(&token_with(&s, now() - 50)))).is_ok());
        assert!(check_bearer(&s, Some(&bearer("not.a.jwt"))).is_err());
        assert!(check_bearer(&s, None).unwrap_err().contains("missing"));
        let basic = HeaderValue::from_static("Basic abc");
        assert!(
            check_bearer(&s, Some(&basic))
                .unwrap_err()
                .contains("Bearer")
        );
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn alg_none_is_refused() {
        let s = JwtSecret::random();
        let token = unsigned_token(
            r#"{"alg":"none","typ":"JWT"}"#,
            &format!(r#"{{"iat":{}}}"#, now()),
        );
        assert!(check_bearer(&s, Some(&bearer(&token))).is_err());
    }
}
