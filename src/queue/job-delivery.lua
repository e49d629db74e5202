--[[
  Records one webhook delivery attempt of an async job: appends it to the job's delivery log and sets the job's
  webhook state, atomically (a worker that dies in between must not leave "delivered" in the log and "pending" in the
  record, or the event would be sent again). Never creates a record that has expired.

  Input:
    KEYS[1] the job's record (hash)
    KEYS[2] the job's delivery log (list)

    ARGV[1] the attempt, as JSON
    ARGV[2] entries kept in the log (the oldest go first)
    ARGV[3] the log's TTL, ms
    ARGV[4] the webhook state to set
    ARGV[5] the attempt number

  Output: 1 recorded; 0 no such record (nothing written)
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[1]) == 0 then return 0 end
rcall('HSET', KEYS[1], 'webhook_state', ARGV[4], 'webhook_attempts', ARGV[5])
rcall('RPUSH', KEYS[2], ARGV[1])
rcall('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
rcall('PEXPIRE', KEYS[2], ARGV[3])
return 1
