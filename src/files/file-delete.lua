--[[
  Deletes a file's metadata unless an unfinished batch still reads it: the check and the delete in one step, so a batch
  created at the same moment either sees the file and pins it, or finds it gone. The bytes are deleted by the caller.

  Input:
    KEYS[1] the file's metadata (hash)
    KEYS[2] the tenant's file index (sorted set)

    ARGV[1] file id

  Output: 1 deleted; 0 no such file; -1 in use by an unfinished batch (nothing deleted)
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[1]) == 0 then return 0 end
local inUse = tonumber(rcall('HGET', KEYS[1], 'active_batches') or '0')
if inUse > 0 then return -1 end
rcall('DEL', KEYS[1])
rcall('ZREM', KEYS[2], ARGV[1])
return 1
