-- Keeping an order's working sets, and its client's open-links index, in step
-- with its record.
--!include states

-- Put order `id` in the working sets it belongs to and take it out of the
-- others; `set_keys[i]` is the client's key of WORKING_SETS[i]. `before` is
-- what the record held before this script wrote it ({state, status,
-- attention}; nil for a new order): only the sets the order enters or
-- leaves are written (every write of a record is a script that ends here, so
-- the sets matched the record before it). The key after them is the
-- client's open-links index (link key -> open orders): an order with a
-- `link_key` counts there while it is not final, and its `link_held` says
-- whether it is counted, so applying this twice counts it once.
local function reindex(order_key, id, set_keys, before)
  local fields = redis.call('HMGET', order_key, 'state', 'status', 'attention', 'link_key', 'link_held')
  local state = fields[1]
  local status = fields[2]
  local attention = fields[3] or ''
  for i, set in ipairs(WORKING_SETS) do
    local now = belongs(set, state, status, attention)
    local was = before ~= nil and belongs(set, before[1], before[2], before[3] or '')
    if now and not was then
      redis.call('ZADD', set_keys[i], id, id)
    elseif was and not now then
      redis.call('ZREM', set_keys[i], id)
    end
  end
  local links_key = set_keys[#WORKING_SETS + 1]
  local link = fields[4] or ''
  if links_key and link ~= '' then
    local held = fields[5] == '1'
    local open = not is_final(state, status)
    if open and not held then
      redis.call('HINCRBY', links_key, link, 1)
      redis.call('HSET', order_key, 'link_held', '1')
    elseif held and not open then
      if redis.call('HINCRBY', links_key, link, -1) <= 0 then
        redis.call('HDEL', links_key, link)
      end
      redis.call('HSET', order_key, 'link_held', '0')
    end
  end
end
