-- Give up a lease, only while it is still ours: recovery may take the order
-- at once (a shutting-down instance hands over the orders it was placing).

local lease_key = KEYS[1]

local token = ARGV[1]

if redis.call('GET', lease_key) == token then
  return redis.call('DEL', lease_key)
end
return 0
