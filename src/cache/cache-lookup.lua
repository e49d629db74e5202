--[[
  Looks a request up in the response cache and, on a miss, claims its single flight, in one round trip: the first of
  several identical requests computes the answer, the others wait for it. Clock: Redis TIME (every ingress agrees).

  Input:
    KEYS[1] the entry: a hash of at (epoch ms stored), ttl (ms), kind (body | stream), status, data
    KEYS[2] the single-flight lock of the same request
    ARGV[1] freshness the request accepts, ms: an older entry is not a hit (it may still serve as a stale fallback)
    ARGV[2] single-flight token to claim the lock with ("": do not claim)
    ARGV[3] lock TTL, ms (the claiming request's deadline: a lock whose job died frees itself)

  Output: { 1, kind, status, data } a fresh hit; { 0, 'claimed' } a miss whose lock is now this request's;
  { 0, 'taken' } a miss another request is computing (the lock is held); { 0, '' } a miss, the lock free and not claimed.
]]
local rcall = redis.call
local clock = rcall('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local entry = rcall('HMGET', KEYS[1], 'at', 'ttl', 'kind', 'status', 'data')
local at, ttl = tonumber(entry[1]), tonumber(entry[2])
if at and ttl and entry[5] then
  local fresh = math.min(ttl, tonumber(ARGV[1]))
  if now - at < fresh then return { 1, entry[3], entry[4], entry[5] } end
end

if ARGV[2] == '' then
  if rcall('EXISTS', KEYS[2]) == 1 then return { 0, 'taken' } end
  return { 0, '' }
end
if rcall('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return { 0, 'claimed' } end
return { 0, 'taken' }
