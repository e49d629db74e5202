--[[
  Changes a batch if it exists and, for a status change, only from an allowed status: exactly one of the parties racing
  to move it (the driver, a cancel) wins, and only the winner of a final move sends the webhook. A final move also
  unpins the input file. Never creates a batch (a HSET on an expired key would bring it back without a TTL).

  Input:
    KEYS[1] the batch (hash)
    KEYS[2] the input file's metadata (hash; read only with ARGV[4] = "1")

    ARGV[1] new status ("" keeps the status: fields only)
    ARGV[2] statuses it may change from, separated by spaces ("*": any)
    ARGV[3] new TTL of the batch, ms ("0" keeps the TTL)
    ARGV[4] "1" for a final status: unpin the input file, and mark the webhook due (webhook_state "pending") if any
    ARGV[5..] fields to set: name, value, name, value...

  Output: { 1, previous status, has webhook (1/0) } changed; { 0, current status, has webhook } refused;
          { -1, "", 0 } no such batch
]]
local rcall = redis.call
local current = rcall('HGET', KEYS[1], 'status')
if not current then return { -1, '', 0 } end
local hasWebhook = rcall('HEXISTS', KEYS[1], 'webhook')

if ARGV[2] ~= '*' then
  local allowed = false
  for status in string.gmatch(ARGV[2], '%S+') do
    if status == current then allowed = true end
  end
  if not allowed then return { 0, current, hasWebhook } end
end

if ARGV[1] ~= '' then rcall('HSET', KEYS[1], 'status', ARGV[1]) end
if #ARGV >= 6 then
  local fields = {}
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
  rcall('HSET', KEYS[1], unpack(fields))
end
if ARGV[4] == '1' then
  if hasWebhook == 1 then rcall('HSET', KEYS[1], 'webhook_state', 'pending', 'webhook_attempts', '0') end
  if tonumber(rcall('HGET', KEYS[2], 'active_batches') or '0') > 0 then rcall('HINCRBY', KEYS[2], 'active_batches', -1) end
end
if ARGV[3] ~= '0' then rcall('PEXPIRE', KEYS[1], ARGV[3]) end
return { 1, current, hasWebhook }
