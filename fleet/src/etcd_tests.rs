//! The etcd coordination service against a real etcd: one member started by the test on free
//! 127.0.0.1 ports with a temporary data directory, stopped by the PID it started. Without the
//! `etcd` binary the tests say why they skip (and fail under CI, which installs it).

use std::time::{Duration, Instant};

use crate::coordination::{AgentSide, Assignment, CoordError, Coordination, Report};
use crate::etcd::Etcd;
use crate::journal::{Entry, Outcome};

#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;
use etcd_server::EtcdServer;

impl EtcdServer {
    fn connect(&self, run: &str) -> Etcd {
        Etcd::connect(&self.endpoints, run).expect("connect")
    }
}

/// Polls `f` until it is true, for at most `secs` seconds.
#[track_caller]
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deposed_coordinator_cannot_write_the_journal() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut first = etcd.connect("r1");
    first.grant_lease(5).unwrap();
    let old = first.elect("coordinator-1").unwrap();
    first.append(old, &[Entry::Started { coordinator: "coordinator-1".into() }]).unwrap();
    assert_eq!(first.journal().unwrap().len(), 1);

    // The second coordinator's campaign waits until the first's lease is gone.
    let endpoints = etcd.endpoints.clone();
    let second = std::thread::spawn(move || {
        let mut c = Etcd::connect(&endpoints, "r1").unwrap();
        c.grant_lease(5).unwrap();
        let fence = c.elect("coordinator-2").unwrap();
        (c, fence)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!second.is_finished(), "the second coordinator must not lead while the first does");
    let mut stale = etcd.connect("r1");
    // The first one loses its lease (killed, partitioned): its fence is now stale.
    first.revoke_lease().unwrap();
    let (mut second, fence) = second.join().unwrap();
    assert!(fence > old);
    stale.grant_lease(5).unwrap();
    let refused = stale.append(old, &[Entry::Finished]);
    assert_eq!(refused, Err(CoordError::Deposed(old.0)), "a write fenced by the old leader's key");
    second.journal().unwrap();
    second.append(fence, &[Entry::Resumed { by: "coordinator-2".into() }]).unwrap();
    let journal = second.journal().unwrap();
    assert_eq!(
        journal,
        [Entry::Started { coordinator: "coordinator-1".into() }, Entry::Resumed { by: "coordinator-2".into() }]
    );
    // A stale journal position is refused too (no lost or interleaved entries).
    let mut behind = etcd.connect("r1");
    behind.grant_lease(5).unwrap();
    assert!(behind.append(fence, &[Entry::Finished]).is_err(), "not the leader's client");
}

#[test]
fn an_agent_is_live_while_its_lease_is() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut coordinator = etcd.connect("r2");
    let mut agent = etcd.connect("r2");
    agent.grant_lease(2).unwrap();
    agent.register("uwm1").unwrap();
    assert_eq!(coordinator.live().unwrap().into_iter().collect::<Vec<_>>(), ["uwm1"]);
    // Kept alive past its TTL by the client's own runtime.
    std::thread::sleep(Duration::from_secs(3));
    assert!(coordinator.live().unwrap().contains("uwm1"), "the keep-alive lapsed");
    drop(agent); // the process "dies": nothing keeps the lease alive
    eventually(10, "the dead agent's lease expires", || coordinator.live().unwrap().is_empty());
}

#[test]
fn an_exclusive_lock_has_one_holder_until_its_lease_goes() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut a = etcd.connect("r3");
    let mut b = etcd.connect("r3");
    a.grant_lease(5).unwrap();
    b.grant_lease(5).unwrap();
    a.lock("exclusive/servers", "uwm1").unwrap();
    let refused = b.lock("exclusive/servers", "uwm2");
    assert!(matches!(refused, Err(CoordError::Held { .. })), "{refused:?}");
    a.revoke_lease().unwrap();
    b.lock("exclusive/servers", "uwm2").unwrap();
    b.unlock("exclusive/servers", "uwm2").unwrap();
}

#[test]
fn assignments_and_reports_round_trip_and_a_watch_sees_them() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut coordinator = etcd.connect("r4");
    coordinator.grant_lease(5).unwrap();
    let fence = coordinator.elect("c").unwrap();
    let mut agent = etcd.connect("r4");
    let before = agent.revision().unwrap();
    let assignment = Assignment { stage: "servers".into(), node: "uwm1".into(), attempt: 1, exclusive: true };
    coordinator.assign(fence, std::slice::from_ref(&assignment)).unwrap();
    let seen = agent.wait_for_change(before, Duration::from_secs(10)).unwrap();
    assert!(seen > before, "the watch saw the assignment");
    assert_eq!(agent.assignment("uwm1").unwrap(), Some(assignment));
    assert_eq!(agent.assignment("uwm").unwrap(), None, "a prefix of another node's key is not its assignment");
    let report = Report { stage: "servers".into(), node: "uwm1".into(), attempt: 1, outcome: Outcome::Ok };
    agent.report(&report).unwrap();
    assert_eq!(coordinator.reports().unwrap(), [report]);
    // Nothing changes: the wait ends at its timeout with the same revision.
    let now = agent.revision().unwrap();
    assert_eq!(agent.wait_for_change(now, Duration::from_millis(300)).unwrap(), now);
}
