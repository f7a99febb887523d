-- Read one page of a chat, and what retention removed, in one round trip.
--
-- KEYS[1]  the chat's stream
-- ARGV[1]  XRANGE or XREVRANGE   ARGV[2], ARGV[3] the bounds   ARGV[4] count
--
-- Returns {entries, max_deleted}: the entries as XRANGE returns them, and the
-- send_time of the newest message ever trimmed from the stream ("0" if none;
-- Redis 7's max-deleted-entry-id). Retention trims from the oldest end, so
-- every message at or before max_deleted is gone and every one after it kept.

local stream = KEYS[1]
local entries = redis.call(ARGV[1], stream, ARGV[2], ARGV[3], 'COUNT', ARGV[4])
local max_deleted = '0'
if redis.call('EXISTS', stream) == 1 then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then max_deleted = string.match(info[i + 1], '^(%d+)') end
  end
end
return {entries, max_deleted}
