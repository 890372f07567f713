-- Drop a hold without spending anything (budgetguard RedisLedger).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua)
-- ARGV: hold id, remember-until
--
-- Returns 1 when a live hold was dropped, 0 otherwise (already finished, or expired).

local holds, expiry, reserved = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

if finish_hold(holds, expiry, reserved, id, ARGV[2]) == 'live' then
  return 1
end
return 0
