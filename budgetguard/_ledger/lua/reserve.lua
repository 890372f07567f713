-- Reserve an amount against a budget's caps, atomically (budgetguard RedisLedger).
--
-- KEYS[1]  holds    hash: hold id -> "picos tokens requests" while held, "done" once finished
-- KEYS[2]  expiry   sorted set: hold id -> when it expires (or, once done, when it is forgotten)
-- KEYS[3]  reserved hash: p, t, r = the sum of live holds
-- KEYS[4..] spend counters (hashes with p, t, r) whose sum is the spend in the current window
-- ARGV: now, hold id, expires at, picos, tokens, requests, limit picos, limit tokens,
--       limit requests (an empty limit is uncapped)
--
-- Returns {1} when the hold is granted, or {0, kind, reserved p, t, r, then p, t, r of each
-- counter} when a cap would be exceeded (kind 1 = usd, 2 = tokens, 3 = requests). Counters are
-- returned as stored so the caller adds them exactly; the comparison here uses Lua numbers,
-- exact below 2^53 picodollars (about $9,007) and within a few picodollars above that.

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]

purge_expired(holds, expiry, reserved, now)

-- A retried call (its reply was lost) must not reserve twice.
if redis.call('HEXISTS', holds, ARGV[2]) == 1 then
  return {1}
end

local res = redis.call('HMGET', reserved, 'p', 't', 'r')
local used = {tonumber(res[1]) or 0, tonumber(res[2]) or 0, tonumber(res[3]) or 0}
local raw = {}
local capped = ARGV[7] ~= '' or ARGV[8] ~= '' or ARGV[9] ~= ''
if capped then
  for i = 4, #KEYS do
    local c = redis.call('HMGET', KEYS[i], 'p', 't', 'r')
    for d = 1, 3 do
      used[d] = used[d] + (tonumber(c[d]) or 0)
      table.insert(raw, c[d] or '0')
    end
  end
end

for d = 1, 3 do
  local limit = ARGV[6 + d]
  if limit ~= '' and used[d] + tonumber(ARGV[3 + d]) > tonumber(limit) then
    local out = {0, d, res[1] or '0', res[2] or '0', res[3] or '0'}
    for _, v in ipairs(raw) do
      table.insert(out, v)
    end
    return out
  end
end

redis.call('HSET', holds, ARGV[2], ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
redis.call('ZADD', expiry, ARGV[3], ARGV[2])
redis.call('HINCRBY', reserved, 'p', ARGV[4])
redis.call('HINCRBY', reserved, 't', ARGV[5])
redis.call('HINCRBY', reserved, 'r', ARGV[6])
return {1}
