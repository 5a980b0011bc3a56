-- One admission decision of RedisLimiter, atomic on the Redis server (see _redis_limiter.py).
--
-- Time is the Redis server's (TIME), in integer microseconds, unless ARGV[1] overrides it
-- (tests on a controlled clock). Every limit has a state hash and a log: a sorted set of
-- started (or reserved) claims, scored by start time, member "<units>:<id>".
--
-- KEYS: [1] the "seen" marker, then per configured limit i: [2i] state, [2i+1] log.
-- ARGV: now_override | "", n_limits, cold_start (1/0), seen_ttl_ms,
--       n_limits x (limit, per_us, span_us),
--       n_refunds, n_refunds x (limit index, member),
--       n_penalties, n_penalties x (limit index, units),
--       n_claims, n_claims x (limit index, units, member)
-- Returns {delay_us, reserved (0: every claim recorded now; i: only claim i, reserved at
--          now + delay_us), fresh (1: the marker was missing), now_us}.

local PROBE_PER_WINDOW = 0.05
local ESTIMATE_HEADROOM = 0.95
local EARLY_FRACTION = 0.5
local DECREASE_FACTOR = 0.7
local FLOOR_FRACTION = 0.1
local HOLD_WINDOWS = 8
local MAX_HOLD_WINDOWS = 80
local CHUNK = 128

-- Lua formats numbers with 14 significant digits; microsecond times need 16.
local function num(x)
  return string.format('%.17g', x)
end

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local n_limits = tonumber(ARGV[2])
local cold_start = ARGV[3] == '1'
local seen_ttl = tonumber(ARGV[4])
local pos = 5
local limits = {}
for i = 1, n_limits do
  limits[i] = {
    limit = tonumber(ARGV[pos]), per = tonumber(ARGV[pos + 1]), span = tonumber(ARGV[pos + 2]),
    state = KEYS[2 * i], log = KEYS[2 * i + 1], loaded = false,
  }
  pos = pos + 3
end

-- A Redis that has no marker never saw this app key, or lost its data (a restart without
-- persistence, a flush, a failover): sends of the last window are unknown, so with
-- cold_start nothing starts before a whole window has passed.
local fresh = redis.call('EXISTS', KEYS[1]) == 0
redis.call('SET', KEYS[1], num(now), 'PX', seen_ttl)

local function load(l)
  if l.loaded then return end
  l.loaded = true
  local fields = redis.call('HMGET', l.state, 'used', 'last', 'eff', 'hold', 'hold_windows',
    'decreased')
  l.used = tonumber(fields[1]) or 0
  l.last = tonumber(fields[2]) or 0
  l.eff = tonumber(fields[3]) or l.limit
  l.hold = tonumber(fields[4]) or 0
  l.hold_windows = tonumber(fields[5]) or HOLD_WINDOWS
  l.decreased = tonumber(fields[6]) or -1e18
  if fresh and cold_start and l.last < now + l.span then
    l.last = now + l.span
  end
  -- Forget what left the window.
  local expired = redis.call('ZRANGEBYSCORE', l.log, '-inf', num(now - l.span))
  if #expired > 0 then
    for _, member in ipairs(expired) do
      l.used = l.used - tonumber(string.match(member, '^(%d+):'))
    end
    redis.call('ZREMRANGEBYSCORE', l.log, '-inf', num(now - l.span))
  end
  -- The effective limit, grown back by PROBE_PER_WINDOW of the limit per window since the hold.
  l.effective = l.eff
  if l.eff < l.limit and now > l.hold then
    l.effective = math.min(l.limit, l.eff + (now - l.hold) / l.per * PROBE_PER_WINDOW * l.limit)
  end
end

local function save(l)
  redis.call('HSET', l.state, 'used', num(l.used), 'last', num(l.last), 'eff', num(l.eff),
    'hold', num(l.hold), 'hold_windows', num(l.hold_windows), 'decreased', num(l.decreased))
  -- Everything expires by itself once the window (and any hold) is over.
  local horizon = math.max(l.last, l.hold, now) - now + 3 * l.span
  local ttl_ms = num(math.ceil(horizon / 1000) + 1000)
  redis.call('PEXPIRE', l.state, ttl_ms)
  redis.call('PEXPIRE', l.log, ttl_ms)
end

if fresh then
  for i = 1, n_limits do load(limits[i]) end
end

-- Refunds: claims recorded for requests that never reached the server.
local n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  local member = ARGV[pos + 1]
  pos = pos + 2
  load(l)
  if redis.call('ZREM', l.log, member) == 1 then
    l.used = l.used - tonumber(string.match(member, '^(%d+):'))
  end
end

-- Penalties: the service refused a request for exceeding this limit. What it accepted in
-- the current window (started claims, not reservations) is its limit; keep 95% of that.
n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  pos = pos + 2
  load(l)
  local reserved = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', l.log, '(' .. num(now), '+inf')) do
    reserved = reserved + tonumber(string.match(member, '^(%d+):'))
  end
  local accepted = l.used - reserved
  local probing = now > l.hold and l.effective > l.eff
  local estimate = l.effective
  if accepted >= EARLY_FRACTION * l.effective then
    estimate = ESTIMATE_HEADROOM * accepted
  elseif now - l.decreased >= l.per then
    estimate = DECREASE_FACTOR * l.effective
  end
  if probing then
    l.hold_windows = math.min(MAX_HOLD_WINDOWS, l.hold_windows * 2)
  end
  l.eff = math.max(FLOOR_FRACTION * l.limit, math.min(estimate, l.effective))
  l.effective = l.eff
  l.hold = now + l.hold_windows * l.per
  l.decreased = now
end

-- The earliest start, not before the last reservation (first come, first served) nor now,
-- at which the log's units in the window plus this claim fit the effective limit.
local function earliest(l, units)
  local capacity = math.max(math.floor(l.effective), units)
  local t = math.max(now, l.last)
  local total = l.used
  local start = 0
  while total + units > capacity do
    local chunk = redis.call('ZRANGE', l.log, start, start + CHUNK - 1, 'WITHSCORES')
    if #chunk == 0 then break end
    for j = 1, #chunk, 2 do
      if total + units <= capacity then break end
      local started = tonumber(chunk[j + 1])
      if started + l.span > t then t = started + l.span end
      total = total - tonumber(string.match(chunk[j], '^(%d+):'))
    end
    start = start + CHUNK
  end
  return t
end

n = tonumber(ARGV[pos]); pos = pos + 1
local claims = {}
for k = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  claims[k] = {l = l, units = tonumber(ARGV[pos + 1]), member = ARGV[pos + 2]}
  pos = pos + 3
  load(l)
end

local function record(claim, at)
  local l = claim.l
  redis.call('ZADD', l.log, num(at), claim.member)
  l.used = l.used + claim.units
  if at > l.last then l.last = at end
end

local function finish(delay, reserved)
  for i = 1, n_limits do
    if limits[i].loaded then save(limits[i]) end
  end
  return {delay, reserved, fresh and 1 or 0, now}
end

for k, claim in ipairs(claims) do
  local at = earliest(claim.l, claim.units)
  if at > now then
    -- Reserve this claim alone; the caller comes back for the others at that time.
    record(claim, at)
    return finish(at - now, k)
  end
end
for _, claim in ipairs(claims) do
  record(claim, now)
end
return finish(0, 0)
