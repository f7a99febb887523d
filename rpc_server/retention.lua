-- Retention, shared by send.lua (on every send) and sweep.lua (every chat,
-- on demand): this file is prepended to both.
--
-- Messages older than the maximum age are trimmed exactly (XTRIM MINID);
-- beyond the maximum count, whole stream nodes are (XTRIM MAXLEN ~: at least
-- that many are kept, at most one node more). When anything was trimmed,
-- the trim mark records the send_time of the oldest message left ("-1":
-- none): every message before it is gone. That is how a pull tells "history
-- was trimmed" from "no more history". (Redis 7's max-deleted-entry-id would
-- do, but XTRIM leaves it at 0-0; only XDEL sets it.)
--
-- Returns how many messages were trimmed.
local function apply_retention(stream, trim_mark, now_us, max_age_us, max_count)
  local trimmed = 0
  if max_age_us > 0 then
    trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', string.format('%.0f', now_us - max_age_us + 1))
  end
  if max_count > 0 then
    trimmed = trimmed + redis.call('XTRIM', stream, 'MAXLEN', '~', max_count)
  end
  if trimmed > 0 then
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    redis.call('SET', trim_mark, oldest and string.match(oldest[1], '^(%d+)') or '-1')
  end
  return trimmed
end
