//! The builder's flashblocks WebSocket drops mid-block and comes back: engine-mux reconnects,
//! the block still lands with everything preconfirmed, and the flashblocks the builder sends
//! again on reconnect (it replays the current block's to a new subscriber) are not
//! re-published.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};
use test_utils::{eventually, eventually_every};

use crate::support::{
    FlashblocksSubscriber, assert_block_is_its_flashblocks, assert_in_order_without_duplicates,
    canonical_occurrences, flashblocks_config, flashblocks_of_block, local_block, missed,
    mux_metric, observe, preconfirmed_hashes,
};

/// Poll step while the stream is cut: short, so the outage stays inside one 250 ms block.
const FAST: Duration = Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_websocket_dropped_mid_block_reconnects_without_republishing() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 5, Duration::from_secs(30), |_| {}).await;
    let connected = || async { mux_metric(&devnet, "engine_mux_flashblocks_connected", &[]) };
    eventually(
        Duration::from_secs(10),
        "engine-mux connected to the builder",
        || async { connected().await == 1.0 },
    )
    .await;
    let reconnects_before = mux_metric(&devnet, "engine_mux_flashblocks_reconnects_total", &[]);
    let duplicate = [("reason", "duplicate")];
    let duplicates_before =
        mux_metric(&devnet, "engine_mux_flashblocks_rejected_total", &duplicate);
    let local = [("source", "local")];
    let local_before = mux_metric(&devnet, "engine_mux_blocks_proposed_total", &local);

    // Mid-block: right after engine-mux published flashblock 1 of a payload.
    let seen = sub.len();
    let mut cut = None;
    eventually_every(
        Duration::from_secs(10),
        "flashblock 1 of a new block",
        FAST,
        || {
            cut = sub.ids()[seen..].iter().find(|(_, i)| *i == 1).copied();
            let found = cut.is_some();
            async move { found }
        },
    )
    .await;
    let (cut_id, _) = cut.expect("found");
    let builder = devnet.builder.engine.clone();
    builder.faults().set(Fault::FlashblocksDown, true);
    eventually_every(
        Duration::from_secs(10),
        "engine-mux sees the stream drop",
        FAST,
        || async { connected().await == 0.0 },
    )
    .await;
    builder.faults().set(Fault::FlashblocksDown, false);
    eventually_every(
        Duration::from_secs(10),
        "engine-mux reconnects",
        FAST,
        || async { connected().await == 1.0 },
    )
    .await;
    assert!(
        mux_metric(&devnet, "engine_mux_flashblocks_reconnects_total", &[]) > reconnects_before,
        "a reconnect was counted"
    );

    let slots = observe(&devnet, &mut events, 8, Duration::from_secs(30), |_| {}).await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    assert_eq!(
        mux_metric(&devnet, "engine_mux_blocks_proposed_total", &local),
        local_before,
        "every block, the interrupted one included, came from the builder"
    );
    let ids = sub.ids();
    assert_in_order_without_duplicates(&ids);
    assert!(
        mux_metric(&devnet, "engine_mux_flashblocks_rejected_total", &duplicate)
            > duplicates_before,
        "the builder re-sent the interrupted block's flashblocks and engine-mux ignored them"
    );

    let frames = sub.frames();
    let cut_frames: Vec<_> = frames
        .iter()
        .filter(|f| f.payload_id == cut_id)
        .cloned()
        .collect();
    let cut_block = cut_frames[0].metadata.block_number;
    let head = devnet.local.engine.head().number();
    assert!(
        head > cut_block + 5,
        "the chain went on (head {head}, cut at {cut_block})"
    );
    // The interrupted block landed with what was preconfirmed for it, in order, first.
    let landed = local_block(&devnet, cut_block).await;
    let landed: Vec<String> = landed["transactions"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_owned())
        .collect();
    let preconfirmed: Vec<String> = preconfirmed_hashes(&cut_frames)
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert!(
        cut_frames.len() >= 2 && landed.starts_with(&preconfirmed),
        "block {cut_block} starts with its {} flashblocks' transactions",
        cut_frames.len()
    );
    // Blocks after it are their flashblocks again.
    for n in cut_block + 2..head {
        let fbs =
            flashblocks_of_block(&frames, n).unwrap_or_else(|| panic!("block {n} had flashblocks"));
        assert_block_is_its_flashblocks(&devnet, n, &fbs).await;
    }
    let published: Vec<_> = frames
        .iter()
        .filter(|f| f.metadata.block_number < head)
        .cloned()
        .collect();
    let hashes = preconfirmed_hashes(&published);
    let counts = canonical_occurrences(&devnet, &hashes);
    assert!(
        counts.iter().all(|c| *c == 1),
        "no preconfirmation lost: {counts:?}"
    );
    devnet.stop().await;
}
