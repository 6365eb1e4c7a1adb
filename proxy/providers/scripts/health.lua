-- One provider's health in one scope (orders or reads), decided atomically
-- for every instance: consecutive failures counted, the provider ejected
-- after `threshold` of them for base x 2^(ejections-1) seconds (at most
-- `cap`), and brought back by a success (a probe, or an order that went
-- there anyway). After `cap` seconds healthy the ejections start over.
--
-- Replies: {'counted', failures}, {'ejected', until, ejections},
-- {'still', until}, {'back', ejections}, {'ok'}, {'probe'}, {'wait'}.
--!include health_ok

local key = KEYS[1]

local op = ARGV[1]  -- fail | ok | probe | probe_failed
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local base = tonumber(ARGV[4])  -- seconds; 0: never eject
local cap = tonumber(ARGV[5])
local reason = ARGV[6]
local probe_lock = tonumber(ARGV[7])  -- seconds one instance's probe is left alone

local state = redis.call('HMGET', key, 'failures', 'ejections', 'until', 'back_at', 'probe_until')
local failures = tonumber(state[1] or '0')
local ejections = tonumber(state[2] or '0')
local ejected_until = tonumber(state[3] or '0')
local back_at = tonumber(state[4] or '0')
local probe_until = tonumber(state[5] or '0')

local function eject(count)
  local length = math.min(cap, base * 2 ^ (count - 1))
  local ends = now + length
  redis.call('HSET', key, 'failures', 0, 'ejections', count, 'until', ends, 'ejected_at', now,
    'probe_until', 0, 'reason', reason)
  return {'ejected', tostring(ends), count}
end

if op == 'fail' or op == 'probe_failed' then
  if ejected_until > 0 then
    if now >= ejected_until and base > 0 then  -- its time was up and it still fails: longer
      return eject(ejections + 1)
    end
    return {'still', tostring(ejected_until)}
  end
  if op == 'probe_failed' then
    return {'ok'}
  end
  if ejections > 0 and back_at > 0 and now - back_at >= cap then
    ejections = 0
    redis.call('HSET', key, 'ejections', 0)
  end
  failures = failures + 1
  if base > 0 and failures >= threshold then
    return eject(ejections + 1)
  end
  redis.call('HSET', key, 'failures', failures, 'reason', reason, 'failed_at', now)
  return {'counted', failures}
elseif op == 'ok' then
  return health_ok(key, now)
elseif op == 'probe' then
  if ejected_until > 0 and now >= ejected_until and probe_until <= now then
    redis.call('HSET', key, 'probe_until', now + probe_lock)
    return {'probe'}
  end
  return {'wait'}
end
return redis.error_reply('unknown health op ' .. op)
