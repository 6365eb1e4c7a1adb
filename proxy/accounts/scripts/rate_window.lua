-- A client's request rate, counted in a moving window exactly as the `limits`
-- library counts it (its acquire_moving_window.lua, one request at a time),
-- on the same key: so a script that opens an order counts the add request
-- itself, in the same round trip, and `limits` sees it (proxy/accounts/fair_use.py).
-- A window's key holds the last `limit` requests' times, newest first.

-- Count one request in the window at `key`; false (nothing counted) if the
-- window already holds `limit` requests newer than `now - expiry`.
local function count_request(key, now, limit, expiry)
  local entry = redis.call('LINDEX', key, limit - 1)
  if entry and tonumber(entry) >= now - expiry then
    return false
  end
  redis.call('LPUSH', key, now)
  redis.call('LTRIM', key, 0, limit - 1)
  redis.call('EXPIRE', key, expiry)
  return true
end
