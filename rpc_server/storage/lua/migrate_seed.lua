-- Swap a merged copy of a chat's stream in for the live one, but only if the
-- live one has not changed since it was read (rpc_server/tools/migrate_seed).
--
-- KEYS[1]  the chat's stream   im:v1:{a:b}:m
-- KEYS[2]  the merged copy     im:v1:{a:b}:migrating   (same hash slot)
-- ARGV[1]  the live stream's last-generated-id when it was read
-- ARGV[2]  its length then
-- ARGV[3]  the number of entries written into the copy
-- ARGV[4]  the number of them that are new (migrated) entries
--
-- Returns 1: swapped. 0: the live stream changed in between (a send, a
-- trim, a deletion), or the copy is not what was written (another migration
-- of the same chat?): the copy is deleted and nothing else is touched; the
-- caller reads the chat again and retries.
--
-- "Unchanged" is (last-generated-id, length): every XADD raises the first,
-- every deletion or trim lowers the second, and neither ever goes back, so
-- equal values mean the same entries.
--
-- The copy takes over the live stream's stream-level state, so that the swap
-- changes nothing but the entries: its last-generated-id (send.lua never
-- hands out a send_time at or below it again), its entries-added counter and
-- its max-deleted-entry-id (how a pull tells retention's trimming).

local live, copy = KEYS[1], KEYS[2]

local function info(key)
  local fields = redis.call('XINFO', 'STREAM', key)
  local result = {}
  for i = 1, #fields, 2 do result[fields[i]] = fields[i + 1] end
  return result
end

-- a < b for stream IDs "<ms>-<seq>" (compared as decimal strings: a 64-bit
-- ms part does not fit in a Lua number)
local function id_less(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if #a_ms ~= #b_ms then return #a_ms < #b_ms end
  if a_ms ~= b_ms then return a_ms < b_ms end
  if #a_seq ~= #b_seq then return #a_seq < #b_seq end
  return a_seq < b_seq
end

if redis.call('EXISTS', live) == 0 then
  redis.call('DEL', copy)
  return 0
end
local before = info(live)
if before['last-generated-id'] ~= ARGV[1] or before['length'] ~= tonumber(ARGV[2])
    or redis.call('XLEN', copy) ~= tonumber(ARGV[3]) then
  redis.call('DEL', copy)
  return 0
end

local last_id = info(copy)['last-generated-id']
if id_less(last_id, before['last-generated-id']) then last_id = before['last-generated-id'] end
local added = tonumber(before['entries-added']) + tonumber(ARGV[4])
if added < tonumber(ARGV[3]) then added = tonumber(ARGV[3]) end
redis.call('XSETID', copy, last_id, 'ENTRIESADDED', added,
  'MAXDELETEDID', before['max-deleted-entry-id'])
redis.call('RENAME', copy, live)
return 1
