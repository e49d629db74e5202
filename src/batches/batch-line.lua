--[[
  Records one finished line of a batch: its output line joins the results waiting to be flushed, its count and usage
  are added, and its bit in the done bitmap is set, all at once. A line already recorded (a re-run after a crash, a
  second worker after a stall) changes nothing: no line is counted or written twice.

  Input:
    KEYS[1] the batch (hash)
    KEYS[2] the done bitmap
    KEYS[3] the lines in flight (hash: line → offset)
    KEYS[4] the results waiting for a flush (list)

    ARGV[1] line number
    ARGV[2] "o" (answered: the output file) or "e" (failed: the error file)
    ARGV[3] the output line (JSON)
    ARGV[4..8] usage to add: input, cached, output, reasoning, total tokens

  Output: 1 recorded; 0 already recorded; -1 no such batch
]]
local rcall = redis.call
local ttl = rcall('PTTL', KEYS[1])
if ttl < 0 then return -1 end
local line = tonumber(ARGV[1])
if rcall('GETBIT', KEYS[2], line) == 1 then return 0 end

rcall('SETBIT', KEYS[2], line, 1)
rcall('HDEL', KEYS[3], ARGV[1])
rcall('RPUSH', KEYS[4], ARGV[2] .. ARGV[3])
rcall('HINCRBY', KEYS[1], ARGV[2] == 'o' and 'completed' or 'failed', 1)
rcall('HINCRBY', KEYS[1], 'pending_bytes', #ARGV[3] + 1)
local usage = { 'input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens', 'total_tokens' }
for i, field in ipairs(usage) do
  local n = tonumber(ARGV[3 + i])
  if n and n > 0 then rcall('HINCRBY', KEYS[1], field, n) end
end
for i = 2, 4 do rcall('PEXPIRE', KEYS[i], ttl) end
return 1
