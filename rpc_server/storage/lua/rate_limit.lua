-- Per-sender send rate, GCRA (the generic cell rate algorithm): one key per
-- sender holding its "theoretical arrival time", so every RPC replica shares
-- the limit through Redis.
--
-- KEYS[1]  im:v1:rl:{<sender>}
-- ARGV[1]  emission interval in microseconds (1e6 / rate)
-- ARGV[2]  tolerance in microseconds (interval * (burst - 1))
--
-- Returns 0 when the send may go ahead, else the milliseconds to wait.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then
  return math.ceil((tat - now - tolerance) / 1000)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
