-- What a budget has spent in its current window and holds in flight (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- KEYS[4..] spend counters to sum
-- ARGV: now
--
-- Expired holds are purged first, as in reserve.lua. Returns {reserved p, t, r, then p, t, r of
-- each counter}, as stored, for the caller to add exactly.

-- Integers stay strings end to end so Redis adds them exactly (64-bit), not as Lua doubles.
local function negate(n)
  if n == '0' then return '0' end
  return '-' .. n
end

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]

local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
for _, id in ipairs(expired) do
  local held = redis.call('HGET', holds, id)
  if held and held ~= 'done' then
    local p, t, r = string.match(held, '^(%S+) (%S+) (%S+)$')
    redis.call('HINCRBY', reserved, 'p', negate(p))
    redis.call('HINCRBY', reserved, 't', negate(t))
    redis.call('HINCRBY', reserved, 'r', negate(r))
  end
  redis.call('HDEL', holds, id)
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
end

local res = redis.call('HMGET', reserved, 'p', 't', 'r')
local out = {res[1] or '0', res[2] or '0', res[3] or '0'}
for i = 4, #KEYS do
  local c = redis.call('HMGET', KEYS[i], 'p', 't', 'r')
  for d = 1, 3 do
    table.insert(out, c[d] or '0')
  end
end
return out
