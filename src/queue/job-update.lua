--[[
  Changes an async job's record if it exists and, for a status change, only from an allowed status: exactly one of
  the parties racing to finish a job (worker, cancel, expiry) wins, and only the winner sends the webhook. Never
  creates a record (a HSET on an expired key would bring it back without a TTL).

  Input:
    KEYS[1] the job's record (hash)

    ARGV[1] new status ("" keeps the status: fields only)
    ARGV[2] statuses it may change from, separated by spaces ("*": any)
    ARGV[3] new TTL of the record, ms ("0" keeps the TTL)
    ARGV[4] "1" to add one to the attempts field
    ARGV[5] "1" to set webhook_state to "pending" when the record has a webhook (a final status: its event is due)
    ARGV[6..] fields to set: name, value, name, value...

  Output: { 1, previous status, has webhook (1/0) } changed; { 0, current status, has webhook } refused;
          { -1, "", 0 } no such record
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
if ARGV[4] == '1' then rcall('HINCRBY', KEYS[1], 'attempts', 1) end
if ARGV[5] == '1' and hasWebhook == 1 then rcall('HSET', KEYS[1], 'webhook_state', 'pending') end
if #ARGV >= 7 then
  local fields = {}
  for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
  rcall('HSET', KEYS[1], unpack(fields))
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then rcall('PEXPIRE', KEYS[1], ttl) end
return { 1, current, hasWebhook }
