-- What a budget has spent in its current window and holds in flight (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- KEYS[4..] spend counters to sum
-- ARGV: now
--
-- Expired holds are purged first, as in reserve.lua. Returns {reserved p, t, r, then p, t, r of
-- each counter}, as stored, for the caller to add exactly.

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]

purge_expired(holds, expiry, reserved, now)

local res = redis.call('HMGET', reserved, 'p', 't', 'r')
local out = {res[1] or '0', res[2] or '0', res[3] or '0'}
for i = 4, #KEYS do
  local c = redis.call('HMGET', KEYS[i], 'p', 't', 'r')
  for d = 1, 3 do
    table.insert(out, c[d] or '0')
  end
end
return out
