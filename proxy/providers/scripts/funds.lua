-- What we know of one provider's balance (`funds_move` says how it moves).
--!include funds_move

local key = KEYS[1]  -- the provider's state hash

local op = ARGV[1]  -- read | spend | short
local amount = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local now = ARGV[4]

-- Exact up to 2^53 minor units (funds.py clamps a reading there): refuse beyond.
if not amount or math.abs(amount) > 9007199254740991 or not threshold then
  return redis.error_reply('funds amount out of range: ' .. tostring(ARGV[2]))
end
return funds_move(key, op, amount, threshold, now)
