//! Ctrl-C and SIGTERM while duet drives a session (docs/reliability.md, "Signals").
//!
//! - The **first** signal: no new step starts; the running steps finish (or reach their
//!   timeout) and are journaled; duet exits saying how to resume.
//! - The **second**: the running actions' process trees are stopped (SIGTERM, then SIGKILL
//!   after the grace), every running step is journaled as interrupted, and duet exits. A later
//!   `resume` reconciles those steps as after a crash: a platform operation is checked against
//!   the machine, a `rerun: safe` action runs again, a `rerun: unsafe` one is left to the
//!   operator.
//! - A **third** exits at once, journaling nothing more: what a crash leaves, which `resume`
//!   also handles.
//!
//! Actions run in process groups of their own, so a Ctrl-C at the terminal reaches duet only;
//! duet decides what happens to them.

use std::io::Write as _;

use signal_hook::consts::{SIGINT, SIGTERM};
use tokio::sync::watch;

/// A signal duet was stopped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signal {
    pub(crate) number: i32,
    pub(crate) name: &'static str,
}

impl Signal {
    const INT: Self = Self { number: SIGINT, name: "SIGINT" };
    const TERM: Self = Self { number: SIGTERM, name: "SIGTERM" };
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Level {
    /// How many signals arrived.
    count: u32,
    first: Option<Signal>,
}

/// Whether duet was asked to stop; cheap to clone, one per command.
#[derive(Clone, Debug)]
pub(crate) struct Interrupt {
    level: watch::Receiver<Level>,
}

impl Default for Interrupt {
    /// Never fires (the read-only commands, and unit tests).
    fn default() -> Self {
        let (_, level) = watch::channel(Level::default());
        Self { level }
    }
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM; from then on they no longer kill duet
    /// outright.
    ///
    /// A thread of its own waits for them (signal-hook's self-pipe), so each is counted when it
    /// arrives, even while duet's loop is busy replaying a journal or syncing a file, and the
    /// third one exits at once whatever the loop is doing.
    pub(crate) fn listen() -> std::io::Result<Self> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let (tx, level) = watch::channel(Level::default());
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for number in signals.forever() {
                let got = if number == SIGTERM { Signal::TERM } else { Signal::INT };
                tx.send_modify(|l| {
                    l.count += 1;
                    l.first.get_or_insert(got);
                });
                let level = *tx.borrow();
                // stderr may be a closed pipe (`duet run | tee log`, and Ctrl-C stopped tee):
                // the message is lost then, never the count.
                let say = |text: String| {
                    let _ = writeln!(std::io::stderr(), "{text}");
                };
                match level.count {
                    1 => say(format!(
                        "duet: {}: starting no new step; the running steps finish and are journaled \
                         (send it again to stop them now)",
                        got.name
                    )),
                    2 => say(format!(
                        "duet: {}: stopping the running steps (actions get SIGTERM, then SIGKILL); \
                         they are journaled as interrupted",
                        got.name
                    )),
                    _ => {
                        say(format!(
                            "duet: {}: exiting now without journaling the running steps; \
                             `duet resume` reconciles them as after a crash",
                            got.name
                        ));
                        std::process::exit(i32::from(duet_contract::exit::signalled(
                            level.first.unwrap_or(got).number,
                        )));
                    }
                }
            }
        })?;
        Ok(Self { level })
    }

    /// The first signal, once one has arrived: start nothing new.
    pub(crate) fn stopping(&self) -> Option<Signal> {
        self.level.borrow().first
    }

    /// Whether the second signal has arrived: stop what runs.
    pub(crate) fn escalated(&self) -> bool {
        self.level.borrow().count >= 2
    }

    /// Resolves when the first signal has arrived; never, for an interrupt that cannot fire.
    pub(crate) async fn stop(&self) {
        self.reached(1).await;
    }

    /// Resolves when the second signal has arrived; never, for an interrupt that cannot fire.
    pub(crate) async fn escalation(&self) {
        self.reached(2).await;
    }

    async fn reached(&self, count: u32) {
        let mut level = self.level.clone();
        if level.wait_for(|l| l.count >= count).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
