--[[
  Releases a single flight without storing anything (the call failed, or its answer is not cacheable): the requests
  waiting for it stop waiting and run their own. Only the holder's token releases it: an expired lock may be another's.

  Input:
    KEYS[1] the single-flight lock
    ARGV[1] the holder's token

  Output: 1 released; 0 not held with this token.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
