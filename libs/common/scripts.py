"""Server-side Lua scripts: each one is a single atomic round trip.

COMMIT applies the outcome of a whole batch. For every message it first
acknowledges (and deletes) the input entry and only when that XACK reports the
entry was still pending does it apply the message's follow-up writes (forward
to the next stream, update the job hash, dead-letter, schedule a retry). A
consumer that lost its message to a reclaim therefore changes nothing: every
stage hands each message on exactly once, even though delivery is
at-least-once. Deleting acknowledged entries keeps each stream's length equal
to its live backlog without ever trimming an unacknowledged entry.
"""

from __future__ import annotations

# KEYS[1] = input stream, KEYS[2..] = keys referenced by index in the ops.
# ARGV[1] = group, ARGV[2] = JSON list of {"id": entry id, "ops": [[cmd, key_index, args...], ...]}.
# Pseudo-commands:
#   ["GUARD", job key]            skip the message's remaining ops when that job
#                                 already has a final status (returns 2);
#   ["JOIN", key, field, total]   count this message (HINCRBY field 1) and skip
#                                 the remaining ops unless it is the total-th: the
#                                 last part of a job split into parts;
#   ["IFEXISTS", key]             skip the remaining ops when the key is gone;
#   ["HSETXX", key, f, v, ...]    HSET applied only when the hash exists;
#   ["HDELEQ", key, f, v]         HDEL f only while its value is still v.
# Plain commands allowed (key first, then arguments): XADD, HSET, EXPIRE, DEL,
# ZADD, HINCRBY, SADD, SREM, and SET (an answer cache entry, with EX).
# Returns per message: 1 applied, 0 stale (already acknowledged), 2 acknowledged
# but skipped by its guard.
COMMIT = """
local group = ARGV[1]
local batch = cjson.decode(ARGV[2])
local applied = {}
local allowed = {
  XADD=true, HSET=true, EXPIRE=true, DEL=true, ZADD=true, HINCRBY=true, SADD=true, SREM=true, SET=true,
}
local final = {done=true, failed=true, expired=true, cancelled=true}
for i, msg in ipairs(batch) do
  local acked = 1
  if msg.id ~= '' then
    acked = redis.call('XACK', KEYS[1], group, msg.id)
    if acked == 1 then redis.call('XDEL', KEYS[1], msg.id) end
  end
  if acked == 1 then
    for _, op in ipairs(msg.ops) do
      local cmd = op[1]
      if cmd == 'HSETXX' then
        -- HSET on a hash that still exists (never resurrects a deleted document)
        if redis.call('EXISTS', KEYS[op[2]]) == 1 then
          local args = {'HSET', KEYS[op[2]]}
          for j = 3, #op do args[#args + 1] = op[j] end
          redis.call(unpack(args))
        end
      elseif cmd == 'GUARD' then
        -- the job already reached a final status (expired meanwhile, say): skip the rest
        local status = redis.call('HGET', KEYS[op[2]], 'status')
        if status and final[status] then acked = 2; break end
      elseif cmd == 'JOIN' then
        if redis.call('HINCRBY', KEYS[op[2]], op[3], 1) < tonumber(op[4]) then break end
      elseif cmd == 'IFEXISTS' then
        if redis.call('EXISTS', KEYS[op[2]]) == 0 then break end
      elseif cmd == 'HDELEQ' then
        if redis.call('HGET', KEYS[op[2]], op[3]) == op[4] then redis.call('HDEL', KEYS[op[2]], op[3]) end
      else
        if not allowed[cmd] then return redis.error_reply('COMMIT: command not allowed: ' .. cmd) end
        local args = {cmd, KEYS[op[2]]}
        for j = 3, #op do args[#args + 1] = op[j] end
        redis.call(unpack(args))
      end
    end
  end
  applied[i] = acked
end
return applied
"""

# Admission of a new job, in one round trip with its checks.
# KEYS[1] = first stream, KEYS[2] = job hash, KEYS[3] = blob key ('' for none),
# KEYS[4] = the set of collections, KEYS[5] = the collection's hash,
# KEYS[6] = document hash ('' for none), KEYS[7] = the collection's document set,
# KEYS[8] = the collection's sha256 -> document id map, KEYS[9] = its set of
# documents not ready yet, KEYS[10] = its set of documents under this filename
# ARGV[1] = max backlog, ARGV[2] = envelope JSON, ARGV[3] = job ttl,
# ARGV[4] = blob bytes, ARGV[5] = blob ttl, ARGV[6] = collection,
# ARGV[7] = 'require' (the collection must exist) or 'create' (add it),
# ARGV[8] = now, ARGV[9] = sha256 of the document ('' for none), ARGV[10] = document id,
# KEYS[11] = the job's events stream, ARGV[11] = its ttl,
# ARGV[12] = number N of job hash field/value items, ARGV[13 .. 12+N] = those items,
# ARGV[13+N ..] = document hash field/value pairs
# Returns 'ok', 'unknown' (no such collection), 'full' (backlog too long) or
# 'duplicate:<document id>' (that content is already in the collection).
SUBMIT = """
if ARGV[7] == 'require' and redis.call('SISMEMBER', KEYS[4], ARGV[6]) == 0 then return 'unknown' end
if ARGV[9] ~= '' then
  local existing = redis.call('HGET', KEYS[8], ARGV[9])
  if existing then return 'duplicate:' .. existing end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 'full' end
if ARGV[7] == 'create' and redis.call('SADD', KEYS[4], ARGV[6]) == 1 then
  redis.call('HSET', KEYS[5], 'name', ARGV[6], 'description', '', 'created_at', ARGV[8])
end
local n = tonumber(ARGV[12])
local job = {}
for i = 13, 12 + n do job[#job + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(job))
redis.call('EXPIRE', KEYS[2], ARGV[3])
if KEYS[6] ~= '' then
  local doc = {}
  for i = 13 + n, #ARGV do doc[#doc + 1] = ARGV[i] end
  redis.call('HSET', KEYS[6], unpack(doc))
  redis.call('SADD', KEYS[7], ARGV[10])
  redis.call('SADD', KEYS[9], ARGV[10])
  redis.call('SADD', KEYS[10], ARGV[10])
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[8], ARGV[9], ARGV[10]) end
end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5]) end
redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
redis.call('XADD', KEYS[11], '*', 'type', 'queued', 'data', '{"status":"queued"}')
redis.call('EXPIRE', KEYS[11], ARGV[11])
return 'ok'
"""

# Moves retries whose backoff has elapsed back onto the stage's stream.
# KEYS[1] = delayed zset, KEYS[2] = stream; ARGV[1] = now, ARGV[2] = max moved.
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, data in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'data', data)
  redis.call('ZREM', KEYS[1], data)
end
return #due
"""

# Marks jobs as being worked on by a stage unless they already reached a final
# status (a late duplicate must never turn a finished job back to running).
# KEYS = job hashes; ARGV[1] = ttl, ARGV[2] = now, ARGV[3] = stage,
# ARGV[4..] = one status per key.
MARK_RUNNING = """
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if status and status ~= 'done' and status ~= 'failed' and status ~= 'expired' and status ~= 'cancelled' then
    redis.call('HSET', key, 'status', ARGV[3 + i], 'stage', ARGV[3], 'updated_at', ARGV[2])
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return #KEYS
"""

# Expires a job whose deadline has passed while no stage finished it (its
# worker may be down), so that nothing waits on it forever.
# KEYS[1] = job hash, KEYS[2] = its done stream, KEYS[3] = its events stream
# ARGV[1] = now, ARGV[2] = grace seconds after the deadline, ARGV[3] = done ttl,
# ARGV[4] = events ttl, ARGV[5] = events maxlen
# Returns 1 when it expired the job.
EXPIRE_OVERDUE = """
local h = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'timings')
local status, deadline = h[1], tonumber(h[2])
if not status or status == 'done' or status == 'failed' or status == 'expired' or status == 'cancelled' then
  return 0
end
if not deadline or tonumber(ARGV[1]) <= deadline + tonumber(ARGV[2]) then return 0 end
local err = 'deadline passed while ' .. status .. ': no worker finished the job in time'
local final = {'status', 'expired', 'stage', '', 'error', err, 'updated_at', ARGV[1], 'timings', h[3] or '{}'}
redis.call('HSET', KEYS[1], unpack(final))
redis.call('XADD', KEYS[2], '*', unpack(final))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'error',
  'data', cjson.encode({status='expired', error=err}))
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""

# Cancels a job that has not reached a final status: it becomes "cancelled"
# (final, so every stage's commit skips it), waiters and event readers are told,
# an ingest's document fails with the reason, and generators abandon it.
# KEYS[1] = job hash, KEYS[2] = done stream, KEYS[3] = events stream,
# KEYS[4] = document hash ('' for none)
# ARGV[1] = now, ARGV[2] = done ttl, ARGV[3] = events ttl, ARGV[4] = events maxlen,
# ARGV[5] = cancel channel, ARGV[6] = job id
# Returns 'cancelled', 'ended:<status>' for a job already final, '' for an unknown job.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
local final_statuses = {done=true, failed=true, expired=true, cancelled=true}
if final_statuses[status] then return 'ended:' .. status end
local err = 'cancelled by the client while ' .. status
local final = {'status', 'cancelled', 'stage', '', 'error', err, 'updated_at', ARGV[1]}
redis.call('HSET', KEYS[1], unpack(final))
redis.call('XADD', KEYS[2], '*', unpack(final))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'cancelled',
  'data', cjson.encode({status='cancelled', error=err}))
redis.call('EXPIRE', KEYS[3], ARGV[3])
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'status', 'failed', 'error', err, 'updated_at', ARGV[1])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'cancelled'
"""

# HSET only when the hash exists. KEYS[1] = hash, ARGV = field/value pairs.
HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Creates a collection. KEYS[1] = set of collections, KEYS[2] = collection hash
# ARGV[1] = name, ARGV[2] = description, ARGV[3] = now. Returns 0 if it exists.
CREATE_COLLECTION = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'name', ARGV[1], 'description', ARGV[2], 'created_at', ARGV[3])
return 1
"""

# Deletes a document from the registry and hides it from searches at once, then
# queues the removal of its vectors. KEYS[1] = document hash, KEYS[2] = the
# collection's document set, KEYS[3] = its sha256 map, KEYS[4] = its tombstones,
# KEYS[5] = the upload blob, KEYS[6] = the retriever's stream, KEYS[7] = the
# delete job's hash, KEYS[8] = the collection's documents not ready yet, KEYS[9] =
# its documents under this document's filename, KEYS[10] = the collection's hash (its
# version moves on: cached answers of the collection are no longer served, unless the
# collection itself is gone). ARGV[1] = document id, ARGV[2] = envelope JSON, ARGV[3] =
# job ttl, ARGV[4..] = job hash field/value pairs. Returns 0 for an unknown document.
DELETE_DOCUMENT = """
local sha = redis.call('HGET', KEYS[1], 'sha256')
if not sha then return 0 end
if redis.call('HGET', KEYS[3], sha) == ARGV[1] then redis.call('HDEL', KEYS[3], sha) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[8], ARGV[1])
redis.call('SREM', KEYS[9], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[5])
if redis.call('EXISTS', KEYS[10]) == 1 then redis.call('HINCRBY', KEYS[10], 'version', 1) end
local job = {}
for i = 4, #ARGV do job[#job + 1] = ARGV[i] end
redis.call('HSET', KEYS[7], unpack(job))
redis.call('EXPIRE', KEYS[7], ARGV[3])
redis.call('XADD', KEYS[6], '*', 'data', ARGV[2])
return 1
"""

# Removes a collection's metadata: new questions get 404 and a new upload starts
# a fresh collection. Its documents are then deleted one by one (DELETE_DOCUMENT).
# KEYS[1] = set of collections, KEYS[2] = collection hash. ARGV[1] = name.
# Returns 0 when there is no such collection.
DROP_COLLECTION = """
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
SERVE_CACHED_ANSWER = """
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
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'queued', 'data', '{"status":"queued"}')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'done', 'data', result)
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
"""
