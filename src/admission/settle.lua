--[[
  Corrects a tenant's token budget after a call by the difference between the tokens the upstream reported and
  the tokens admission estimated. Clock: Redis TIME, as in admit.lua.

  Input:
    KEYS[1] the tenant's token budget: GCRA theoretical arrival time (TAT), epoch ms
    ARGV[1] token emission interval, ms per token (60000 / tpm)
    ARGV[2] actual - estimated tokens (negative: the estimate was too high)

  Output: { tokensRemaining, tokensResetMs } after the correction (see admit.lua)
  A refund never moves the TAT before now: unused budget of the past is not banked. The key keeps a TTL.
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local interval = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])

local tat = math.max(tonumber(rcall('GET', KEYS[1])) or now, now)
tat = math.max(now, tat + delta * interval)
if tat - now < 1 then
  rcall('DEL', KEYS[1])
  tat = now
else
  rcall('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end
return { math.max(0, math.floor((60000 - (tat - now)) / interval + 1e-6)), math.ceil(tat - now) }
