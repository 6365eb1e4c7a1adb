-- Append one entry to the operators' audit log, if the chain's head is still
-- the one the entry was chained to (a compare-and-set): the entry and the new
-- head are written together or not at all. Both keys share the {audit} hash
-- tag, so this runs on Redis Cluster too.
--
-- Replies: {'ok', stream ID}; {'done'} when the head is already this entry's
-- (a retry whose first reply was lost); {'moved', head} when another entry
-- was appended first (the caller chains to the new head and tries again).

local head_key = KEYS[1]
local log_key = KEYS[2]

local expected = ARGV[1]  -- the head the entry is chained to; "" for an empty log
local head = ARGV[2]  -- the head once this entry is appended
-- ARGV[3], ARGV[4], ...: the entry's fields and values

local current = redis.call('GET', head_key) or ''
if current == head then
  return {'done'}
end
if current ~= expected then
  return {'moved', current}
end
local id = redis.call('XADD', log_key, '*', unpack(ARGV, 3))
redis.call('SET', head_key, head)
return {'ok', id}
