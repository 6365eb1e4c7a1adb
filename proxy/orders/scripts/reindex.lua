-- Keeping an order's working sets in step with its record.
--!include states

-- Put order `id` in the working sets it belongs to and take it out of the
-- others; `set_keys[i]` is the client's key of WORKING_SETS[i].
local function reindex(order_key, id, set_keys)
  local state = redis.call('HGET', order_key, 'state')
  local status = redis.call('HGET', order_key, 'status')
  local attention = redis.call('HGET', order_key, 'attention') or ''
  for i, set in ipairs(WORKING_SETS) do
    if belongs(set, state, status, attention) then
      redis.call('ZADD', set_keys[i], id, id)
    else
      redis.call('ZREM', set_keys[i], id)
    end
  end
end
