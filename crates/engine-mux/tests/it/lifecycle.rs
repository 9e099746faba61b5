//! Startup errors name the flag; shutdown lets in-flight calls finish.

use std::time::Duration;

use clap::Parser;
use engine_mux::{Args, Config};
use serde_json::json;

use crate::{
    harness::{forkchoice, setup},
    mock_engine::Fault,
};

#[tokio::test]
async fn port_in_use_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let hex = "11".repeat(32);
    let argv = [
        "engine-mux",
        "--l2-jwt-token",
        &hex,
        "--builder-jwt-token",
        &hex,
        "--rpc-port",
        &port,
        "--debug-server-port",
        "0",
    ];
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    let err = engine_mux::start(config).await.unwrap_err().to_string();
    assert!(
        err.starts_with("--rpc-port: cannot listen on 127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish() {
    let s = setup(&[]).await;
    s.local.fault(
        "engine_forkchoiceUpdatedV3",
        Fault::Delay(Duration::from_millis(300)),
    );
    let op_node = s.op_node.clone();
    let in_flight = tokio::spawn(async move {
        op_node
            .call::<serde_json::Value>(
                "engine_forkchoiceUpdatedV3",
                &json!([forkchoice(100), null]),
                Duration::from_secs(5),
            )
            .await
    });
    crate::harness::eventually(
        Duration::from_secs(2),
        "the call reached the local EL",
        || async { !s.local.calls_of("engine_forkchoiceUpdatedV3").is_empty() },
    )
    .await;
    let addr = s.mux.rpc_addr;
    s.mux.shutdown().await;
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight call was answered");
    assert_eq!(answer["payloadStatus"]["status"], "VALID");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
