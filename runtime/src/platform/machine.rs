//! The machine a state directory drives, whichever platform it is: one type for the factory
//! (`platform::open`) to return, dispatching each call to the implementation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_compiler::compiled::{Side, Software};
use duet_compiler::inventory::{Inventory, Startup};

use super::linux::Linux;
use super::sim::Sim;
use super::{Finding, HttpAnswer, HttpFailure, Observed, Operation, Platform, PlatformResult, Progress, ServiceState};
use crate::process::{Marks, ProcessOutcome, ProcessSpec};

pub(crate) enum Machine {
    Sim(Sim),
    Linux(Linux),
}

/// Calls `$call` on whichever platform `$self` is.
macro_rules! each {
    ($self:ident, $m:ident => $call:expr) => {
        match $self {
            Machine::Sim($m) => $call,
            Machine::Linux($m) => $call,
        }
    };
}

impl Platform for Machine {
    fn name(&self) -> &str {
        each!(self, m => m.name())
    }

    fn inventory(&self) -> &Inventory {
        each!(self, m => m.inventory())
    }

    fn inventory_file(&self) -> &Path {
        each!(self, m => m.inventory_file())
    }

    async fn readiness(&self) -> PlatformResult<Vec<Finding>> {
        each!(self, m => m.readiness().await)
    }

    async fn merge_readiness(&self) -> PlatformResult<Vec<Finding>> {
        each!(self, m => m.merge_readiness().await)
    }

    async fn operate(&self, op: Operation, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        each!(self, m => m.operate(op, progress).await)
    }

    async fn observe(&self) -> PlatformResult<Observed> {
        each!(self, m => m.observe().await)
    }

    async fn service(&self, side: Side, name: &str) -> PlatformResult<ServiceState> {
        each!(self, m => m.service(side, name).await)
    }

    async fn set_startup(&self, side: Side, name: &str, startup: Startup) -> PlatformResult<()> {
        each!(self, m => m.set_startup(side, name, startup).await)
    }

    async fn stop_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        each!(self, m => m.stop_service(side, name).await)
    }

    async fn start_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        each!(self, m => m.start_service(side, name).await)
    }

    async fn run(&self, side: Side, spec: &ProcessSpec) -> PlatformResult<ProcessOutcome> {
        each!(self, m => m.run(side, spec).await)
    }

    async fn leftovers(&self, side: Side, marks: &Marks) -> PlatformResult<Vec<u32>> {
        each!(self, m => m.leftovers(side, marks).await)
    }

    async fn stop_leftovers(&self, side: Side, marks: &Marks, grace: Duration) -> PlatformResult<Vec<u32>> {
        each!(self, m => m.stop_leftovers(side, marks, grace).await)
    }

    async fn export_event_log(&self, side: Side, log: &str, into: &Path) -> PlatformResult<PathBuf> {
        each!(self, m => m.export_event_log(side, log, into).await)
    }

    async fn collect_dumps(&self, side: Side, into: &Path) -> PlatformResult<Vec<PathBuf>> {
        each!(self, m => m.collect_dumps(side, into).await)
    }

    async fn software(&self, side: Side) -> PlatformResult<Vec<Software>> {
        each!(self, m => m.software(side).await)
    }

    async fn installed(&self, side: Side, software: &Software) -> PlatformResult<()> {
        each!(self, m => m.installed(side, software).await)
    }

    async fn restart(&self, side: Side, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        each!(self, m => m.restart(side, progress).await)
    }

    async fn http_get(&self, side: Side, url: &str, timeout: Duration) -> Result<HttpAnswer, HttpFailure> {
        each!(self, m => m.http_get(side, url, timeout).await)
    }

    fn host_path(&self, machine_path: &str) -> PathBuf {
        each!(self, m => m.host_path(machine_path))
    }
}
