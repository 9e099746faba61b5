//! Fault switches for builder mode: what a misbehaving external builder looks like.
//!
//! [`Fault`] names one way a builder misbehaves, [`Faults`] holds an engine's live switches, and
//! [`FaultWindow`] schedules a fault over a range of block heights.

mod kind;
mod switches;
mod window;

pub use kind::{Fault, ParseFaultError};
pub use switches::Faults;
pub use window::FaultWindow;
