--[[
  Creates a batch and pins its input file, atomically: the file must exist (and be a `batch` file) at that moment, its
  count of unfinished batches goes up (a file in use cannot be deleted) and it lives at least as long as the batch may
  run. Every key in the tenant's slot; every key written has a TTL.

  Input:
    KEYS[1] the batch (hash)
    KEYS[2] the tenant's batch index (sorted set, scored by creation time)
    KEYS[3] the input file's metadata (hash)

    ARGV[1] batch id
    ARGV[2] creation time, epoch ms (the index score)
    ARGV[3] the batch's TTL, ms
    ARGV[4] index horizon, ms: older entries belong to batches that have expired for sure
    ARGV[5] the file must live until at least this time, epoch ms
    ARGV[6..] the batch's fields: name, value, name, value...

  Output: 1 created; -1 no such input file; -2 the file's purpose is not `batch`
]]
local rcall = redis.call
local purpose = rcall('HGET', KEYS[3], 'purpose')
if not purpose then return -1 end
if purpose ~= 'batch' then return -2 end

local pin = tonumber(ARGV[5])
rcall('HINCRBY', KEYS[3], 'active_batches', 1)
if tonumber(rcall('HGET', KEYS[3], 'expires_at') or '0') < pin then
  rcall('HSET', KEYS[3], 'expires_at', ARGV[5])
  rcall('PEXPIREAT', KEYS[3], pin)
end

local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
rcall('HSET', KEYS[1], unpack(fields))
rcall('PEXPIRE', KEYS[1], ARGV[3])

local now = tonumber(ARGV[2])
local horizon = tonumber(ARGV[4])
rcall('ZADD', KEYS[2], now, ARGV[1])
rcall('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - horizon))
if rcall('PTTL', KEYS[2]) < horizon then rcall('PEXPIRE', KEYS[2], horizon) end
return 1
