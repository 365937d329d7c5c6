//! The Redis backend: any number of hosts share one state on one Redis primary.
//!
//! Layout, under the configured prefix `P`:
//! - `P{tag}key`: a hash per stored key, fields `v` (the value) and `r` (the revision
//!   that last wrote it). `tag` is the key's first part after its leading tag character
//!   (a resource group's name for every key of the group, see `guest/src/keys.rs`), so
//!   the keys of one group share a Redis Cluster hash slot.
//! - `Pindex`: a sorted set of every stored key, all scored 0, so `ZRANGE ... BYLEX`
//!   walks them in byte order, which is Rust's `String` order: the ordered `scan`.
//! - `Prevision`: the revision counter, `INCR`ed by every commit.
//!
//! Each call is one Lua script, run by its SHA (`EVALSHA`, loaded again by the client
//! when a restarted server lacks it). Redis runs a script alone, so `get` and `scan`
//! read a consistent snapshot and `commit` is one atomic step: it checks every
//! precondition before it writes anything (Lua does not roll back) and its `#!lua`
//! header makes a server out of memory refuse it before it starts. The revision never
//! passes through a Lua number (a double): the counter's own decimal string is stored
//! and compared, so revisions are exact up to 2^63 - 1.
//!
//! Every call is bounded by the command timeout and fails with
//! [`StoreError::Unavailable`] past it; the connection is re-established in the
//! background when the server returns. A commit that timed out may have landed, as the
//! [`StateStore`] contract allows. With `wait_replicas`, a commit is acknowledged once
//! that many replicas hold it (`WAIT`); otherwise it fails as unavailable although the
//! primary holds it.
//!
//! Behind Sentinel (`redis-sentinel://`, see `sentinel.rs`) the primary is the server
//! the sentinels name, and the store follows it through a failover.

mod connection;
mod scripts;
mod sentinel;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::{ErrorKind, Script, ServerErrorKind, Value};
use request_access_config::{StoreConfig, redact_url};
use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
use request_access_state::{check_commit, check_keys, check_read, clamp_limit};

use self::connection::{Link, bounded, durability_problems, manage, vet};
use self::scripts::{COMMIT, GET, READ, SCAN, bytes, revision, script};
use self::sentinel::{Primary, Sentinels};
use super::{StateStore, StoreError};

/// Many hosts' shared state on one Redis primary.
pub struct RedisStore {
    primary: Arc<Primary>,
    prefix: String,
    command_timeout: Duration,
    wait: Option<(u32, Duration)>,
    /// The URL without its password, for messages.
    location: String,
    get: Script,
    scan: Script,
    read: Script,
    commit: Script,
}

impl RedisStore {
    /// Connect to `url` with `config`'s timeouts, prefix and replica wait, and check
    /// that the server keeps what it acknowledges ([`RedisStore::durability_problems`]):
    /// refused where it would not, unless `accept_weaker_durability` (then logged).
    /// A `redis-sentinel://` URL names sentinels, which name the primary (see
    /// `sentinel.rs`); a failover then moves the store to the promoted replica.
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<RedisStore, StoreError> {
        let location = redact_url(url);
        let (link, sentinels) = if url.starts_with(sentinel::SCHEME) {
            let sentinels = Sentinels::parse(url, config)?;
            let (link, address) = sentinels.find().await?;
            tracing::info!(store = %location, primary = %address, "primary found through the sentinels");
            (link, Some(sentinels))
        } else {
            let link = Link::Managed(manage(url, config, &location).await?);
            vet(&link, config, &location).await?;
            (link, None)
        };
        Ok(RedisStore {
            primary: Arc::new(Primary {
                link: ArcSwapOption::from_pointee(link),
                sentinels,
            }),
            prefix: config.prefix.clone(),
            command_timeout: config.command_timeout,
            wait: (config.wait_replicas > 0).then_some((config.wait_replicas, config.wait_timeout)),
            location,
            get: script(false, GET),
            scan: script(false, SCAN),
            read: script(false, READ),
            commit: script(true, COMMIT),
        })
    }

    /// Where each of the primary's settings would let an acknowledged commit be lost, in
    /// words; a server that refuses `CONFIG GET` (some managed services do) is reported
    /// once, as unchecked.
    pub async fn durability_problems(&self) -> Result<Vec<String>, StoreError> {
        durability_problems(&*self.link()?, self.command_timeout, &self.location).await
    }

    /// Hold `link` from now on, as if it had been found (for tests: a demoted primary).
    #[cfg(test)]
    fn hold(&self, link: Link) {
        self.primary.link.store(Some(Arc::new(link)));
    }

    /// The current connection; none while a lost primary's successor is looked for.
    fn link(&self) -> Result<Arc<Link>, StoreError> {
        self.primary.link.load_full().ok_or_else(|| {
            StoreError::Unavailable(format!(
                "{}: the primary is lost; the sentinels are asked for the current one",
                self.location
            ))
        })
    }

    /// `future`, a call on `link`, within `limit` (see [`bounded`]); a failure that
    /// says the primary is gone, demoted or cut off has the store look for the current
    /// one.
    async fn call<T>(
        &self,
        link: &Arc<Link>,
        limit: Duration,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match bounded(&self.location, limit, future).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                // Demoted, or cut off from its replicas (`min-replicas-to-write`).
                if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
                    || e.code() == Some("NOREPLICAS")
                {
                    self.primary.lost(link);
                }
                Err(self.unavailable(e))
            }
            Err(e) => {
                self.primary.lost(link);
                Err(e)
            }
        }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{}: {e}", self.location))
    }

    /// Run `script` on `link` with the prefix and then `args`; any failure is
    /// unavailable.
    async fn run(
        &self,
        link: &Arc<Link>,
        script: &Script,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Value>, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.prefix.as_bytes());
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = (**link).clone();
        self.call(
            link,
            self.command_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await
    }

    /// The entries of `keys` from a get's answer: value and revision per key.
    fn entries_of(
        &self,
        keys: &[String],
        answer: Vec<Value>,
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        if answer.len() != 2 * keys.len() {
            return Err(self.malformed("get"));
        }
        let mut values = answer.into_iter();
        keys.iter()
            .map(|key| {
                let (value, rev) = (values.next(), values.next());
                let (Some(value), Some(rev)) = (value, rev) else {
                    return Err(self.malformed("get"));
                };
                match bytes(value).map_err(|_| self.malformed("get"))? {
                    None => Ok(None),
                    Some(value) => Ok(Some(Entry {
                        key: key.clone(),
                        value,
                        revision: revision(rev).map_err(|_| self.malformed("get"))?,
                    })),
                }
            })
            .collect()
    }

    /// The entries of a scan's answer: key, value and revision per entry, at most
    /// `limit`.
    fn scanned(&self, answer: Vec<Value>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        if !answer.len().is_multiple_of(3) || answer.len() / 3 > limit {
            return Err(self.malformed("scan"));
        }
        let mut entries = Vec::with_capacity(answer.len() / 3);
        let mut values = answer.into_iter();
        while let (Some(key), Some(value), Some(rev)) =
            (values.next(), values.next(), values.next())
        {
            let key = bytes(key)
                .ok()
                .flatten()
                .and_then(|k| String::from_utf8(k).ok())
                .ok_or_else(|| self.malformed("scan"))?;
            // A key indexed without its hash would be a broken commit; say so.
            let value = bytes(value)
                .ok()
                .flatten()
                .ok_or_else(|| self.malformed("scan"))?;
            let revision = revision(rev).map_err(|_| self.malformed("scan"))?;
            entries.push(Entry {
                key,
                value,
                revision,
            });
        }
        Ok(entries)
    }

    fn malformed(&self, what: &str) -> StoreError {
        StoreError::Unavailable(format!("{}: malformed answer to {what}", self.location))
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    fn kind(&self) -> &'static str {
        if self.primary.sentinels.is_some() {
            "redis-sentinel"
        } else {
            "redis"
        }
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        check_keys(keys.iter().map(String::as_str)).map_err(StoreError::Refused)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self
            .run(
                &self.link()?,
                &self.get,
                keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            )
            .await?;
        self.entries_of(keys, answer)
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        let limit = clamp_limit(limit);
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let answer = self
            .run(
                &self.link()?,
                &self.scan,
                vec![
                    start.as_bytes().to_vec(),
                    end.as_bytes().to_vec(),
                    limit.to_string().into_bytes(),
                ],
            )
            .await?;
        self.scanned(answer, limit)
    }

    async fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, StoreError> {
        check_read(keys, ranges).map_err(StoreError::Refused)?;
        let mut args = Vec::with_capacity(1 + keys.len() + 3 * ranges.len());
        args.push(keys.len().to_string().into_bytes());
        args.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        // An empty range is answered empty without asking (ZRANGE refuses start > end).
        let asked: Vec<(usize, &KeyRange)> = ranges
            .iter()
            .map(|r| (clamp_limit(r.limit), r))
            .filter(|(limit, r)| r.start < r.end && *limit > 0)
            .collect();
        for (limit, range) in &asked {
            args.push(range.start.as_bytes().to_vec());
            args.push(range.end.as_bytes().to_vec());
            args.push(limit.to_string().into_bytes());
        }
        let answer = self.run(&self.link()?, &self.read, args).await?;
        if answer.len() != 1 + asked.len() {
            return Err(self.malformed("read"));
        }
        let mut answers = answer.into_iter().map(|part| match part {
            Value::Array(items) => Ok(items),
            _ => Err(self.malformed("read")),
        });
        let got = answers.next().ok_or_else(|| self.malformed("read"))??;
        let entries = self.entries_of(keys, got)?;
        let mut scanned = Vec::with_capacity(ranges.len());
        for range in ranges {
            let limit = clamp_limit(range.limit);
            if range.start < range.end && limit > 0 {
                let part = answers.next().ok_or_else(|| self.malformed("read"))??;
                scanned.push(self.scanned(part, limit)?);
            } else {
                scanned.push(Vec::new());
            }
        }
        Ok(Snapshot {
            entries,
            ranges: scanned,
        })
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        check_commit(preconditions, mutations).map_err(StoreError::Refused)?;
        let mut args = Vec::with_capacity(1 + 2 * preconditions.len() + 3 * mutations.len());
        args.push(preconditions.len().to_string().into_bytes());
        for p in preconditions {
            args.push(p.key.as_bytes().to_vec());
            args.push(
                p.revision
                    .map(|r| r.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
            );
        }
        for m in mutations {
            match m {
                Mutation::Put(key, value) => {
                    args.push(b"p".to_vec());
                    args.push(key.as_bytes().to_vec());
                    args.push(value.clone());
                }
                Mutation::Delete(key) => {
                    args.push(b"d".to_vec());
                    args.push(key.as_bytes().to_vec());
                    args.push(Vec::new());
                }
            }
        }
        // `WAIT` counts what its own connection wrote: it must follow on the commit's.
        let link = self.link()?;
        let answer = self.run(&link, &self.commit, args).await?;
        let [status, detail]: [Value; 2] =
            answer.try_into().map_err(|_| self.malformed("commit"))?;
        match status {
            Value::Int(0) => {
                let failed = match detail {
                    Value::Int(i) => usize::try_from(i).ok().and_then(|i| i.checked_sub(1)),
                    _ => None,
                };
                let key = failed
                    .and_then(|i| preconditions.get(i))
                    .ok_or_else(|| self.malformed("commit"))?;
                Ok(CommitOutcome::Conflict(key.key.clone()))
            }
            Value::Int(1) => {
                let revision = revision(detail).map_err(|_| self.malformed("commit"))?;
                if let Some((replicas, timeout)) = self.wait {
                    self.wait_for(&link, replicas, timeout, revision).await?;
                }
                Ok(CommitOutcome::Committed(revision))
            }
            _ => Err(self.malformed("commit")),
        }
    }

    fn is_remote(&self) -> bool {
        true
    }
}

impl RedisStore {
    /// `WAIT replicas timeout` after the commit at `revision`: it is acknowledged once
    /// that many replicas hold every write this connection made so far.
    async fn wait_for(
        &self,
        link: &Arc<Link>,
        replicas: u32,
        timeout: Duration,
        revision: u64,
    ) -> Result<(), StoreError> {
        let mut command = redis::cmd("WAIT");
        command.arg(replicas).arg(timeout.as_millis() as u64);
        let mut connection = (**link).clone();
        let acknowledged: i64 = self
            .call(
                link,
                self.command_timeout + timeout,
                command.query_async(&mut connection),
            )
            .await?;
        if acknowledged < i64::from(replicas) {
            return Err(StoreError::Unavailable(format!(
                "{}: revision {revision} is on the primary but {acknowledged} of {replicas} \
                 replicas acknowledged it within {} ms; a failover now could lose it",
                self.location,
                timeout.as_millis()
            )));
        }
        Ok(())
    }
}
