-- The long-period call quotas of one kind of call, for every process of an app.
-- Mirrors decide() and LocalCallQuotas in _call_quotas.py.
--
-- KEYS[1]  a sorted set: each kept call (member: its id), scored by its time (Unix s)
-- KEYS[2]  a hash: calls counted per calendar day (field: the day's index)
-- ARGV     op ('reserve', 'give_back', 'exhaust', 'spent'), now ('' for Redis's TIME),
--          margin, the day zone's offset (s east of UTC), how long a call is kept (s),
--          id, the day of the reservation given back, the daily limit (0: none),
--          how many sliding rules, then each rule's limit and per (s).
-- Returns  {granted (1 or 0), now, when the call fits} as strings (%.6f).

local DAY = 86400
local function fmt(x) return string.format('%.6f', x) end

local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end
local op = ARGV[1]
local margin, offset, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local id, given_day, daily, rules = ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local today = math.floor((now + offset) / DAY)

-- Forget calls kept no longer, and days gone by.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - keep))
for _, day in ipairs(redis.call('HKEYS', KEYS[2])) do
  if tonumber(day) < today then redis.call('HDEL', KEYS[2], day) end
end
local spent = tonumber(redis.call('HGET', KEYS[2], today) or '0')

if op == 'spent' then
  return {tostring(redis.call('ZCARD', KEYS[1])), tostring(spent), fmt(now)}
end

if op == 'give_back' then
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local counted = tonumber(redis.call('HGET', KEYS[2], given_day) or '0')
    if counted > 0 then redis.call('HINCRBY', KEYS[2], given_day, -1) end
  end
  return {'1', fmt(now), fmt(now)}
end

if op == 'exhaust' then
  if daily > 0 and spent < daily then
    redis.call('HSET', KEYS[2], today, daily)
    redis.call('PEXPIRE', KEYS[2], 2 * DAY * 1000)
  end
  return {'1', fmt(now), fmt(now)}
end

-- reserve: when would the call fit?
local at = now
if daily > 0 and spent >= daily then
  at = math.max(at, (today + 1) * DAY - offset)
end
for i = 0, rules - 1 do
  local limit, per = tonumber(ARGV[10 + 2 * i]), tonumber(ARGV[11 + 2 * i])
  local span = per + margin
  local recent = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(now - span), '+inf', 'WITHSCORES')
  local count = #recent / 2
  if count >= limit then
    -- The call that must leave the window first for one more to fit.
    at = math.max(at, tonumber(recent[2 * (count - limit) + 2]) + span)
  end
end
if at > now then
  return {'0', fmt(now), fmt(at)}
end
redis.call('ZADD', KEYS[1], fmt(now), id)
redis.call('HINCRBY', KEYS[2], today, 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000))
redis.call('PEXPIRE', KEYS[2], 2 * DAY * 1000)
return {'1', fmt(now), fmt(now)}
