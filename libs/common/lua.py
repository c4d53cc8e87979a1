"""The Lua sources of DocuMind's server-side scripts; each runs as one atomic step.

Call them only through their typed wrappers in :mod:`libs.common.scripts`, which
own each script's KEYS and ARGV order. Every script starts with the lines of
:data:`PRELUDE` it uses (:func:`with_prelude`),
generated from the Python constants (final statuses, field names), so Lua and
Python spell them alike. Every key a script touches is passed in KEYS, and all
of a call's keys lie in one partition (one cluster slot; see ``keys.py``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Final

from libs.common import events
from libs.common.constants import (
    COLLECTION_VERSION_FIELD,
    ENVELOPE_FIELD,
    EVENT_DATA_FIELD,
    EVENT_TYPE_FIELD,
    CollectionMode,
    SubmitAnswer,
)
from libs.common.status import FINAL_STATUSES, DocumentStatus, JobStatus


def lua_str(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"not a plain Lua string: {value!r}")
    return f"'{value}'"


def _prelude() -> str:
    final = ", ".join(f"[{lua_str(s.value)}]=true" for s in sorted(FINAL_STATUSES))
    constants = {
        "S_QUEUED": JobStatus.QUEUED,
        "S_EXPIRED": JobStatus.EXPIRED,
        "S_CANCELLED": JobStatus.CANCELLED,
        "D_FAILED": DocumentStatus.FAILED,
        "F_ENVELOPE": ENVELOPE_FIELD,
        "F_VERSION": COLLECTION_VERSION_FIELD,
        "E_TYPE": EVENT_TYPE_FIELD,
        "E_DATA": EVENT_DATA_FIELD,
        "EV_QUEUED": events.QUEUED,
        "EV_DONE": events.DONE,
        "EV_ERROR": events.ERROR,
        "EV_CANCELLED": events.CANCELLED,
        "M_REQUIRE": CollectionMode.REQUIRE,
        "M_CREATE": CollectionMode.CREATE,
        "R_OK": SubmitAnswer.OK,
        "R_UNKNOWN": SubmitAnswer.UNKNOWN,
        "R_FULL": SubmitAnswer.FULL,
        "R_BUSY": SubmitAnswer.BUSY,
        "R_BUSY_INTERACTIVE": SubmitAnswer.BUSY_INTERACTIVE,
        "R_DUPLICATE": SubmitAnswer.DUPLICATE,
    }
    lines = [f"local FINAL = {{{final}}}"]
    lines += [f"local {name} = {lua_str(str(value))}" for name, value in constants.items()]
    return "\n".join(lines) + "\n"


# Generated from Python: the statuses after which a job never changes, and shared names.
PRELUDE: Final = _prelude()


@cache
def with_prelude(source: str) -> str:
    """``source`` after the prelude lines that define a name it uses (a script runs its
    prelude on every call: the ones it does not need would cost every call)."""
    used = [line for line in PRELUDE.splitlines() if re.search(rf"\b{line.split()[1]}\b", source)]
    return "\n".join([*used, source])


# Applies the outcome of a whole batch. For every message it first acknowledges
# (and deletes) the input entry; only when XACK reports the entry was still
# pending does it apply the message's ops. A consumer that lost its message to a
# reclaim changes nothing: each stage hands each message on exactly once, though
# delivery is at-least-once. A message with id '' is applied without an ack (the
# gateway's own commits). Deleting acknowledged entries keeps a stream's length
# equal to its live backlog without ever trimming an unacknowledged entry.
# KEYS[1] = input stream (or any key of the partition), KEYS[2..] = keys the ops name by index.
# ARGV[1] = group, ARGV[2] = JSON list of {"id": entry id, "ops": [[op, key index, args...]]},
# with "s": the key index of the message's input stream when it is not KEYS[1] (a batch
# of the bulk lane holds several tenants' streams).
# The ops are built by libs/common/commit.py, which documents each one.
# Returns per message: 1 applied, 0 stale (already acknowledged), 2 acknowledged but
# skipped by its GUARD (the job was already final), 3 stopped by REQUIRE (a key was gone).
COMMIT: Final = """
local group = ARGV[1]
local batch = cjson.decode(ARGV[2])
local applied = {}
local plain = {
  XADD=true, HSET=true, EXPIRE=true, DEL=true, ZADD=true, ZREM=true, HINCRBY=true, SADD=true, SREM=true,
  SET=true,
}
local function rest(op, from)
  local args = {}
  for j = from, #op do args[#args + 1] = op[j] end
  return args
end
for i, msg in ipairs(batch) do
  local result = 1
  if msg.id ~= '' then
    local input = KEYS[msg.s or 1]
    result = redis.call('XACK', input, group, msg.id)
    if result == 1 then redis.call('XDEL', input, msg.id) end
  end
  if result == 1 then
    for _, op in ipairs(msg.ops) do
      local cmd, key = op[1], KEYS[op[2]]
      if cmd == 'HSETXX' then
        if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, unpack(rest(op, 3))) end
      elseif cmd == 'HINCRBYXX' then
        if redis.call('EXISTS', key) == 1 then redis.call('HINCRBY', key, op[3], op[4]) end
      elseif cmd == 'GUARD' then
        local status = redis.call('HGET', key, 'status')
        if status and FINAL[status] then result = 2; break end
      elseif cmd == 'JOIN' then
        if redis.call('HINCRBY', key, op[3], 1) < tonumber(op[4]) then break end
      elseif cmd == 'IFEXISTS' then
        if redis.call('EXISTS', key) == 0 then break end
      elseif cmd == 'REQUIRE' then
        if redis.call('EXISTS', key) == 0 then result = 3; break end
      elseif cmd == 'HDELEQ' then
        if redis.call('HGET', key, op[3]) == op[4] then redis.call('HDEL', key, op[3]) end
      elseif plain[cmd] then
        redis.call(cmd, key, unpack(rest(op, 3)))
      else
        return redis.error_reply('COMMIT: unknown op ' .. cmd)
      end
    end
  end
  applied[i] = result
end
return applied
"""

# Admission of a new job, in one round trip with its checks. Returns 'ok',
# 'unknown' (no such collection), 'full' (backlog too long), 'busy' (the tenant
# has its limit of jobs in flight in this partition), 'busy-interactive' (or, for a
# job on the interactive lane, its limit of those) or 'duplicate:<document id>'
# (that content is already in the collection). The tenant's in-flight set holds
# the job (scored by its deadline) until a final status removes it; an entry past
# its deadline no longer counts. A bulk job's tenant joins the set of tenants whose
# streams the stage's workers read. See scripts.Submit for KEYS and ARGV.
SUBMIT: Final = """
local stream, job, registry, meta, hashes, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- KEYS[8]: on the bulk lane the set of bulk tenants, on the interactive lane the
-- tenant's set of interactive jobs in flight (its own cap, ARGV[19]).
local inflight, bulk_tenants, interactive = KEYS[7], KEYS[8], KEYS[8]
local max_backlog, envelope, job_ttl, blob_bytes, blob_ttl, name, mode, now, sha, doc_id, events_ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local has_doc, has_blob = ARGV[12] == '1', ARGV[13] == '1'
local max_inflight, deadline, tenant = tonumber(ARGV[14]), tonumber(ARGV[15]), ARGV[16]
if mode == M_REQUIRE and redis.call('SISMEMBER', registry, name) == 0 then return R_UNKNOWN end
if sha ~= '' then
  local existing = redis.call('HGET', hashes, sha)
  if existing then return R_DUPLICATE .. existing end
end
if redis.call('XLEN', stream) >= tonumber(max_backlog) then return R_FULL end
-- An in-flight set holds a job until its deadline (or its final status).
local function full(set, most)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now)
  return redis.call('ZCARD', set) >= most
end
local keep = math.ceil(deadline - tonumber(now)) + 60
local function hold(set)
  redis.call('ZADD', set, deadline, job)
  if redis.call('TTL', set) < keep then redis.call('EXPIRE', set, keep) end
end
local on_interactive = tenant == ''
if full(inflight, max_inflight) then return R_BUSY end
if on_interactive and full(interactive, tonumber(ARGV[19])) then return R_BUSY_INTERACTIVE end
hold(inflight)
if on_interactive then hold(interactive) end
if mode == M_CREATE and redis.call('SADD', registry, name) == 1 then
  redis.call('HSET', meta, 'name', name, 'description', '', 'created_at', now)
end
local function hset_json(key, text)
  local flat = {}
  for k, v in pairs(cjson.decode(text)) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', key, unpack(flat))
end
hset_json(job, ARGV[17])
redis.call('EXPIRE', job, job_ttl)
if has_doc then
  hset_json(KEYS[9], ARGV[18])
  for k = 10, 12 do redis.call('SADD', KEYS[k], doc_id) end
  if sha ~= '' then redis.call('HSET', hashes, sha, doc_id) end
end
if has_blob then redis.call('SET', KEYS[#KEYS], blob_bytes, 'EX', blob_ttl) end
redis.call('XADD', stream, '*', F_ENVELOPE, envelope)
if tenant ~= '' then redis.call('SADD', bulk_tenants, tenant) end
redis.call('XADD', events, '*', E_TYPE, EV_QUEUED, E_DATA, cjson.encode({status=S_QUEUED}))
redis.call('EXPIRE', events, events_ttl)
return R_OK
"""

# Reads a batch for one consumer from several streams of a partition (the bulk
# lane's, one per tenant), in turns: each pass asks every stream that still has
# entries for an equal share of what is left to read, so a batch holds every
# waiting tenant's work, however long one tenant's queue is.
# KEYS = the streams, the first to be served first; ARGV[1] = group, ARGV[2] =
# consumer, ARGV[3] = how many entries at most. Returns {{stream index, entries}, ...}
# with entries as XREADGROUP gives them.
FAIR_READ: Final = """
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out, active = {}, {}
for i = 1, #KEYS do active[i] = i end
while want > 0 and #active > 0 do
  local share, still = math.max(1, math.floor(want / #active)), {}
  for _, i in ipairs(active) do
    if want <= 0 then break end
    local n = math.min(share, want)
    local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', KEYS[i], '>')
    if got then
      local entries = got[1][2]
      out[#out + 1] = {i, entries}
      want = want - #entries
      if #entries == n then still[#still + 1] = i end
    end
  end
  active = still
end
return out
"""

# Moves retries whose backoff has elapsed back onto the stage's stream.
# KEYS[1] = delayed zset, KEYS[2] = stream; ARGV[1] = now, ARGV[2] = max moved.
MOVE_DUE: Final = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, data in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', F_ENVELOPE, data)
  redis.call('ZREM', KEYS[1], data)
end
return #due
"""

# Drops idle tenants from a stage's set of bulk tenants, and deletes their streams (with
# the streams' consumer group): a tenant only when its stream is empty, nothing of it is
# pending or waiting out a retry, and its last entry was queued at least ARGV[2] ms ago
# by the server's clock. A new job of the tenant queues it again (SUBMIT adds the tenant
# back and XADD makes the stream; the workers create its group on their next read).
# KEYS[1] = the set of bulk tenants, then per tenant its stream and its delayed zset;
# ARGV[1] = group, ARGV[2] = idle ms, ARGV[3..] = the tenants, in the order of their keys.
# Returns the tenants dropped.
PRUNE_TENANT: Final = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local function idle(stream, delayed)
  if redis.call('XLEN', stream) > 0 or redis.call('ZCARD', delayed) > 0 then return false end
  if redis.call('EXISTS', stream) == 0 then return true end
  local ok, pending = pcall(redis.call, 'XPENDING', stream, ARGV[1])
  if ok and tonumber(pending[1]) > 0 then return false end
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return now - tonumber(string.match(info[i + 1], '^(%d+)')) >= tonumber(ARGV[2])
    end
  end
  return true
end
local dropped = {}
for k = 3, #ARGV do
  local stream, delayed = KEYS[2 * k - 4], KEYS[2 * k - 3]
  if idle(stream, delayed) then
    redis.call('SREM', KEYS[1], ARGV[k])
    redis.call('DEL', stream)
    dropped[#dropped + 1] = ARGV[k]
  end
end
return dropped
"""

# Marks jobs as being worked on by a stage unless they already reached a final
# status (a late duplicate must never turn a finished job back to running).
# KEYS = job hashes; ARGV[1] = ttl, ARGV[2] = now, ARGV[3] = stage,
# ARGV[4..] = one status per key.
MARK_RUNNING: Final = """
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if status and not FINAL[status] then
    redis.call('HSET', key, 'status', ARGV[3 + i], 'stage', ARGV[3], 'updated_at', ARGV[2])
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return #KEYS
"""

# Expires a job whose deadline has passed while no stage finished it (its worker
# may be down), so that nothing waits on it forever. Returns 1 when it expired the job.
# KEYS[1] = job hash, KEYS[2] = its done stream, KEYS[3] = its events stream
# ARGV[1] = now, ARGV[2] = grace seconds after the deadline, ARGV[3] = done ttl,
# ARGV[4] = events ttl, ARGV[5] = events maxlen
EXPIRE_OVERDUE: Final = """
local h = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'timings')
local status, deadline = h[1], tonumber(h[2])
if not status or FINAL[status] then return 0 end
if not deadline or tonumber(ARGV[1]) <= deadline + tonumber(ARGV[2]) then return 0 end
local err = 'deadline passed while ' .. status .. ': no worker finished the job in time'
local final = {'status', S_EXPIRED, 'stage', '', 'error', err, 'updated_at', ARGV[1], 'timings', h[3] or '{}'}
redis.call('HSET', KEYS[1], unpack(final))
redis.call('XADD', KEYS[2], '*', unpack(final))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', E_TYPE, EV_ERROR,
  E_DATA, cjson.encode({status=S_EXPIRED, error=err}))
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""

# Cancels a job that has not reached a final status: it becomes cancelled (final,
# so every stage's commit skips it), waiters and event readers are told, an
# ingest's document fails with the reason, and generators abandon it.
# KEYS[1] = job hash, KEYS[2] = done stream, KEYS[3] = events stream,
# KEYS[4] = its tenant's in-flight set, KEYS[5] = the job's document hash, for a job that has one
# ARGV[1] = now, ARGV[2] = done ttl, ARGV[3] = events ttl, ARGV[4] = events maxlen,
# ARGV[5] = cancel channel, ARGV[6] = job id
# Returns 'cancelled', 'ended:<status>' for a job already final, '' for an unknown job.
CANCEL: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if FINAL[status] then return 'ended:' .. status end
local err = 'cancelled by the client while ' .. status
local final = {'status', S_CANCELLED, 'stage', '', 'error', err, 'updated_at', ARGV[1]}
redis.call('HSET', KEYS[1], unpack(final))
redis.call('XADD', KEYS[2], '*', unpack(final))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', E_TYPE, EV_CANCELLED,
  E_DATA, cjson.encode({status=S_CANCELLED, error=err}))
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], KEYS[1])
redis.call('ZREM', KEYS[5], KEYS[1])
if #KEYS >= 6 and redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HSET', KEYS[6], 'status', D_FAILED, 'error', err, 'updated_at', ARGV[1])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return S_CANCELLED
"""

# HSET only when the hash exists. KEYS[1] = hash, ARGV = field/value pairs.
HSET_IF_EXISTS: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Creates a collection. KEYS[1] = the tenant's collections, KEYS[2] = collection hash
# ARGV[1] = name, ARGV[2] = description, ARGV[3] = now. Returns 0 if it exists.
CREATE_COLLECTION: Final = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'name', ARGV[1], 'description', ARGV[2], 'created_at', ARGV[3])
return 1
"""

# Removes a collection's metadata: new questions get 404 and a new upload starts a
# fresh collection; its documents are then deleted one by one. KEYS[1] = the
# tenant's collections, KEYS[2] = collection hash. ARGV[1] = name. Returns 0 when unknown.
DROP_COLLECTION: Final = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

# Answers a chat job from the answer cache: when the entry exists, the job is
# created already done with it, as a worker's last commit would leave it (job
# hash, done-stream entry, events "queued" then "done"), in one step.
# KEYS[1] = the answer cache entry, KEYS[2] = job hash, KEYS[3] = its done stream,
# KEYS[4] = its events stream
# ARGV[1] = job ttl, ARGV[2] = done ttl, ARGV[3] = events ttl, ARGV[4] = events maxlen,
# ARGV[5] = number N of final field/value items (without the result),
# ARGV[6 .. 5+N] = those items, ARGV[6+N ..] = the job's other field/value pairs.
# Returns 1 when it answered the job, 0 on a miss (nothing written).
SERVE_CACHED_ANSWER: Final = """
local result = redis.call('GET', KEYS[1])
if not result then return 0 end
local n = tonumber(ARGV[5])
local final = {'result', result}
for i = 6, 5 + n do final[#final + 1] = ARGV[i] end
local job = {}
for i = 6 + n, #ARGV do job[#job + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(job))
redis.call('HSET', KEYS[2], unpack(final))
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', unpack(final))
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', E_TYPE, EV_QUEUED,
  E_DATA, cjson.encode({status=S_QUEUED}))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', E_TYPE, EV_DONE, E_DATA, result)
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
"""
