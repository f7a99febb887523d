-- Apply retention to one chat now (python -m rpc_server.tools.sweep), for chats
-- nobody sends to: send.lua applies it only to the chat it writes.
--
-- KEYS[1]  the chat's stream   KEYS[2]  its trim mark
-- ARGV[1]  maximum age in microseconds (0: any)   ARGV[2]  messages to keep (0: all)
--
-- Returns how many messages were trimmed: at most TRIM_AT_ONCE beyond the
-- count, so the caller calls again until it is 0. (decimal.lua and
-- retention.lua are prepended.)

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
-- Write the trim mark (unchanged) first: if Redis is out of memory, the
-- script stops here, before it trims anything. Trimming first would leave
-- the stream trimmed and its mark unwritten (SET is refused then, XTRIM is
-- not), and pulls would not know that history was trimmed.
redis.call('SET', KEYS[2], redis.call('GET', KEYS[2]) or '0')
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
return apply_retention(KEYS[1], KEYS[2], now_us, tonumber(ARGV[1]), tonumber(ARGV[2]))
