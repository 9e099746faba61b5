//! One builder, owned by one handle: its client, ordered call queue, payload-id map,
//! transaction copies, catch-up, health evidence and flashblocks. The multiplexer holds
//! builders and never reaches into their parts, so one builder and several are the same code.
//!
//! Files: `handle` (the [`Builder`] and its calls), `payload` (its candidates at getPayload),
//! `prevalidate` (its block fetched and validated before op-node asks: the slot's state and the
//! one task doing it for every builder), `outcome` (its part in a block),
//! `queue` + `worker` (the ordered call queue and the task draining it), `catch_up`,
//! `copies` (transaction copies), `payload_ids`, `recent` (payloads op-node sent); `set` (the builders, in priority order).

pub mod catch_up;
pub mod copies;
pub mod handle;
pub mod outcome;
pub mod payload;
pub mod payload_ids;
pub mod prevalidate;
pub mod queue;
pub mod recent;
pub mod set;
pub mod worker;

use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

pub use self::{
    handle::{Builder, BuilderTasks},
    outcome::BlockOutcome,
};

/// Starts the tasks draining `builder`'s queues, until `shutdown`.
pub fn spawn(
    builder: &Arc<Builder>,
    tasks: BuilderTasks,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(worker::run(builder.clone(), tasks.queue, shutdown.clone())),
        tokio::spawn(copies::run(
            builder.upstream().clone(),
            builder.metrics.clone(),
            tasks.copies,
            shutdown.clone(),
        )),
    ]
}
