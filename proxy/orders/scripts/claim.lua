-- Compare and set the owner of one upstream order: set it to `owner` ("" to
-- release it) only if it is `expected` ("" for none). Returns 'ok', or the
-- owner found instead.

local claims_key = KEYS[1]  -- a bucket of upstream order -> our order ID

local upstream_order = ARGV[1]
local owner = ARGV[2]
local expected = ARGV[3]

local current = redis.call('HGET', claims_key, upstream_order) or ''
if current ~= expected then
  return current
end
if owner == '' then
  redis.call('HDEL', claims_key, upstream_order)
else
  redis.call('HSET', claims_key, upstream_order, owner)
end
return 'ok'
