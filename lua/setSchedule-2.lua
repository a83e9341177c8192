--[[
  Create or replace a repeating job's schedule (docs/job-control.md section 2), or pause or resume
  one: its JSON (checked by the hub, empfast/schedules.py) under its name, and its next due time in
  the due set, or none while it is paused. The hubs' sweeps fire what is due (advanceSchedule).

  Input:
    KEYS[1] schedules hash (name -> JSON)
    KEYS[2] schedule due zset (name -> next due time, ms)

    ARGV[1] key prefix, "{queue}:" (the same first argument as every script)
    ARGV[2] the schedule's name
    ARGV[3] its JSON
    ARGV[4] its next due time in ms, or "" while paused
    ARGV[5] most schedules the queue may have (a new name past it is refused)

  Output:
    {"OK", 1 when the name is new, else 0}
    {"LIMIT", most schedules}   a new name past the limit: nothing written

  Events:
    none
]]
local rcall = redis.call
local schedulesKey, dueKey = KEYS[1], KEYS[2]
local name, spec, due, most = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local created = rcall('HEXISTS', schedulesKey, name) == 0
if created and rcall('HLEN', schedulesKey) >= most then
  return {'LIMIT', most}
end
rcall('HSET', schedulesKey, name, spec)
if due == '' then
  rcall('ZREM', dueKey, name)
else
  rcall('ZADD', dueKey, due, name)
end
return {'OK', created and 1 or 0}
