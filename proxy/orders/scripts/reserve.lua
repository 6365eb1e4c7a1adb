-- Open an order: check the client, its duplicate fingerprint and (for a client
-- that refuses a second order on a link) its open links, debit the charge,
-- write the record, its indexes, the placing task's lease and the
-- fingerprint, all in one step. A record that exists already is this very
-- reservation, retried after its reply was lost, only if it carries this
-- reservation's name (`opened`): then it answers 'ok' again. Any other
-- order under the ID (a record of another attempt, an archived order, on
-- one server another client's owner entry) means the ID sequence fell
-- behind the IDs in use: {'taken'}, nothing changes, and the caller takes
-- another ID. Two orders are never merged.
-- On one server it also writes the order's owner entry, and reads what
-- routing must know of the service's providers (their health and funds), so
-- an order is opened in one round trip; on Redis Cluster those keys live in
-- other slots, and the caller writes and reads them apart.
--
-- Replies: {'ok', routes} (routes: per provider, its ejection's end, block,
-- funds and low flag, "" where unset); {'duplicate', id}, {'mismatch', id},
-- {'same_link'}, {'insufficient'}, {'no_client'}, {'too_many'} (the client's
-- request rate is spent: nothing changes, this request is not counted),
-- {'taken'} (the ID numbers another order: nothing changes),
-- {'fenced'} (this reservation reached Redis after its caller settled that it
-- had not applied, and told the client so: fence.lua; nothing changes).
--!include accounts.move_money
--!include accounts.rate_window
--!include reindex

local client_key = KEYS[1]
local balance_key = KEYS[2]
local ledger_key = KEYS[3]
local totals_key = KEYS[4]
local order_key = KEYS[5]
local all_key = KEYS[6]  -- the bucket of the client's orders this one is listed in (a set)
local lease_key = KEYS[7]
local duplicate_key = KEYS[8]
local set_keys = {unpack(KEYS, 9, 9 + #WORKING_SETS)}  -- the client's working sets, as WORKING_SETS lists them, then its open links
local owner_key = KEYS[10 + #WORKING_SETS]  -- the order's owner bucket (one server only)
-- KEYS after it: two per provider of the service (its order health, its
-- state), then one per request-rate window of the client (one server only);
-- then the client's bucket of archived orders that would hold this ID, and
-- last the order's fence (fence.lua).
local archived_key = KEYS[#KEYS - 1]
local fence_key = KEYS[#KEYS]

local order_id = ARGV[1]
local charge = ARGV[2]  -- minor units
local lease_token = ARGV[3]
local lease_ms = ARGV[4]
local fingerprint = ARGV[5]  -- "<order ID>" or "<order ID>:<payload hash>"; "" for none
local payload = ARGV[6]  -- the payload hash of an Idempotency-Key; "" for none
local memo = ARGV[7]
local link = ARGV[8]  -- the order's key in the open-links index; "" for an order without a link
local owner = ARGV[9]  -- the client, for the owner entry; "" to leave it to the caller (Redis Cluster)
local routes = tonumber(ARGV[10])  -- how many providers' states to read
local windows = tonumber(ARGV[11])  -- how many request-rate windows count this add
local now = tonumber(ARGV[12])  -- the time a request is counted at (as `limits` counts)
local opened = ARGV[13]  -- names this reservation, the same across its retries (the record's 'opened')
-- ARGV[14], ...: each window's limit and seconds; then the record's fields and values
local fields_from = 14 + 2 * windows

local function route_states()
  local found = {}
  for i = 1, routes do
    local health_key = KEYS[10 + #WORKING_SETS + 2 * i - 1]
    local state_key = KEYS[10 + #WORKING_SETS + 2 * i]
    found[#found + 1] = redis.call('HGET', health_key, 'until') or ''
    local state = redis.call('HMGET', state_key, 'blocked', 'funds', 'low')
    for j = 1, 3 do
      found[#found + 1] = state[j] or ''
    end
  end
  return found
end

if redis.call('EXISTS', order_key) == 1 then
  if redis.call('HGET', order_key, 'opened') == opened then
    return {'ok', route_states()}  -- this reservation, retried after its reply was lost
  end
  return {'taken'}
end
if redis.call('HEXISTS', archived_key, order_id) == 1 then
  return {'taken'}
end
if owner ~= '' and redis.call('HEXISTS', owner_key, order_id) == 1 then
  return {'taken'}  -- another client's order, or an archived one (its record is written with its owner entry)
end
if redis.call('EXISTS', fence_key) == 1 then
  return {'fenced'}
end
if redis.call('EXISTS', client_key) == 0 or redis.call('HGET', client_key, 'disabled') == '1' then
  return {'no_client'}
end
for i = 1, windows do  -- the add request itself, counted before anything else is decided
  local key = KEYS[10 + #WORKING_SETS + 2 * routes + i]
  if not count_request(key, now, tonumber(ARGV[12 + 2 * i]), tonumber(ARGV[13 + 2 * i])) then
    return {'too_many'}
  end
end
if fingerprint ~= '' then
  local first = redis.call('GET', duplicate_key)
  if first then
    local id, hash = string.match(first, '^(%d+):?(.*)$')
    if payload ~= '' and hash ~= payload then
      return {'mismatch', id}
    end
    return {'duplicate', id}
  end
end
if link ~= '' and redis.call('HGET', client_key, 'same_link') == 'refuse' then
  local links_key = set_keys[#WORKING_SETS + 1]
  if tonumber(redis.call('HGET', links_key, link) or '0') > 0 then
    return {'same_link'}
  end
end
local ref = 'order:' .. order_id .. ':charge'
if not move_money(balance_key, ledger_key, totals_key, -tonumber(charge), 'charge', ref, memo, order_id) then
  return {'insufficient'}
end
if owner ~= '' then
  redis.call('HSET', owner_key, order_id, owner)
end
redis.call('HSET', order_key, unpack(ARGV, fields_from))
redis.call('SADD', all_key, order_id)
reindex(order_key, order_id, set_keys, nil)  -- a new record: in no set yet
redis.call('SET', lease_key, lease_token, 'PX', lease_ms)
if fingerprint ~= '' then
  redis.call('SET', duplicate_key, fingerprint)
end
return {'ok', route_states()}
