-- One final outcome of an order at (provider, upstream service), added to
-- exponentially decayed counts: every count is multiplied by `keep` (1 - 1 /
-- the window) before the new outcome is added, so the rates follow roughly
-- the last `window` orders of the route.
local key = KEYS[1]  -- the provider's outcome hash

local service = ARGV[1]
local kind = ARGV[2]  -- c (Completed), p (Partial), x (Canceled), k (stuck)
local delivered = tonumber(ARGV[3])  -- the share of the order delivered, 0..1
local seconds = ARGV[4]  -- time to completion, or ''
local keep = tonumber(ARGV[5])

local names = {'n', 'd', 'c', 'p', 'x', 'k', 't', 'tn'}
local fields = {}
for i, name in ipairs(names) do
  fields[i] = service .. ':' .. name
end
local values = redis.call('HMGET', key, unpack(fields))
local counts = {}
for i, name in ipairs(names) do
  counts[name] = tonumber(values[i] or '0') * keep
end
counts['n'] = counts['n'] + 1
counts['d'] = counts['d'] + delivered
counts[kind] = counts[kind] + 1
if seconds ~= '' then
  counts['t'] = counts['t'] + tonumber(seconds)
  counts['tn'] = counts['tn'] + 1
end
local out = {}
for i, name in ipairs(names) do
  out[#out + 1] = fields[i]
  out[#out + 1] = string.format('%.6f', counts[name])
end
redis.call('HSET', key, unpack(out))
return counts['n'] .. ''
