--[[
  Move a schedule on to its next due time, once its run of `due` was added (by the store, with the
  job id of that run, so adding it twice adds it once). Only if it is still due at `due`: of hubs
  firing one run at once, one moves it on and the others see 0; a schedule removed, paused or
  replaced meanwhile is left as it is.

  Input:
    KEYS[1] schedule due zset (name -> next due time, ms)

    ARGV[1] key prefix, "{queue}:" (the same first argument as every script)
    ARGV[2] the schedule's name
    ARGV[3] the due time of the run just added (ms)
    ARGV[4] the next due time (ms)

  Output:
    1 when it moved the schedule on, else 0

  Events:
    none
]]
local rcall = redis.call
local current = rcall('ZSCORE', KEYS[1], ARGV[2])
if not current or tonumber(current) ~= tonumber(ARGV[3]) then
  return 0
end
rcall('ZADD', KEYS[1], ARGV[4], ARGV[2])
return 1
