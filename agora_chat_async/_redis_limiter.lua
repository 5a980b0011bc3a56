-- One admission decision of RedisLimiter, atomic on the Redis server (see _redis_limiter.py).
--
-- Time is the Redis server's (TIME), in integer microseconds, unless ARGV[1] overrides it
-- (tests on a controlled clock). Every limit has a state hash, a log (a sorted set of the
-- ids of started or reserved claims, scored by their anchor), the claims that left the
-- window during the last window (same form), the units of each id, the claims on their way
-- (scored by their anchor while in the log, else -inf) and what is held.
--
-- What a call costs does not grow with the window. The log and the recent claims are
-- weighted sets: beside the sorted set of ids, one sorted set per class (interactive "i",
-- bulk "b") and binary digit of the units (`<log>:i3` holds the interactive claims whose
-- units have digit 3), so the units anchored in any range are sum 2^j x ZCOUNT over those
-- sets: O(digits x log n) however many claims the window holds (wsum). When enough units
-- will have left is found by reading the first few claims in order, then by a binary
-- search over the log's ranks with that sum (reach). Claims that left the window are
-- moved out of the log STALE at a time, when as many have left or one left a window ago
-- (the others are out of every window already: each range starts after the window's
-- edge), and forgotten likewise; the flying ones among them are held at once, found by
-- their anchors. Every claim is added, moved and forgotten once.
-- The derived keys share the log's hash tag, so one decision touches one Cluster slot.
--
-- KEYS: [1] the "seen" marker, then per configured limit i, from b = 6(i - 1) + 1:
--       [b+1] state, [b+2] log, [b+3] recent, [b+4] units, [b+5] flight (ids not answered
--       yet, by anchor while in the log), [b+6] held (unanswered past their window, scored
--       by start); last, the floor of forward offsets. The class and digit sets of log and
--       recent are named after them (above).
-- ARGV: now_override | "", n_limits, cold_start (1/0), seen_ttl_ms, bulk_headroom,
--       bulk_min_share, answered_ago (microseconds since the caller's latest answer, or -1),
--       n_limits x (limit, per_us, span_us),
--       n_flying, n_flying x (limit index, id, microseconds since): claims whose requests
--       are on their way, and since when,
--       n_observations, n_observations x (forward offset (us), microseconds since),
--       n_reports, n_reports x (limit index, id, new anchor (microseconds, this clock), or
--       0: answered, the anchor stays; 1 if the anchor may move earlier (the first floor's
--       move, _window_rules.moved_anchor), else 0),
--       n_refunds, n_refunds x (limit index, id),
--       n_penalties, n_penalties x (limit index, units, microseconds since the refusal),
--       n_handed, n_handed x (limit index, id, units, microseconds since its anchor): the
--       claims of an in-memory fallback still in their windows (_redis_fallback.py),
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

-- The constants of the window rules (EARLY_FRACTION, ..., PROBE_PER_WINDOW) are prepended
-- when the script is loaded, from _window_rules.py: one copy for both runtimes.
local CHUNK = 16  -- the first claims a search reads one by one (reach)
local STALE = 16  -- claims that left the window moved out of the log (or forgotten) at once
local BATCH = 1000  -- ids per HMGET/HDEL/ZADD/ZREM (Lua's unpack has a stack limit)

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
  local b = 6 * (i - 1) + 1
  limits[i] = {
    limit = tonumber(ARGV[pos]), per = tonumber(ARGV[pos + 1]), base_span = tonumber(ARGV[pos + 2]),
    state = KEYS[b + 1], log = KEYS[b + 2], recent = KEYS[b + 3], units = KEYS[b + 4],
    flight = KEYS[b + 5], held = KEYS[b + 6],
    loaded = false,
    touched = {},  -- the class and digit sets written by this call (their TTL is renewed)
    marks = {},  -- the ids of its claims whose requests are on their way (load)
  }
  -- The binary digits a claim's units may have (a claim never exceeds its limit).
  limits[i].digits = math.floor(math.log(limits[i].limit) / math.log(2) + 1e-9) + 1
  pos = pos + 3
end

-- A Redis that has no marker never saw this app key, or lost its data (a restart without
-- persistence, a flush, a failover): sends of the last window are unknown, so with
-- cold_start nothing starts before a whole window has passed.
-- The marker holds when it was set: set again once an hour (it lives a week).
local seen = tonumber(redis.call('GET', KEYS[1]))
local fresh = seen == nil
if fresh or now - seen > 3600000000 then
  redis.call('SET', KEYS[1], num(now), 'PX', seen_ttl)
end

-- Call `command` on `key` with `args` (a list), BATCH x `width` of them at a time.
local function batched(command, key, args, width)
  for first = 1, #args, BATCH * width do
    redis.call(command, key, unpack(args, first, math.min(first + BATCH * width - 1, #args)))
  end
end

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

-- Interactive claims' ids start with "i", bulk ones with "b": the class of their sets.
local function class_of(id)
  return string.sub(id, 1, 1) == 'i' and 'i' or 'b'
end

local function digit(units, j)
  return math.floor(units / 2 ^ j) % 2 == 1
end

-- The weighted sets (log and recent), above. `l.mask[class]` is every digit recorded so
-- far for the class (kept in the state), so that a sum reads only the sets that may hold
-- something.

-- The class and digit sets of `key` that hold `id` of `units` units (written now).
local function sets_of(l, key, id, units)
  local names, class = {}, class_of(id)
  for j = 0, l.digits - 1 do
    if digit(units, j) then
      local name = key .. ':' .. class .. j
      names[#names + 1] = name
      l.touched[name] = true
    end
  end
  return names
end

-- Add (or move: ZADD replaces a score) `entries`, a list of {score, id, units}.
local function wadd(l, key, entries)
  local all, sets = {}, {}
  for _, e in ipairs(entries) do
    local score = num(e[1])
    all[#all + 1] = score
    all[#all + 1] = e[2]
    for _, name in ipairs(sets_of(l, key, e[2], e[3])) do
      sets[name] = sets[name] or {}
      table.insert(sets[name], score)
      table.insert(sets[name], e[2])
    end
  end
  batched('ZADD', key, all, 2)
  l.touched[key] = true
  for name, args in pairs(sets) do batched('ZADD', name, args, 2) end
end

-- Remove `entries`, a list of {id, units}.
local function wrem(l, key, entries)
  local all, sets = {}, {}
  for _, e in ipairs(entries) do
    all[#all + 1] = e[1]
    for _, name in ipairs(sets_of(l, key, e[1], e[2])) do
      sets[name] = sets[name] or {}
      table.insert(sets[name], e[1])
    end
  end
  batched('ZREM', key, all, 1)
  l.touched[key] = true
  for name, ids in pairs(sets) do batched('ZREM', name, ids, 1) end
end

-- The units of the ids scored in (lo, hi] (numbers; -math.huge and math.huge allowed), of
-- one class ('i' or 'b') or of both (nil).
local function wsum(l, key, lo, hi, class)
  local low = lo == -math.huge and '-inf' or '(' .. num(lo)
  local high = hi == math.huge and '+inf' or num(hi)
  local total = 0
  for _, c in ipairs({'i', 'b'}) do
    if class == nil or class == c then
      for j = 0, l.digits - 1 do
        if digit(l.mask[c], j) then
          total = total + 2 ^ j * redis.call('ZCOUNT', key .. ':' .. c .. j, low, high)
        end
      end
    end
  end
  return total
end

-- The lowest score `a` of an id in `key` after `from` such that the units scored in
-- (from, a] reach `x`, and those units (every id scored `a` included); nil and the units
-- scored after `from` if they never reach `x`. The first CHUNK x 4 ids are read in order
-- (a claim that needs little waits for few: a single recipient reads one chunk); past
-- them, a binary search over the ranks, each step a sum (wsum), among the next x ranks at
-- most (every id has a unit at least).
local function reach(l, key, from, x)
  local low = from == -math.huge and '-inf' or '(' .. num(from)
  local total, offset, size = 0, 0, CHUNK
  while offset < 4 * CHUNK do
    local chunk = redis.call('ZRANGEBYSCORE', key, low, '+inf', 'WITHSCORES', 'LIMIT', offset, size)
    local ids = {}
    for j = 1, #chunk, 2 do ids[#ids + 1] = chunk[j] end
    local units = units_of(l, ids)
    for j = 1, #ids do
      total = total + units[j]
      if total >= x then
        local a = tonumber(chunk[2 * j])
        return a, wsum(l, key, from, a)
      end
    end
    if #ids < size then return nil, total end
    offset, size = offset + size, 3 * size
  end
  local after = wsum(l, key, from, math.huge)
  if after < x then return nil, after end
  local first = 0  -- the rank of the first id after `from`
  if from ~= -math.huge then first = redis.call('ZCOUNT', key, '-inf', num(from)) end
  local lo = first + offset
  local hi = math.min(redis.call('ZCARD', key) - 1, first + x - 1)
  local a, reached = nil, nil
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local score = tonumber(redis.call('ZRANGE', key, mid, mid, 'WITHSCORES')[2])
    local units_to = wsum(l, key, from, score)
    if units_to >= x then
      a, reached, hi = score, units_to, mid - 1
    else
      lo = mid + 1
    end
  end
  return a, reached
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
  local fields = redis.call('HMGET', l.state, 'last', 'eff', 'hold', 'hold_windows',
    'decreased', 'extra', 'last_i', 'cold', 'mask_i', 'mask_b', 'edge')
  l.last = tonumber(fields[1]) or 0
  l.eff = tonumber(fields[2]) or l.limit
  l.hold = tonumber(fields[3]) or 0
  l.hold_windows = tonumber(fields[4]) or HOLD_WINDOWS
  l.decreased = tonumber(fields[5]) or -1e18
  l.extra = tonumber(fields[6]) or 0
  l.last_i = tonumber(fields[7]) or 0
  l.cold = tonumber(fields[8]) or 0  -- nothing starts before it (a cold start's window)
  l.mask = {i = tonumber(fields[9]) or 0, b = tonumber(fields[10]) or 0}
  l.span = l.base_span + l.extra
  if fresh and cold_start then l.cold = now + l.span end
  if fresh and cold_start and l.last < now + l.span then
    l.last = now + l.span
  end
  if fresh and cold_start and l.last_i < now + l.span then
    l.last_i = now + l.span
  end
  -- Claims whose requests are on their way stay in their windows until their answers
  -- (Permit.sending): marked before anything can expire them. One whose window ended
  -- before its request left (at the last call: its previous edge; it may be in the log
  -- yet, or in `recent`) is held until its answer, as in memory, if it left less than a
  -- window ago (after that it is forgotten).
  local before = tonumber(fields[11]) or -math.huge
  for _, mark in ipairs(l.marks) do
    local id, sent = mark[1], mark[2]
    local key = l.log
    local score = tonumber(redis.call('ZSCORE', key, id))
    if not score then
      key = l.recent
      score = tonumber(redis.call('ZSCORE', key, id))
    end
    if score and score > before then
      redis.call('ZADD', l.flight, num(score), id)
    elseif score and score > sent - 2 * l.span then
      wrem(l, key, {{id, tonumber(redis.call('HGET', l.units, id)) or 0}})
      redis.call('ZADD', l.held, num(score), id)
      redis.call('ZADD', l.flight, '-inf', id)
    else
      redis.call('ZADD', l.flight, '-inf', id)
    end
  end
  -- The window's edge: a claim anchored at it or before has left the window, and one that
  -- left it never comes back (a window widened since counts it no more, as in memory).
  l.edge = math.max(now - l.span, before)
  local edge = num(l.edge)
  -- Claims on their way that left the window: held (still counted) until their answers,
  -- and no longer in the log (-inf in `flight`).
  local left = redis.call('ZRANGEBYSCORE', l.flight, '(-inf', edge, 'WITHSCORES')
  if #left > 0 then
    local ids, args, away = {}, {}, {}
    for j = 1, #left, 2 do ids[#ids + 1] = left[j] end
    local units = units_of(l, ids)
    local entries = {}
    for j = 1, #ids do
      entries[j] = {ids[j], units[j]}
      args[#args + 1] = left[2 * j]
      args[#args + 1] = ids[j]
      away[#away + 1] = '-inf'
      away[#away + 1] = ids[j]
    end
    wrem(l, l.log, entries)
    batched('ZADD', l.held, args, 2)
    batched('ZADD', l.flight, away, 2)
  end
  -- The others that left, to `recent`, STALE at a time: once as many have left, or one
  -- left a window ago. Those left in the log are out of the window all the same (every
  -- range below starts after the edge).
  local gone = redis.call('ZRANGEBYSCORE', l.log, '-inf', edge, 'WITHSCORES', 'LIMIT', 0, STALE)
  if #gone == 2 * STALE or (#gone > 0 and tonumber(gone[2]) <= now - 2 * l.span) then
    local ids = {}
    for j = 1, #gone, 2 do ids[#ids + 1] = gone[j] end
    local units = units_of(l, ids)
    local moved, taken = {}, {}
    for j = 1, #ids do
      moved[j] = {tonumber(gone[2 * j]), ids[j], units[j]}
      taken[j] = {ids[j], units[j]}
    end
    wrem(l, l.log, taken)
    wadd(l, l.recent, moved)
  end
  -- What is held (unanswered past its window) is in every window until its answer; a
  -- request that never ends must not hold its window forever (UNANSWERED_HOLD).
  local held = redis.call('ZRANGE', l.held, 0, -1, 'WITHSCORES')
  local held_ids, held_scores, stale = {}, {}, {}
  for j = 1, #held, 2 do
    local score = tonumber(held[j + 1])
    if score <= now - l.span - UNANSWERED_HOLD * 1000000 then
      stale[#stale + 1] = held[j]
    else
      held_ids[#held_ids + 1] = held[j]
      held_scores[#held_scores + 1] = score
    end
  end
  if #stale > 0 then
    batched('HDEL', l.units, stale, 1)
    batched('ZREM', l.flight, stale, 1)
    batched('ZREM', l.held, stale, 1)
  end
  -- Forget what left the window a window ago, STALE at a time (once as many may go, or one
  -- left it two windows ago; a sum never reads them: units_between).
  local old = redis.call('ZRANGEBYSCORE', l.recent, '-inf', num(now - 2 * l.span), 'WITHSCORES',
    'LIMIT', 0, STALE)
  if #old == 2 * STALE or (#old > 0 and tonumber(old[2]) <= now - 3 * l.span) then
    local ids = {}
    for j = 1, #old, 2 do ids[#ids + 1] = old[j] end
    local units, entries = units_of(l, ids), {}
    for j = 1, #ids do entries[j] = {ids[j], units[j]} end
    wrem(l, l.recent, entries)
    batched('HDEL', l.units, ids, 1)
  end
  local held_units = units_of(l, held_ids)
  l.held_units, l.held_interactive, l.held_at = sum(held_units), 0, {}
  for j = 1, #held_ids do
    l.held_at[held_ids[j]] = held_scores[j]
    if class_of(held_ids[j]) == 'i' then
      l.held_interactive = l.held_interactive + held_units[j]
    end
  end
  -- What the window holds: what is held, and every claim anchored after the edge (started,
  -- or reserved).
  l.used = l.held_units + wsum(l, l.log, l.edge, math.huge)
  l.effective = effective_at(l, now)
end

local function save(l)
  redis.call('HSET', l.state, 'last', num(l.last), 'eff', num(l.eff),
    'hold', num(l.hold), 'hold_windows', num(l.hold_windows), 'decreased', num(l.decreased),
    'extra', num(l.extra), 'last_i', num(l.last_i), 'cold', num(l.cold),
    'mask_i', num(l.mask.i), 'mask_b', num(l.mask.b), 'edge', num(l.edge))
  -- Everything expires by itself once the window (and any hold) is over.
  local horizon = math.max(l.last, l.last_i, l.hold, now) - now + 3 * l.span
  local ttl_ms = num(math.ceil(horizon / 1000) + 1000)
  for _, key in ipairs({l.state, l.log, l.units, l.flight}) do
    redis.call('PEXPIRE', key, ttl_ms)
  end
  if l.held_units > 0 then redis.call('PEXPIRE', l.held, ttl_ms) end
  -- `recent` and the class and digit sets are renewed when written: one not written since
  -- holds only claims that left the window (the horizon above covered every reservation
  -- then), which are never read once they left it two windows ago.
  for name in pairs(l.touched) do
    if name ~= l.log then redis.call('PEXPIRE', name, ttl_ms) end
  end
end

-- The anchor of claim `id` if it is in the window (in the log, after its edge), else nil.
local function anchor_of(l, id)
  local score = tonumber(redis.call('ZSCORE', l.log, id))
  if score and score > l.edge then return score end
  return nil
end

-- Claims whose requests are on their way: marked when their limit is loaded (above).
do
  local n_flying = tonumber(ARGV[pos]); pos = pos + 1
  for _ = 1, n_flying do
    local l = limits[tonumber(ARGV[pos])]
    l.marks[#l.marks + 1] = {ARGV[pos + 1], now - tonumber(ARGV[pos + 2])}
    pos = pos + 3
  end
end
for i = 1, n_limits do
  if fresh or #limits[i].marks > 0 then load(limits[i]) end
end

-- Take claim `id` out of the log (a refund, or a reservation decided again), and out of
-- `recent` (a claim refunded after it left counts for nothing, as in memory).
local function unrecord(l, id)
  local units = tonumber(redis.call('HGET', l.units, id))
  redis.call('ZREM', l.flight, id)
  if not units then return end
  local score = tonumber(redis.call('ZSCORE', l.log, id))
  local counted = score ~= nil and score > l.edge  -- only while counted: what left never was
  if score then
    wrem(l, l.log, {{id, units}})
  elseif l.held_at[id] then
    redis.call('ZREM', l.held, id)
    l.held_at[id] = nil
    counted = true
    l.held_units = l.held_units - units
    if class_of(id) == 'i' then l.held_interactive = l.held_interactive - units end
  else
    wrem(l, l.recent, {{id, units}})
  end
  if counted then l.used = l.used - units end
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
  redis.call('ZREM', l.flight, id)
  local held = l.held_at[id]
  if held then
    -- Answered after its window, held until now: back in the log at its anchor, from
    -- where the next decision lets it leave (as in memory).
    redis.call('ZREM', l.held, id)
    l.held_at[id] = nil
    local units = tonumber(redis.call('HGET', l.units, id)) or 0
    l.held_units = l.held_units - units
    if class_of(id) == 'i' then l.held_interactive = l.held_interactive - units end
    local anchor = math.max(done, tonumber(held))
    if anchor <= l.edge then  -- it left its window: as load() does
      l.used = l.used - units
      wadd(l, l.recent, {{anchor, id, units}})
    else
      wadd(l, l.log, {{anchor, id, units}})
    end
  else
    -- Not in the window: refunded, or left it (its units are gone, or soon).
    local score = anchor_of(l, id)
    if score and (done > score or (earlier and done < score)) then
      local units = tonumber(redis.call('HGET', l.units, id)) or 0
      if done <= l.edge then  -- moved out of its window: as load() does
        wrem(l, l.log, {{id, units}})
        l.used = l.used - units
        wadd(l, l.recent, {{done, id, units}})
      else
        wadd(l, l.log, {{done, id, units}})
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
-- Claims that left two windows ago are forgotten (a few at a time): never counted here.
local function units_between(l, lo, hi)
  lo = math.max(lo, now - 2 * l.span)
  return wsum(l, l.log, lo, hi) + wsum(l, l.recent, lo, hi)
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

-- Record `units` of claim `id` at `at` in the log (counted from now on).
local function enter(l, at, id, units)
  local class = class_of(id)
  for j = 0, l.digits - 1 do  -- the digits of `units` join the mask (wsum)
    if digit(units, j) and not digit(l.mask[class], j) then
      l.mask[class] = l.mask[class] + 2 ^ j
    end
  end
  wadd(l, l.log, {{at, id, units}})
  redis.call('HSET', l.units, id, num(units))
  l.used = l.used + units
end

-- Claims a process admitted through its in-memory fallback while Redis was unavailable,
-- still in their windows (_redis_fallback.py): recorded at their anchors, counted like any.
n = tonumber(ARGV[pos]); pos = pos + 1
for _ = 1, n do
  local l = limits[tonumber(ARGV[pos])]
  local id, units, at = ARGV[pos + 1], tonumber(ARGV[pos + 2]), now - tonumber(ARGV[pos + 3])
  pos = pos + 4
  load(l)
  if at > l.edge then enter(l, at, id, units) end
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
  if l.n_flying == nil then l.n_flying = redis.call('ZCARD', l.flight) end
  if l.n_flying > 0 then return 1 end
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
-- reservation may start is decided again when it is due: due_at). At t the window holds
-- `used` less what left by t (the claims anchored in (edge, t - span]): the earliest t is
-- `from`, or when enough units have left (reach), or, when what is held (unanswered)
-- keeps the room even once every claim of the log has left, shortly (HELD_POLL).
local function earliest_walk(l, need, from)
  local capacity = capacity_of(l, need)
  local t = from
  if bulk then t = math.max(from, l.last) else t = math.max(from, l.last_i) end
  local total = l.used
  if t == now and total + need <= capacity then
    return t, capacity - total
  end
  local left = 0
  if t - l.span > l.edge then left = wsum(l, l.log, l.edge, t - l.span) end
  if total - left + need <= capacity then return t, capacity - (total - left) end
  local a, freed = reach(l, l.log, l.edge, total + need - capacity)
  if a then return a + l.span, capacity - (total - freed) end
  local last = redis.call('ZRANGE', l.log, -1, -1, 'WITHSCORES')
  if #last > 0 then t = math.max(t, tonumber(last[2]) + l.span) end
  return math.max(t, now + HELD_POLL * l.per), capacity - (total - freed)
end

-- earliest_walk, unless only the unit kept for the first floor stops the claim now: an
-- answer may release it at any moment, so look again shortly (HELD_POLL), as in memory.
-- The same question is asked again before anything is recorded (the shrink rule asks
-- first): the answers are kept until a claim is recorded (`l.asked`).
local function earliest(l, need, from)
  local question = need .. '@' .. num(from)
  if l.asked and l.asked[question] then return unpack(l.asked[question]) end
  local t, room = earliest_walk(l, need, from)
  if t > now and kept_of(l) > 0 then
    local start = math.max(from, l.last_i)
    if bulk then start = math.max(from, l.last) end
    local free, poll = math.max(limit_of(l), need), now + HELD_POLL * l.per
    if start == now and poll < t and l.used + need <= free then t, room = poll, free - l.used end
  end
  l.asked = l.asked or {}
  l.asked[question] = {t, room}
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
  l.asked = nil
  local granted = math.min(claim.units, room)
  enter(l, at, claim.id, granted)
  if binding and bulk and at > l.last then l.last = at end
  if binding and not bulk and at > l.last_i then l.last_i = at end
  return granted
end

-- What the window that ends now holds: what is held and every claim anchored by now
-- (started, or a reservation that is due), and the interactive units among them. Later
-- reservations are not in it: each decides again when it is due, and counts what started
-- before it (due_at, below).
local function inside_now(l)
  local inside = l.held_units + wsum(l, l.log, l.edge, now)
  return inside, l.held_interactive + wsum(l, l.log, l.edge, now, 'i')
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
-- The window that ends at t holds what is held and the claims anchored in (t - span, t].
-- From now, it jumps to when enough of what the window holds has left (reach): no time
-- between can have room, since claims anchored later only enter it. Each jump after the
-- first is made because a later reservation entered, so there are at most as many as
-- requests wait for this limit.
local function due_walk(l, need, all)
  local capacity = capacity_of(l, need)
  local t, want, at, room = now, need, nil, nil
  local inside = l.held_units + wsum(l, l.log, l.edge, now)
  while true do
    if inside + want <= capacity then
      if not at then
        at, room = math.max(t, l.cold), capacity - inside
        if not all then return at, room end
        want = all  -- with `all` (at least `need`), also when all of them fit
      end
      if inside + want <= capacity then
        return at, room, math.max(t, l.cold), capacity - inside
      end
    end
    local a = reach(l, l.log, math.max(t - l.span, l.edge), inside + want - capacity)
    if not a then break end
    t = a + l.span
    inside = l.held_units + wsum(l, l.log, math.max(t - l.span, l.edge), t)
  end
  -- Held, unanswered: look again shortly, once the claims of the log have left (as
  -- earliest_walk, and the waiter in memory).
  t = now
  local last = redis.call('ZRANGE', l.log, -1, -1, 'WITHSCORES')
  if #last > 0 then t = math.max(t, tonumber(last[2]) + l.span) end
  local poll = math.max(t, now + HELD_POLL * l.per, l.cold)
  if at then return at, room, poll, capacity - l.held_units end
  return poll, capacity - l.held_units
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
