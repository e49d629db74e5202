--[[
  Creates an async job's record, indexes it in the tenant's job list and claims its Idempotency-Key, atomically: two
  submissions racing with the same key create one job. Every key of the tenant's slot; every key written has a TTL.

  Input:
    KEYS[1] the job's record (hash)
    KEYS[2] the tenant's job index (sorted set, scored by creation time)
    KEYS[3] the Idempotency-Key's claim (string "<jobId> <request hash>"); unused when ARGV[5] is ""

    ARGV[1] job id
    ARGV[2] creation time, epoch ms (the index score)
    ARGV[3] the record's TTL, ms
    ARGV[4] index horizon, ms: entries created longer ago than this belong to records that have expired for sure
    ARGV[5] the claim's value ("" when the request has no Idempotency-Key)
    ARGV[6] a claim to take over ("" none): the key is claimed anew when it still holds this one (its job's record has
            expired before the claim did)
    ARGV[7..] the record's fields: name, value, name, value...

  Output: { 0, jobId } created; { 1, claim } the key was already claimed (nothing written; claim is "<jobId> <hash>")
]]
local rcall = redis.call
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])

if ARGV[5] ~= '' then
  local existing = rcall('GET', KEYS[3])
  if existing and existing ~= ARGV[6] then return { 1, existing } end
  rcall('SET', KEYS[3], ARGV[5], 'PX', ttl)
end

local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
rcall('HSET', KEYS[1], unpack(fields))
rcall('PEXPIRE', KEYS[1], ttl)

rcall('ZADD', KEYS[2], now, ARGV[1])
rcall('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - horizon))
-- The index lives as long as its newest entry may: never shortened by an older job's shorter life.
if rcall('PTTL', KEYS[2]) < horizon then rcall('PEXPIRE', KEYS[2], horizon) end
return { 0, ARGV[1] }
