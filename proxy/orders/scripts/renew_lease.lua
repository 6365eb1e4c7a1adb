-- Extend a lease only while it is still ours.

local lease_key = KEYS[1]

local token = ARGV[1]
local ms = ARGV[2]

if redis.call('GET', lease_key) == token then
  return redis.call('PEXPIRE', lease_key, ms)
end
return 0
