-- Shared by every budgetguard RedisLedger script: the loader puts this file in front of each
-- script (Redis scripts cannot include one another), so hold bookkeeping is written once.
--
-- A hold is stored in the holds hash as "picos tokens requests" while held and "done" once
-- settled or released; the reserved hash keeps p, t, r = the sum of live holds.

-- Integers stay strings end to end so Redis adds them exactly (64-bit), not as Lua doubles.
local function negate(n)
  if n == '0' then return '0' end
  return '-' .. n
end

-- Take a held amount ("p t r") out of the reserved sums.
local function unreserve(reserved, held)
  local p, t, r = string.match(held, '^(%S+) (%S+) (%S+)$')
  redis.call('HINCRBY', reserved, 'p', negate(p))
  redis.call('HINCRBY', reserved, 't', negate(t))
  redis.call('HINCRBY', reserved, 'r', negate(r))
end

-- Holds past their expiry (a crashed or slow process) stop counting; done ids past their
-- remember-until time are forgotten.
local function purge_expired(holds, expiry, reserved, now)
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, id in ipairs(expired) do
    local held = redis.call('HGET', holds, id)
    if held and held ~= 'done' then
      unreserve(reserved, held)
    end
    redis.call('HDEL', holds, id)
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  end
end

-- Mark a hold finished; returns 'done' if it already was, else whether it was live.
local function finish_hold(holds, expiry, reserved, id, remember_until)
  local held = redis.call('HGET', holds, id)
  if held == 'done' then
    return 'done'
  end
  if held then
    unreserve(reserved, held)
  end
  redis.call('HSET', holds, id, 'done')
  redis.call('ZADD', expiry, remember_until, id)
  return held and 'live' or 'unknown'
end
