--[[
  Function to claim up to maxJobs (at most max_claim) of the best pending jobs for a worker, never
  more than its free slots (concurrency minus the jobs it holds). The best job is the lowest score
  among the heads of the pending sets of the worker's job types: O(types * log n); for a type with
  groups, the head is the best job of the group whose turn it is (groupedQueue). A draining worker
  gets nothing, and no worker gets a job of a paused type (cfg.paused, setTypePaused), nor more jobs
  of a limited type than its limits allow (cfg.limits, setTypeLimits; see typeAllowance): those wait,
  pending, in their order. Returns a flat list of the five fields of each claimed job (see
  activateJob); their `assigned` events join `events` for the caller to write (emitJobEvents).
  `stats`: see countStat. When a type's rate held jobs back, cfg.rate_waits gets the type and the
  ms until its next token (claimJobs returns them, so the hub claims again then, once).
]]
--- @include "activateJob"
--- @include "typeAllowance"
--- @include "spendTokens"
--- @include "groupedQueue"
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
  local limits = cfg.limits  -- nil unless some type has limits: then only the limited types pay
  local pendingKeys, left, buckets, taken = {}, {}, {}, {}
  local queues = {}  -- pending key -> groupedQueue, for the types with groups (cfg.grouped)
  for _, jobType in ipairs(cjson.decode(w[1])) do
    local key = prefix .. 'pending:' .. jobType
    local allow = math.huge
    if limits and limits[jobType] and not paused[jobType] then
      allow, buckets[jobType] = typeAllowance(prefix, stats, limits[jobType], jobType, now)
      left[key], taken[jobType] = allow, 0
    end
    if not paused[jobType] and allow > 0 then
      pendingKeys[#pendingKeys + 1] = key
      if cfg.grouped and cfg.grouped[jobType] then
        queues[key] = groupedQueue(prefix, key, jobType, n, limits and limits[jobType] and
          limits[jobType].group_concurrency)
      end
    end
  end
  local ids = {}
  local fast = #pendingKeys == 1 and not queues[pendingKeys[1]]
  if fast then  -- one type without groups: its best n jobs in one call
    local popped = rcall('ZPOPMIN', pendingKeys[1], math.min(n, left[pendingKeys[1]] or n))
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
  end
  -- else the best head among the types, n times (a grouped type's head is its next group's best
  -- job); a limited type leaves the list when its allowance is used
  while not fast and #pendingKeys > 0 and #ids < n do
    local bestId, bestScore, bestKey, bestAt
    for at, key in ipairs(pendingKeys) do
      local id, score
      if queues[key] then
        id, score = queues[key].peek()
      else
        local head = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
        id, score = head[1], tonumber(head[2])
      end
      if id and (bestScore == nil or score < bestScore) then
        bestId, bestScore, bestKey, bestAt = id, score, key, at
      end
    end
    if not bestId then
      break
    end
    local live = true
    if queues[bestKey] then
      live = queues[bestKey].take(bestId)
    else
      rcall('ZREM', bestKey, bestId)
    end
    if live then
      ids[#ids + 1] = bestId
      if left[bestKey] then
        left[bestKey] = left[bestKey] - 1
        if left[bestKey] <= 0 then
          table.remove(pendingKeys, bestAt)
        end
      end
    end
  end
  for _, queue in pairs(queues) do
    queue.finish()
  end
  local nowText, deadline = tostring(now), tostring(now + leaseMs)
  for _, jobId in ipairs(ids) do
    local job = activateJob(prefix, activeKey, deadlinesKey, expiriesKey, stats, events, jobId, workerId,
      nowText, deadline)
    for i = 1, 5 do
      claimed[#claimed + 1] = job[i]
    end
    if taken[job[2]] then
      taken[job[2]] = taken[job[2]] + 1
    end
  end
  for jobType, bucket in pairs(buckets) do
    local wait = spendTokens(prefix, bucket, limits[jobType], jobType, taken[jobType], now)
    if wait then
      cfg.rate_waits = cfg.rate_waits or {}
      cfg.rate_waits[#cfg.rate_waits + 1] = jobType
      cfg.rate_waits[#cfg.rate_waits + 1] = wait
    end
  end
  return claimed
end
