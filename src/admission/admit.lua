--[[
  Admits one request of a tenant: checks its request budget (rpm) and token budget (tpm) together with GCRA
  and advances its fair-share virtual finish time, atomically, in one call. Clock: Redis TIME, so every ingress
  replica measures against the same clock.

  Input:
    KEYS[1] the tenant's request budget: GCRA theoretical arrival time (TAT), epoch ms
    KEYS[2] the tenant's token budget: TAT, epoch ms
    KEYS[3] the tenant's fair-share virtual finish time, epoch ms

    ARGV[1] request emission interval, ms per request (60000 / rpm); "0": no request budget
    ARGV[2] request burst, requests admitted at once
    ARGV[3] token emission interval, ms per token (60000 / tpm); "0": no token budget
    ARGV[4] token burst, tokens admitted at once
    ARGV[5] this request's estimated tokens
    ARGV[6] longest queue wait, ms: a request whose slot is further away is refused
    ARGV[7] fair share: virtual ms this job costs (unitMs / weight); "0": fair share off
    ARGV[8] fair share: the furthest a tenant's virtual finish time may run ahead of its job's start, ms

  Output: { decision, ms, requestsRemaining, requestsResetMs, tokensRemaining, tokensResetMs, leadUs }
    decision   0 now; 1 delayed (ms: the delay); 2 refused (ms: retry after; nothing was stored)
    remaining  whole requests / tokens of the minute's budget not yet spoken for (-1: budget off)
    resetMs    time until the budget is whole again (-1: budget off)
    leadUs     virtual finish time minus the job's start, microseconds (-1: fair share off or refused)
  Every key written carries a TTL that ends when its state stops mattering (a TAT in the past is an empty budget).
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000

local reqInterval = tonumber(ARGV[1])
local reqBurst = tonumber(ARGV[2])
local tokInterval = tonumber(ARGV[3])
local tokBurst = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local maxWait = tonumber(ARGV[6])
local fairIncrement = tonumber(ARGV[7])
local fairCap = tonumber(ARGV[8])

-- GCRA (virtual scheduling): a request costing c conforms at tat + c*T - burst*T. One larger than the whole burst
-- could never conform: it conforms when the budget is whole (tat), and leaves the budget in debt.
local function conformsAt(tat, interval, burst, c)
  return tat - (burst - math.min(c, burst)) * interval
end

local function remaining(tat, interval)
  if interval <= 0 then return -1 end
  return math.max(0, math.floor((60000 - (tat - now)) / interval + 1e-6))
end

local function resetMs(tat, interval)
  if interval <= 0 then return -1 end
  return math.max(0, math.ceil(tat - now))
end

-- Decimal strings: a Lua number passed to Redis is formatted with 14 digits, which would round epoch ms.
local function store(key, value)
  rcall('SET', key, string.format('%.3f', value), 'PX', math.ceil(value - now) + 1)
end

local reqTat, tokTat, start = now, now, now
if reqInterval > 0 then
  reqTat = math.max(tonumber(rcall('GET', KEYS[1])) or now, now)
  start = math.max(start, conformsAt(reqTat, reqInterval, reqBurst, 1))
end
if tokInterval > 0 then
  tokTat = math.max(tonumber(rcall('GET', KEYS[2])) or now, now)
  start = math.max(start, conformsAt(tokTat, tokInterval, tokBurst, cost))
end

-- Under a millisecond is "now": BullMQ delays are whole milliseconds (the budgets are still charged at the exact start).
local delay = start - now
if delay < 1 then delay = 0 end
if delay > maxWait then
  return { 2, math.max(1, math.ceil(delay - maxWait)), remaining(reqTat, reqInterval), resetMs(reqTat, reqInterval),
    remaining(tokTat, tokInterval), resetMs(tokTat, tokInterval), -1 }
end

-- Both budgets are charged at the request's real start: charging a delayed request "now" would let the budget that
-- did not bind admit a burst at that start on top of it.
if reqInterval > 0 then
  reqTat = math.max(reqTat, start) + reqInterval
  store(KEYS[1], reqTat)
end
if tokInterval > 0 then
  tokTat = math.max(tokTat, start) + cost * tokInterval
  store(KEYS[2], tokTat)
end

local leadUs = -1
if fairIncrement > 0 then
  local finish = math.max(tonumber(rcall('GET', KEYS[3])) or start, start) + fairIncrement
  finish = math.min(finish, start + fairCap)
  store(KEYS[3], finish)
  leadUs = math.floor((finish - start) * 1000 + 0.5)
end

local decision, ms = 0, 0
if delay > 0 then decision, ms = 1, math.ceil(delay) end
return { decision, ms, remaining(reqTat, reqInterval), resetMs(reqTat, reqInterval),
  remaining(tokTat, tokInterval), resetMs(tokTat, tokInterval), leadUs }
