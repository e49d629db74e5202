--[[
  Renews or releases a batch line's run lease, only for the run holding it (its token): a run that lost the lease (it
  expired while its worker was frozen, and another run took it) never extends nor deletes the new holder's.

  Input:
    KEYS[1] the line's run lease (string: the holder's token)

    ARGV[1] the token of the run asking
    ARGV[2] "renew" or "release"
    ARGV[3] new TTL, ms (renew)

  Output: 1 done; 0 the lease is not this run's (any more)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
