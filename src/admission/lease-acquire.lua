--[[
  Takes one of a tenant's concurrency slots (maxConcurrent) for a job, as a lease that expires unless renewed.
  Expired leases are purged first: a slot held by a worker that died (SIGKILL) comes back by itself at expiry.
  Clock: Redis TIME, so every worker replica agrees on expiry.

  Input:
    KEYS[1] the tenant's leases: sorted set of job ids scored by expiry, epoch ms
    ARGV[1] job id
    ARGV[2] slots (maxConcurrent)
    ARGV[3] lease TTL, ms
    ARGV[4] longest retry hint, ms

  Output: { 1, 0 } granted (or already held by this job: renewed); { 0, retryInMs } all slots taken, retry in
  retryInMs (when the earliest lease expires, at most ARGV[4]). The key's TTL follows its latest lease.
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local key, jobId = KEYS[1], ARGV[1]
local slots, ttl, maxRetry = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

rcall('ZREMRANGEBYSCORE', key, '-inf', string.format('%.3f', now))

if rcall('ZSCORE', key, jobId) or rcall('ZCARD', key) < slots then
  rcall('ZADD', key, string.format('%.3f', now + ttl), jobId)
  local last = rcall('ZRANGE', key, -1, -1, 'WITHSCORES')
  rcall('PEXPIRE', key, math.ceil(tonumber(last[2]) - now) + 1)
  return { 1, 0 }
end

local first = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
return { 0, math.min(maxRetry, math.max(1, math.ceil(tonumber(first[2]) - now))) }
