-- Applying one event of the state table to one order, as a function the
-- order scripts share (`transition`, `accept`). `K` and `A` are the script's
-- KEYS and ARGV as transition.lua takes them; the fields to write start at
-- A[first]. Returns the reply, and true when the call was a repeat (its
-- reply was lost) that changed nothing.
--!include accounts.move_money
--!include reindex

-- How many call IDs an order remembers (a retry after this many other
-- transitions is told apart by the state table alone).
local RECENT_CALLS = {{ RECENT_CALLS }}

local function apply_event(K, A, first)
  local order_key = K[1]
  local balance_key = K[2]
  local ledger_key = K[3]
  local totals_key = K[4]
  local lease_key = K[5]
  local duplicate_key = K[6]  -- the fingerprint the order was reserved with, if any
  local set_keys = {unpack(K, 7, 7 + #WORKING_SETS)}  -- the working sets, as WORKING_SETS lists them, then the open links

  local event = A[1]
  local lease_token = A[2]
  local lease_ms = A[3]
  local refund_to = A[4]  -- the order's total refund (minor units) where the rule refunds 'to'; "" for none
  local version = A[5]  -- the status version read, for a status read; "" otherwise
  local attention = A[6]  -- a reason for the operator's queue; "" for none
  local memo = A[7]
  local call = A[8]
  -- A[first], A[first + 1], ...: fields and values to write

  local head = redis.call('HMGET', order_key, 'state', 'calls', 'call', 'status', 'attention', 'duplicate_key')
  local state = head[1]
  if not state then
    return {'missing'}
  end
  -- The calls applied lately, newest first, space-separated.
  local calls = head[2] or head[3] or ''
  if string.find(' ' .. calls .. ' ', ' ' .. call .. ' ', 1, true) then
    return {'ok', state, redis.call('HGETALL', order_key)}, true
  end
  local rules = TABLE[state]
  local rule = rules and rules()[event]
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
  if #A >= first then
    if rule.write then
      redis.call('HSET', order_key, unpack(A, first))
    else
      for i = first, #A, 2 do
        note = note .. ' ' .. A[i] .. '=' .. A[i + 1]
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
  redis.call('HSET', order_key, 'state', rule.target, 'calls', table.concat(recent, ' '))
  if head[3] then
    redis.call('HDEL', order_key, 'call')  -- kept apart by records written before `calls` led
  end
  if rule.target ~= state or rule.attention ~= '' then
    redis.call('HINCRBY', totals_key, COUNTED .. state .. ':' .. event, 1)
  end

  -- The money: a refund up to the rule's target, and what we paid upstream.
  local money = redis.call('HMGET', order_key, 'id', 'charge', 'refunded', 'cost_base')
  local id = money[1]
  local charge = tonumber(money[2])
  local refunded = tonumber(money[3] or '0')
  local target = nil
  if rule.refund == 'all' then
    target = charge
  elseif rule.refund == 'to' and refund_to ~= '' then
    target = math.min(math.max(tonumber(refund_to), 0), charge)
  end
  local cost_base = tonumber(money[4] or '0')
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
  local fingerprint = (head[6] or '') ~= '' and redis.call('GET', duplicate_key)
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
  reindex(order_key, id, set_keys, {state, head[4], head[5]})
  return {'ok', state, redis.call('HGETALL', order_key)}
end
