-- The order's states, rendered in from proxy/orders/states.py: no script
-- spells a state, a status or a working set's rule by hand.

-- state -> (a function returning) event -> rule {target, refund, duplicate, lease, write, attention}
local TABLE = {{ TABLE }}
-- Upstream statuses after which an order changes no more.
local FINAL_STATUSES = {{ FINAL_STATUSES }}
-- The states of an order being placed: its task holds a lease.
local IN_FLIGHT = {{ IN_FLIGHT }}
local PLACED = {{ PLACED }}
-- States after which nothing happens to an order, whatever its upstream status.
local FINAL_STATES = {{ FINAL_STATES }}
-- A rule's (or a caller's) attention reason that clears the order's note.
local CLEAR = {{ CLEAR }}
-- What follows this in an attention reason is detail that may change from read to read.
local DETAIL = {{ DETAIL }}
-- The prefix of the transition counters in a client's totals.
local COUNTED = {{ COUNTED }}
-- The working sets, in the order a script is given their keys:
-- {name, meaning, states, open_only, attention}.
local WORKING_SETS = {{ WORKING_SETS }}

local function is_final(state, status)
  return FINAL_STATES[state] == true or (state == PLACED and FINAL_STATUSES[status] == true)
end

local function belongs(set, state, status, attention)
  if set.attention then
    return attention ~= ''
  end
  return set.states[state] == true and not (set.open_only and FINAL_STATUSES[status])
end

-- An attention reason without its detail.
local function headline(reason)
  local at = string.find(reason, DETAIL, 1, true)
  if at then
    return string.sub(reason, 1, at - 1)
  end
  return reason
end
