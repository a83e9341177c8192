--[[
  Complete one job or a batch of one worker's jobs, from their current lease holder only, storing
  each result text as given; then claim up to n next jobs for the same worker in the same call, so
  a busy worker costs one round trip per batch of completions. A hub batches the completions that
  queued up on one worker connection, so under load many jobs share a round trip. Each completion
  is judged on its own: a refused one changes nothing and does not stop the others. A repeated
  completion by the same worker and attempt (a lost reply, re-sent) answers OK again and changes
  nothing. A completed job with waiting children (its `children` flag, read by the lease check's
  HMGET) settles them: one open parent fewer each, pending (or scheduled) when none is left.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] completed zset
    KEYS[4] workers zset
    KEYS[5] stats hash
    KEYS[6] events stream
    KEYS[7] worker states hash
    KEYS[8] deadlines zset
    KEYS[9] expiries zset
    KEYS[10] waiting zset
    KEYS[11] seq counter
    KEYS[12] scheduled zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms for the next jobs
    ARGV[5] most next jobs to claim (0: none; never more than max_claim of the meta hash)
    ARGV[6] count of completions, then for each, three values:
    ARGV[6+3i-2] job id
    ARGV[6+3i-1] attempt
    ARGV[6+3i]   result (JSON text, stored as is)

  Output:
    {outcome 1, ..., outcome count, id, type, priority, payload, attempt, ...}
      each outcome is "OK", "NOT_FOUND" (no such job) or "LEASE_LOST" (the job is not active
      under this worker and attempt); then the next jobs, five values each
    error reply "ERR_BAD_ARG ..." or "ERR_NO_CONFIG ..." (nothing written)

  Events:
    completed (result, worker, attempt, type) for the completions; pending (type, status: pending or
    scheduled, priority) for the children that no longer wait; then assigned for the next jobs: one
    entry each (emitJobEvents)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitJobEvents"
--- @include "includes/checkLease"
--- @include "includes/isRepeat"
--- @include "includes/endLease"
--- @include "includes/trimSet"
--- @include "includes/touchWorker"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"
--- @include "includes/countStat"
--- @include "includes/flushStats"
--- @include "includes/releaseChildren"

local metaKey, activeKey, completedKey, workersKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local statsKey, eventsKey, statesKey, deadlinesKey, expiriesKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local waitingKey, seqKey, scheduledKey = KEYS[10], KEYS[11], KEYS[12]
local prefix, workerId, leaseMs, maxJobs = ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local count = tonumber(ARGV[6])
if not count or count < 1 or #ARGV ~= 6 + 3 * count then
  return redis.error_reply('ERR_BAD_ARG completions must come as (job id, attempt, result) triples')
end
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])

local counts = {}  -- the stats counters of this call, written once at the end (countStat)
-- the events of this call, one stream entry per kind (emitJobEvents)
local completed, assigned, released = {}, {}, {}
-- text, so Redis formats no number for each job
local nowText = tostring(now)

local function completeOne(jobId, attempt, result)
  local jobKey = prefix .. 'job:' .. jobId
  local doneBy = workerId .. '/' .. attempt
  local refused, jobType, timed, group, children = checkLease(jobKey, workerId, attempt)
  if refused then
    if isRepeat(jobKey, doneBy, true) then
      return 'OK'
    end
    return refused
  end
  endLease(prefix, activeKey, deadlinesKey, counts, jobId, jobType, workerId, timed, group, cfg)
  rcall('HSET', jobKey, 'status', 'completed', 'result', result, 'progress', '100', 'done_by', doneBy,
    'finished_at', nowText, 'updated_at', nowText)
  countStat(counts, 'completed:' .. jobType, 1)
  -- no PEXPIRE per job: the sweep removes completed jobs older than keep_completed_ms (in slices),
  -- and trimSet keeps the set within keep_completed_max once per batch
  rcall('ZADD', completedKey, nowText, jobId)
  local n = #completed
  completed[n + 1], completed[n + 2], completed[n + 3], completed[n + 4] = 'id', jobId, 'result', result
  completed[n + 5], completed[n + 6], completed[n + 7], completed[n + 8] = 'worker', workerId, 'attempt', attempt
  completed[n + 9], completed[n + 10] = 'type', jobType
  if children then
    releaseChildren(prefix, waitingKey, seqKey, scheduledKey, cfg, counts, released, jobId, now)
  end
  return 'OK'
end

local out = {}
for i = 1, count do
  local base = 6 + 3 * (i - 1)
  out[i] = completeOne(ARGV[base + 1], ARGV[base + 2], ARGV[base + 3])
end
trimSet(prefix, completedKey, cfg.keep_completed_max, 4 * count)  -- once for the batch
emitJobEvents(eventsKey, cfg.events_maxlen, 'completed', completed, 10)
-- after the completions, so a subscriber of a child hears its parent end first
emitJobEvents(eventsKey, cfg.events_maxlen, 'pending', released, 8)
if touchWorker(prefix, workersKey, workerId, now) then
  local jobs = claimForWorker(prefix, activeKey, deadlinesKey, expiriesKey, counts, assigned, cfg, workerId,
    now, leaseMs, maxJobs)
  for _, value in ipairs(jobs) do
    out[#out + 1] = value
  end
  emitJobEvents(eventsKey, cfg.events_maxlen, 'assigned', assigned, 8)
  refreshWorkerState(prefix, statesKey, statsKey, workerId)
end
flushStats(statsKey, counts)
return out
