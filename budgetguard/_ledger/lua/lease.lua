-- One step of the lease protocol, atomically (budgetguard RedisLedger.renew_lease; the steps are
-- documented on budgetguard._ledger._base.LeaseRenewal).
--
-- KEYS[1] holds, KEYS[2] expiry, KEYS[3] reserved (as in reserve.lua), KEYS[4] the all-time total
-- KEYS[5 .. 4+nb]          window buckets the flushed spend is added to
-- KEYS[5+nb .. ]           spend counters whose sum is the spend in the current window (cap check)
-- last KEY, when nrec > 0  the records stream
-- ARGV[1..8]  now, old lease id ('' for none), new lease id, new expiry, remember-until of finished
--             ids, bucket TTL seconds, stream cap, nb
-- ARGV[9..11] flushed spend added to the total (p, t, r), then p, t, r for each of the nb buckets
-- then keep, carry, want, target (p, t, r each), the caps p, t, r ('' = uncapped), nrec, and
-- each record as one JSON array of its field/value strings (one argument per record, not sixty:
-- a flush carries many records).
--
-- Returns {status, lease p, t, r} with status 1 (applied, want granted) or 2 (this new id was
-- already applied: a retry; nothing done), or {0, lease p, t, r, kind, reserved p, t, r, then
-- p, t, r of each counter} when want does not fit (kind 1 = usd, 2 = tokens, 3 = requests;
-- reserved excludes the old and the new lease). Amounts are computed as Lua numbers (exact below
-- 2^53) and stored as integer strings.

local holds, expiry, reserved, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, old_id, new_id = ARGV[1], ARGV[2], ARGV[3]
local nb = tonumber(ARGV[8])

local function int(x)
  return string.format('%d', x)
end

local function parse(held)
  local p, t, r = string.match(held, '^(%S+) (%S+) (%S+)$')
  return {tonumber(p), tonumber(t), tonumber(r)}
end

purge_expired(holds, expiry, reserved, now)

-- A retry of a renewal whose reply was lost: do nothing twice.
local existing = redis.call('HGET', holds, new_id)
if existing then
  if existing == 'done' then
    return {2, '0', '0', '0'}
  end
  local again = parse(existing)
  return {2, int(again[1]), int(again[2]), int(again[3])}
end

local old = {0, 0, 0}
local old_live = false
if old_id ~= '' then
  local held = redis.call('HGET', holds, old_id)
  if held and held ~= 'done' then
    old = parse(held)
    old_live = true
  end
  finish_hold(holds, expiry, reserved, old_id, ARGV[5])
end

-- Settle the flushed spend.
local function add(key, p, t, r)
  redis.call('HINCRBY', key, 'p', p)
  redis.call('HINCRBY', key, 't', t)
  redis.call('HINCRBY', key, 'r', r)
end
add(total, ARGV[9], ARGV[10], ARGV[11])
for i = 1, nb do
  local a = 12 + (i - 1) * 3
  add(KEYS[4 + i], ARGV[a], ARGV[a + 1], ARGV[a + 2])
  redis.call('EXPIRE', KEYS[4 + i], ARGV[6])
end

local base = 12 + nb * 3
local function vec(offset)
  return {tonumber(ARGV[base + offset]), tonumber(ARGV[base + offset + 1]), tonumber(ARGV[base + offset + 2])}
end
local keep, carry, want, target = vec(0), vec(3), vec(6), vec(9)
local caps = {ARGV[base + 12], ARGV[base + 13], ARGV[base + 14]}

local at = base + 15
local nrec = tonumber(ARGV[at])
at = at + 1
local last_counter = #KEYS
if nrec > 0 then
  last_counter = #KEYS - 1
  for j = at, at + nrec - 1 do
    redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[7], '*', unpack(cjson.decode(ARGV[j])))
  end
end

-- Headroom of the old lease that stays reserved needs no check: the store's reservations do not grow.
local credit = {0, 0, 0}
if old_live then
  for d = 1, 3 do
    credit[d] = math.max(0, math.min(carry[d], old[d] - keep[d]))
  end
end

local res = redis.call('HMGET', reserved, 'p', 't', 'r')
local used = {tonumber(res[1]) or 0, tonumber(res[2]) or 0, tonumber(res[3]) or 0}
local raw = {}
if caps[1] ~= '' or caps[2] ~= '' or caps[3] ~= '' then
  for i = 5 + nb, last_counter do
    local c = redis.call('HMGET', KEYS[i], 'p', 't', 'r')
    for d = 1, 3 do
      used[d] = used[d] + (tonumber(c[d]) or 0)
      table.insert(raw, c[d] or '0')
    end
  end
end

local kind = 0
local extra = {0, 0, 0}
for d = 1, 3 do
  local need = math.max(0, want[d] - credit[d])
  local top = math.max(need, target[d] - credit[d])
  if caps[d] == '' then
    extra[d] = top
  else
    local room = tonumber(caps[d]) - used[d] - keep[d] - credit[d]
    if need > 0 and need > room then
      if kind == 0 then
        kind = d
      end
    else
      extra[d] = math.max(need, math.min(top, math.max(room, 0)))
    end
  end
end
if kind ~= 0 then
  extra = {0, 0, 0}
end

local lease = {}
for d = 1, 3 do
  lease[d] = keep[d] + credit[d] + extra[d]
end
if lease[1] == 0 and lease[2] == 0 and lease[3] == 0 then
  -- Nothing to hold: remember the id all the same, so that a retry is recognised.
  redis.call('HSET', holds, new_id, 'done')
  redis.call('ZADD', expiry, ARGV[5], new_id)
else
  redis.call('HSET', holds, new_id, int(lease[1]) .. ' ' .. int(lease[2]) .. ' ' .. int(lease[3]))
  redis.call('ZADD', expiry, ARGV[4], new_id)
  redis.call('HINCRBY', reserved, 'p', int(lease[1]))
  redis.call('HINCRBY', reserved, 't', int(lease[2]))
  redis.call('HINCRBY', reserved, 'r', int(lease[3]))
end

local out = {kind == 0 and 1 or 0, int(lease[1]), int(lease[2]), int(lease[3])}
if kind ~= 0 then
  table.insert(out, kind)
  table.insert(out, res[1] or '0')
  table.insert(out, res[2] or '0')
  table.insert(out, res[3] or '0')
  for _, v in ipairs(raw) do
    table.insert(out, v)
  end
end
return out
