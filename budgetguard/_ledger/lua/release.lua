-- Drop a hold without spending anything (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- ARGV: hold id, remember-until
--
-- Returns 1 when a live hold was dropped, 0 otherwise (already finished, or expired).

-- Integers stay strings end to end so Redis adds them exactly (64-bit), not as Lua doubles.
local function negate(n)
  if n == '0' then return '0' end
  return '-' .. n
end

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

local held = redis.call('HGET', holds, id)
if held == 'done' then
  return 0
end
local dropped = 0
if held then
  local p, t, r = string.match(held, '^(%S+) (%S+) (%S+)$')
  redis.call('HINCRBY', reserved, 'p', negate(p))
  redis.call('HINCRBY', reserved, 't', negate(t))
  redis.call('HINCRBY', reserved, 'r', negate(r))
  dropped = 1
end
redis.call('HSET', holds, id, 'done')
redis.call('ZADD', expiry, ARGV[2], id)
return dropped
