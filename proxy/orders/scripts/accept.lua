-- Record an order a provider accepted, in one step on one server: claim its
-- upstream order for it (as claim.lua would, when nobody holds the claim),
-- apply ACCEPT (as transition.lua would), put it in its provider's due
-- index, count the provider's success (its health) and take the order's
-- cost off what we know of its balance (its funds). On Redis Cluster these
-- keys live in several slots, and the router makes the same calls one by one.
--
-- Replies: {'claimed', owner} when another order holds the claim (nothing
-- changes: the caller settles the claim as claim.lua's callers do); else the
-- transition's reply, and when it applied for the first time, the health's
-- and the funds' outcomes after it: {'ok', state, record, health, ejections,
-- funds, amount}.
--!include apply_event
--!include providers.health_ok
--!include providers.funds_move

-- KEYS: those transition.lua takes, then the upstream order's claims bucket,
-- the provider's due index, its order health and its state (funds).
local claims_key = KEYS[8 + #WORKING_SETS]
local due_key = KEYS[9 + #WORKING_SETS]
local health_key = KEYS[10 + #WORKING_SETS]
local provider_key = KEYS[11 + #WORKING_SETS]

-- ARGV[1..8]: those transition.lua takes (the event is ACCEPT).
local upstream_order = ARGV[9]
local owner = ARGV[10]  -- our order's ID
local due_op = ARGV[11]  -- 'add' | 'rem' | '': how the order moves in its provider's due index
local due_member = ARGV[12]
local due_score = ARGV[13]
local now = ARGV[14]
local cost = tonumber(ARGV[15])  -- what the provider should bill, minor units of its currency
local threshold = tonumber(ARGV[16])  -- its low_balance, the same units
-- ARGV[17], ARGV[18], ...: fields and values to write

local current = redis.call('HGET', claims_key, upstream_order) or ''
if current ~= '' and current ~= owner then
  return {'claimed', current}
end
if current == '' then
  redis.call('HSET', claims_key, upstream_order, owner)
end
local reply, repeated = apply_event(KEYS, ARGV, 17)
if reply[1] ~= 'ok' or repeated then
  return reply
end
if due_op == 'add' then
  redis.call('ZADD', due_key, due_score, due_member)
elseif due_op == 'rem' then
  redis.call('ZREM', due_key, due_member)
end
local health = health_ok(health_key, now)
local funds = funds_move(provider_key, 'spend', cost, threshold, now)
reply[4] = health[1]
reply[5] = tostring(health[2] or 0)
reply[6] = funds[1] or 'same'  -- an error reply (a cost beyond what funds count): nothing to tell
reply[7] = funds[2] or ''
return reply
