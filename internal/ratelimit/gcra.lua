-- GCRA rate limit step: the twin of gcra() in gcra.go, line by line, so a
-- Redis-backed limit decides exactly as the in-process one does. One call is
-- one atomic read-modify-write of one bucket.
--
-- KEYS[1]  the bucket; its value is the theoretical arrival time (tat), in
--          microseconds since 2025-01-01 UTC, as a float.
-- ARGV[1]  T: emission interval, microseconds per unit (float)
-- ARGV[2]  capacity: Burst+1
-- ARGV[3]  delay: excess units served undelayed; -1 = nodelay
-- ARGV[4]  cost (a charge may be negative: a refund)
-- ARGV[5]  "1" = charge (unconditional), "0" = take (only if it fits)
-- ARGV[6]  now in the same microseconds, or "" to use this server's TIME,
--          so every gateway replica shares one clock per bucket
-- ARGV[7]  extra TTL in milliseconds beyond the time the bucket needs to
--          drain, a margin for clock skew when callers pass their own now
--
-- Returns {allowed, never_fits, delay_us, retry_after_us, remaining, reset_us}.

local t = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local dly = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local force = ARGV[5] == "1"
local now
if ARGV[6] == "" then
  -- Redis < 5 must be told to replicate effects before reading TIME; from 7
  -- on this is a no-op.
  if redis.replicate_commands then redis.replicate_commands() end
  local tm = redis.call("TIME")
  now = (tonumber(tm[1]) - 1735689600) * 1000000 + tonumber(tm[2])
else
  now = tonumber(ARGV[6])
end

local tat = tonumber(redis.call("GET", KEYS[1]) or "")
if tat == nil or tat < now then
  tat = now
end
-- Whole units of room at now (tat >= now), as gcra.go's left: the refusal
-- and the remaining count are this one expression.
local function left(at)
  return cap - math.ceil((at - now) / t - 0.001)
end
local span = cap * t
local newtat = tat
local allowed, never, delay, retry = 1, 0, 0, 0
if not force and cost > cap then
  allowed, never = 0, 1
elseif not force and cost == 0 then
  -- takes nothing: conforms even in debt
else
  newtat = tat + cost * t
  if not force and cost > left(tat) then
    allowed = 0
    retry = math.max(math.ceil(newtat - now - span), 1)
    newtat = tat
  end
end
if newtat < now then
  newtat = now
end
-- Debt is owed in full, up to rate.MaxRefill (366 days, in microseconds)
-- beyond empty: gcra.go's maxDebt.
if force and newtat - now > span + 31622400000000 then
  newtat = now + span + 31622400000000
end
if allowed == 1 then
  if newtat > now then
    -- A number argument reaches Redis as "%.17g" text: it reads back exact.
    redis.call("SET", KEYS[1], newtat, "PX", math.ceil((newtat - now) / 1000) + tonumber(ARGV[7]))
  else
    redis.call("DEL", KEYS[1])
  end
  if dly >= 0 and not force then
    local ex = newtat - now - t - dly * t
    if ex > 0 then
      delay = math.ceil(ex)
    end
  end
end
local remain = left(newtat)
if remain < 0 then
  remain = 0
end
return {allowed, never, delay, retry, remain, math.ceil(newtat - now)}
