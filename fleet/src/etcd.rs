//! The coordination service on etcd (crate `etcd-client`): leases for membership, etcd's lock
//! service for exclusive sections, its election for the coordinator, and transactions guarded
//! by the leader key's create revision for every coordinator write, so a deposed coordinator's
//! write fails in etcd itself. No consensus or locking of our own.
//!
//! Keys, under `/duet/fleet/<run>/`: `agents/<node>` (on the agent's lease), `election`,
//! `journal/<seq>` (JSON entries, `seq` zero-padded), `assign/<node>`, `reports/<node>/<stage>/
//! <attempt>`, `locks/<name>`. The API is blocking: each call runs on the client's own runtime,
//! which also keeps the lease alive between calls. A call that finds etcd unavailable (a member
//! died, the cluster is electing a leader) is tried again for up to [`RETRY_FOR`]; a fenced
//! append whose outcome the failure hid is recognised when it did land.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, LockOptions, Txn, TxnOp, WatchOptions};

use crate::coordination::{AgentSide, Assignment, CoordError, Coordination, Fence, Report};
use crate::journal::Entry;

fn service(e: impl std::fmt::Display) -> CoordError {
    CoordError::Service(e.to_string())
}

/// How long a call goes on trying while etcd is unavailable: longer than a leader election,
/// shorter than a lease an operator would notice.
pub const RETRY_FOR: Duration = Duration::from_secs(20);

/// etcd could not answer now but may in a moment: the member is gone (another one answers
/// next) or the cluster has no leader yet.
fn transient(e: &etcd_client::Error) -> bool {
    // A TLS handshake refused (a certificate etcd or this client does not accept) stays
    // refused: said at once, not after the retries.
    let said = format!("{e:?}");
    if ["Certificate", "certificate", "HandshakeFailure", "UnknownIssuer"].iter().any(|w| said.contains(w)) {
        return false;
    }
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            // Unknown: the connection broke under the call (an h2 error, not etcd's answer).
            matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            )
        }
        _ => false,
    }
}

/// The files of a TLS connection to etcd (PEM).
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA that signed etcd's server certificate.
    pub ca: std::path::PathBuf,
    /// This client's certificate and key, for an etcd started with `--client-cert-auth`.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Tls {
    fn options(&self) -> Result<etcd_client::TlsOptions, CoordError> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| CoordError::Service(format!("cannot read {what} {}: {e}", path.display())))
        };
        let ca = etcd_client::Certificate::from_pem(read(&self.ca, "the etcd CA certificate (--etcd-ca)")?);
        let options = etcd_client::TlsOptions::new().ca_certificate(ca);
        Ok(match &self.identity {
            Some((cert, key)) => options.identity(etcd_client::Identity::from_pem(
                read(cert, "the client certificate (--etcd-cert)")?,
                read(key, "the client key (--etcd-key)")?,
            )),
            None => options,
        })
    }
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
    /// Set by the keep-alive task when etcd says the lease is gone.
    expired: Arc<AtomicBool>,
    /// Until when the lease surely lives in etcd: a keep-alive sent at `t` that etcd answered
    /// with a TTL keeps it until at least `t + TTL` (etcd counts from when it got it, later).
    /// Without an answer (etcd unreachable, a partition) this is when the lease may be gone.
    alive_until: Arc<Mutex<Instant>>,
    /// The lease this client's agent registration is on.
    registered_on: Option<i64>,
    /// The task keeping the lease alive; a new lease's stops the old one's.
    keeper: Option<tokio::task::JoinHandle<()>>,
}

impl Etcd {
    /// Connects to `endpoints` (`127.0.0.1:2379`) for fleet run `run`, in plain text.
    pub fn connect(endpoints: &[String], run: &str) -> Result<Self, CoordError> {
        Self::connect_with(endpoints, run, None)
    }

    /// Connects over TLS when `tls` is given (the CA that signed etcd's certificate, and this
    /// client's certificate and key when etcd asks for one: `--client-cert-auth`).
    pub fn connect_with(endpoints: &[String], run: &str, tls: Option<&Tls>) -> Result<Self, CoordError> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(service)?;
        // HTTP/2 pings find a connection that went silent (a partition: no reset ever comes),
        // so the next call connects again instead of waiting on it.
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let options = match tls {
            Some(tls) => options.with_tls(tls.options()?),
            None => options,
        };
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
            expired: Arc::new(AtomicBool::new(false)),
            alive_until: Arc::new(Mutex::new(Instant::now())),
            registered_on: None,
            keeper: None,
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Runs `f` on the client's runtime, again while etcd is unavailable (for [`RETRY_FOR`]).
    fn call<T, F, Fut>(&self, mut f: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match self.rt.block_on(f(self.client.clone())) {
                Err(e) if transient(&e) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                result => return result,
            }
        }
    }

    /// Grants a lease of `ttl` seconds and keeps it alive from the client's runtime until the
    /// process dies (then etcd expires it after `ttl`). A keep-alive stream that breaks (its
    /// member died) is opened again, on whichever member answers.
    pub fn grant_lease(&mut self, ttl: i64) -> Result<i64, CoordError> {
        let asked = Instant::now();
        let id = self.call(|mut c| async move { c.lease_grant(ttl, None).await }).map_err(service)?.id();
        let client = self.client.clone();
        let full = Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1));
        let period = full / 3;
        let expired = Arc::new(AtomicBool::new(false));
        let alive_until = Arc::new(Mutex::new(asked + full));
        self.expired = expired.clone();
        self.alive_until = alive_until.clone();
        if let Some(old) = self.keeper.take() {
            old.abort();
        }
        self.keeper = Some(self.rt.spawn(async move {
            loop {
                let mut c = client.clone();
                if let Ok(Ok((mut keeper, mut stream))) = tokio::time::timeout(period, c.lease_keep_alive(id)).await {
                    loop {
                        let sent = Instant::now();
                        if keeper.keep_alive().await.is_err() {
                            break;
                        }
                        // No answer within a period: the stream went silent; open another.
                        match tokio::time::timeout(period, stream.message()).await {
                            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                                let until = sent + Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0));
                                *alive_until.lock().unwrap_or_else(PoisonError::into_inner) = until;
                            }
                            Ok(Ok(Some(_))) => {
                                expired.store(true, Ordering::SeqCst);
                                return;
                            }
                            _ => break,
                        }
                        tokio::time::sleep(period).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        self.lease = Some(id);
        Ok(id)
    }

    /// Whether etcd said this client's lease is gone (it could not keep it alive in time).
    pub fn lease_expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// Whether the lease surely lives for `margin` more: etcd answered a keep-alive recently
    /// enough. False once etcd has been out of reach for most of the TTL, before etcd can have
    /// let the lease go, so an agent that checks this before each step starts none after
    /// the coordinator may have counted it gone.
    pub fn lease_held_for(&self, margin: Duration) -> bool {
        let until = *self.alive_until.lock().unwrap_or_else(PoisonError::into_inner);
        self.lease.is_some() && !self.lease_expired() && Instant::now() + margin < until
    }

    /// Whether the agent's registration is on the lease this client holds now.
    pub fn registered_on_lease(&self) -> bool {
        self.lease.is_some() && self.registered_on == self.lease
    }

    /// Revokes the lease now (a clean stop, or a test making an agent vanish).
    pub fn revoke_lease(&mut self) -> Result<(), CoordError> {
        if let Some(id) = self.lease.take() {
            self.call(|mut c| async move { c.lease_revoke(id).await }).map_err(service)?;
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
        let options = etcd_client::PutOptions::new().with_lease(lease);
        let node = node.to_owned();
        self.call(|mut c| {
            let (key, node, options) = (key.clone(), node.clone(), options.clone());
            async move { c.put(key, node, Some(options)).await }
        })
        .map_err(service)?;
        self.registered_on = Some(lease);
        Ok(())
    }

    /// Campaigns for coordinator (blocks until this client leads) and returns its fence.
    pub fn elect(&mut self, name: &str) -> Result<Fence, CoordError> {
        let lease = self.lease()?;
        let election = self.key("election");
        // A campaign waits as long as another coordinator leads: each request's timeout ends
        // it, and it goes on (the same key, on the same lease).
        let response = loop {
            let mut c = self.client.clone();
            let (election, name) = (election.clone(), name.to_owned());
            match self.rt.block_on(async move { c.campaign(election, name, lease).await }) {
                Ok(response) => break response,
                Err(e) if transient(&e) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(service(e)),
            }
        };
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
        let response = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_prefix())).await }
            })
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
        let response = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .map_err(service)?;
        if response.succeeded() { Ok(()) } else { Err(CoordError::Deposed(fence.0)) }
    }

    /// Whether this client still leads and the journal holds exactly `puts`.
    fn landed(&self, fence: Fence, puts: &[(String, Vec<u8>)]) -> Result<bool, CoordError> {
        let Some(leader) = self.leader_key.clone() else { return Ok(false) };
        let get = |key: Vec<u8>| {
            self.call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .map_err(service)
        };
        let leads = get(leader)?.kvs().first().is_some_and(|kv| kv.create_revision() == fence.0);
        if !leads {
            return Ok(false);
        }
        for (key, value) in puts {
            if get(key.clone().into_bytes())?.kvs().first().is_none_or(|kv| kv.value() != value.as_slice()) {
                return Ok(false);
            }
        }
        Ok(true)
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
            // A watch that cannot start or breaks ends the wait early: the caller reads again.
            let mut stream = match client.watch(key, Some(options)).await {
                Ok(stream) => stream,
                Err(e) if transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Ok(revision);
                }
                Err(e) => return Err(service(e)),
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_) | Ok(Ok(None)) => return Ok(revision),
                    Ok(Err(e)) if transient(&e) => return Ok(revision),
                    Ok(Err(e)) => return Err(service(e)),
                    Ok(Ok(Some(r))) if !r.events().is_empty() => {
                        return Ok(r.header().map_or(revision, etcd_client::ResponseHeader::revision));
                    }
                    Ok(Ok(Some(_))) => {}
                }
            }
        })
    }

    /// Asks the leading coordinator to stop the run (`duet-fleet abort`): a request, not a
    /// journal entry; the leader journals it (fenced) and removes it.
    pub fn request_abort(&self, request: &AbortRequest) -> Result<(), CoordError> {
        let (key, value) = (self.key("abort"), serde_json::to_vec(request).expect("a request serializes"));
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .map_err(service)?;
        Ok(())
    }

    pub fn abort_request(&self) -> Result<Option<AbortRequest>, CoordError> {
        let exact = self.key("abort");
        let kvs = self.get_prefix("abort")?;
        kvs.iter().find(|(k, _)| *k == exact).map(|(k, v)| decode(k, v)).transpose()
    }

    pub fn clear_abort_request(&self) -> Result<(), CoordError> {
        let key = self.key("abort");
        self.call(|mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .map_err(service)?;
        Ok(())
    }

    /// Whether some coordinator holds (or campaigns for) the election.
    pub fn has_coordinator(&self) -> Result<bool, CoordError> {
        Ok(!self.get_prefix("election")?.is_empty())
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<i64, CoordError> {
        let key = self.key("");
        let response = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .map_err(service)?;
        Ok(response.header().map_or(0, etcd_client::ResponseHeader::revision))
    }
}

/// `duet-fleet abort`'s request: who and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortRequest {
    pub by: String,
    pub reason: String,
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
        let puts: Vec<(String, Vec<u8>)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    self.key(&format!("journal/{:012}", next + i as u64)),
                    serde_json::to_vec(e).expect("an entry serializes"),
                )
            })
            .collect();
        let ops = puts.iter().map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None)).collect();
        match self.fenced_txn(fence, vec![absent], ops) {
            Ok(()) => {}
            // A retried transaction whose first try landed (its answer was lost with a member).
            Err(CoordError::Deposed(_)) if self.landed(fence, &puts)? => {}
            Err(e) => return Err(e),
        }
        self.next_seq = Some(next + entries.len() as u64);
        Ok(())
    }

    fn live(&mut self) -> Result<BTreeSet<String>, CoordError> {
        Ok(self.get_prefix("agents/")?.into_iter().map(|(_, v)| String::from_utf8_lossy(&v).into_owned()).collect())
    }

    fn assign(&mut self, fence: Fence, assignments: &[Assignment]) -> Result<(), CoordError> {
        let ops = assignments
            .iter()
            .map(|a| {
                let key = self.key(&format!("assign/{}", a.node));
                TxnOp::put(key, serde_json::to_vec(a).expect("an assignment serializes"), None)
            })
            .collect();
        self.fenced_txn(fence, Vec::new(), ops)
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
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .map_err(service)?;
        Ok(())
    }

    /// etcd's lock on this client's lease; waits up to 2 s, then reports who holds it.
    fn lock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError> {
        if self.locks.contains_key(lock) {
            return Ok(());
        }
        let lease = self.lease()?;
        let name = self.key(&format!("locks/{lock}"));
        // etcd's lock key is the name and the lease: taking it again after a failure is the
        // same lock, not a second one.
        let wait = self.call(|mut c| {
            let name = name.clone();
            async move {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    c.lock(name, Some(LockOptions::new().with_lease(lease))),
                )
                .await
                {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                }
            }
        });
        match wait {
            Ok(Some(response)) => {
                self.locks.insert(lock.to_owned(), response.key().to_vec());
                Ok(())
            }
            Err(e) => Err(service(e)),
            Ok(None) => {
                let _ = holder;
                let holders = self.get_prefix(&format!("locks/{lock}"))?;
                let holder = holders.first().map_or_else(|| "another agent".to_owned(), |(k, _)| k.clone());
                Err(CoordError::Held { lock: lock.to_owned(), holder })
            }
        }
    }

    fn unlock(&mut self, lock: &str, _holder: &str) -> Result<(), CoordError> {
        if let Some(key) = self.locks.remove(lock) {
            self.call(|mut c| {
                let key = key.clone();
                async move { c.unlock(key).await }
            })
            .map_err(service)?;
        }
        Ok(())
    }
}
