-- Remove a member from a sorted set only if its score is still the one the
-- caller read: a concurrent ZADD that moved it meanwhile wins.
-- KEYS[1] the sorted set   ARGV[1] member   ARGV[2] score, as ZSCORE prints it
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
