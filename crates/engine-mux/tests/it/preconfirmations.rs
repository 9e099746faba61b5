//! Preconfirmation telemetry from a scripted builder stream: a late first flashblock, an
//! irregular interval, a gap filled out of order, a gap never filled, and preconfirmed
//! transactions the block op-node got lacks (after a mode change, and after flashblocks that form
//! no valid block). Timings are chosen inside one latency bucket each with room for a loaded
//! machine; counts are exact.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::json;

use crate::{
    flashblocks::{builder_id, flashblock, tx, with_flashblocks},
    harness::{Setup, eventually},
    mock_engine::Fault,
    modes::set_mode,
};

/// The series of the default builder (`builder="builder"`).
fn m(s: &Setup, name: &str, labels: &str) -> f64 {
    let sep = if labels.is_empty() { "" } else { "," };
    test_utils::metric(
        &s.mux.metrics_text(),
        &format!("{name}{{{labels}{sep}builder=\"builder\"}}"),
    )
}

#[tokio::test]
async fn a_scripted_stream_gives_exactly_the_expected_series() {
    let (s, source) = with_flashblocks(&["--health-check-interval", "60"]).await;
    let local_id = s.fcu_build().await;
    let fcu_at = tokio::time::Instant::now();
    let id = builder_id(&s).await;
    // (index, ms after op-node's FCU): the first 350 ms late; 2 jumps over 1, which comes next;
    // a 400 ms stall before 3 (the others 150 ms apart); 5 jumps over 4, which never comes.
    let script = [(0, 350), (2, 500), (1, 650), (3, 1050), (5, 1200)];
    for (index, at) in script {
        tokio::time::sleep_until(fcu_at + Duration::from_millis(at)).await;
        source.text(&flashblock(&s, id, index, vec![tx(index as u8 + 1)]));
    }
    eventually(Duration::from_secs(2), "all five received", || async {
        m(&s, "engine_mux_flashblocks_total", r#"event="received""#) == 5.0
    })
    .await;
    assert_eq!(
        m(&s, "engine_mux_flashblocks_total", r#"event="accepted""#),
        4.0,
        "0 to 3 accepted and re-published; 5 waits behind the gap"
    );
    // Published while enabled; the operator switches to dry-run before op-node seals the block,
    // so op-node gets the local block, which carries none of the preconfirmed pool transactions.
    set_mode(&s, "dry_run").await;
    tokio::time::sleep_until(fcu_at + Duration::from_millis(1350)).await;
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101))
    );
    eventually(Duration::from_secs(2), "telemetry recorded", || async {
        m(&s, "engine_mux_preconfirmed_not_sealed_per_block_count", "") == 1.0
    })
    .await;

    // FCU to the first flashblock: one block, 350 ms.
    let first = "engine_mux_flashblocks_first_delay_seconds";
    assert_eq!(m(&s, &format!("{first}_count"), ""), 1.0);
    assert_eq!(m(&s, &format!("{first}_bucket"), r#"le="0.25""#), 0.0);
    assert_eq!(m(&s, &format!("{first}_bucket"), r#"le="0.5""#), 1.0);
    // Four intervals in arrival order: three of 150 ms, one of 400 ms.
    let interval = "engine_mux_flashblocks_interval_seconds";
    assert_eq!(m(&s, &format!("{interval}_count"), ""), 4.0);
    assert_eq!(m(&s, &format!("{interval}_bucket"), r#"le="0.1""#), 0.0);
    assert_eq!(m(&s, &format!("{interval}_bucket"), r#"le="0.25""#), 3.0);
    assert_eq!(m(&s, &format!("{interval}_bucket"), r#"le="0.5""#), 4.0);
    // The stall is 250 ms off the block's median interval.
    let jitter = m(&s, "engine_mux_flashblocks_interval_jitter_seconds", "");
    assert!((0.2..0.35).contains(&jitter), "jitter {jitter}");
    // Two jumps (over 1, over 4), one late fill (1); 4 and 5 missing at getPayload.
    assert_eq!(m(&s, "engine_mux_flashblocks_index_gaps_total", ""), 2.0);
    assert_eq!(m(&s, "engine_mux_flashblocks_out_of_order_total", ""), 1.0);
    assert_eq!(m(&s, "engine_mux_flashblocks_missing_total", ""), 2.0);
    assert_eq!(m(&s, "engine_mux_flashblocks_per_block_sum", ""), 4.0);
    // The last flashblock (5, at 1200 ms) to getPayload (1350 ms), and getPayload's answer.
    let last = "engine_mux_flashblocks_last_to_get_payload_seconds";
    assert_eq!(m(&s, &format!("{last}_count"), ""), 1.0);
    assert_eq!(m(&s, &format!("{last}_bucket"), r#"le="0.1""#), 0.0);
    assert_eq!(m(&s, &format!("{last}_bucket"), r#"le="0.25""#), 1.0);
    let answer = "engine_mux_flashblocks_get_payload_to_answer_seconds";
    assert_eq!(m(&s, &format!("{answer}_count"), ""), 1.0);
    assert_eq!(m(&s, &format!("{answer}_bucket"), r#"le="0.5""#), 1.0);
    // Re-published: the deposit and tx 1 to 4. The local block has the deposit only.
    let not_sealed = "engine_mux_preconfirmed_not_sealed_per_block";
    assert_eq!(m(&s, &format!("{not_sealed}_sum"), ""), 4.0);
    assert_eq!(
        m(
            &s,
            "engine_mux_preconfirmed_not_sealed_total",
            r#"reason="mode_change""#
        ),
        4.0
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_preconfirmed_not_sealed_total"
        ),
        4.0,
        "under no other reason"
    );

    // A retried getPayload for the same block reports nothing twice.
    s.call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m(&s, &format!("{first}_count"), ""), 1.0);
    assert_eq!(m(&s, &format!("{not_sealed}_count"), ""), 1.0);
}

/// A block whose every preconfirmation is in the sealed block observes zero and counts none.
#[tokio::test]
async fn a_kept_preconfirmation_counts_nothing_missing() {
    let (s, source) = with_flashblocks(&[]).await;
    let local_id = s.fcu_build().await;
    let id = builder_id(&s).await;
    for i in 0..2u64 {
        source.text(&flashblock(&s, id, i, vec![tx(i as u8 + 1)]));
    }
    eventually(Duration::from_secs(2), "accepted", || async {
        m(&s, "engine_mux_flashblocks_total", r#"event="accepted""#) == 2.0
    })
    .await;
    s.call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    let not_sealed = "engine_mux_preconfirmed_not_sealed_per_block";
    eventually(Duration::from_secs(2), "telemetry recorded", || async {
        m(&s, &format!("{not_sealed}_count"), "") == 1.0
    })
    .await;
    assert_eq!(
        m(&s, &format!("{not_sealed}_bucket"), r#"le="0""#),
        1.0,
        "the assembled block carries them all"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_preconfirmed_not_sealed_total"
        ),
        0.0
    );
    assert_eq!(m(&s, "engine_mux_flashblocks_index_gaps_total", ""), 0.0);
    assert_eq!(m(&s, "engine_mux_flashblocks_out_of_order_total", ""), 0.0);
    assert_eq!(
        m(&s, "engine_mux_flashblocks_interval_jitter_seconds", ""),
        0.0,
        "one interval has no jitter"
    );
}

/// The builder dies after two flashblocks were re-published; the local EL finds the block they
/// form INVALID and refuses to build op-node's block from their transactions (the last resort for
/// preconfirmations). op-node gets the local block, and both preconfirmed pool transactions count
/// missing under `invalid`, the mode having stayed enabled.
#[tokio::test]
async fn flashblocks_that_form_no_valid_block_count_invalid() {
    let (s, source) = with_flashblocks(&["--health-check-interval", "60"]).await;
    let local_id = s.fcu_build().await;
    let id = builder_id(&s).await;
    for index in 0..2u64 {
        source.text(&flashblock(&s, id, index, vec![tx(index as u8 + 1)]));
    }
    eventually(Duration::from_secs(2), "both re-published", || async {
        m(&s, "engine_mux_flashblocks_total", r#"event="accepted""#) == 2.0
    })
    .await;
    s.builder.down();
    // The block of flashblocks 0 and 1 (the mock hash of the last one), and the rebuild.
    s.local.invalid_for(B256::repeat_byte(0xf1));
    s.local.fault(
        "engine_forkchoiceUpdatedV3",
        Fault::RpcError(-38003, "Invalid payload attributes"),
    );
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101)),
        "the local block op-node's FCU started"
    );
    let not_sealed = "engine_mux_preconfirmed_not_sealed_per_block";
    eventually(Duration::from_secs(2), "telemetry recorded", || async {
        m(&s, &format!("{not_sealed}_count"), "") == 1.0
    })
    .await;
    // Re-published: the deposit, tx 1 and tx 2; the local block has the deposit and pool
    // transactions of its own.
    assert_eq!(m(&s, &format!("{not_sealed}_sum"), ""), 2.0);
    assert_eq!(
        m(
            &s,
            "engine_mux_preconfirmed_not_sealed_total",
            r#"reason="invalid""#
        ),
        2.0,
        "{}",
        s.mux.metrics_text()
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_preconfirmed_not_sealed_total"
        ),
        2.0,
        "under no other reason"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="lost"}"#
        ),
        1.0,
        "preconfirmations lost to a local block"
    );
}
