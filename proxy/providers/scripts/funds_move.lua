-- What we know of one provider's balance, in its own currency and minor
-- units: the last reading, less what we sent it since. Below the provider's
-- threshold it is "low" (no new orders); the crossing is decided here, once
-- for every instance, so one warning is given when it starts and one when
-- it ends.
--
-- funds_move(key, op, amount, threshold, now) returns what the scripts
-- reply: {'low', funds}, {'recovered', funds}, {'same', funds}.
local function funds_move(key, op, amount, threshold, now)
  -- op: read | spend | short; amount: read: the balance; spend: an order's
  -- cost; short: a cost it refused
  -- Exact up to 2^53 minor units (funds.py clamps a reading there): refuse beyond.
  -- Replies write funds with '%.0f': tostring keeps only 14 digits.
  if not amount or math.abs(amount) > 9007199254740991 or not threshold then
    return redis.error_reply('funds amount out of range: ' .. tostring(amount))
  end
  local funds = redis.call('HGET', key, 'funds')
  if op == 'read' then
    funds = amount
    redis.call('HSET', key, 'funds_at', now)
  elseif op == 'spend' then
    if not funds then
      return {'same', ''}
    end
    funds = tonumber(funds) - amount
  elseif op == 'short' then  -- it said its balance does not cover `amount`
    if funds and tonumber(funds) < amount then
      funds = tonumber(funds)
    else
      funds = amount - 1
    end
  else
    return redis.error_reply('unknown funds op ' .. op)
  end
  redis.call('HSET', key, 'funds', funds)
  local was_low = redis.call('HGET', key, 'low') == '1'
  local low = funds < threshold
  if low and not was_low then
    redis.call('HSET', key, 'low', '1')
    return {'low', string.format('%.0f', funds)}
  elseif was_low and not low then
    redis.call('HSET', key, 'low', '0')
    return {'recovered', string.format('%.0f', funds)}
  end
  return {'same', string.format('%.0f', funds)}
end
