-- Credit or debit a client, once per reference: applying the same reference
-- again answers with the first ledger entry and moves nothing. A debit that
-- would take the balance below zero moves nothing either ('insufficient').
--!include move_money

local client_key = KEYS[1]
local balance_key = KEYS[2]
local ledger_key = KEYS[3]
local applied_key = KEYS[4]  -- reference -> ledger entry
local totals_key = KEYS[5]

local delta = ARGV[1]  -- minor units, signed
local ref = ARGV[2]
local kind = ARGV[3]
local memo = ARGV[4]
local actor = ARGV[5] or ''  -- who moved it (an operator), or ""

if redis.call('EXISTS', client_key) == 0 then
  return {'no_client'}
end
local prior = redis.call('HGET', applied_key, ref)
if prior then
  return {'duplicate', prior}
end
local extra = {}
if actor ~= '' then
  extra = {'actor', actor}
end
local id = move_money(balance_key, ledger_key, totals_key, tonumber(delta), kind, ref, memo, '', extra)
if not id then
  return {'insufficient'}
end
redis.call('HSET', applied_key, ref, id)
return {'ok', id}
