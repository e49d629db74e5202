--[[
  Decides whether this worker may send the half-open probe of a deployment whose breaker timed out locally: only if
  the pool does not hold it open any more (another worker or the health check may have re-opened it) and no other
  worker holds the probe lease. At most one probe per deployment across the pool, whatever the number of workers.

  Input:
    KEYS[1] the deployment's open key (present while the pool holds the breaker open; TTL = time left)
    KEYS[2] the deployment's probe lease
    ARGV[1] lease TTL, ms (a probe that never reports frees the lease by itself)
    ARGV[2] owner (the worker's instance id, for operators reading the key)

  Output: { 0, 0 } the lease is this worker's: probe now; { 1, ms } the pool holds the breaker open for ms more;
  { 2, ms } another worker is probing, its lease ends in ms.
]]
local rcall = redis.call
local open = rcall('PTTL', KEYS[1])
if open > 0 then return { 1, open } end
if open == -1 then return { 1, tonumber(ARGV[1]) } end
if rcall('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then return { 0, 0 } end
local lease = rcall('PTTL', KEYS[2])
return { 2, math.max(lease, 1) }
