-- A client's request rate, counted in a moving window exactly as the `limits`
-- library counts it (its acquire_moving_window.lua), on the same key: so a
-- script that opens an order counts the add request itself, in the same round
-- trip, and `limits` sees it; a lease (lease.lua) counts several at once
-- (proxy/accounts/fair_use.py). A window's key holds the last `limit`
-- requests' times, newest first.

-- Count `n` requests (default one) in the window at `key`; false (nothing
-- counted) if the window would then hold more than `limit` requests newer
-- than `now - expiry`.
local function count_request(key, now, limit, expiry, n)
  n = n or 1
  if n > limit then
    return false
  end
  local entry = redis.call('LINDEX', key, limit - n)
  if entry and tonumber(entry) >= now - expiry then
    return false
  end
  local entries = {}
  for i = 1, n do
    entries[i] = now
  end
  redis.call('LPUSH', key, unpack(entries))
  redis.call('LTRIM', key, 0, limit - 1)
  redis.call('EXPIRE', key, expiry)
  return true
end
