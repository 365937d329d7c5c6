//! The Lua scripts, one per call, and the values they answer. Each names a key's hash by
//! the one rule of [`KEY_NAME`]; revisions travel as the counter's decimal string.

use redis::{Script, Value};

/// The one rule that names a key's hash, shared by every script: `P{tag}key`.
const KEY_NAME: &str = r#"
local prefix = ARGV[1]
local function name(key)
  local tag = string.match(key, '^[^\31]*\31([^\31]*)') or key
  return prefix .. '{' .. tag .. '}' .. key
end
"#;

/// `get`: ARGV = prefix, keys... Answers value and revision per key, false when absent.
pub(super) const GET: &str = r#"
local answer = {}
for i = 2, #ARGV do
  local found = redis.call('HMGET', name(ARGV[i]), 'v', 'r')
  answer[#answer + 1] = found[1]
  answer[#answer + 1] = found[2]
end
return answer
"#;

/// `scan`: ARGV = prefix, start, end, limit. Answers key, value, revision per entry.
pub(super) const SCAN: &str = r#"
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
pub(super) const READ: &str = r#"
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
pub(super) const COMMIT: &str = r#"
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

/// `body` with the key-name rule in front. A script that `writes` carries `#!lua`
/// without flags, so a server out of memory refuses it before it starts; the readers
/// are marked `no-writes`.
pub(super) fn script(writes: bool, body: &str) -> Script {
    let header = if writes {
        "#!lua"
    } else {
        "#!lua flags=no-writes"
    };
    Script::new(&format!("{header}\n{KEY_NAME}{body}"))
}

/// Bytes of a bulk string; `None` for Nil (Lua's false).
pub(super) fn bytes(value: Value) -> Result<Option<Vec<u8>>, ()> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        _ => Err(()),
    }
}

/// A revision, stored as the counter's decimal string.
pub(super) fn revision(value: Value) -> Result<u64, ()> {
    match value {
        Value::Int(n) => u64::try_from(n).map_err(|_| ()),
        other => std::str::from_utf8(&bytes(other)?.ok_or(())?)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ()),
    }
}
