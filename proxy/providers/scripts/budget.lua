-- Take one request from a provider's budget for this minute, if the caller's
-- share of it has room: orders may use the whole budget, reads only theirs,
-- so no amount of status or refill traffic leaves an order without one.
local key = KEYS[1]  -- this minute's count

local limit = tonumber(ARGV[1])  -- what this caller may use of the minute
local ttl = tonumber(ARGV[2])

local used = tonumber(redis.call('GET', key) or '0')
if used >= limit then
  return 0
end
redis.call('INCR', key)
redis.call('EXPIRE', key, ttl)
return 1
