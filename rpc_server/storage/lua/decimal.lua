-- Exact arithmetic on stream-ID times, shared by the scripts that need it
-- (prepended to them). Lua numbers are doubles, exact only below 2^53 µs
-- (year 2255), but a stream ID's time part goes up to 2^64 - 1: a chat
-- whose last ID lies beyond 2^53 (say, a seed row dated 2258 that an older
-- migration accepted) would otherwise get "last + 1" rounded back onto the
-- last ID, and every send to it would fail. These work on the decimal
-- strings Redis prints (no sign, no leading zeros), exactly.

-- The largest send_time a client can hold: Thrift's i64.
local SEND_TIME_MAX = '9223372036854775807'

-- a < b, for decimal strings without leading zeros.
local function decimal_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- d + 1, for a decimal string.
local function decimal_next(d)
  local i = #d
  while i > 0 and string.byte(d, i) == 57 do i = i - 1 end -- 57: '9'
  if i == 0 then return '1' .. string.rep('0', #d) end
  return string.sub(d, 1, i - 1) .. string.char(string.byte(d, i) + 1) .. string.rep('0', #d - i)
end
