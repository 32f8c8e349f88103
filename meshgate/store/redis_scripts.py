"""The Lua scripts of the redis store. Layout and formats: `meshgate.store.redis_layout`.

Redis runs a script atomically: no other command runs in between. Every write of the store is exactly
one run of `WRITE`, which checks everything first and writes only when every check passed, so a failed
check changes nothing. A check failure is a normal reply (``{'exists'|'missing'|'conflict', i, ...}``),
not a script error, so no error string needs parsing. Nothing between the first write and the end can
fail on valid data (record fields are read with fallbacks), because Redis does not roll a script back.
Redis checks for out-of-memory before a script's first write and never in the middle of one, so a full
server refuses the whole write.

The same script PUBLISHes the change message, so a committed write and its message are one atomic step:
a subscriber that is connected sees every committed write, in commit order.

The cascade computes key names of other kinds inside the script (from the kinds set); that is fine on a
single Redis or a Sentinel-managed primary, and rules out Redis Cluster.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LIST", "WRITE"]

# KEYS[1] version counter, KEYS[2] kinds set
# ARGV[1] key prefix, ARGV[2] channel, ARGV[3] write id, ARGV[4] keys per kind in a message,
# then 7 fields per op: code, kind, member, expected version, body, creation time, cascade mesh.
# Reply: {'ok', version, ctime, mtime, message} (version and times of the last put; message '' when nothing
# changed) or {'exists'|'missing', i} or {'conflict', i, stored version}, i being the 0-based op index.
WRITE: Final = r"""
local prefix, channel, write_id = ARGV[1], ARGV[2], ARGV[3]
local keys_per_kind = tonumber(ARGV[4])
local FIRST, WIDTH = 5, 7
local n = (#ARGV - FIRST + 1) / WIDTH

local function data_key(kind) return prefix .. 'd:' .. kind end
local function index_key(kind) return prefix .. 'i:' .. kind end
local function version_of(record) return string.match(record, '^(%d+)\n') or '' end

-- Checks, all before the first write.
for i = 0, n - 1 do
  local at = FIRST + i * WIDTH
  local code, kind, member, expected = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  if code ~= 'put' and code ~= 'remove' then
    local record = redis.call('HGET', data_key(kind), member)
    if code == 'create' then
      if record then return {'exists', i} end
    elseif code == 'update' or code == 'delete' or code == 'delete_if' then
      if not record then return {'missing', i} end
      local stored = version_of(record)
      if code ~= 'delete' and stored ~= expected then return {'conflict', i, stored} end
    else
      return redis.error_reply('meshgate: unknown write op ' .. tostring(code))
    end
  end
end

local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], now) end

local events, counts = {}, {}
local function note(op, kind, member)
  counts[kind] = (counts[kind] or 0) + 1
  events[#events + 1] = {op, kind, member}
end

local last_version, last_ctime = '', ''
local function put(kind, member, body, creation)
  local key = data_key(kind)
  local old = redis.call('HGET', key, member)
  local ctime
  if old then
    ctime = string.match(old, '^%d+\n(%-?%d+)\n') or now
  elseif creation ~= '' then
    ctime = creation
  else
    ctime = now
  end
  -- %d, not tostring: a Lua number prints as 1.7e+15 past 14 digits; it is exact up to 2^53.
  local version = string.format('%d', redis.call('INCR', KEYS[1]))
  redis.call('HSET', key, member, version .. '\n' .. ctime .. '\n' .. now .. '\n' .. body)
  if old then
    note('u', kind, member)
  else
    redis.call('ZADD', index_key(kind), 0, member)
    redis.call('SADD', KEYS[2], kind)
    note('c', kind, member)
  end
  last_version, last_ctime = version, ctime
end

local function remove(kind, member, cascade)
  if redis.call('HDEL', data_key(kind), member) == 0 then return end
  redis.call('ZREM', index_key(kind), member)
  note('d', kind, member)
  if cascade == '' then return end
  local lo, hi = '[' .. cascade .. '\0', '(' .. cascade .. '\1'
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if other ~= kind then
      local inside = redis.call('ZRANGEBYLEX', index_key(other), lo, hi)
      if #inside > 0 then
        for _, m in ipairs(inside) do
          redis.call('HDEL', data_key(other), m)
          note('d', other, m)
        end
        redis.call('ZREMRANGEBYLEX', index_key(other), lo, hi)
      end
    end
  end
end

for i = 0, n - 1 do
  local at = FIRST + i * WIDTH
  local code, kind, member = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  if code == 'create' or code == 'update' or code == 'put' then
    put(kind, member, ARGV[at + 4], ARGV[at + 5])
  else
    remove(kind, member, ARGV[at + 6])
  end
end

if #events == 0 then return {'ok', last_version, last_ctime, now, ''} end
local listed, whole = {}, {}
for _, e in ipairs(events) do
  if counts[e[2]] <= keys_per_kind then listed[#listed + 1] = e end
end
for kind, count in pairs(counts) do
  if count > keys_per_kind then whole[#whole + 1] = kind end
end
local message = {w = write_id, e = listed}
if #whole > 0 then message.k = whole end
local encoded = cjson.encode(message)
redis.call('PUBLISH', channel, encoded)
return {'ok', last_version, last_ctime, now, encoded}
"""

# KEYS[1] index zset, KEYS[2] data hash; ARGV: lex min, lex max, offset, count (-1: all).
# Reply: {total, page}. One script, so the total and the page describe the same state. The page is one
# string of netstrings (member, record, member, record, ...; see redis_layout.split_page): Lua joins them
# in C, and the client parses one bulk string instead of two per resource, which halves a 10k-item list.
LIST: Final = r"""
local total = redis.call('ZLEXCOUNT', KEYS[1], ARGV[1], ARGV[2])
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local parts = {}
-- HMGET in chunks: unpack() of more than ~8000 values overflows the Lua C stack.
local CHUNK = 1000
for first = 1, #members, CHUNK do
  local last = math.min(first + CHUNK - 1, #members)
  local got = redis.call('HMGET', KEYS[2], unpack(members, first, last))
  for j = 1, #got do
    local m, r = members[first + j - 1], got[j] or ''
    parts[#parts + 1] = #m .. ':' .. m .. #r .. ':' .. r
  end
end
return {total, table.concat(parts)}
"""
