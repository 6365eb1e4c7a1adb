-- A lease of a client's requests, counted in its moving window exactly as the
-- `limits` library counts (rate_window.lua: the window's key holds the times
-- of the last `limit` requests, newest first), on the same key, so `limits`
-- and this script see one count (proxy/accounts/fair_use.py).
-- First it gives back what the client's last lease here did not use (the
-- entries it pushed, found by their time), so nothing counted goes unused.
-- Returns 1 if `n` requests were counted (the lease is granted), else 0.
--!include rate_window

local key = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local unused = tonumber(ARGV[6])

if unused > 0 then
  redis.call('LREM', key, unused, tonumber(ARGV[5]))
end
if count_request(key, now, limit, expiry, n) then
  return 1
end
return 0
