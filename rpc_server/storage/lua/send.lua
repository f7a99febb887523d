-- Append one message to a chat, assigning its send_time atomically.
--
-- KEYS[1]  the chat's stream            im:v1:{a:b}:m
-- KEYS[2]  the chat's trim mark         im:v1:{a:b}:t
-- KEYS[3]  the idempotency record       im:v1:{a:b}:k:<key>   if ARGV[7] is '1'
-- KEYS[4]  the chat's record index      im:v1:{a:b}:k         if ARGV[7] is '1'
-- KEYS[..] the members' conversation lists im:v1:u:{u}:c        if ARGV[8] is not ''
-- ARGV[1]  sender (canonical)   ARGV[2] text
-- ARGV[3]  fingerprint of (sender, text)   ARGV[4] record TTL in seconds
-- ARGV[5]  retention: maximum age in microseconds (0: keep every age)
-- ARGV[6]  retention: messages to keep, about (0: keep all)
-- ARGV[7]  '1': KEYS[3] is an idempotency record, KEYS[4] its chat's index
-- ARGV[8]  the chat ID, to add to the lists given (ZADD GT): on one Redis
--          the lists are updated here, atomically with the append; in a
--          Cluster they live on other shards, and the caller updates them
--          (rpc_server/storage/conversations.py)
-- ARGV[9]  the chat's shard channel, im:v1:{a:b}:n: the new send_time is
--          announced there (SPUBLISH), atomically with the write and on the
--          chat's shard, to wake waiting pulls (rpc_server/storage/notifier.py)
-- ARGV[10] '1': the caller WAITs for replicas next, on this connection. A
--          replay then rewrites its record (same value, same TTL): since
--          Redis 7.2, WAIT waits only for the connection's own last write,
--          and this write follows the original's in the replication stream,
--          so the replay is not acknowledged before the original is replicated
--
-- Returns {status, send_time}: status 0 = stored, 1 = replay of an earlier
-- send with the same key and message, 2 = key already used for another one,
-- 3 = nothing stored: the chat's last send_time is already the largest an
-- i64 holds (send_time is then that last one).
--
-- send_time is Redis's clock in microseconds (so every RPC server agrees),
-- bumped past the chat's last send_time when the clock has not moved or has
-- gone back: unique and strictly increasing within the chat. The stream ID
-- is "<send_time>-0", so the ID is the cursor. The bump is computed on the
-- ID's decimal string (decimal.lua), exact however far in the future the
-- last ID lies; the clock itself stays below 2^53 until 2255.
--
-- Retention (retention.lua, prepended to this file with decimal.lua) is
-- applied here, on write, in the same atomic step, by Redis's clock; the
-- newest message is never trimmed.
--
-- The record index is a sorted set of the chat's record keys (the part
-- after "k:"), scored by when each expires (Unix seconds): deleting the
-- chat finds its records there (rpc_server/storage/erasure.py) instead of scanning
-- the keyspace. Keyed sends drop the entries of expired records, and the
-- index expires within a minute after its last record.

local stream, trim_mark = KEYS[1], KEYS[2]
local record, index, first_list = nil, nil, 3
if ARGV[7] == '1' then record, index, first_list = KEYS[3], KEYS[4], 5 end

if record then
  local previous = redis.call('GET', record)
  -- A record whose chat was deleted since is stale: the message it names is
  -- gone, so this send is stored anew rather than acknowledged as a replay.
  if previous and redis.call('EXISTS', stream) == 1 then
    local sep = string.find(previous, ' ', 1, true)
    local status = 2
    if string.sub(previous, sep + 1) == ARGV[3] then
      status = 1
      if ARGV[10] == '1' then redis.call('SET', record, previous, 'KEEPTTL') end
    end
    return {status, string.sub(previous, 1, sep - 1)}
  end
end

local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
-- '%.0f': Lua would print a 16-digit number as 1.7e+15.
local id = string.format('%.0f', now_us)

local last_id
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if last then
  last_id = last[1]
elseif redis.call('EXISTS', stream) == 1 then
  -- Emptied by trimming: XADD still refuses IDs at or below the last one.
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last_id = info[i + 1] end
  end
end
if last_id then
  local last_time = string.match(last_id, '^(%d+)')
  if not decimal_less(last_time, id) then
    if not decimal_less(last_time, SEND_TIME_MAX) then return {3, last_time} end
    id = decimal_next(last_time)
  end
end

redis.call('XADD', stream, id .. '-0', 's', ARGV[1], 't', ARGV[2])
apply_retention(stream, trim_mark, now_us, tonumber(ARGV[5]), tonumber(ARGV[6]))
for i = first_list, #KEYS do
  redis.call('ZADD', KEYS[i], 'GT', id, ARGV[8])
end
if record then
  redis.call('SET', record, id .. ' ' .. ARGV[3], 'EX', ARGV[4])
  local expires = tonumber(now[1]) + tonumber(ARGV[4])
  redis.call('ZADD', index, expires, string.sub(record, #index + 2))
  -- At most once a minute per chat: drop the entries of records expired
  -- (scored before this second), and make the index outlive its newest
  -- record by up to a minute (a longer TTL than any earlier one included).
  if redis.call('EXPIRETIME', index) <= expires then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now[1])
    redis.call('EXPIREAT', index, expires + 60)
  end
end
if ARGV[9] then redis.call('SPUBLISH', ARGV[9], id) end
return {0, id}
