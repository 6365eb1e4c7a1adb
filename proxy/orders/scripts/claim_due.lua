-- Take up to `limit` orders of a provider's due index whose status was read
-- before `threshold`, and mark them read at `now`, so that no other instance
-- takes them too in this round. Returns the members taken ("client:order").

local due_key = KEYS[1]

local threshold = ARGV[1]
local now = ARGV[2]
local limit = ARGV[3]

local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', threshold, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZADD', due_key, now, member)
end
return due
