-- Replace a hold with what was actually spent, atomically (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- KEYS[4] the budget's all-time spend counter (hash p, t, r)
-- KEYS[5] the spend counter of the window bucket settled into, or '' for none
-- KEYS[6] the records stream, or '' when there is no record
-- ARGV: hold id, remember-until, picos, tokens, requests, bucket TTL seconds, stream cap,
--       then the record's field/value pairs
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
if KEYS[5] ~= '' then
  redis.call('HINCRBY', KEYS[5], 'p', ARGV[3])
  redis.call('HINCRBY', KEYS[5], 't', ARGV[4])
  redis.call('HINCRBY', KEYS[5], 'r', ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
if KEYS[6] ~= '' then
  local fields = {}
  for i = 8, #ARGV do
    table.insert(fields, ARGV[i])
  end
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
end
return 1
