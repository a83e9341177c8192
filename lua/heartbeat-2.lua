--[[
  A worker's heartbeat: refresh its liveness and extend the lease of every job it holds. Jobs it no
  longer holds are reported, so the worker can stop them: those in its set that are not active
  under it (dropped from the set), and those the caller believes it holds (ARGV[6...]) that are not
  active under it at that attempt; a sweep that takes a job back removes it from the worker's set,
  so only the caller's list can tell. Jobs whose cancel was asked are reported too, so a cancel
  reaches the worker even if the event that carried it was missed.

  When the caller lists the jobs it believes the worker holds (ARGV[5] "1", as the hub does), a job
  active under the worker that the list leaves out is not extended: the worker is not running it.
  That is a completion Redis lost (acknowledged by a master that failed over before its replica
  had it: the job is active again under the worker) or a claim whose reply is still on its way;
  the first runs out its lease and the sweep gives it out again, the second is listed by the next
  heartbeat, well within its lease (heartbeats come at least three times a lease).

  Input:
    KEYS[1] active zset
    KEYS[2] workers zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms
    ARGV[5] "1": ARGV[6...] is every job the caller believes the worker holds; "0": it may not be
    ARGV[6...] job id, attempt, ...: the jobs the caller believes the worker holds (may be none)

  Output:
    {"OK", extended, {lost job ids}, {job ids to cancel}}
    {"NO_WORKER"}   the worker is not live (see isWorkerLive): register again

  Events:
    none
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/touchWorker"

local activeKey, workersKey = KEYS[1], KEYS[2]
local prefix, workerId = ARGV[1], ARGV[3]
local now = getTime(ARGV[2])
if not touchWorker(prefix, workersKey, workerId, now, true) then
  return {'NO_WORKER'}
end
local jobsKey = prefix .. 'worker:' .. workerId .. ':jobs'
local deadline = now + tonumber(ARGV[4])
local listed, believed = ARGV[5] == '1', {}
for i = 6, #ARGV - 1, 2 do
  believed[ARGV[i]] = true
end
local extended, lost, cancels = 0, {}, {}
for _, jobId in ipairs(rcall('SMEMBERS', jobsKey)) do
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'worker', 'cancel')
  if f[1] == 'active' and f[2] == workerId then
    if believed[jobId] or not listed then
      rcall('ZADD', activeKey, deadline, jobId)
      extended = extended + 1
      if f[3] == '1' then
        cancels[#cancels + 1] = jobId
      end
    end
  else
    rcall('SREM', jobsKey, jobId)
    lost[#lost + 1] = jobId
  end
end
local reported = {}
for _, jobId in ipairs(lost) do
  reported[jobId] = true
end
for i = 6, #ARGV - 1, 2 do
  local jobId = ARGV[i]
  local f = rcall('HMGET', prefix .. 'job:' .. jobId, 'status', 'worker', 'attempts')
  if not reported[jobId] and (f[1] ~= 'active' or f[2] ~= workerId or f[3] ~= ARGV[i + 1]) then
    reported[jobId] = true
    lost[#lost + 1] = jobId
  end
end
return {'OK', extended, lost, cancels}
