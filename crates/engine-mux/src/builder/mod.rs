//! One builder, owned by one handle: its client, ordered call queue, payload-id map,
//! transaction copies, catch-up, health evidence and flashblocks. The multiplexer holds
//! builders and never reaches into their parts, so one builder and several are the same code.
//!
//! Files: `handle` (the [`Builder`] and its calls), `payload` (its candidates at getPayload),
//! `prevalidate` (its block fetched and validated before op-node asks: the slot's state and the
//! one task doing it for every builder), `outcome` (its part in a block),
//! `queue` + `worker` (the ordered call queue and the task draining it), `catch_up`,
//! `copies` (transaction copies), `gather` (waiting for several builders' answers), `payload_ids`, `recent` (payloads op-node sent); `set` (the builders, in priority order).

pub(crate) mod catch_up;
pub(crate) mod copies;
mod gather;
pub(crate) mod handle;
pub(crate) mod outcome;
pub(crate) mod payload;
pub(crate) mod payload_ids;
pub(crate) mod prevalidate;
pub(crate) mod queue;
pub(crate) mod recent;
pub(crate) mod set;
pub(crate) mod worker;

use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

pub(crate) use self::{
    handle::{Builder, BuilderTasks},
    outcome::BlockOutcome,
};

/// Starts the tasks draining `builder`'s queues, until `shutdown`.
pub(crate) fn spawn(
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
