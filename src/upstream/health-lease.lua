--[[
  The health-check lease of one provider: one worker of the pool probes it. The holder keeps the lease by renewing it
  at each of its ticks; when the holder dies, the lease expires and the next worker to tick takes it over.

  Input:
    KEYS[1] the provider's health-check lease
    ARGV[1] this worker's instance id
    ARGV[2] lease TTL, ms (three check intervals: a late tick does not hand the lease over)

  Output: 1 this worker holds the lease (taken or renewed): probe now; 0 another worker holds it.
]]
local rcall = redis.call
if rcall('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if rcall('GET', KEYS[1]) == ARGV[1] then
  rcall('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
