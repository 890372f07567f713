-- Replace a hold with what was actually spent, atomically (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- KEYS[4] the budget's all-time spend counter (hash p, t, r)
-- KEYS[5] the spend counter of the window bucket settled into, when ARGV[6] is not ''
-- then the records stream, when there is a record (ARGV[8] onwards)
-- ARGV: hold id, remember-until, picos, tokens, requests, bucket TTL seconds ('' for no window
--       bucket), stream cap, then the record's field/value pairs
--
-- Only keys that are used are passed (never a placeholder ''), so that in a Redis Cluster every
-- key of the call is in the budget's slot.
--
-- Returns 1 when settled, 0 when the hold was already settled or released (a repeat is ignored).
-- A hold that is no longer known (it expired) is settled all the same: the spend is real.

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

-- An empty id is spend charged without a reservation: every such settle counts.
if id ~= '' then
  if finish_hold(holds, expiry, reserved, id, ARGV[2]) == 'done' then
    return 0
  end
end

redis.call('HINCRBY', KEYS[4], 'p', ARGV[3])
redis.call('HINCRBY', KEYS[4], 't', ARGV[4])
redis.call('HINCRBY', KEYS[4], 'r', ARGV[5])
local next_key = 5
if ARGV[6] ~= '' then
  local bucket = KEYS[next_key]
  next_key = next_key + 1
  redis.call('HINCRBY', bucket, 'p', ARGV[3])
  redis.call('HINCRBY', bucket, 't', ARGV[4])
  redis.call('HINCRBY', bucket, 'r', ARGV[5])
  redis.call('EXPIRE', bucket, ARGV[6])
end
if #ARGV >= 8 then
  local fields = {}
  for i = 8, #ARGV do
    table.insert(fields, ARGV[i])
  end
  redis.call('XADD', KEYS[next_key], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
end
return 1
