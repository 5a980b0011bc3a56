-- One admission decision of RedisLimiter, atomic on the Redis server (see _redis_limiter.py).
--
-- Time is the Redis server's (TIME), in integer microseconds, unless ARGV[1] overrides it
-- (tests on a controlled clock). Every limit has a state hash, a log (a sorted set of the
-- ids of started or reserved claims, scored by start time), the claims that left the
-- window during the last window (same form), and the units of each id.
--
-- KEYS: [1] the "seen" marker, then per configured limit i: [6i-4] state, [6i-3] log,
--       [6i-2] recent, [6i-1] units, [6i] flight (ids not answered yet), [6i+1] held
--       (unanswered past their window, scored by start); last, the floor of forward offsets.
-- ARGV: now_override | "", n_limits, cold_start (1/0), seen_ttl_ms, bulk_headroom,
--       bulk_min_share, answered_ago (microseconds since the caller's latest answer, or -1),
--       n_limits x (limit, per_us, span_us),
--       n_flying, n_flying x (limit index, id): claims whose requests are on their way,
--       n_observations, n_observations x (forward offset (us), microseconds since),
--       n_reports, n_reports x (limit index, id, new anchor (microseconds, this clock), or
--       0: answered, the anchor stays; 1 if the anchor may move earlier (the first floor's
--       move, _window_rules.moved_anchor), else 0),
--       n_refunds, n_refunds x (limit index, id),
--       n_penalties, n_penalties x (limit index, units, microseconds since the refusal),
--       n_claims, again (1/0), bulk (1/0), n_claims x (limit index, units, id, need)
-- Interactive and bulk claims queue apart (`last`, `last_i`); bulk claims always leave
-- bulk_headroom of every limit free; interactive ids start with "i".
-- With again=1 the claims were recorded by an earlier call (a reservation, now due): they
-- start now if they fit beside the claims that started, else wait in place for room.
-- A claim may start once `need` of its `units` fit, and takes as many as fit then.
-- Every claim of a request is recorded at one time, the earliest at which all fit:
-- now, or a reservation the caller sleeps until.
-- Returns {delay_us, fresh, now_us, granted..., binding, floor current, since, previous}: the
-- request may start in delay_us, with these units granted to each claim; fresh is 1 when the
-- marker was missing; binding is the position of the claim left with the least room (0
-- without claims); the floor is the shared DelayFloor ('' for an infinite field).

-- The constants of the window rules (EARLY_FRACTION, ..., PROBE_PER_WINDOW) are prepended
-- when the script is loaded, from _window_rules.py: one copy for both runtimes.
local CHUNK = 128
local BATCH = 1000  -- ids per HMGET/HDEL (Lua's unpack has a stack limit)

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
local headroom = tonumber(ARGV[5])
local min_share = tonumber(ARGV[6])
local answered_ago = tonumber(ARGV[7])
if answered_ago < 0 then answered_ago = math.huge end  -- no answer yet
local pos = 8
local bulk = false  -- the priority of this request's claims (set with them, below)
local limits = {}
for i = 1, n_limits do
  limits[i] = {
    limit = tonumber(ARGV[pos]), per = tonumber(ARGV[pos + 1]), base_span = tonumber(ARGV[pos + 2]),
    state = KEYS[6 * i - 4], log = KEYS[6 * i - 3], recent = KEYS[6 * i - 2],
    units = KEYS[6 * i - 1], flight = KEYS[6 * i], held = KEYS[6 * i + 1],
    loaded = false,
  }
  pos = pos + 3
end

-- Claims whose requests are on their way stay in their windows until their answers
-- (Permit.sending): marked before anything can expire them.
do
  local n_flying = tonumber(ARGV[pos]); pos = pos + 1
  for _ = 1, n_flying do
    redis.call('SADD', limits[tonumber(ARGV[pos])].flight, ARGV[pos + 1])
    pos = pos + 2
  end
end

-- A Redis that has no marker never saw this app key, or lost its data (a restart without
-- persistence, a flush, a failover): sends of the last window are unknown, so with
-- cold_start nothing starts before a whole window has passed.
local fresh = redis.call('EXISTS', KEYS[1]) == 0
redis.call('SET', KEYS[1], num(now), 'PX', seen_ttl)

-- The units of each of `ids` (a list), in order.
local function units_of(l, ids)
  local result = {}
  for first = 1, #ids, BATCH do
    local last = math.min(first + BATCH - 1, #ids)
    local values = redis.call('HMGET', l.units, unpack(ids, first, last))
    for j = 1, #values do
      result[#result + 1] = tonumber(values[j]) or 0
    end
  end
  return result
end

local function sum(values)
  local total = 0
  for _, value in ipairs(values) do total = total + value end
  return total
end

local function forget(l, ids)
  for first = 1, #ids, BATCH do
    redis.call('HDEL', l.units, unpack(ids, first, math.min(first + BATCH - 1, #ids)))
  end
end

-- _window_rules.effective_limit: the effective limit at time t, grown back by
-- PROBE_PER_WINDOW of the limit per window since the hold ended.
local function effective_at(l, t)
  if l.eff < l.limit and t > l.hold then
    local grown = (t - l.hold) / l.per * PROBE_PER_WINDOW * l.limit
    return math.min(l.limit, l.eff + grown)
  end
  return l.eff
end

local function load(l)
  if l.loaded then return end
  l.loaded = true
  local fields = redis.call('HMGET', l.state, 'used', 'last', 'eff', 'hold', 'hold_windows',
    'decreased', 'extra', 'last_i', 'cold')
  l.used = tonumber(fields[1]) or 0
  l.last = tonumber(fields[2]) or 0
  l.eff = tonumber(fields[3]) or l.limit
  l.hold = tonumber(fields[4]) or 0
  l.hold_windows = tonumber(fields[5]) or HOLD_WINDOWS
  l.decreased = tonumber(fields[6]) or -1e18
  l.extra = tonumber(fields[7]) or 0
  l.last_i = tonumber(fields[8]) or 0
  l.cold = tonumber(fields[9]) or 0  -- nothing starts before it (a cold start's window)
  l.span = l.base_span + l.extra
  if fresh and cold_start then l.cold = now + l.span end
  if fresh and cold_start and l.last < now + l.span then
    l.last = now + l.span
  end
  if fresh and cold_start and l.last_i < now + l.span then
    l.last_i = now + l.span
  end
  -- Move what left the window to `recent` (what is unanswered to `held`, still counted);
  -- forget what left it a window ago.
  local expired = redis.call('ZRANGEBYSCORE', l.log, '-inf', num(now - l.span), 'WITHSCORES')
  if #expired > 0 then
    local ids, gone_ids, held_args = {}, {}, {}
    for j = 1, #expired, 2 do ids[#ids + 1] = expired[j] end
    local flying = {}
    for first = 1, #ids, BATCH do
      local answer = redis.call('SMISMEMBER', l.flight, unpack(ids, first, math.min(first + BATCH - 1, #ids)))
      for j = 1, #answer do flying[first + j - 1] = answer[j] == 1 end
    end
    local args = {}
    for j = 1, #ids do
      if flying[j] then
        held_args[#held_args + 1] = expired[2 * j]
        held_args[#held_args + 1] = ids[j]
      else
        gone_ids[#gone_ids + 1] = ids[j]
        args[#args + 1] = expired[2 * j]
        args[#args + 1] = ids[j]
      end
    end
    l.used = l.used - sum(units_of(l, gone_ids))
    for first = 1, #args, 2 * BATCH do
      redis.call('ZADD', l.recent, unpack(args, first, math.min(first + 2 * BATCH - 1, #args)))
    end
    for first = 1, #held_args, 2 * BATCH do
      redis.call('ZADD', l.held, unpack(held_args, first, math.min(first + 2 * BATCH - 1, #held_args)))
    end
    redis.call('ZREMRANGEBYSCORE', l.log, '-inf', num(now - l.span))
  end
  -- A request that never ends must not hold its window forever (UNANSWERED_HOLD).
  local stale = redis.call('ZRANGEBYSCORE', l.held, '-inf', num(now - l.span - UNANSWERED_HOLD * 1000000))
  if #stale > 0 then
    l.used = l.used - sum(units_of(l, stale))
    forget(l, stale)
    for first = 1, #stale, BATCH do
      redis.call('SREM', l.flight, unpack(stale, first, math.min(first + BATCH - 1, #stale)))
    end
    redis.call('ZREMRANGEBYSCORE', l.held, '-inf', num(now - l.span - UNANSWERED_HOLD * 1000000))
  end
  local gone = redis.call('ZRANGEBYSCORE', l.recent, '-inf', num(now - 2 * l.span))
  if #gone > 0 then
    forget(l, gone)
    redis.call('ZREMRANGEBYSCORE', l.recent, '-inf', num(now - 2 * l.span))
  end
  -- What is held (unanswered past its window) is in every window until its answer.
  local held_ids = redis.call('ZRANGE', l.held, 0, -1)
  local held_units = units_of(l, held_ids)
  l.held_units, l.held_interactive = sum(held_units), 0
  for j = 1, #held_ids do
    if string.sub(held_ids[j], 1, 1) == 'i' then
      l.held_interactive = l.held_interactive + held_units[j]
    end
  end
  l.effective = effective_at(l, now)
end

local function save(l)
  redis.call('HSET', l.state, 'used', num(l.used), 'last', num(l.last), 'eff', num(l.eff),
    'hold', num(l.hold), 'hold_windows', num(l.hold_windows), 'decreased', num(l.decreased),
    'extra', num(l.extra), 'last_i', num(l.last_i), 'cold', num(l.cold))
  -- Everything expires by itself once the window (and any hold) is over.
  local horizon = math.max(l.last, l.last_i, l.hold, now) - now + 3 * l.span
  local ttl_ms = num(math.ceil(horizon / 1000) + 1000)
  redis.call('PEXPIRE', l.state, ttl_ms)
  redis.call('PEXPIRE', l.log, ttl_ms)
  redis.call('PEXPIRE', l.recent, ttl_ms)
  redis.call('PEXPIRE', l.units, ttl_ms)
  redis.call('PEXPIRE', l.flight, ttl_ms)
  redis.call('PEXPIRE', l.held, ttl_ms)
end

if fresh then
  for i = 1, n_limits do load(limits[i]) end
end

-- Take claim `id` out of the log (a refund, or a reservation decided again).
local function unrecord(l, id)
  local units = tonumber(redis.call('HGET', l.units, id))
  redis.call('SREM', l.flight, id)
  if units and redis.call('ZREM', l.log, id) == 1 then
    l.used = l.used - units  -- only while counted: what left was subtracted then
  elseif units and redis.call('ZREM', l.held, id) == 1 then
    l.used = l.used - units
    l.held_units = l.held_units - units
    if string.sub(id, 1, 1) == 'i' then l.held_interactive = l.held_interactive - units end
  end
end

-- The floor of forward offsets of warm answers, shared by every process
-- (_window_rules.DelayFloor, rotated_floor and observe_floor, line by line): each process
-- charges its claims against the earliest that any of them can be counted.
local function fin(x)
  if x == math.huge or x == -math.huge then return '' end
  return num(x)
end
local floor_key = KEYS[6 * n_limits + 2]
local bucket = FLOOR_BUCKET * 1000000
local stored = redis.call('HMGET', floor_key, 'current', 'since', 'previous')
local floor = {
  current = tonumber(stored[1]) or math.huge,
  since = tonumber(stored[2]) or -math.huge,
  previous = tonumber(stored[3]) or math.huge,
}
local n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local offset = tonumber(ARGV[pos])
  local at = now - tonumber(ARGV[pos + 1])
  pos = pos + 2
  if at - floor.since >= bucket then
    if at - floor.since < 2 * bucket then floor.previous = floor.current
    else floor.previous = math.huge end
    floor.current, floor.since = math.huge, at
  end
  if offset < floor.current then floor.current = offset end
end
-- _window_rules.floor_value at now: whether a floor is in force.
local floored
if now - floor.since < bucket then floored = math.min(floor.current, floor.previous) < math.huge
elseif now - floor.since < 2 * bucket then floored = floor.current < math.huge
else floored = false end
if n > 0 then
  redis.call('HSET', floor_key, 'current', fin(floor.current), 'since', fin(floor.since),
    'previous', fin(floor.previous))
  redis.call('PEXPIRE', floor_key, num(math.ceil(3 * bucket / 1000)))
end

-- Late answers (_window_rules.settled_anchor, applied by the caller): the claim leaves
-- the window a span after its new anchor, not after its start.
n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  local id = ARGV[pos + 1]
  -- Never after now: the caller's answer time is an upper bound on its own clock (it
  -- counts this call's way to Redis), and the answer came before this call. A started
  -- claim is never anchored in the future, where only reservations are (due_at).
  local done = math.min(tonumber(ARGV[pos + 2]), now)
  local earlier = ARGV[pos + 3] == '1'
  pos = pos + 4
  load(l)
  redis.call('SREM', l.flight, id)
  local held = redis.call('ZSCORE', l.held, id)
  if held then
    -- Answered after its window, held until now: back in the log at its anchor, from
    -- where the next decision lets it leave (as in memory).
    redis.call('ZREM', l.held, id)
    local units = tonumber(redis.call('HGET', l.units, id)) or 0
    l.held_units = l.held_units - units
    if string.sub(id, 1, 1) == 'i' then l.held_interactive = l.held_interactive - units end
    local anchor = math.max(done, tonumber(held))
    if anchor <= now - l.span then  -- it left its window: as load() does
      l.used = l.used - units
      redis.call('ZADD', l.recent, num(anchor), id)
    else
      redis.call('ZADD', l.log, num(anchor), id)
    end
  else
    -- Not in the log: refunded (or its units are gone).
    local score = redis.call('ZSCORE', l.log, id)
    if score and done > tonumber(score) then
      redis.call('ZADD', l.log, num(done), id)
    elseif score and earlier and done < tonumber(score) then
      if done <= now - l.span then  -- moved out of its window: as load() does
        redis.call('ZREM', l.log, id)
        l.used = l.used - (tonumber(redis.call('HGET', l.units, id)) or 0)
        redis.call('ZADD', l.recent, num(done), id)
      else
        redis.call('ZADD', l.log, num(done), id)
      end
    end
  end
end

-- Refunds: claims recorded for requests that the server did not count.
n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  local id = ARGV[pos + 1]
  pos = pos + 2
  load(l)
  unrecord(l, id)
  redis.call('HDEL', l.units, id)
end

-- Units of the claims (started, reserved or gone) that started in (lo, hi].
local function units_between(l, lo, hi)
  local total = 0
  for _, key in ipairs({l.log, l.recent}) do
    total = total + sum(units_of(l, redis.call('ZRANGEBYSCORE', key, '(' .. num(lo), num(hi))))
  end
  return total
end

-- Penalties: the service refused a request for exceeding this limit, `ago` microseconds
-- ago. Judged as of the refusal, from what the window held then and what had just left it:
-- _window_rules.after_refusal, line by line.
n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  local units = tonumber(ARGV[pos + 1])
  local at = now - tonumber(ARGV[pos + 2])
  pos = pos + 3
  load(l)
  local accepted = units_between(l, at - l.span, at)
  local recent = units_between(l, at - l.span - JITTER_TOLERANCE * l.per, at - l.span)
  local effective = effective_at(l, at)
  local probing = at > l.hold and effective > l.eff
  if not probing and accepted + recent + units >= math.floor(effective) then
    l.extra = math.min(MAX_EXTRA_MARGIN * l.per, math.max(2 * l.extra, MIN_EXTRA_MARGIN * l.per))
    l.span = l.base_span + l.extra
  else
    local estimate = effective
    if accepted >= EARLY_FRACTION * effective then
      estimate = ESTIMATE_HEADROOM * accepted
    elseif at - l.decreased >= l.per then
      estimate = DECREASE_FACTOR * effective
    end
    if probing then
      l.hold_windows = math.min(MAX_HOLD_WINDOWS, l.hold_windows * 2)
    end
    local floor = math.max(1, FLOOR_FRACTION * l.limit)
    l.eff = math.max(floor, math.min(estimate, effective))
    l.hold = at + l.hold_windows * l.per
    l.decreased = at
  end
  l.effective = effective_at(l, now)
end

-- The units the window may hold for this priority: bulk leaves the headroom
-- (_rates.bulk_limit).
local function limit_of(l)
  local limit = math.floor(l.effective)
  if bulk then
    limit = limit - math.floor(headroom * limit)
  end
  return limit
end

-- _window_rules.kept_for_a_floor: the unit a cold window keeps back for the first floor.
local function kept_of(l)
  if floored or answered_ago < l.span or limit_of(l) <= 1 then return 0 end
  if l.flying == nil then l.flying = redis.call('SCARD', l.flight) end
  if l.flying > 0 then return 1 end
  return 0
end

-- The units a claim of `need` may fill the window to (a cold one keeps a unit back).
local function capacity_of(l, need)
  return math.max(limit_of(l) - kept_of(l), need)
end

-- The earliest start, not before `from`, nor the last reservation that this limit
-- bound (first come, first served), at which `need` more units fit the effective limit;
-- and how many fit then. Every recorded claim counts, including reservations after
-- that time, so a claim placed before a reservation leaves it its room (whether a
-- reservation may start is decided again when it is due: due_at).
local function earliest_walk(l, need, from)
  local capacity = capacity_of(l, need)
  local t = from
  if bulk then t = math.max(from, l.last) else t = math.max(from, l.last_i) end
  local total = l.used
  if t == now and total + need <= capacity then
    return t, capacity - total  -- load() already dropped what left the window by now
  end
  local start = 0
  while true do
    local chunk = redis.call('ZRANGE', l.log, start, start + CHUNK - 1, 'WITHSCORES')
    if #chunk == 0 then break end
    local ids = {}
    for j = 1, #chunk, 2 do ids[#ids + 1] = chunk[j] end
    local units = units_of(l, ids)
    for j = 1, #ids do
      local leaves = tonumber(chunk[2 * j]) + l.span
      if leaves > t then
        if total + need <= capacity then
          return t, capacity - total
        end
        t = leaves  -- wait for this claim to leave the window
      end
      total = total - units[j]
    end
    start = start + CHUNK
  end
  if total + need > capacity then
    -- What is left is held, unanswered: look again shortly (HELD_POLL).
    t = math.max(t, now + HELD_POLL * l.per)
  end
  return t, capacity - total
end

-- earliest_walk, unless only the unit kept for the first floor stops the claim now: an
-- answer may release it at any moment, so look again shortly (HELD_POLL), as in memory.
local function earliest(l, need, from)
  local t, room = earliest_walk(l, need, from)
  if t > now and kept_of(l) > 0 then
    local start = math.max(from, l.last_i)
    if bulk then start = math.max(from, l.last) end
    local free, poll = math.max(limit_of(l), need), now + HELD_POLL * l.per
    if start == now and poll < t and l.used + need <= free then return poll, free - l.used end
  end
  return t, room
end

n = tonumber(ARGV[pos])
local again = ARGV[pos + 1] == '1'
bulk = ARGV[pos + 2] == '1'
pos = pos + 3
local claims = {}
for k = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  claims[k] = {
    l = l, units = tonumber(ARGV[pos + 1]), id = ARGV[pos + 2], need = tonumber(ARGV[pos + 3]),
  }
  pos = pos + 4
  load(l)
  -- A reservation decided again, or a call retried after its reply was lost.
  unrecord(l, claims[k].id)
end

-- A claim that may shrink waits for all its units instead when they fit within
-- SHRINK_WAIT of per after its `need` does (its rest would leave a round trip later).
-- Here at its first call, in the queue; a reservation that is due decides it again in
-- place (below), as a waiter in memory decides it again at each wake-up.
for _, claim in ipairs(claims) do
  if not again and claim.need < claim.units and claim.units <= capacity_of(claim.l, claim.need) then
    local t_need = earliest(claim.l, claim.need, now)
    local t_all = earliest(claim.l, claim.units, now)
    if t_all - t_need <= SHRINK_WAIT * claim.l.per then claim.need = claim.units end
  end
end

-- Record a claim at `at`. Only a limit that decided the time keeps it as its "last": the
-- call-rate claim of a user send waiting for recipient quota must not hold group sends.
local function record(claim, at, room, binding)
  local l = claim.l
  local granted = math.min(claim.units, room)
  redis.call('ZADD', l.log, num(at), claim.id)
  redis.call('HSET', l.units, claim.id, num(granted))
  l.used = l.used + granted
  if binding and bulk and at > l.last then l.last = at end
  if binding and not bulk and at > l.last_i then l.last_i = at end
  return granted
end

-- What the window that ends now holds: what is held and every claim anchored by now
-- (started, or a reservation that is due), and the interactive units among them. Later
-- reservations are not in it: each decides again when it is due, and counts what started
-- before it (due_at, below).
local function inside_now(l)
  local ids = redis.call('ZRANGEBYSCORE', l.log, '-inf', num(now))
  local units = units_of(l, ids)
  local inside, interactive = l.held_units, l.held_interactive
  for j = 1, #ids do
    inside = inside + units[j]
    if string.sub(ids[j], 1, 1) == 'i' then interactive = interactive + units[j] end
  end
  return inside, interactive
end

-- Whether an interactive request can start now, as in memory: the window that ends now
-- has room for every claim (filling `times` and `rooms`); and whether it is past its share
-- and must queue behind bulk work: while bulk work waits, at most 1 - bulk_min_share of
-- the window is interactive.
local start = now
local times, rooms = {}, {}
local function start_now()
  for k, claim in ipairs(claims) do
    local l = claim.l
    local inside, interactive_units = inside_now(l)
    if l.last > now then  -- bulk work is waiting
      local share = math.max(math.floor((1 - min_share) * math.floor(l.effective)), claim.need)
      if interactive_units + claim.need > share then return false, true end
    end
    local room = capacity_of(l, claim.need) - inside
    -- Interactive requests queued before it (or a cold start's wait) go first.
    if room < claim.need or l.last_i > now then return false, false end
    times[k], rooms[k] = now, room
  end
  return true, false
end

-- A reservation that is due keeps its place: as a waiter in memory, it starts once it
-- fits the window that ends at its start, beside the claims that started (never anchored
-- after now: see the reports above) and the reservations before it, whatever was reserved
-- after it: those decide again when they are due, and count it then. Anchors moved by
-- answers since it was placed make it wait for them to leave (a few milliseconds), not for
-- the end of the queue, which pushed every later reservation on, window after window (the
-- shared stall). After a cold start (Redis lost the window: `cold`) it waits the whole
-- window like every claim.
local function due_walk(l, need, all)
  local capacity = capacity_of(l, need)
  local entries = redis.call('ZRANGE', l.log, 0, -1, 'WITHSCORES')
  local ids = {}
  for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
  local units = units_of(l, ids)
  -- The window that ends at t holds what is held and the claims anchored in (t - span, t].
  local inside, entering = l.held_units, 1
  while entering <= #ids and tonumber(entries[2 * entering]) <= now do
    inside = inside + units[entering]
    entering = entering + 1
  end
  -- With `all` (at least `need`), the same walk also finds when all of them fit.
  local t, at, room = now, nil, nil
  for j = 0, #ids do
    if j > 0 then
      t = tonumber(entries[2 * j]) + l.span  -- claim j leaves (the log is in anchor order)
      while entering <= #ids and tonumber(entries[2 * entering]) <= t do
        inside = inside + units[entering]
        entering = entering + 1
      end
      inside = inside - units[j]
    end
    if t >= now then
      if not at and inside + need <= capacity then
        at, room = math.max(t, l.cold), capacity - inside
        if not all then return at, room end
      end
      if at and inside + all <= capacity then
        return at, room, math.max(t, l.cold), capacity - inside
      end
    end
  end
  -- Held, unanswered: look again shortly, once the claims of the log have left (as
  -- earliest_walk, and the waiter in memory).
  local poll = math.max(t, now + HELD_POLL * l.per, l.cold)
  if at then return at, room, poll, capacity - inside end
  return poll, capacity - inside
end

-- due_walk, unless only the unit kept for the first floor stops it now (as earliest).
local function due_at(l, need, all)
  local at, room, t_all, room_all = due_walk(l, need, all)
  if kept_of(l) > 0 then
    local poll = math.max(now + HELD_POLL * l.per, l.cold)
    local free, inside = math.max(limit_of(l), need), inside_now(l)
    if at > poll and inside + need <= free then at, room = poll, free - inside end
    if t_all and t_all > poll and inside + all <= free then t_all, room_all = poll, free - inside end
  end
  return at, room, t_all, room_all
end

-- A reservation that is due starts now if it fits (above), else waits in place (for all
-- of it if that is within SHRINK_WAIT, as at its first call); an interactive request
-- starts now without queueing behind bulk work. Otherwise: the earliest time, in its queue.
local now_ok, behind_bulk = false, false
if again then
  for k, claim in ipairs(claims) do
    -- The shrink rule, as at a claim's first call: all of it, if that is only a little later.
    local all = nil
    if claim.need < claim.units and claim.units <= capacity_of(claim.l, claim.need) then
      all = claim.units
    end
    local t_all, room_all
    times[k], rooms[k], t_all, room_all = due_at(claim.l, claim.need, all)
    if all and t_all and rooms[k] < all and t_all - times[k] <= SHRINK_WAIT * claim.l.per then
      times[k], rooms[k] = t_all, room_all
    end
    if times[k] > start then start = times[k] end
  end
  now_ok = true
end
if not now_ok and not bulk and n > 0 then
  now_ok, behind_bulk = start_now()
end
if not now_ok then
  for k, claim in ipairs(claims) do
    local from = now
    if behind_bulk then from = math.max(now, claim.l.last) end
    times[k], rooms[k] = earliest(claim.l, claim.need, from)
    if times[k] > start then start = times[k] end
  end
end
local reply = {start - now, fresh and 1 or 0, now}
-- The claim left with the least room, relative to its limit, binds the request: a
-- rate-limit refusal of it is blamed on that limit.
local binding, least = 0, math.huge
for k, claim in ipairs(claims) do
  local room = rooms[k]
  if times[k] < start and not again then  -- it fits earlier: how many fit at `start` itself
    room = select(2, earliest(claim.l, claim.need, start))
  end
  local granted = record(claim, start, room, times[k] == start)
  reply[#reply + 1] = granted
  local left = (room - granted) / math.max(math.floor(claim.l.effective), 1)
  if left < least then binding, least = k, left end
end
reply[#reply + 1] = binding
reply[#reply + 1] = fin(floor.current)
reply[#reply + 1] = fin(floor.since)
reply[#reply + 1] = fin(floor.previous)
for i = 1, n_limits do
  if limits[i].loaded then save(limits[i]) end
end
return reply
