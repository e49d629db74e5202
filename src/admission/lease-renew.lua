--[[
  Extends a job's concurrency lease while it runs. A lease already expired is not revived: its slot may have been
  given to another job, and reviving it would exceed maxConcurrent. Clock: Redis TIME, as in lease-acquire.lua.

  Input:
    KEYS[1] the tenant's leases: sorted set of job ids scored by expiry, epoch ms
    ARGV[1] job id
    ARGV[2] lease TTL, ms

  Output: 1 renewed; 0 lost (expired or released)
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local key, jobId, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])

local expiry = tonumber(rcall('ZSCORE', key, jobId))
if expiry == nil then return 0 end
if expiry <= now then
  rcall('ZREM', key, jobId)
  return 0
end
rcall('ZADD', key, 'XX', string.format('%.3f', now + ttl), jobId)
local last = rcall('ZRANGE', key, -1, -1, 'WITHSCORES')
rcall('PEXPIRE', key, math.ceil(tonumber(last[2]) - now) + 1)
return 1
