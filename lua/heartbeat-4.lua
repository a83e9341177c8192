--[[
  A worker's heartbeat: refresh its liveness and extend the lease of every job it holds. Jobs it no
  longer holds (taken back by a sweep) are dropped from its set and reported, so the worker can stop
  them; jobs whose cancel was asked are reported too, so a cancel reaches the worker even if the
  event that carried it was missed.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms

  Output:
    {"OK", extended, {lost job ids}, {job ids to cancel}}
    {"NO_WORKER"}   the worker is not registered (or its record expired): register again

  Events:
    none
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/touchWorker"

local activeKey, workersKey = KEYS[2], KEYS[3]
local prefix, workerId = ARGV[1], ARGV[3]
local now = getTime(ARGV[2])
if not touchWorker(prefix, workersKey, workerId, now) then
  return {'NO_WORKER'}
end
local jobsKey = prefix .. 'worker:' .. workerId .. ':jobs'
local deadline = now + tonumber(ARGV[4])
local extended, lost, cancels = 0, {}, {}
for _, jobId in ipairs(rcall('SMEMBERS', jobsKey)) do
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'worker', 'cancel')
  if f[1] == 'active' and f[2] == workerId then
    rcall('ZADD', activeKey, deadline, jobId)
    rcall('HSET', jobKey, 'lease_until', deadline)
    extended = extended + 1
    if f[3] == '1' then
      cancels[#cancels + 1] = jobId
    end
  else
    rcall('SREM', jobsKey, jobId)
    lost[#lost + 1] = jobId
  end
end
return {'OK', extended, lost, cancels}
