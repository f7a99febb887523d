-- Retention, shared by send.lua (on every send) and sweep.lua (every chat,
-- on demand): this file is prepended to both, after decimal.lua.
--
-- Messages older than the maximum age are trimmed exactly (XTRIM MINID).
-- Beyond the maximum count, nothing happens until the chat holds more than
-- that by a tenth of it (at most 100 more); then it is trimmed back to
-- exactly that many, oldest first, at most TRIM_AT_ONCE at a time (the
-- sweep calls again until done). Trimming so in batches reads each trimmed
-- entry once, as XTRIM MAXLEN ~ (whole stream nodes) did, and says exactly
-- which entries went.
--
-- When anything was trimmed, the trim mark (im:v1:{a:b}:t) records
-- "<boundary> <first>": boundary = the newest trimmed send_time + 1, first =
-- the oldest trimmed one (the chat's first message; 0 when a mark of an
-- older version left it unknown). Every message before the boundary is
-- gone and none at or after it was trimmed; so a pull knows exactly
-- whether it reaches a gap (paging.history_truncated), and tells
-- "history was trimmed" from "no more history", whatever is left, even
-- nothing. (Redis 7's max-deleted-entry-id would do for the boundary, but
-- XTRIM leaves it at 0-0; only XDEL sets it.) Both are decimal strings:
-- exact however far in the future an ID lies.
--
-- Returns how many messages were trimmed.

local TRIM_AT_ONCE = 1000

local function time_of(id) return string.match(id, '^(%d+)') end

-- The ID right after `id` ("<ms>-<seq>"): XTRIM MINID of it removes `id` too.
local function id_after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. decimal_next(seq)
end

local function apply_retention(stream, trim_mark, now_us, max_age_us, max_count)
  local trimmed, oldest_gone, newest_gone = 0, nil, nil
  local function note_oldest()
    if not oldest_gone then oldest_gone = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1] end
  end
  if max_age_us > 0 and now_us - max_age_us > 0 then
    local min_id = string.format('%.0f', now_us - max_age_us + 1) .. '-0'
    local newest_old = redis.call('XREVRANGE', stream, '(' .. min_id, '-', 'COUNT', 1)[1]
    if newest_old then
      note_oldest()
      newest_gone = newest_old[1]
      trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', min_id)
    end
  end
  if max_count > 0 then
    local excess = redis.call('XLEN', stream) - max_count
    if excess > math.min(100, math.floor(max_count / 10)) then
      local gone = redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(excess, TRIM_AT_ONCE))
      note_oldest()
      newest_gone = gone[#gone][1]
      trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', id_after(newest_gone))
    end
  end
  if trimmed > 0 then
    local previous = redis.call('GET', trim_mark)
    local first = previous and string.match(previous, '^%d+ (%d+)$')
    if not first then
      -- No mark (or the sweep's placeholder '0'): this is the first trim, and
      -- the oldest trimmed is the chat's first message. A mark of an older
      -- version ("<oldest left>" or "-1"): the first is unknown.
      if previous and previous ~= '0' then first = '0' else first = time_of(oldest_gone) end
    end
    redis.call('SET', trim_mark, decimal_next(time_of(newest_gone)) .. ' ' .. first)
  end
  return trimmed
end
