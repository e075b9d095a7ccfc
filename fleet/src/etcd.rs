//! The coordination service on etcd (crate `etcd-client`): leases for membership, etcd's lock
//! service for exclusive sections, its election for the coordinator, and transactions guarded
//! by the leader key's create revision for every coordinator write, so a deposed coordinator's
//! write fails in etcd itself. No consensus or locking of our own.
//!
//! Keys, under `/duet/fleet/<run>/`: `agents/<node>` (on the agent's lease), `election`,
//! `journal/<seq>` (JSON entries, `seq` zero-padded), `assign/<node>`, `reports/<node>/<stage>/
//! <attempt>`, `locks/<name>`. The API is blocking: each call runs on the client's own runtime,
//! which also keeps the lease alive between calls.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, LockOptions, Txn, TxnOp, WatchOptions};

use crate::coordination::{AgentSide, Assignment, CoordError, Coordination, Fence, Report};
use crate::journal::Entry;

fn service(e: impl std::fmt::Display) -> CoordError {
    CoordError::Service(e.to_string())
}

/// One connection to etcd, for one coordinator or one agent.
pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
    prefix: String,
    lease: Option<i64>,
    /// The election's leader key, once this client won it.
    leader_key: Option<Vec<u8>>,
    next_seq: Option<u64>,
    /// Lock name -> the key etcd's lock service gave it.
    locks: BTreeMap<String, Vec<u8>>,
}

impl Etcd {
    /// Connects to `endpoints` (`127.0.0.1:2379`) for fleet run `run`.
    pub fn connect(endpoints: &[String], run: &str) -> Result<Self, CoordError> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(service)?;
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(10));
        let client = rt
            .block_on(Client::connect(endpoints, Some(options)))
            .map_err(|e| CoordError::Service(format!("cannot reach etcd at {}: {e}", endpoints.join(","))))?;
        Ok(Self {
            rt,
            client,
            prefix: format!("/duet/fleet/{run}/"),
            lease: None,
            leader_key: None,
            next_seq: None,
            locks: BTreeMap::new(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Grants a lease of `ttl` seconds and keeps it alive from the client's runtime until the
    /// process dies (then etcd expires it after `ttl`).
    pub fn grant_lease(&mut self, ttl: i64) -> Result<i64, CoordError> {
        let mut client = self.client.clone();
        let id = self.rt.block_on(async { client.lease_grant(ttl, None).await }).map_err(service)?.id();
        let (mut keeper, mut stream) =
            self.rt.block_on(async { client.lease_keep_alive(id).await }).map_err(service)?;
        let period = Duration::from_millis(u64::try_from(ttl).unwrap_or(1).max(1) * 1000 / 3);
        self.rt.spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() || !matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0) {
                    return;
                }
                tokio::time::sleep(period).await;
            }
        });
        self.lease = Some(id);
        Ok(id)
    }

    /// Revokes the lease now (a clean stop, or a test making an agent vanish).
    pub fn revoke_lease(&mut self) -> Result<(), CoordError> {
        if let Some(id) = self.lease.take() {
            let mut client = self.client.clone();
            self.rt.block_on(async { client.lease_revoke(id).await }).map_err(service)?;
        }
        self.leader_key = None;
        Ok(())
    }

    fn lease(&self) -> Result<i64, CoordError> {
        self.lease.ok_or_else(|| CoordError::Service("no lease: call grant_lease first".into()))
    }

    /// Registers `node` as a live agent on this client's lease.
    pub fn register(&mut self, node: &str) -> Result<(), CoordError> {
        let lease = self.lease()?;
        let key = self.key(&format!("agents/{node}"));
        let mut client = self.client.clone();
        let options = etcd_client::PutOptions::new().with_lease(lease);
        self.rt.block_on(async { client.put(key, node, Some(options)).await }).map_err(service)?;
        Ok(())
    }

    /// Campaigns for coordinator (blocks until this client leads) and returns its fence.
    pub fn elect(&mut self, name: &str) -> Result<Fence, CoordError> {
        let lease = self.lease()?;
        let election = self.key("election");
        let mut client = self.client.clone();
        let response = self.rt.block_on(async { client.campaign(election, name, lease).await }).map_err(service)?;
        let leader =
            response.leader().ok_or_else(|| CoordError::Service("etcd's campaign returned no leader key".into()))?;
        self.leader_key = Some(leader.key().to_vec());
        self.next_seq = None;
        Ok(Fence(leader.rev()))
    }

    fn leader_compare(&self, fence: Fence) -> Result<Compare, CoordError> {
        let key = self.leader_key.clone().ok_or(CoordError::Deposed(fence.0))?;
        Ok(Compare::create_revision(key, CompareOp::Equal, fence.0))
    }

    fn get_prefix(&self, rest: &str) -> Result<Vec<(String, Vec<u8>)>, CoordError> {
        let key = self.key(rest);
        let mut client = self.client.clone();
        let response = self
            .rt
            .block_on(async { client.get(key, Some(GetOptions::new().with_prefix())).await })
            .map_err(service)?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
            .collect())
    }

    /// A fenced transaction: `ops` if this client still leads, and `extra` holds.
    fn fenced_txn(&self, fence: Fence, extra: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(), CoordError> {
        let mut compares = vec![self.leader_compare(fence)?];
        compares.extend(extra);
        let txn = Txn::new().when(compares).and_then(ops);
        let mut client = self.client.clone();
        let response = self.rt.block_on(async { client.txn(txn).await }).map_err(service)?;
        if response.succeeded() { Ok(()) } else { Err(CoordError::Deposed(fence.0)) }
    }

    /// Blocks until a key under the run's prefix changes after `revision`, or `timeout` passes.
    /// Returns the revision seen. What the coordinator waits on between steps.
    pub fn wait_for_change(&self, revision: i64, timeout: Duration) -> Result<i64, CoordError> {
        self.watch_until(self.prefix.clone(), true, revision, timeout)
    }

    /// Waits until the node's assignment key changes after `revision`, or `timeout` passes. An
    /// idle agent waits on this alone: woken by every change of the run (each report, each
    /// journal entry), a hundred agents re-read the run's keys at every step of every node.
    pub fn wait_for_assignment(&self, node: &str, revision: i64, timeout: Duration) -> Result<i64, CoordError> {
        self.watch_until(self.key(&format!("assign/{node}")), false, revision, timeout)
    }

    fn watch_until(&self, key: String, prefix: bool, revision: i64, timeout: Duration) -> Result<i64, CoordError> {
        let mut client = self.client.clone();
        self.rt.block_on(async move {
            let options = WatchOptions::new().with_start_revision(revision + 1);
            let options = if prefix { options.with_prefix() } else { options };
            let mut stream = client.watch(key, Some(options)).await.map_err(service)?;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_) | Ok(Ok(None)) => return Ok(revision),
                    Ok(Err(e)) => return Err(service(e)),
                    Ok(Ok(Some(r))) if !r.events().is_empty() => {
                        return Ok(r.header().map_or(revision, etcd_client::ResponseHeader::revision));
                    }
                    Ok(Ok(Some(_))) => {}
                }
            }
        })
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<i64, CoordError> {
        let key = self.key("");
        let mut client = self.client.clone();
        let response = self.rt.block_on(async { client.get(key, None).await }).map_err(service)?;
        Ok(response.header().map_or(0, etcd_client::ResponseHeader::revision))
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, CoordError> {
    serde_json::from_slice(value).map_err(|e| {
        CoordError::Service(format!(
            "etcd key `{key}` holds what this duet cannot read ({e}); was it written by another version?"
        ))
    })
}

impl Coordination for Etcd {
    fn journal(&mut self) -> Result<Vec<Entry>, CoordError> {
        let kvs = self.get_prefix("journal/")?;
        self.next_seq = Some(kvs.len() as u64);
        kvs.iter().map(|(k, v)| decode(k, v)).collect()
    }

    fn append(&mut self, fence: Fence, entries: &[Entry]) -> Result<(), CoordError> {
        let next = match self.next_seq {
            Some(n) => n,
            None => self.get_prefix("journal/")?.len() as u64,
        };
        let first = self.key(&format!("journal/{next:012}"));
        // The first new key must not exist: another writer cannot have appended in between.
        let absent = Compare::create_revision(first, CompareOp::Equal, 0);
        let ops = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let key = self.key(&format!("journal/{:012}", next + i as u64));
                TxnOp::put(key, serde_json::to_vec(e).expect("an entry serializes"), None)
            })
            .collect();
        self.fenced_txn(fence, vec![absent], ops)?;
        self.next_seq = Some(next + entries.len() as u64);
        Ok(())
    }

    fn live(&mut self) -> Result<BTreeSet<String>, CoordError> {
        Ok(self.get_prefix("agents/")?.into_iter().map(|(_, v)| String::from_utf8_lossy(&v).into_owned()).collect())
    }

    fn assign(&mut self, fence: Fence, assignment: &Assignment) -> Result<(), CoordError> {
        let key = self.key(&format!("assign/{}", assignment.node));
        let op = TxnOp::put(key, serde_json::to_vec(assignment).expect("an assignment serializes"), None);
        self.fenced_txn(fence, Vec::new(), vec![op])
    }

    fn reports(&mut self) -> Result<Vec<Report>, CoordError> {
        self.get_prefix("reports/")?.iter().map(|(k, v)| decode(k, v)).collect()
    }
}

impl AgentSide for Etcd {
    fn assignment(&mut self, node: &str) -> Result<Option<Assignment>, CoordError> {
        let kvs = self.get_prefix(&format!("assign/{node}"))?;
        let exact = self.key(&format!("assign/{node}"));
        kvs.iter().find(|(k, _)| *k == exact).map(|(k, v)| decode(k, v)).transpose()
    }

    fn report(&mut self, report: &Report) -> Result<(), CoordError> {
        let key = self.key(&format!("reports/{}/{}/{}", report.node, report.stage, report.attempt));
        let value = serde_json::to_vec(report).expect("a report serializes");
        let mut client = self.client.clone();
        self.rt.block_on(async { client.put(key, value, None).await }).map_err(service)?;
        Ok(())
    }

    /// etcd's lock on this client's lease; waits up to 2 s, then reports who holds it.
    fn lock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError> {
        if self.locks.contains_key(lock) {
            return Ok(());
        }
        let lease = self.lease()?;
        let name = self.key(&format!("locks/{lock}"));
        let mut client = self.client.clone();
        let wait = self.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(2),
                client.lock(name.clone(), Some(LockOptions::new().with_lease(lease))),
            )
            .await
        });
        match wait {
            Ok(Ok(response)) => {
                self.locks.insert(lock.to_owned(), response.key().to_vec());
                Ok(())
            }
            Ok(Err(e)) => Err(service(e)),
            Err(_) => {
                let _ = holder;
                let holders = self.get_prefix(&format!("locks/{lock}"))?;
                let holder = holders.first().map_or_else(|| "another agent".to_owned(), |(k, _)| k.clone());
                Err(CoordError::Held { lock: lock.to_owned(), holder })
            }
        }
    }

    fn unlock(&mut self, lock: &str, _holder: &str) -> Result<(), CoordError> {
        if let Some(key) = self.locks.remove(lock) {
            let mut client = self.client.clone();
            self.rt.block_on(async { client.unlock(key).await }).map_err(service)?;
        }
        Ok(())
    }
}
