-- Settle whether a reservation whose every try failed (no reply) applied:
-- 1 if its order exists; else 0, and a fence is set so that the reservation,
-- should it still reach Redis late (held in a socket buffer, a frozen
-- connection), changes nothing there (reserve.lua refuses a fenced order).
-- Either way the answer given to the client stays true: its order's ID once
-- the money moved, an error only if it never will.

local order_key = KEYS[1]
local fence_key = KEYS[2]
local seconds = ARGV[1]

if redis.call('EXISTS', order_key) == 1 then
  return 1
end
redis.call('SET', fence_key, '1', 'EX', seconds)
return 0
