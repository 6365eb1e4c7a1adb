-- Apply one event of the state table to one order: check the event against
-- the order's state and lease, write the fields, move the money the rule
-- calls for, queue the order for an operator, keep or drop the duplicate
-- fingerprint and update the working sets, all in one step.
--
-- Replies: {'ok', state before, record}; {'stale', state, record} (a status
-- read before another was applied); {'missing'}; {reason, state} when the
-- table or the lease refuses ('state', 'lease', 'leased'). A call ID among
-- the RECENT_CALLS last applied to the record is a retry of a call that
-- applied (its reply was lost), whatever was applied since: it answers the
-- record as it is and changes nothing.
--!include accounts.move_money
--!include reindex

-- How many call IDs an order remembers (a retry after this many other
-- transitions is told apart by the state table alone).
local RECENT_CALLS = {{ RECENT_CALLS }}

local order_key = KEYS[1]
local balance_key = KEYS[2]
local ledger_key = KEYS[3]
local totals_key = KEYS[4]
local lease_key = KEYS[5]
local duplicate_key = KEYS[6]  -- the fingerprint the order was reserved with, if any
local set_keys = {unpack(KEYS, 7)}  -- the client's working sets, as WORKING_SETS lists them

local event = ARGV[1]
local lease_token = ARGV[2]
local lease_ms = ARGV[3]
local refund_to = ARGV[4]  -- the order's total refund (minor units) where the rule refunds 'to'; "" for none
local version = ARGV[5]  -- the status version read, for a status read; "" otherwise
local attention = ARGV[6]  -- a reason for the operator's queue; "" for none
local memo = ARGV[7]
local call = ARGV[8]
-- ARGV[9], ARGV[10], ...: fields and values to write

local state = redis.call('HGET', order_key, 'state')
if not state then
  return {'missing'}
end
-- The calls applied lately, newest first, space-separated.
local calls = redis.call('HGET', order_key, 'calls') or redis.call('HGET', order_key, 'call') or ''
if string.find(' ' .. calls .. ' ', ' ' .. call .. ' ', 1, true) then
  return {'ok', state, redis.call('HGETALL', order_key)}
end
local rule = TABLE[state] and TABLE[state][event]
if not rule then
  return {'state', state}
end
local lease = redis.call('GET', lease_key)
if rule.lease == 'hold' and lease and lease ~= lease_token then
  return {'lease', state}
end
if rule.lease == 'free' and lease then
  return {'leased', state}
end
if version ~= '' then
  local status = redis.call('HGET', order_key, 'status')
  if FINAL_STATUSES[status] or (redis.call('HGET', order_key, 'v') or '0') ~= version then
    return {'stale', state, redis.call('HGETALL', order_key)}
  end
  redis.call('HINCRBY', order_key, 'v', 1)
end

-- The fields: written, or (late news the rule must not write) kept in the note.
local note = ''
if #ARGV > 8 then
  if rule.write then
    redis.call('HSET', order_key, unpack(ARGV, 9))
  else
    for i = 9, #ARGV, 2 do
      note = note .. ' ' .. ARGV[i] .. '=' .. ARGV[i + 1]
    end
  end
end
local recent = {call}
for seen in string.gmatch(calls, '%S+') do
  if #recent >= RECENT_CALLS then
    break
  end
  recent[#recent + 1] = seen
end
redis.call('HSET', order_key, 'state', rule.target, 'call', call, 'calls', table.concat(recent, ' '))
if rule.target ~= state or rule.attention ~= '' then
  redis.call('HINCRBY', totals_key, COUNTED .. state .. ':' .. event, 1)
end

-- The money: a refund up to the rule's target, and what we paid upstream.
local id = redis.call('HGET', order_key, 'id')
local charge = tonumber(redis.call('HGET', order_key, 'charge'))
local refunded = tonumber(redis.call('HGET', order_key, 'refunded') or '0')
local target = nil
if rule.refund == 'all' then
  target = charge
elseif rule.refund == 'to' and refund_to ~= '' then
  target = math.min(math.max(tonumber(refund_to), 0), charge)
end
local cost_base = tonumber(redis.call('HGET', order_key, 'cost_base') or '0')
if rule.target == PLACED and state ~= PLACED and cost_base > 0 then
  redis.call('HINCRBY', totals_key, 'paid', minor(cost_base))
end
if target and target > refunded then
  local total = minor(target)
  move_money(balance_key, ledger_key, totals_key, target - refunded, 'refund', 'order:' .. id .. ':refund:' .. total, memo, id)
  redis.call('HSET', order_key, 'refunded', total)
  if state == PLACED and cost_base > 0 and charge > 0 then
    redis.call('HINCRBY', totals_key, 'paid', minor(-math.floor(cost_base * ((target - refunded) / charge))))
  end
end

-- The operator's queue. A rule's own reason is news (an event happened); a
-- caller's is what a read makes of the order, and one an operator already
-- dealt with (`dismissed`) does not come back while its headline stays.
local reason = rule.attention
local derived = false
if reason == '' then
  reason = attention
  derived = true
end
if reason == CLEAR then
  local current = redis.call('HGET', order_key, 'attention') or ''
  if current ~= '' then
    redis.call('HSET', order_key, 'dismissed', current)
  end
  redis.call('HSET', order_key, 'attention', '')
elseif reason ~= '' then
  reason = reason .. note
  local dismissed = redis.call('HGET', order_key, 'dismissed') or ''
  if not (derived and headline(reason) == headline(dismissed)) then
    redis.call('HSET', order_key, 'attention', reason)
  end
end

-- The client's fingerprint, the lease, the working sets.
local fingerprint = redis.call('GET', duplicate_key)
if fingerprint and string.match(fingerprint, '^(%d+)') == id then
  if rule.duplicate == 'drop' then
    redis.call('DEL', duplicate_key)
  elseif rule.duplicate == 'window' then
    redis.call('PEXPIRE', duplicate_key, redis.call('HGET', order_key, 'duplicate_ms') or '0')
  end
end
if not IN_FLIGHT[rule.target] then
  redis.call('DEL', lease_key)
elseif rule.lease == 'hold' then
  redis.call('SET', lease_key, lease_token, 'PX', lease_ms)
end
reindex(order_key, id, set_keys)
return {'ok', state, redis.call('HGETALL', order_key)}
