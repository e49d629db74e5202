--[[
  Admits requests of one tenant, in order: checks each one's request budget (rpm) and token budget (tpm) together
  with GCRA and advances the tenant's fair-share virtual finish time, atomically, in one call. One request per call
  or several: the ingress sends the requests of one tenant that arrive together as one call, and each is decided
  exactly as if it had been sent alone, right after the one before it. Clock: Redis TIME, so every ingress replica
  measures against the same clock.

  Input:
    KEYS[1] the tenant's request budget: GCRA theoretical arrival time (TAT), epoch ms
    KEYS[2] the tenant's token budget: TAT, epoch ms
    KEYS[3] the tenant's fair-share virtual finish time, epoch ms

    ARGV[1] request emission interval, ms per request (60000 / rpm); "0": no request budget
    ARGV[2] request burst, requests admitted at once
    ARGV[3] token emission interval, ms per token (60000 / tpm); "0": no token budget
    ARGV[4] token burst, tokens admitted at once
    ARGV[5] fair share: the furthest a tenant's virtual finish time may run ahead of its job's start, ms
    then three per request, from ARGV[6]:
      its estimated tokens
      its longest queue wait, ms: a request whose slot is further away is refused
      fair share: virtual ms its job costs (unitMs / weight); "0": fair share off

  Output: seven integers per request, in the order given:
    { decision, ms, requestsRemaining, requestsResetMs, tokensRemaining, tokensResetMs, leadUs }
    decision   0 now; 1 delayed (ms: the delay); 2 refused (ms: retry after; nothing was stored for it)
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
local fairCap = tonumber(ARGV[5])

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

-- Each state is read once, carried from request to request, and written once at the end if a request moved it.
local reqTat, tokTat, finish = now, now, nil
if reqInterval > 0 then reqTat = math.max(tonumber(rcall('GET', KEYS[1])) or now, now) end
if tokInterval > 0 then tokTat = math.max(tonumber(rcall('GET', KEYS[2])) or now, now) end
local reqMoved, tokMoved, fairMoved = false, false, false

local out = {}
for i = 6, #ARGV, 3 do
  local cost = tonumber(ARGV[i])
  local maxWait = tonumber(ARGV[i + 1])
  local fairIncrement = tonumber(ARGV[i + 2])

  local start = now
  if reqInterval > 0 then start = math.max(start, conformsAt(reqTat, reqInterval, reqBurst, 1)) end
  if tokInterval > 0 then start = math.max(start, conformsAt(tokTat, tokInterval, tokBurst, cost)) end

  -- Under a millisecond is "now": BullMQ delays are whole milliseconds (the budgets are still charged at the exact start).
  local delay = start - now
  if delay < 1 then delay = 0 end
  if delay > maxWait then
    out[#out + 1] = 2
    out[#out + 1] = math.max(1, math.ceil(delay - maxWait))
    out[#out + 1] = remaining(reqTat, reqInterval)
    out[#out + 1] = resetMs(reqTat, reqInterval)
    out[#out + 1] = remaining(tokTat, tokInterval)
    out[#out + 1] = resetMs(tokTat, tokInterval)
    out[#out + 1] = -1
  else
    -- Both budgets are charged at the request's real start: charging a delayed request "now" would let the budget that
    -- did not bind admit a burst at that start on top of it.
    if reqInterval > 0 then
      reqTat = math.max(reqTat, start) + reqInterval
      reqMoved = true
    end
    if tokInterval > 0 then
      tokTat = math.max(tokTat, start) + cost * tokInterval
      tokMoved = true
    end

    local leadUs = -1
    if fairIncrement > 0 then
      if finish == nil then finish = tonumber(rcall('GET', KEYS[3])) or start end
      finish = math.min(math.max(finish, start) + fairIncrement, start + fairCap)
      fairMoved = true
      leadUs = math.floor((finish - start) * 1000 + 0.5)
    end

    local decision, ms = 0, 0
    if delay > 0 then decision, ms = 1, math.ceil(delay) end
    out[#out + 1] = decision
    out[#out + 1] = ms
    out[#out + 1] = remaining(reqTat, reqInterval)
    out[#out + 1] = resetMs(reqTat, reqInterval)
    out[#out + 1] = remaining(tokTat, tokInterval)
    out[#out + 1] = resetMs(tokTat, tokInterval)
    out[#out + 1] = leadUs
  end
end

if reqMoved then store(KEYS[1], reqTat) end
if tokMoved then store(KEYS[2], tokTat) end
if fairMoved then store(KEYS[3], finish) end
return out
