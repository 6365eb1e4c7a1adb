-- A lease of a client's requests, counted in its moving window exactly as the
-- `limits` library counts (its acquire_moving_window.lua: the window's key holds
-- the times of the last `limit` requests, newest first), on the same key, so
-- `limits` and this script see one count (proxy/accounts/fair_use.py).
-- First it gives back what the client's last lease here did not use (the
-- entries it pushed, found by their time), so nothing counted goes unused.
-- Returns 1 if `n` requests were counted (the lease is granted), else 0.

local key = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local unused = tonumber(ARGV[6])

if unused > 0 then
  redis.call('LREM', key, unused, tonumber(ARGV[5]))
end
if n > limit then
  return 0
end
local entry = redis.call('LINDEX', key, limit - n)
if entry and tonumber(entry) >= now - expiry then
  return 0
end
local entries = {}
for i = 1, n do
  entries[i] = now
end
redis.call('LPUSH', key, unpack(entries))
redis.call('LTRIM', key, 0, limit - 1)
redis.call('EXPIRE', key, expiry)
return 1
