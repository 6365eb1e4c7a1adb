-- The few fields of many orders of one client that a status read shows, in
-- one command. KEYS: the orders' records; returns each one's fields, in the
-- order of FIELDS (nil where a record has none, or does not exist).

local FIELDS = {{ SUMMARY_FIELDS }}

local out = {}
for i, order_key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', order_key, unpack(FIELDS))
end
return out
