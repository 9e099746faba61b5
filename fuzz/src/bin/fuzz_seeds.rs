//! Writes each target's seed corpus from the recorded peer traffic (real-peers README):
//! `fuzz_seeds <real-peers dir> <out dir>` fills `<out dir>/<target>/`. Run by scripts/fuzz.sh.

use std::{fs, io::Write, path::Path};

use alloy_rlp::Encodable;
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use engine_api::{
    PayloadId,
    flashblocks_p2p::{Authorization, AuthorizerKey},
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

struct Out<'a> {
    dir: &'a Path,
}

impl Out<'_> {
    fn put(&self, target: &str, name: &str, data: &[u8]) {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).expect("create seed dir");
        fs::write(dir.join(name), data).expect("write seed");
    }
}

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut out = Vec::new();
        match coding {
            "gzip" => {
                let mut e = GzipEncoder::new(&mut out);
                e.write_all(data).await.unwrap();
                e.shutdown().await.unwrap();
            }
            "deflate" => {
                let mut e = ZlibEncoder::new(&mut out);
                e.write_all(data).await.unwrap();
                e.shutdown().await.unwrap();
            }
            "br" => {
                let mut e = BrotliEncoder::new(&mut out);
                e.write_all(data).await.unwrap();
                e.shutdown().await.unwrap();
            }
            _ => {
                let mut e = ZstdEncoder::new(&mut out);
                e.write_all(data).await.unwrap();
                e.shutdown().await.unwrap();
            }
        }
        out
    })
}

/// Brotli with the 4 MiB window websocket-proxy uses for `--enable-compression`.
fn brotli_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("compress");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, peers, out] = args.as_slice() else {
        panic!("usage: fuzz_seeds <real-peers dir> <out dir>");
    };
    let peers = Path::new(peers);
    let out = Out {
        dir: Path::new(out),
    };
    let mut requests = Vec::new();
    for file in [
        "op-reth-local-el.engine.jsonl",
        "op-rbuilder-builder.engine.jsonl",
        "op-reth.simulate-v1.jsonl",
    ] {
        let text = fs::read_to_string(peers.join(file)).expect("recording");
        // One seed per distinct method and file for each shape, so the corpus stays small.
        let mut seen = std::collections::HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line).expect("recorded line is JSON");
            let method = v["request"]["method"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let request = serde_json::to_vec(&v["request"]).unwrap();
            let response = serde_json::to_vec(&v["response"]).unwrap();
            let first = seen.insert(method.clone());
            let name = format!("{file}.{i}");
            if first || method.starts_with("engine_") && i % 7 == 0 {
                out.put("jsonrpc_envelope", &name, &request);
                out.put("engine_params", &name, &request);
                out.put("rpc_request", &name, &request);
                out.put("builder_answer", &name, &response);
                if let Some(result) = v["response"].get("result")
                    && method.starts_with("engine_getPayload")
                {
                    out.put(
                        "payload_envelope",
                        &name,
                        &serde_json::to_vec(result).unwrap(),
                    );
                }
                requests.push(request);
            }
            if first {
                for (pick, coding) in [(0u8, "gzip"), (1, "deflate"), (2, "br"), (3, "zstd")] {
                    let mut seed = vec![pick];
                    seed.extend(compress(coding, &response));
                    out.put("content_decoding", &format!("{name}.{coding}"), &seed);
                }
                let mut plain = vec![u8::MAX];
                plain.extend(&response);
                out.put("content_decoding", &format!("{name}.identity"), &plain);
            }
        }
    }
    // Batches of recorded requests, as op-node and wallets send them.
    for (i, pair) in requests.chunks(3).enumerate().take(8) {
        let items: Vec<Value> = pair
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
        let batch = serde_json::to_vec(&items).unwrap();
        out.put("jsonrpc_envelope", &format!("batch.{i}"), &batch);
        out.put("rpc_request", &format!("batch.{i}"), &batch);
    }
    // Pending-tag calls flashblocks-rpc answers itself.
    for (i, call) in [
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["pending",true]}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x4200000000000000000000000000000000000011","pending"]}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"eth_getTransactionCount","params":["0xdeaddeaddeaddeaddeaddeaddeaddeaddead0001","pending"]}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"eth_getLogs","params":[{"fromBlock":"pending","toBlock":"pending"}]}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"eth_call","params":[{"to":"0x4200000000000000000000000000000000000015","data":"0x"},"pending"]}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"eth_getStorageAt","params":["0x4200000000000000000000000000000000000015","0x1","pending"]}"#,
    ]
    .iter()
    .enumerate()
    {
        out.put("rpc_request", &format!("pending.{i}"), call.as_bytes());
    }

    // Flashblocks frames: text, binary JSON, binary Brotli; runs of them for assembly.
    let frames = fs::read_to_string(peers.join("op-rbuilder.flashblocks.jsonl")).expect("frames");
    let lines: Vec<&str> = frames.lines().collect();
    for (i, line) in lines.iter().enumerate().step_by(3).take(12) {
        let mut text = vec![0u8];
        text.extend(line.as_bytes());
        out.put("flashblock_frame", &format!("text.{i}"), &text);
        if i % 2 == 0 {
            let mut binary = vec![1u8];
            binary.extend(line.as_bytes());
            out.put("flashblock_frame", &format!("binary.{i}"), &binary);
        }
        let mut brotli = vec![1u8];
        brotli.extend(brotli_frame(line.as_bytes()));
        out.put("flashblock_frame", &format!("brotli.{i}"), &brotli);
    }
    let mut run = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_base = line.contains("\"base\"");
        if is_base && !run.is_empty() {
            out.put("flashblock_assembly", &format!("run.{i}"), &run);
            // The same run out of order, to reach the hold queue.
            let mut shuffled: Vec<&[u8]> = run.split(|b| *b == b'\n').collect();
            shuffled.reverse();
            out.put(
                "flashblock_assembly",
                &format!("reversed.{i}"),
                &shuffled.join(&b'\n'),
            );
            run.clear();
            if i > 40 {
                break;
            }
        }
        if !run.is_empty() {
            run.push(b'\n');
        }
        run.extend(line.as_bytes());
    }

    // P2P authorizations signed by the key the target verifies with.
    let authorizer = AuthorizerKey::from_bytes(&[7; 32]);
    let builder = AuthorizerKey::from_bytes(&[9; 32]).verifying_key();
    for i in 0..4u64 {
        let auth = Authorization::sign(
            PayloadId::new((i + 1).to_be_bytes()),
            1_796_131_951 + i,
            &authorizer,
            builder,
        );
        let mut rlp = vec![0u8];
        auth.encode(&mut rlp);
        out.put("p2p_authorization", &format!("rlp.{i}"), &rlp);
        let mut json = vec![1u8];
        json.extend(serde_json::to_vec(&auth).unwrap());
        out.put("p2p_authorization", &format!("json.{i}"), &json);
    }

    // JWTs: header values, and header/claims pairs the target signs itself.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    out.put(
        "jwt",
        "bearer",
        b"\x00Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjB9.x",
    );
    for (i, (header, claims)) in [
        (
            r#"{"alg":"HS256","typ":"JWT"}"#.to_string(),
            format!(r#"{{"iat":{now}}}"#),
        ),
        (
            r#"{"alg":"HS256"}"#.to_string(),
            format!(r#"{{"iat":{},"id":"op-node"}}"#, now - 30),
        ),
        (
            r#"{"alg":"none","typ":"JWT"}"#.to_string(),
            format!(r#"{{"iat":{now}}}"#),
        ),
        (
            r#"{"alg":"HS512","typ":"JWT"}"#.to_string(),
            format!(r#"{{"iat":{now},"exp":{}}}"#, now + 60),
        ),
    ]
    .iter()
    .enumerate()
    {
        let mut seed = vec![1u8];
        write!(seed, "{header}\n{claims}").unwrap();
        out.put("jwt", &format!("signed.{i}"), &seed);
    }

    // Builders files: JSON, TOML, extension-less, `--extra-builder` specs.
    let hex = "688f5d737bad920bdfb2fc2f488d6b6209eebda1dae949a8de91398d932c517a";
    out.put(
        "builders_file",
        "json",
        format!("\x00[{{\"name\":\"b2\",\"url\":\"http://10.0.0.2:8551\",\"jwt-token\":\"{hex}\",\"priority\":2}},{{\"name\":\"b3\",\"url\":\"http://b3:8551\",\"jwt_token\":\"{hex}\",\"timeout-ms\":300,\"enabled\":false}}]").as_bytes(),
    );
    out.put(
        "builders_file",
        "toml",
        format!("\u{81}[[builders]]\nname = \"b2\"\nurl = \"http://10.0.0.2:8551\"\njwt_token = \"{hex}\"\nflashblocks_url = \"ws://10.0.0.2:1111\"\npriority = 1\n").as_bytes(),
    );
    out.put(
        "builders_file",
        "plain",
        format!("\x02{{\"builders\":[{{\"name\":\"x\",\"url\":\"https://x:1\",\"jwt-token\":\"{hex}\"}}]}}").as_bytes(),
    );
    out.put(
        "builders_file",
        "specs",
        format!("\x03name=b2,url=http://10.0.0.2:8551,jwt-token={hex},priority=3\nname=b3,url=http://b3:8551,jwt-token={hex},timeout-ms=100").as_bytes(),
    );

    // Subscriber handshakes as browsers, wscat and proxies send them, with a first frame.
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    for (i, (mode, head)) in [
        (0u8, format!("GET /ws/key1 HTTP/1.1\r\nHost: proxy\r\n{ws}\r\n")),
        (1, format!("GET /ws/key2?compression=brotli HTTP/1.1\r\nHost: proxy\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.7\r\n{ws}\r\n")),
        (3, format!("GET /?compression=none HTTP/1.1\r\nHost: proxy\r\nX-Forwarded-For: [2001:db8::1]:443\r\n{ws}\r\n")),
        (2, "GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n".to_string()),
    ]
    .iter()
    .enumerate()
    {
        let mut seed = vec![*mode];
        seed.extend(head.as_bytes());
        if i == 2 {
            // A masked close frame right behind the head.
            seed.extend([0x88, 0x82, b'a', b'b', b'c', b'd', 0x62, 0x8b]);
        }
        out.put("proxy_handshake", &format!("head.{i}"), &seed);
    }
}
