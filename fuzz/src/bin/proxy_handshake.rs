//! flashblocks-proxy's client handshake: the request head read off the socket (bounded),
//! parsed (httparse), routed (`/healthz`, `/ws/<key>`, API keys), the encoding chosen from the
//! query, the client IP resolved through trusted proxies, and the subscriber's WebSocket frames
//! after the upgrade (flashblocks_proxy::{http, server, client_ip, fanout, frame}). The peer is
//! a trusted proxy when the first input byte is odd. Properties: an untrusted peer counts as
//! itself; a trusted one as itself unless it sent a forwarding header; a subscription
//! under API keys names the app of the key in the path; the frame reader never panics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use flashblocks_proxy::{
    auth::ApiKeys,
    client_ip::ClientIpResolver,
    fanout::Encoding,
    frame::FrameReader,
    http,
    server::fuzzing::{self, Routed},
};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let keys = ApiKeys::parse(&["app1:key1:10", "app2:key2"]).expect("keys");
    let public = ApiKeys::default();
    let trusting =
        ClientIpResolver::new("X-Forwarded-For", vec!["10.0.0.0/8".parse().expect("cidr")]);
    afl::fuzz!(|data: &[u8]| {
        let (mode, mut input) = engine_mux_fuzz::split_first(data);
        let peer_ip = if mode & 1 == 1 {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
        };
        let peer = SocketAddr::new(peer_ip, 4000);
        let Ok(raw) = rt.block_on(http::read_head(&mut input)) else {
            return;
        };
        assert!(raw.head_len <= raw.buf.len());
        assert!(
            raw.buf.len() <= http::MAX_HEAD_BYTES + 1024,
            "head of {}",
            raw.buf.len()
        );
        assert!(raw.buf[..raw.head_len].ends_with(b"\r\n\r\n"));
        let Some(head) = fuzzing::parse(&raw.buf[..raw.head_len], peer, &trusting) else {
            return;
        };
        if mode & 1 == 0 {
            assert_eq!(
                head.client_ip, peer_ip,
                "an untrusted peer's header was believed"
            );
        } else if head.client_ip != peer_ip {
            let text = String::from_utf8_lossy(&raw.buf[..raw.head_len]).to_ascii_lowercase();
            assert!(
                text.contains("x-forwarded-for:"),
                "client ip {} from nowhere",
                head.client_ip
            );
        }
        let keyed = if mode & 2 == 0 { &keys } else { &public };
        match fuzzing::route(&head.path, keyed) {
            Routed::Subscribe(Some(app)) => {
                let key = head
                    .path
                    .split('?')
                    .next()
                    .and_then(|p| p.strip_prefix("/ws/"));
                assert_eq!(key.and_then(|k| keyed.lookup(k)), Some(app));
            }
            Routed::Subscribe(None) => assert!(keyed.is_empty(), "subscribed without a key"),
            Routed::Health | Routed::Refused => return,
        }
        let _ = Encoding::from_path(&head.path, Encoding::Plain);
        if let Some(key) = &head.ws_key {
            let _ = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        }
        // What follows the head is the subscriber's first frames.
        let mut reader = FrameReader::new();
        let _ = reader.feed(&raw.buf[raw.head_len..], |_| {});
    });
}
