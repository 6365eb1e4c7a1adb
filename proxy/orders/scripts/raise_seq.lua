-- Move the order-ID sequence up to at least a floor, never down: an ID it
-- handed out numbers an order already (the sequence fell behind the IDs in
-- use), so it must skip past them. Returns the sequence's value after.

local seq_key = KEYS[1]

local floor = tonumber(ARGV[1])

local now = tonumber(redis.call('GET', seq_key) or '0')
if now < floor then
  redis.call('SET', seq_key, floor)
  return floor
end
return now
