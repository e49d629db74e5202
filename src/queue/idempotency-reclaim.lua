--[[
  Takes an Idempotency-Key over from a request that is over (its job ended or is gone), only if nobody else did so
  first: of several retries racing for it, exactly one runs the request anew; the others see the winner's claim.

  Input:
    KEYS[1] the key's claim: "<jobId> <request hash>"
    KEYS[2] the answer kept for the key's retries
    ARGV[1] the claim as the caller saw it (the ended request's)
    ARGV[2] the new claim
    ARGV[3] TTL of the new claim, ms

  Output: false taken over (the old answer is dropped); else the claim that holds the key now.
]]
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('UNLINK', KEYS[2])
return false
