"""The Lua sources of the API-key scripts (issue 12): AUTHENTICATE and REVOKE_API_KEY.

As in :mod:`libs.common.lua`: each runs as one atomic step, is called only through
its typed wrapper in :mod:`libs.common.scripts`, and the names it shares with
Python (the key record's fields, AUTHENTICATE's outcome codes) are generated from
``apikey_record.py``.
"""

from __future__ import annotations

import re
from typing import Final

from libs.common import apikey_record
from libs.common.lua import lua_str


def _apikey_names() -> str:
    """The record's field names and AUTHENTICATE's outcome codes, generated from Python."""
    outcomes = [f"local A_{o.name} = {int(o)}" for o in apikey_record.AuthOutcome]
    fields = {
        "K_SECRET": apikey_record.SECRET_FIELD,
        "K_TENANT": apikey_record.TENANT_FIELD,
        "K_ROLE": apikey_record.ROLE_FIELD,
        "K_COLLECTIONS": apikey_record.COLLECTIONS_FIELD,
        "K_RPM": apikey_record.RPM_FIELD,
        "K_EXPIRES": apikey_record.EXPIRES_FIELD,
        "K_REVOKED": apikey_record.REVOKED_FIELD,
    }
    return "\n".join([*outcomes, *(f"local {n} = {lua_str(v)}" for n, v in fields.items())]) + "\n"


# Generated from Python (libs/common/apikey_record.py): shared by the API-key scripts.
APIKEY_NAMES: Final = _apikey_names()


def _with_apikey_names(body: str) -> str:
    """``body`` after the lines of :data:`APIKEY_NAMES` that define a name it uses."""
    used = [line for line in APIKEY_NAMES.splitlines() if re.search(rf"\b{line.split()[1]}\b", body)]
    return "\n".join([*used, body])


# Authenticates one request and applies its key's rate limit, in one atomic step.
# The secret's hash must match before anything else is looked at or counted: a
# wrong secret, an unknown id or a hash mismatch is A_UNKNOWN and leaves the key's
# budget alone; then a revoked key is A_REVOKED, an expired one A_EXPIRED (neither
# counted). The operator (checked in-process by the caller) has no record: only its
# rate is applied. Rate limit: GCRA in integer microseconds, emission interval
# floor(60e6 / rpm), burst rpm; the rate key holds the key's theoretical arrival
# time (TAT) and expires when the key's full burst is back. A refused request
# changes nothing.
# KEYS[1] = the key's record, KEYS[2] = its rate state (one hash tag: one slot).
# ARGV[1] = sha256(secret) hex ('' for the operator), ARGV[2] = now (integer
# microseconds since the epoch), ARGV[3] = the default requests per minute,
# ARGV[4] = '1' for the operator (no record), else '0'.
# Returns {A_UNKNOWN}, {A_REVOKED}, {A_EXPIRED}, or {A_OK, allowed (1/0), limit,
# remaining, reset s, retry-after s (0 when allowed), tenant, role, collections}
# (seconds rounded up; tenant, role and collections '' for the operator).
AUTHENTICATE: Final = _with_apikey_names(
    """
local now, operator, rpm, h = tonumber(ARGV[2]), ARGV[4] == '1', tonumber(ARGV[3]), {}
if not operator then
  h = redis.call('HMGET', KEYS[1], K_SECRET, K_REVOKED, K_EXPIRES, K_RPM, K_TENANT, K_ROLE, K_COLLECTIONS)
  if not h[1] or h[1] ~= ARGV[1] then return {A_UNKNOWN} end
  if h[2] and h[2] ~= '' then return {A_REVOKED} end
  if h[3] and h[3] ~= '' and now >= tonumber(h[3]) * 1000000 then return {A_EXPIRED} end
  rpm = tonumber(h[4]) or rpm
end
local interval = math.floor(60000000 / rpm)
local tau = interval * rpm
local tat = tonumber(redis.call('GET', KEYS[2])) or now
if tat < now then tat = now end
local allow_at = tat + interval - tau
local allowed, remaining, reset, retry = 0, 0, tat - now, allow_at - now
if now >= allow_at then
  allowed, retry = 1, 0
  tat = tat + interval
  local ttl_ms = math.ceil((tat - now) / 1000)
  redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl_ms))
  remaining = math.floor((now - allow_at) / interval)
  reset = tat - now
end
return {A_OK, allowed, rpm, remaining, math.ceil(reset / 1000000), math.ceil(retry / 1000000),
  h[5] or '', h[6] or '', h[7] or ''}
"""
)

# Revokes a key: the record keeps its revoked_at (AUTHENTICATE answers A_REVOKED)
# until it expires after a retention period; its rate state goes at once.
# KEYS[1] = the key's record, KEYS[2] = its rate state.
# ARGV[1] = the tenant the key must belong to ('' = any: the operator),
# ARGV[2] = now (epoch seconds), ARGV[3] = retention seconds.
# Returns 0 (no such key in that tenant), 1 (revoked now) or 2 (revoked already).
REVOKE_API_KEY: Final = _with_apikey_names(
    """
local h = redis.call('HMGET', KEYS[1], K_TENANT, K_REVOKED)
if not h[1] or (ARGV[1] ~= '' and h[1] ~= ARGV[1]) then return 0 end
if h[2] and h[2] ~= '' then return 2 end
redis.call('HSET', KEYS[1], K_REVOKED, ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3], 'LT')
redis.call('DEL', KEYS[2])
return 1
"""
)
