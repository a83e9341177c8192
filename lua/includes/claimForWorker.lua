--[[
  Function to claim up to maxJobs (at most max_claim) of the best pending jobs for a worker, never
  more than its free slots (concurrency minus the jobs it holds). The best job is the lowest score
  among the heads of the pending sets of the worker's job types: O(types * log n). A draining worker
  gets nothing, and no worker gets a job of a paused type (cfg.paused, setTypePaused). Returns a flat list of the five fields of each claimed job (see activateJob); their
  `assigned` events join `events` for the caller to write (emitJobEvents). `stats`: see countStat.
]]
--- @include "activateJob"
local function claimForWorker(prefix, activeKey, deadlinesKey, expiriesKey, stats, events, cfg, workerId, now,
                              leaseMs, maxJobs)
  local claimed = {}
  if maxJobs <= 0 then
    return claimed
  end
  local workerKey = prefix .. 'worker:' .. workerId
  local w = rcall('HMGET', workerKey, 'job_types', 'concurrency', 'status')
  if not w[1] or w[3] == 'draining' then
    return claimed
  end
  local free = tonumber(w[2]) - rcall('SCARD', workerKey .. ':jobs')
  local n = math.min(free, maxJobs, cfg.max_claim)
  if n <= 0 then
    return claimed
  end
  local paused = {}
  for _, jobType in ipairs(cfg.paused) do
    paused[jobType] = true
  end
  local pendingKeys = {}
  for _, jobType in ipairs(cjson.decode(w[1])) do
    if not paused[jobType] then
      pendingKeys[#pendingKeys + 1] = prefix .. 'pending:' .. jobType
    end
  end
  local ids = {}
  if #pendingKeys == 1 then  -- one type: its best n jobs in one call
    local popped = rcall('ZPOPMIN', pendingKeys[1], n)
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
  end
  while #pendingKeys > 1 and #ids < n do  -- several: the best head among them, n times
    local bestId, bestScore, bestKey
    for _, key in ipairs(pendingKeys) do
      local head = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
      if head[1] then
        local score = tonumber(head[2])
        if bestScore == nil or score < bestScore then
          bestId, bestScore, bestKey = head[1], score, key
        end
      end
    end
    if not bestId then
      break
    end
    rcall('ZREM', bestKey, bestId)
    ids[#ids + 1] = bestId
  end
  local nowText, deadline = tostring(now), tostring(now + leaseMs)
  for _, jobId in ipairs(ids) do
    local job = activateJob(prefix, activeKey, deadlinesKey, expiriesKey, stats, events, jobId, workerId,
      nowText, deadline)
    for i = 1, 5 do
      claimed[#claimed + 1] = job[i]
    end
  end
  return claimed
end
