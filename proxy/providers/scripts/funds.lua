-- What we know of one provider's balance (`funds_move` says how it moves,
-- and refuses an amount out of range).
--!include funds_move

local key = KEYS[1]  -- the provider's state hash

local op = ARGV[1]  -- read | spend | short
local amount = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local now = ARGV[4]

return funds_move(key, op, amount, threshold, now)
