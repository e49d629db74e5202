--[[
  Takes what one upstream call needs from a provider's pool-wide limits, atomically, or says how long to wait: the
  deployment must not be paused by a 429, a concurrency slot must be free (maxConcurrency, a lease that expires unless
  renewed), and the call must conform now to the request and token budgets (GCRA, as admit.lua, without reserving a
  later slot: the job waits delayed and asks again). Nothing is taken unless everything is. Clock: Redis TIME.

  Input:
    KEYS[1] the deployment's pause key (present while paused; TTL = time left)
    KEYS[2] request budget: GCRA theoretical arrival time (TAT), epoch ms
    KEYS[3] token budget: TAT, epoch ms
    KEYS[4] concurrency leases: sorted set of lease ids scored by expiry, epoch ms

    ARGV[1] request emission interval, ms per call (60000 / rpm); "0": no request budget
    ARGV[2] request burst (calls at once on top of the pace)
    ARGV[3] token emission interval, ms per token (60000 / tpm); "0": no token budget
    ARGV[4] token burst
    ARGV[5] this call's estimated tokens
    ARGV[6] slots (maxConcurrency); "0": no concurrency limit
    ARGV[7] lease id
    ARGV[8] lease TTL, ms
    ARGV[9] longest wait hint for a full concurrency limit, ms

  Output: { 0, 0 } granted (budgets charged, lease taken when limited); { 1, ms } paused for ms more;
  { 2, ms } every slot taken, ask again in ms; { 3, ms } the budgets allow the call in ms. Every key has a TTL.
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000

local paused = rcall('PTTL', KEYS[1])
if paused > 0 then return { 1, paused } end

local slots = tonumber(ARGV[6])
if slots > 0 then
  rcall('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.3f', now))
  if rcall('ZCARD', KEYS[4]) >= slots then
    local first = rcall('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return { 2, math.min(tonumber(ARGV[9]), math.max(1, math.ceil(tonumber(first[2]) - now))) }
  end
end

local reqInterval, reqBurst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokInterval, tokBurst = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5])

-- GCRA: a call costing c conforms at tat - (burst - min(c, burst)) * T (a call larger than the burst waits for a whole budget).
local reqTat, tokTat, start = now, now, now
if reqInterval > 0 then
  reqTat = math.max(tonumber(rcall('GET', KEYS[2])) or now, now)
  start = math.max(start, reqTat - (reqBurst - 1) * reqInterval)
end
if tokInterval > 0 then
  tokTat = math.max(tonumber(rcall('GET', KEYS[3])) or now, now)
  start = math.max(start, tokTat - (tokBurst - math.min(cost, tokBurst)) * tokInterval)
end
if start - now >= 1 then return { 3, math.ceil(start - now) } end

local function store(key, tat)
  rcall('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end
if reqInterval > 0 then store(KEYS[2], reqTat + reqInterval) end
if tokInterval > 0 then store(KEYS[3], tokTat + cost * tokInterval) end
if slots > 0 then
  rcall('ZADD', KEYS[4], string.format('%.3f', now + tonumber(ARGV[8])), ARGV[7])
  local last = rcall('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
  rcall('PEXPIRE', KEYS[4], math.ceil(tonumber(last[2]) - now) + 1)
end
return { 0, 0 }
