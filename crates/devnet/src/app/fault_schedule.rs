//! The builder fault schedule of the all-in-one run: `--builder-fault [BUILDER:]FAULT@FROM..TO`
//! windows switched on and off as the chain reaches their heights.

use std::sync::Arc;

use crate::{
    engine::{
        Engine,
        faults::{Fault, FaultWindow, Faults},
    },
    node::{DriverEvent, DriverHandle},
};

/// The builder engines in order (b1 first), shared with the fault schedule.
pub(crate) type ScheduledBuilders = Arc<std::sync::Mutex<Vec<Arc<Engine>>>>;

/// Switches builder faults on and off as the chain reaches each window's heights (the fault
/// state for block N is set right after block N-1 is proposed), each window on the builders it
/// names (every builder when it names none).
pub(crate) fn schedule_faults(
    driver: &DriverHandle,
    builders: ScheduledBuilders,
    windows: Vec<FaultWindow>,
) -> tokio::task::JoinHandle<()> {
    let mut events = driver.subscribe();
    tokio::spawn(async move {
        if windows.is_empty() {
            return;
        }
        let apply = |next: u64| {
            let engines = builders.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (i, engine) in engines.iter().enumerate() {
                apply_windows(engine.faults(), &windows, i + 1, next);
            }
        };
        apply(1);
        loop {
            match events.recv().await {
                Ok(DriverEvent::Proposed(b)) => apply(b.number + 1),
                Ok(DriverEvent::Missed { number, .. }) => apply(number),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Sets builder `index`'s (1-based) switches for height `next`: per fault kind, on (with the
/// covering window's value) when a window of that kind for this builder covers `next`, off
/// when none does. Switches already in the wanted state are left alone (a tripped
/// `down_after_flashblock` stays tripped, not re-armed).
fn apply_windows(faults: &Faults, windows: &[FaultWindow], index: usize, next: u64) {
    let mine: Vec<&FaultWindow> = windows.iter().filter(|w| w.targets(index)).collect();
    let active = faults.active();
    for (i, w) in mine.iter().enumerate() {
        if mine[..i].iter().any(|o| same_kind(&o.fault, &w.fault)) {
            continue; // this kind was decided by its first window
        }
        let covering = mine
            .iter()
            .find(|o| same_kind(&o.fault, &w.fault) && o.covers(next));
        let on = active.iter().any(|f| same_kind(f, &w.fault));
        match covering {
            Some(c) if !active.contains(&c.fault) => faults.set(c.fault, true),
            None if on => faults.set(w.fault, false),
            _ => {}
        }
    }
}

fn same_kind(a: &Fault, b: &Fault) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_windows_switch_only_the_builders_they_name_and_repeat_windows_do_not_flip_flop() {
        let windows: Vec<FaultWindow> = ["b2:invalid@3..5", "down@4..6", "b1:down@10..12"]
            .iter()
            .map(|w| w.parse().unwrap())
            .collect();
        let (b1, b2) = (Faults::default(), Faults::default());
        let at = |next: u64| {
            apply_windows(&b1, &windows, 1, next);
            apply_windows(&b2, &windows, 2, next);
            (b1.active(), b2.active())
        };
        assert_eq!(at(3), (vec![], vec![Fault::Invalid]));
        assert_eq!(
            at(4),
            (vec![Fault::Down], vec![Fault::Down, Fault::Invalid])
        );
        assert_eq!(at(5), (vec![Fault::Down], vec![Fault::Down]));
        assert_eq!(at(6), (vec![], vec![]));
        assert_eq!(
            at(10),
            (vec![Fault::Down], vec![]),
            "the second down window of b1 is not switched off by the first"
        );
        assert_eq!(at(12), (vec![], vec![]));
    }
}
