--[[
  Remove a repeating job's schedule: no run of it is added after this (a run added already stays).

  Input:
    KEYS[1] schedules hash (name -> JSON)
    KEYS[2] schedule due zset (name -> next due time, ms)

    ARGV[1] key prefix, "{queue}:" (the same first argument as every script)
    ARGV[2] the schedule's name

  Output:
    1 when it existed, else 0

  Events:
    none
]]
local rcall = redis.call
local removed = rcall('HDEL', KEYS[1], ARGV[2])
rcall('ZREM', KEYS[2], ARGV[2])
return removed
