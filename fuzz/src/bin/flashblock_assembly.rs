//! A run of flashblocks frames (one per input line) into engine-mux's flashblocks store and
//! its assembly into a payload (engine_mux::flashblocks::store, engine_api::flashblocks), and
//! into flashblocks-rpc's pending state. The builds of the payload ids seen are begun before
//! the frames of even lines and after everything else, so frames are also held and released.
//! Properties: what the store accepted for a payload is a run the assembler turns into a block
//! (never refused), whose hash and transactions are the accepted flashblocks'; every accepted
//! verdict is in that run; the store never holds more than it reports.

use std::{sync::Arc, time::Duration};

use engine_api::{PayloadVersion, flashblocks};
use engine_mux::{
    ExecutionMode,
    fuzzing::{FlashblocksStore, MAX_BUILDS, Metrics, ModeCell, Verdict},
};
use flashblocks_rpc::{config::PendingConfig, pending::state::PendingState};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (publish, _rx) = broadcast::channel(64);
        let store = FlashblocksStore::new(
            publish,
            Arc::new(Metrics::new()),
            Arc::new(ModeCell::new(ExecutionMode::Enabled)),
        );
        let mut pending = PendingState::new(PendingConfig {
            max_blocks: 4,
            max_flashblocks_per_block: 16,
            head_max_age: Duration::from_secs(60),
        });
        let mut late = Vec::new();
        let mut ids = Vec::new();
        let mut accepted = 0usize;
        for (line_no, line) in data.split(|b| *b == b'\n').enumerate().take(64) {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            let Ok(fb) = flashblocks::parse(text.as_bytes()) else {
                continue;
            };
            let _ = pending.ingest(&fb);
            if !ids.contains(&fb.payload_id) {
                if ids.len() == MAX_BUILDS {
                    // Older builds would be forgotten, and their accepted runs with them.
                    continue;
                }
                ids.push(fb.payload_id);
                if line_no % 2 == 0 {
                    store.begin(fb.payload_id, true);
                } else {
                    late.push(fb.payload_id);
                }
            }
            match store.ingest(fb, Utf8Bytes::from(text.to_string())) {
                Verdict::Accepted { released } => accepted += 1 + released,
                Verdict::Held | Verdict::Duplicate | Verdict::Rejected(_) => {}
            }
        }
        for id in late {
            store.begin(id, false);
        }
        let mut in_runs = 0usize;
        for id in &ids {
            let run = store.accepted(id);
            in_runs += run.len();
            if run.is_empty() {
                continue;
            }
            let envelope = flashblocks::assemble(&run, PayloadVersion::V4)
                .unwrap_or_else(|e| panic!("the store accepted a run the assembler refuses: {e}"));
            let last = &run[run.len() - 1].diff;
            assert_eq!(envelope.block_hash(), last.block_hash);
            let txs: usize = run.iter().map(|fb| fb.diff.transactions.len()).sum();
            assert_eq!(envelope.tx_count(), txs);
            let again = envelope.to_raw().expect("serializes");
            engine_mux_fuzz::check_envelope(PayloadVersion::V4, &again);
        }
        // Builds begun late released their held frames on `begin`, counted there, not above.
        assert!(
            accepted <= in_runs,
            "{accepted} accepted verdicts, {in_runs} in the runs"
        );
    });
}
