--[[
  Stores an answer in the response cache and releases the single flight that computed it (waiting requests then find
  the entry). Clock: Redis TIME, as in cache-lookup.lua.

  Input:
    KEYS[1] the entry (hash, see cache-lookup.lua)
    KEYS[2] the single-flight lock
    ARGV[1] ttl, ms: how long the entry is a fresh hit
    ARGV[2] how long the entry is kept, ms (ttl + maxStaleMs: the stale fallback's window)
    ARGV[3] kind: body | stream
    ARGV[4] HTTP status
    ARGV[5] data: the JSON body, or the stream's data payloads as a JSON array
    ARGV[6] single-flight token held by the storing job ("": none); the lock is deleted only if it still holds it

  Output: 1. The entry always carries a TTL.
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

rcall('DEL', KEYS[1])
rcall('HSET', KEYS[1], 'at', string.format('%d', now), 'ttl', ARGV[1], 'kind', ARGV[3], 'status', ARGV[4], 'data', ARGV[5])
rcall('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[6] ~= '' and rcall('GET', KEYS[2]) == ARGV[6] then rcall('DEL', KEYS[2]) end
return 1
