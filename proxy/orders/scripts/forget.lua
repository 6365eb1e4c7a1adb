-- Forget an archived order: delete its record and take it out of every index,
-- keeping what its client may still ask of it (a compact view), but only if it
-- has not changed since it was read, is final and holds nothing for an
-- operator. Returns 1 if it was forgotten, 0 if not.
--!include states

local order_key = KEYS[1]
local archived_key = KEYS[2]  -- the client's bucket of archived views
local bucket_key = KEYS[3]  -- the bucket of the client's orders that lists it (a set)
-- KEYS[4], KEYS[5], ...: the client's sorted indexes the order may be in

local calls = ARGV[1]  -- the record's recent call IDs as they were read
local view = ARGV[2]  -- what Redis keeps of it (records.ArchivedOrder)

if (redis.call('HGET', order_key, 'calls') or redis.call('HGET', order_key, 'call') or '') ~= calls then
  return 0
end
local state = redis.call('HGET', order_key, 'state')
local status = redis.call('HGET', order_key, 'status')
if not is_final(state, status) or (redis.call('HGET', order_key, 'attention') or '') ~= '' then
  return 0
end
local id = redis.call('HGET', order_key, 'id')
redis.call('DEL', order_key)
redis.call('HSET', archived_key, id, view)
redis.call('SREM', bucket_key, id)
for i = 4, #KEYS do
  redis.call('ZREM', KEYS[i], id)
end
return 1
