-- Moving money: the one way a balance changes, included by every script that
-- moves money (top-ups here, order charges and refunds in proxy/orders).
--
-- move_money moves the balance and writes the ledger entry together, and
-- refuses a debit that would take the balance below zero. `delta` is a Lua
-- number (whole minor units; exact below 2^53), credited if positive,
-- debited if negative. It returns the ledger entry's ID, or false when a
-- debit would overdraw (nothing changes then). The client's running totals
-- by kind (charge, refund, topup), which metrics and reports read, move in
-- the same step. Numbers are written with %d: Lua would otherwise print
-- large ones as 1e+15. `extra`, if given, is a list of more fields and values
-- for the entry (an operator's adjustment: who made it).

local function minor(n)
  return string.format('%d', n)
end

local function move_money(balance_key, ledger_key, totals_key, delta, kind, ref, memo, order, extra)
  local after = redis.call('INCRBY', balance_key, minor(delta))
  if after < 0 then
    redis.call('DECRBY', balance_key, minor(delta))
    return false
  end
  redis.call('HINCRBY', totals_key, kind, minor(math.abs(delta)))
  local entry = {'kind', kind, 'amount', minor(delta), 'balance', minor(after), 'ref', ref, 'memo', memo}
  if order ~= '' then
    entry[#entry + 1] = 'order'
    entry[#entry + 1] = order
  end
  for _, value in ipairs(extra or {}) do
    entry[#entry + 1] = value
  end
  return redis.call('XADD', ledger_key, '*', unpack(entry))
end
