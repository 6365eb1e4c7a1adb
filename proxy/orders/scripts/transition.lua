-- Apply one event of the state table to one order: check the event against
-- the order's state and lease, write the fields, move the money the rule
-- calls for, queue the order for an operator, keep or drop the duplicate
-- fingerprint and update the working sets, all in one step; and, on one
-- server, move the order in its provider's due index in the same step.
--
-- Replies: {'ok', state before, record}; {'stale', state, record} (a status
-- read before another was applied); {'missing'}; {reason, state} when the
-- table or the lease refuses ('state', 'lease', 'leased'). A call ID among
-- the RECENT_CALLS last applied to the record is a retry of a call that
-- applied (its reply was lost), whatever was applied since: it answers the
-- record as it is and changes nothing.
--!include apply_event

-- KEYS: order, balance, ledger, totals, lease, fingerprint, the working sets
-- (as WORKING_SETS lists them), the open links; then the provider's due
-- index when ARGV[9] asks to move the order there.
-- ARGV[1..8]: event, lease token, lease ms, refund to, version, attention,
-- memo, call (apply_event says what each is).
local due_op = ARGV[9]  -- 'add' | 'rem' | '': how the order moves in its provider's due index
local due_member = ARGV[10]
local due_score = ARGV[11]
-- ARGV[12], ARGV[13], ...: fields and values to write

local reply, repeated = apply_event(KEYS, ARGV, 12)
if reply[1] == 'ok' and not repeated and due_op ~= '' then
  local due_key = KEYS[8 + #WORKING_SETS]
  if due_op == 'add' then
    redis.call('ZADD', due_key, due_score, due_member)
  else
    redis.call('ZREM', due_key, due_member)
  end
end
return reply
