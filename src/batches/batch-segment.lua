--[[
  Commits one flush of a batch's results: the first `count` waiting output lines, now written to the segment files
  listed, leave the results list and the segments join the batch's list, but only if no other driver committed this
  segment number first (a driver taken over after a stall must not lose or duplicate lines).

  Input:
    KEYS[1] the batch (hash)
    KEYS[2] the results waiting for a flush (list)
    KEYS[3] the segments (list)

    ARGV[1] the segment number this flush wrote (the batch's `segments` field it expects)
    ARGV[2] how many results it wrote (from the head of the list)
    ARGV[3] their bytes (subtracted from pending_bytes)
    ARGV[4..] the segment entries to append (JSON)

  Output: 1 committed; 0 refused (another driver moved on: the caller deletes its files)
]]
local rcall = redis.call
if tonumber(rcall('HGET', KEYS[1], 'segments') or '0') ~= tonumber(ARGV[1]) then return 0 end
local ttl = rcall('PTTL', KEYS[1])
if ttl < 0 then return 0 end
rcall('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
local bytes = tonumber(ARGV[3])
-- (-0 would reach Redis as "-0", not an integer)
if bytes > 0 then rcall('HINCRBY', KEYS[1], 'pending_bytes', -bytes) end
rcall('HINCRBY', KEYS[1], 'segments', 1)
for i = 4, #ARGV do rcall('RPUSH', KEYS[3], ARGV[i]) end
if #ARGV >= 4 then rcall('PEXPIRE', KEYS[3], ttl) end
return 1
