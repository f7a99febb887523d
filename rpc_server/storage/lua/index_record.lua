-- Add one idempotency record written by an older version (which kept no
-- index) to its chat's record index, as send.lua would have
-- (rpc_server/storage/index_records.py, a one-off after upgrading).
--
-- KEYS[1]  the record        im:v1:{a:b}:k:<key>
-- KEYS[2]  its chat's index  im:v1:{a:b}:k
--
-- Returns 1 if the record was indexed, 0 if it is gone or never expires
-- (not one of ours).

local ttl_ms = redis.call('PTTL', KEYS[1])
if ttl_ms < 0 then return 0 end
local now = redis.call('TIME')
local expires = tonumber(now[1]) + math.ceil(ttl_ms / 1000)
redis.call('ZADD', KEYS[2], expires, string.sub(KEYS[1], #KEYS[2] + 2))
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[2], tonumber(last[2]) + 1)
return 1
