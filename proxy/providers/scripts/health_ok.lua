-- A call to a provider that worked, in one scope's health hash: the count of
-- failures starts over, and an ejected provider is back. Shared by
-- health.lua and the order scripts that record an accepted order
-- (proxy/orders/scripts/accept.lua). Returns {'back', ejections} or {'ok'}.
local function health_ok(key, now)
  local state = redis.call('HMGET', key, 'failures', 'ejections', 'until')
  local failures = tonumber(state[1] or '0')
  local ejections = tonumber(state[2] or '0')
  local ejected_until = tonumber(state[3] or '0')
  if ejected_until > 0 then
    redis.call('HSET', key, 'failures', 0, 'until', 0, 'back_at', now, 'probe_until', 0)
    return {'back', ejections}
  end
  if failures > 0 then
    redis.call('HSET', key, 'failures', 0)
  end
  return {'ok'}
end
