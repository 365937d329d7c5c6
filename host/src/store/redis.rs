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

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, Script, ServerErrorKind, Value};
use request_access_config::{StoreConfig, redact_url};
use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
use request_access_state::{check_commit, check_keys, check_read, clamp_limit};

use super::sentinel::{self, Link, Primary, Sentinels};
use super::{StateStore, StoreError};

/// The one rule that names a key's hash, shared by every script: `P{tag}key`.
const KEY_NAME: &str = r#"
local prefix = ARGV[1]
local function name(key)
  local tag = string.match(key, '^[^\31]*\31([^\31]*)') or key
  return prefix .. '{' .. tag .. '}' .. key
end
"#;

/// `get`: ARGV = prefix, keys... Answers value and revision per key, false when absent.
const GET: &str = r#"
local answer = {}
for i = 2, #ARGV do
  local found = redis.call('HMGET', name(ARGV[i]), 'v', 'r')
  answer[#answer + 1] = found[1]
  answer[#answer + 1] = found[2]
end
return answer
"#;

/// `scan`: ARGV = prefix, start, end, limit. Answers key, value, revision per entry.
const SCAN: &str = r#"
local keys = redis.call('ZRANGE', prefix .. 'index', '[' .. ARGV[2], '(' .. ARGV[3],
  'BYLEX', 'LIMIT', 0, tonumber(ARGV[4]))
local answer = {}
for _, key in ipairs(keys) do
  local found = redis.call('HMGET', name(key), 'v', 'r')
  answer[#answer + 1] = key
  answer[#answer + 1] = found[1]
  answer[#answer + 1] = found[2]
end
return answer
"#;

/// `read`: ARGV = prefix, n, n keys, then (start, end, limit) per range. Answers {get's
/// answer for the keys, scan's answer for each range...}, all from one snapshot.
const READ: &str = r#"
local function entries(keys)
  local answer = {}
  for _, key in ipairs(keys) do
    local found = redis.call('HMGET', name(key), 'v', 'r')
    answer[#answer + 1] = key
    answer[#answer + 1] = found[1]
    answer[#answer + 1] = found[2]
  end
  return answer
end
local n = tonumber(ARGV[2])
local got = {}
for i = 3, 2 + n do
  local found = redis.call('HMGET', name(ARGV[i]), 'v', 'r')
  got[#got + 1] = found[1]
  got[#got + 1] = found[2]
end
local answer = {got}
for j = 3 + n, #ARGV, 3 do
  answer[#answer + 1] = entries(redis.call('ZRANGE', prefix .. 'index', '[' .. ARGV[j],
    '(' .. ARGV[j + 1], 'BYLEX', 'LIMIT', 0, tonumber(ARGV[j + 2])))
end
return answer
"#;

/// `commit`: ARGV = prefix, n, then n (key, revision or '') preconditions, then
/// (op, key, value) mutations with op 'p' or 'd'. Answers {0, i} when precondition i
/// fails (nothing written), else {1, revision}.
const COMMIT: &str = r#"
local n = tonumber(ARGV[2])
for i = 1, n do
  local have = redis.call('HGET', name(ARGV[1 + 2 * i]), 'r')
  local want = ARGV[2 + 2 * i]
  if want == '' then
    if have then return {0, i} end
  elseif have ~= want then
    return {0, i}
  end
end
redis.call('INCR', prefix .. 'revision')
local revision = redis.call('GET', prefix .. 'revision')
for j = 3 + 2 * n, #ARGV, 3 do
  local key = ARGV[j + 1]
  if ARGV[j] == 'p' then
    redis.call('HSET', name(key), 'v', ARGV[j + 2], 'r', revision)
    redis.call('ZADD', prefix .. 'index', 0, key)
  else
    redis.call('DEL', name(key))
    redis.call('ZREM', prefix .. 'index', key)
  end
end
return {1, revision}
"#;

/// The server settings under which an acknowledged commit survives a crash of Redis,
/// as (setting, required value, what goes wrong otherwise).
const DURABLE_SETTINGS: [(&str, &str, &str); 3] = [
    (
        "appendonly",
        "yes",
        "without the append-only file a crash loses every reservation since the last snapshot",
    ),
    (
        "appendfsync",
        "always",
        "acknowledged commits not yet synced are lost when the machine fails",
    ),
    (
        "maxmemory-policy",
        "noeviction",
        "under memory pressure Redis deletes keys, reservations included, without telling anyone",
    ),
];

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

/// `body` with the key-name rule in front. A script that `writes` carries `#!lua`
/// without flags, so a server out of memory refuses it before it starts; the readers
/// are marked `no-writes`.
fn script(writes: bool, body: &str) -> Script {
    let header = if writes {
        "#!lua"
    } else {
        "#!lua flags=no-writes"
    };
    Script::new(&format!("{header}\n{KEY_NAME}{body}"))
}

/// The client for `url` (with `config`'s certificate authority for `rediss://`).
pub(super) fn client(
    url: &str,
    config: &StoreConfig,
    location: &str,
) -> Result<redis::Client, StoreError> {
    let unusable = |e: redis::RedisError| StoreError::Unavailable(format!("{location}: {e}"));
    match &config.tls_ca_file {
        Some(ca) => {
            let root = std::fs::read(ca).map_err(|e| {
                StoreError::Unavailable(format!(
                    "{location}: cannot read tls_ca_file {}: {e}",
                    ca.display()
                ))
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            redis::Client::build_with_tls(url, certificates).map_err(unusable)
        }
        None => redis::Client::open(url).map_err(unusable),
    }
}

/// The longest one command may take on a connection: `WAIT` holds its answer up to its
/// own timeout, on top of the command's.
pub(super) fn response_timeout(config: &StoreConfig) -> Duration {
    if config.wait_replicas > 0 {
        config.command_timeout + config.wait_timeout
    } else {
        config.command_timeout
    }
}

/// Refuse a server whose settings could lose an acknowledged commit (see
/// [`durability_problems`]), unless `config` accepts weaker durability (then logged).
pub(super) async fn vet(
    link: &Link,
    config: &StoreConfig,
    location: &str,
) -> Result<(), StoreError> {
    let problems = durability_problems(link, config.command_timeout, location).await?;
    if problems.is_empty() {
        return Ok(());
    }
    let list = problems.join("; ");
    if !config.accept_weaker_durability {
        return Err(StoreError::Unavailable(format!(
            "{location}: refused, it could lose acknowledged reservations: {list} (set [store] \
             accept_weaker_durability = true to start anyway)"
        )));
    }
    tracing::warn!(store = %location, problems = %list, "weaker durability accepted");
    Ok(())
}

/// Where each of the server's settings would let an acknowledged commit be lost, in
/// words; a server that refuses `CONFIG GET` (some managed services do) is reported
/// once, as unchecked.
async fn durability_problems(
    link: &Link,
    limit: Duration,
    location: &str,
) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    for (setting, wanted, otherwise) in DURABLE_SETTINGS {
        let mut command = redis::cmd("CONFIG");
        command.arg("GET").arg(setting);
        let answer: Result<Vec<String>, _> =
            bounded(location, limit, command.query_async(&mut link.clone())).await?;
        match answer {
            Ok(pair) => {
                let value = pair.get(1).map(String::as_str).unwrap_or("");
                if value != wanted {
                    problems.push(format!(
                        "{setting} is {value:?}, not {wanted:?}: {otherwise}"
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(store = %location, error = %e, "cannot read the server's settings; durability unchecked");
                break;
            }
        }
    }
    Ok(problems)
}

/// `future` within `limit`; a timeout or a lost connection is
/// [`StoreError::Unavailable`], naming the server as `location` (without its password).
pub(super) async fn bounded<T>(
    location: &str,
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>, StoreError> {
    let late = || {
        StoreError::Unavailable(format!(
            "{location}: no answer within {} ms",
            limit.as_millis()
        ))
    };
    // The connection's own response timeout (the same limit) fires first and has it
    // reconnect, which matters when a server stops answering without closing the
    // connection; this one is the backstop.
    match tokio::time::timeout(limit + Duration::from_millis(100), future).await {
        Err(_) => Err(late()),
        Ok(Err(e)) if e.is_timeout() => Err(late()),
        Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            Err(StoreError::Unavailable(format!("{location}: {e}")))
        }
        Ok(answer) => Ok(answer),
    }
}

/// A connection manager for the one server at `url`.
async fn manage(
    url: &str,
    config: &StoreConfig,
    location: &str,
) -> Result<ConnectionManager, StoreError> {
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(response_timeout(config)))
        // Reconnection happens in the background; a call never waits for more than
        // one attempt, the command timeout bounding it anyway.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(config.connect_timeout);
    tokio::time::timeout(
        config.connect_timeout + config.command_timeout,
        ConnectionManager::new_with_config(client(url, config, location)?, manager_config),
    )
    .await
    .map_err(|_| {
        StoreError::Unavailable(format!(
            "{location}: no connection within {} ms",
            config.connect_timeout.as_millis()
        ))
    })?
    .map_err(|e| StoreError::Unavailable(format!("{location}: {e}")))
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
    pub(super) fn hold(&self, link: Link) {
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

/// Bytes of a bulk string; `None` for Nil (Lua's false).
fn bytes(value: Value) -> Result<Option<Vec<u8>>, ()> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        _ => Err(()),
    }
}

/// A revision, stored as the counter's decimal string.
fn revision(value: Value) -> Result<u64, ()> {
    match value {
        Value::Int(n) => u64::try_from(n).map_err(|_| ()),
        other => std::str::from_utf8(&bytes(other)?.ok_or(())?)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ()),
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

#[cfg(test)]
mod tests {
    use super::super::contract::{self, absent, put};
    use super::*;
    use request_access_testkit::RedisServer;

    async fn connect(server: &RedisServer) -> RedisStore {
        RedisStore::connect(&server.url(), &StoreConfig::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn honours_the_store_contract() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        contract::check(&connect(&server).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_histories_are_linearizable() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        contract::check_linearizable(std::sync::Arc::new(connect(&server).await), 4, 150).await;
    }

    #[tokio::test]
    async fn receives_a_copy_of_another_store() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        contract::check_copy(&connect(&server).await).await;
    }

    #[tokio::test]
    async fn deployments_with_other_prefixes_do_not_see_each_other() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let east = connect(&server).await;
        let west = RedisStore::connect(
            &server.url(),
            &StoreConfig {
                prefix: "west:".into(),
                ..StoreConfig::default()
            },
        )
        .await
        .unwrap();
        east.commit(&[], &[put("k", b"east")]).await.unwrap();
        assert_eq!(west.get(&["k".into()]).await.unwrap(), vec![None]);
        assert!(west.scan("", "\u{10ffff}", 10).await.unwrap().is_empty());
        assert!(matches!(
            west.commit(&[absent("k")], &[put("k", b"west")])
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));
        assert_eq!(
            east.get(&["k".into()]).await.unwrap()[0]
                .as_ref()
                .unwrap()
                .value,
            b"east"
        );
    }

    #[tokio::test]
    async fn a_groups_keys_share_one_hash_tag() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let keys = [
            "g\u{1f}DNIS",
            "s\u{1f}DNIS\u{1f}svc",
            "x\u{1f}DNIS\u{1f}00ff\u{1f}1",
        ];
        let puts: Vec<Mutation> = keys.iter().map(|k| put(k, b"")).collect();
        store.commit(&[], &puts).await.unwrap();
        let names = server.cli(&["--raw", "KEYS", "request-access:{*"]);
        for key in keys {
            assert!(
                names
                    .lines()
                    .any(|n| n == format!("request-access:{{DNIS}}{key}")),
                "{key:?} not under the group's tag in {names:?}"
            );
        }
    }

    #[tokio::test]
    async fn revisions_stay_exact_beyond_what_a_lua_number_holds() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        // 2^53 + 1 has no exact double; the counter's own string carries it.
        server.cli(&["SET", "request-access:revision", "9007199254740993"]);
        let CommitOutcome::Committed(r) = store.commit(&[], &[put("k", b"v")]).await.unwrap()
        else {
            panic!("an unconditional commit commits")
        };
        assert_eq!(r, 9_007_199_254_740_994);
        let current = Precondition {
            key: "k".into(),
            revision: Some(r),
        };
        assert!(matches!(
            store.commit(&[current], &[put("k", b"w")]).await.unwrap(),
            CommitOutcome::Committed(9_007_199_254_740_995)
        ));
    }

    #[tokio::test]
    async fn a_server_that_could_lose_acknowledged_writes_is_refused_unless_accepted() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        server.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
        server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        let refused = RedisStore::connect(&server.url(), &StoreConfig::default())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("appendfsync is \"everysec\""), "{refused}");
        assert!(
            refused.contains("maxmemory-policy is \"allkeys-lru\""),
            "{refused}"
        );
        assert!(refused.contains("accept_weaker_durability"), "{refused}");
        let accepted = RedisStore::connect(
            &server.url(),
            &StoreConfig {
                accept_weaker_durability: true,
                ..StoreConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(accepted.durability_problems().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn rediss_checks_the_servers_certificate_against_the_configured_authority() {
        let Some(server) = RedisServer::start_tls() else {
            return;
        };
        let url = server.url();
        assert!(url.starts_with("rediss://"), "{url}");
        let trusted = StoreConfig {
            tls_ca_file: Some(server.dir().join("ca.pem")),
            ..StoreConfig::default()
        };
        let store = RedisStore::connect(&url, &trusted).await.unwrap();
        assert!(matches!(
            store
                .commit(&[absent("k")], &[put("k", b"v")])
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));
        assert_eq!(
            store.get(&["k".into()]).await.unwrap()[0]
                .as_ref()
                .unwrap()
                .value,
            b"v"
        );
        // Without the authority, the system's roots do not know this certificate.
        let e = RedisStore::connect(&url, &StoreConfig::default())
            .await
            .err()
            .expect("an unknown issuer is refused")
            .to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
    }

    #[tokio::test]
    async fn the_password_appears_in_no_error() {
        let Some(server) = RedisServer::start_with(Some("s3cret-pw")) else {
            return;
        };
        let wrong = format!("redis://:wr0ng-pw@127.0.0.1:{}/0", server.port);
        let closed = format!(
            "redis://:s3cret-pw@127.0.0.1:{}/0",
            request_access_testkit::free_port()
        );
        for url in [
            wrong,
            closed,
            "redis://:s3cret-pw@127.0.0.1:notaport/0".into(),
        ] {
            let e = RedisStore::connect(&url, &StoreConfig::default())
                .await
                .err()
                .expect("refused")
                .to_string();
            assert!(!e.contains("pw"), "{e}");
            assert!(e.contains(":***@127.0.0.1"), "{e}");
        }
        // The right password works, and its failures are as discreet.
        let store = connect(&server).await;
        server.kill9();
        let e = store.get(&["k".into()]).await.unwrap_err().to_string();
        assert!(e.contains(":***@") && !e.contains("s3cret"), "{e}");
    }

    #[tokio::test]
    async fn with_wait_a_commit_is_acknowledged_only_once_a_replica_holds_it() {
        let Some(primary) = RedisServer::start() else {
            return;
        };
        let config = StoreConfig {
            wait_replicas: 1,
            wait_timeout: Duration::from_millis(200),
            ..StoreConfig::default()
        };
        let store = RedisStore::connect(&primary.url(), &config).await.unwrap();
        // No replica: the commit is on the primary, but not acknowledged.
        let e = store
            .commit(&[], &[put("k", b"v")])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0 of 1 replicas acknowledged it within 200 ms"),
            "{e}"
        );
        let replica = RedisServer::start_replica_of(&primary);
        // `WAIT` answers as soon as the replica acknowledges; a busy machine may take
        // longer than 200 ms to, so the waiting store gets time.
        let patient = StoreConfig {
            wait_timeout: Duration::from_secs(10),
            ..config
        };
        let store = RedisStore::connect(&primary.url(), &patient).await.unwrap();
        let CommitOutcome::Committed(r) = store.commit(&[], &[put("k", b"w")]).await.unwrap()
        else {
            panic!("a replica acknowledges")
        };
        // What was acknowledged is on the replica.
        assert_eq!(
            replica
                .cli(&["--raw", "HGET", "request-access:{k}k", "r"])
                .trim(),
            r.to_string()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_stops_answering_is_cut_off_by_the_command_timeout() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let config = StoreConfig {
            command_timeout: Duration::from_millis(200),
            ..StoreConfig::default()
        };
        let store = RedisStore::connect(&server.url(), &config).await.unwrap();
        server.freeze();
        let started = std::time::Instant::now();
        let e = store.get(&["k".into()]).await.unwrap_err();
        assert!(e.to_string().contains("no answer within 200 ms"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        server.thaw();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = store.commit(&[], &[put("k", b"v")]).await {
            assert!(std::time::Instant::now() < deadline, "not back: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_fails_fast_and_the_store_recovers_by_itself() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let config = StoreConfig {
            command_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
            ..StoreConfig::default()
        };
        let store = RedisStore::connect(&server.url(), &config).await.unwrap();
        let CommitOutcome::Committed(before) = store.commit(&[], &[put("k", b"v")]).await.unwrap()
        else {
            panic!("commits")
        };
        server.kill9();
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let failed = store.commit(&[], &[put("k", b"w")]).await;
            assert!(
                matches!(failed, Err(StoreError::Unavailable(_))),
                "{failed:?}"
            );
            // Bounded by the timeouts (generously: the machine is shared).
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }
        server.launch();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let entry = loop {
            match store.get(&["k".into()]).await {
                Ok(found) => break found,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "not back: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        // The append-only file kept the acknowledged commit, and nothing else landed.
        assert_eq!(entry[0].as_ref().unwrap().value, b"v");
        assert_eq!(entry[0].as_ref().unwrap().revision, before);
        // The restarted server has lost its script cache; commits load it again.
        assert!(matches!(
            store.commit(&[], &[put("k", b"x")]).await.unwrap(),
            CommitOutcome::Committed(r) if r > before
        ));
    }
}
