-- Read one page of a chat, and whether retention trimmed it, in one round trip.
--
-- KEYS[1]  the chat's stream
-- ARGV[1]  XRANGE or XREVRANGE   ARGV[2], ARGV[3] the bounds   ARGV[4] count
--
-- Returns {entries, trimmed_before}: the entries as XRANGE returns them, and
-- "0" if no message was ever removed from the stream, else the send_time of
-- its oldest retained message (every message before it is gone: trimming
-- takes the oldest first), or "-1" if none is retained. The stream counts
-- every entry ever added (entries-added) next to those it holds (length).
-- (Redis 7's max-deleted-entry-id would be simpler, but XTRIM leaves it at
-- 0-0; only XDEL sets it.)

local stream = KEYS[1]
local entries = redis.call(ARGV[1], stream, ARGV[2], ARGV[3], 'COUNT', ARGV[4])
local trimmed_before = '0'
if redis.call('EXISTS', stream) == 1 then
  local info = redis.call('XINFO', 'STREAM', stream)
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['entries-added'] > fields['length'] then
    trimmed_before = '-1'
    if fields['length'] > 0 then
      trimmed_before = string.match(fields['recorded-first-entry-id'], '^(%d+)')
    end
  end
end
return {entries, trimmed_before}
