-- Append one message to a chat, assigning its send_time atomically.
--
-- KEYS[1]  the chat's stream            im:v1:{a:b}:m
-- KEYS[2]  the chat's trim mark         im:v1:{a:b}:t
-- KEYS[3]  optional idempotency record  im:v1:{a:b}:k:<key>
-- ARGV[1]  sender (canonical)   ARGV[2] text
-- ARGV[3]  fingerprint of (sender, text)   ARGV[4] record TTL in seconds
-- ARGV[5]  retention: maximum age in microseconds (0: keep every age)
-- ARGV[6]  retention: messages to keep, about (0: keep all)
--
-- Returns {status, send_time}: status 0 = stored, 1 = replay of an earlier
-- send with the same key and message, 2 = key already used for another one.
--
-- send_time is Redis's clock in microseconds (so every RPC server agrees),
-- bumped past the chat's last send_time when the clock has not moved or has
-- gone back: unique and strictly increasing within the chat. The stream ID
-- is "<send_time>-0", so the ID is the cursor.
--
-- Retention is applied here, on write, in the same atomic step: messages
-- older than the maximum age are trimmed exactly (XTRIM MINID), and beyond
-- the maximum count whole stream nodes are (XTRIM MAXLEN ~: at least that
-- many are kept, at most one node more). The newest message is never
-- trimmed. When anything was trimmed, the trim mark records the send_time
-- of the oldest message left: every message before it is gone. That is how
-- a pull tells "history was trimmed" from "no more history". (Redis 7's
-- max-deleted-entry-id would do, but XTRIM leaves it at 0-0; only XDEL
-- sets it.)

local stream, trim_mark, record = KEYS[1], KEYS[2], KEYS[3]

if record then
  local previous = redis.call('GET', record)
  -- A record whose chat was deleted since is stale: the message it names is
  -- gone, so this send is stored anew rather than acknowledged as a replay.
  if previous and redis.call('EXISTS', stream) == 1 then
    local sep = string.find(previous, ' ', 1, true)
    local status = 2
    if string.sub(previous, sep + 1) == ARGV[3] then status = 1 end
    return {status, string.sub(previous, 1, sep - 1)}
  end
end

local now = redis.call('TIME')
local send_time = tonumber(now[1]) * 1000000 + tonumber(now[2])

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
  local last_time = tonumber(string.match(last_id, '^(%d+)'))
  if send_time <= last_time then send_time = last_time + 1 end
end

-- '%.0f': Lua would print a 16-digit number as 1.7e+15.
local id = string.format('%.0f', send_time)
redis.call('XADD', stream, id .. '-0', 's', ARGV[1], 't', ARGV[2])
local max_age, max_count = tonumber(ARGV[5]), tonumber(ARGV[6])
local trimmed = 0
if max_age > 0 then
  trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', string.format('%.0f', send_time - max_age + 1))
end
if max_count > 0 then
  trimmed = trimmed + redis.call('XTRIM', stream, 'MAXLEN', '~', max_count)
end
if trimmed > 0 then
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1]
  redis.call('SET', trim_mark, string.match(oldest, '^(%d+)'))
end
if record then
  redis.call('SET', record, id .. ' ' .. ARGV[3], 'EX', ARGV[4])
end
return {0, id}
