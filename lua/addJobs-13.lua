--[[
  Add one job or a batch of jobs. Idempotent on the job id: an id that exists already returns the
  existing job's status with created = 0; it is never duplicated and never overwritten (also when
  the same id appears twice in one batch). Every job is validated before anything is written, so a
  bad batch changes nothing. The queue takes at most max_job_types distinct types: a job of a new
  type past it refuses the batch (stats, which read every type, stay bounded). A job with a delay
  goes to the scheduled set, the others to their type's pending set. A job records the owner it was
  submitted by, when one is given (a short hash of the submitting token, never the token:
  docs/security.md), and never changes it. When the caller names a worker (an idle one on its hub),
  up to n of the best pending jobs are claimed for it in the same call, as claimJobs would: a job
  submitted to an idle worker costs one script call before it runs, not an add, an event read back
  and a claim. A job's timeout is the one given, else its type's default (type_timeouts of the meta
  hash), else the queue's (job_timeout_ms, 0: none); it is kept as timeout_ms, and each attempt's
  deadline is set when it starts (activateJob). A job with an expiry is kept in the expiries zset
  until it is claimed (the sweep fails it `expired` if it is still waiting then).
  A job may depend on others of the queue (depends_on, at most max_dependencies): each must exist
  already or come earlier in the batch (else the batch is refused, nothing written), and none may
  be the job itself. A job whose parents have all completed is added as any other; one with a
  parent failed or cancelled already is added failed at once ("dependency failed: <id> <status>",
  final); otherwise it waits (status `waiting`, in the waiting zset) with a count of its open
  parents, each of which gets it in its children set and a `children` flag in its hash (read by
  the HMGETs of the scripts that finish a job, see releaseChildren and failChildren). Its start
  (delay or run_at) is kept as run_at: once released it is scheduled until then.

  Input:
    KEYS[1] meta hash
    KEYS[2] seq counter
    KEYS[3] scheduled zset
    KEYS[4] stats hash
    KEYS[5] events stream
    KEYS[6] types set
    KEYS[7] active zset
    KEYS[8] workers zset
    KEYS[9] worker states hash
    KEYS[10] deadlines zset
    KEYS[11] expiries zset
    KEYS[12] waiting zset
    KEYS[13] failed zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] number of jobs n
    ARGV[4] the owner of every job of the call ("": none)
    ARGV[5] a worker to claim for after the adds ("": none)
    ARGV[6] lease in ms for the claimed jobs
    ARGV[7] most jobs to claim (never more than the worker's free slots or max_claim)
    ARGV[8] "1": also answer each pending job's position (a single submit_job's reply; a batch
      submit does not ask, so its hot path pays no ZRANK), else ""
    then, from ARGV[9], 10 values per job:
      id (1 to max_job_id_bytes bytes), type (1 to max_job_type_bytes bytes),
      payload (JSON text, stored as is), priority (integer -max_priority..max_priority),
      max_attempts (integer 1..max_attempts),
      start: a delay in ms (0..max_delay_ms), or "@" and a time in ms since the epoch (run_at: at
        most max_delay_ms from now; a past one runs at once),
      timeout_ms ("": the type's or the queue's default; else a number of ms, 1..max_timeout_ms),
      expiry ("": none; a ttl in ms, 1..max_delay_ms; or "@" and a time in ms since the epoch, after
        now and the start and at most max_delay_ms from now),
      group ("": none; else at most max_group_bytes bytes: the tenant whose turn claims take,
        round-robin across the groups of the type: see groupedQueue),
      depends_on ("": none; a JSON array of 1 to max_dependencies job ids of this queue)
    (the limits are fields of the meta hash, see getQueueConfig; lengths are UTF-8 bytes)

  Output:
    {"OK", id1, status1, created1, id2, status2, created2, ..., then the claimed jobs: id, type,
      priority, payload, attempt each (none when no worker is named, or it is not live, draining
      or full)}
    created: 1 added; 0 it existed already; 2 it existed already with another owner than the one
    given (or none), which the hub may refuse to reveal (client scope own)
    with ARGV[8] "1", each job has a fourth value: its position, its rank among the pending jobs of
    its type (ZRANK, 0: next), or -1 when it is not pending
    error reply "ERR_BAD_ARG job <i>: <field> ..." when a job is invalid (nothing written): a
      start or an expiry is checked against the Redis clock; a parent that is no job of the queue
      (nor an earlier job of the batch) is named
    error reply "ERR_TOO_MANY_TYPES <max_job_types>" when a job's type is new and the queue has
      max_job_types types already (nothing written)
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    added (type, status, priority) for the jobs created, in one entry (emitJobEvents); failed
    (error, final 1, attempt 0) for the jobs failed at once by a parent failed or cancelled, in one
    entry; then assigned for the jobs claimed, in one entry
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitJobEvents"
--- @include "includes/pendingScore"
--- @include "includes/enterGroup"
--- @include "includes/countStat"
--- @include "includes/flushStats"
--- @include "includes/isWorkerLive"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"
--- @include "includes/trimFinished"

local metaKey, seqKey, scheduledKey, statsKey, eventsKey, typesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local activeKey, workersKey, statesKey, deadlinesKey, expiriesKey = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local waitingKey, failedKey = KEYS[12], KEYS[13]
local prefix = ARGV[1]
local n = tonumber(ARGV[3])
local owner, claimFor, leaseMs, maxClaim = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local positions = ARGV[8] == '1'
local FIELDS, FIRST = 10, 8  -- job i's values are ARGV[FIRST + (i - 1) * FIELDS + 1 ...]

local function bad(i, msg)
  return redis.error_reply('ERR_BAD_ARG job ' .. i .. ': ' .. msg)
end

local function isInteger(value, low, high)
  return value ~= nil and value == math.floor(value) and value >= low and value <= high
end

if not n or n < 0 or #ARGV ~= FIRST + n * FIELDS or not leaseMs or not maxClaim then
  return redis.error_reply('ERR_BAD_ARG expected owner, worker, lease, most claims and positions, then ' ..
    tostring(n) .. ' jobs of ' .. FIELDS .. ' values')
end
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
-- read before the checks: a run_at or an expiry is judged against it
local now = getTime(ARGV[2])
-- the job types' default timeouts, decoded once a call and only when the queue has any
local typeTimeouts = cfg.type_timeouts and cjson.decode(cfg.type_timeouts) or {}

-- a time value: a number of ms from now, or '@' and ms since the epoch; nil when not a number
local function relative(value)
  if string.byte(value, 1) == 64 then
    local at = tonumber(string.sub(value, 2))
    return at and at - now, true
  end
  return tonumber(value), false
end

local jobs = {}
local knownTypes = {}  -- type -> true once it is in the types set or counted as new
local newTypes = {}  -- the types of this batch not yet in the types set
local typeCount = nil  -- the types set's size plus the new types of this batch, once one is new
local batchIds = {}  -- the ids of the jobs checked so far: a job may depend on an earlier one
local parentStatus = {}  -- the status of each existing parent named, read once

-- a job's parents, deduplicated, or nil when it has none; or a false and the error reply
local function checkParents(i, id, dependsOn)
  if dependsOn == '' then
    return nil
  end
  local ok, list = pcall(cjson.decode, dependsOn)
  if not ok or type(list) ~= 'table' or #list < 1 or #list > cfg.max_dependencies then
    return false, bad(i, 'depends_on must be a list of 1 to ' .. cfg.max_dependencies .. ' job ids')
  end
  local parents, seen = {}, {}
  for _, parentId in ipairs(list) do
    if type(parentId) ~= 'string' or parentId == '' or #parentId > cfg.max_job_id_bytes then
      return false, bad(i, 'depends_on must hold job ids of 1 to ' .. cfg.max_job_id_bytes .. ' bytes (UTF-8)')
    end
    if parentId == id then
      return false, bad(i, 'depends_on must not name the job itself')
    end
    if not seen[parentId] then
      seen[parentId] = true
      if not batchIds[parentId] and not parentStatus[parentId] then
        parentStatus[parentId] = rcall('HGET', prefix .. 'job:' .. parentId, 'status')
        if not parentStatus[parentId] then
          return false, bad(i, 'depends_on names ' .. parentId .. ', which is no job of this queue')
        end
      end
      parents[#parents + 1] = parentId
    end
  end
  return parents
end

for i = 1, n do
  local base = FIRST + (i - 1) * FIELDS
  local id, jobType = ARGV[base + 1], ARGV[base + 2]
  local priority, maxAttempts = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  local delay, absolute = relative(ARGV[base + 6])
  local timeout, expiry, group = ARGV[base + 7], ARGV[base + 8], ARGV[base + 9]
  -- Lua's # counts bytes, as Redis does: the limits are in UTF-8 bytes
  if id == '' or #id > cfg.max_job_id_bytes then
    return bad(i, 'job_id must be 1 to ' .. cfg.max_job_id_bytes .. ' bytes (UTF-8)')
  end
  if jobType == '' or #jobType > cfg.max_job_type_bytes then
    return bad(i, 'job_type must be 1 to ' .. cfg.max_job_type_bytes .. ' bytes (UTF-8)')
  end
  if #group > cfg.max_group_bytes then
    return bad(i, 'group must be at most ' .. cfg.max_group_bytes .. ' bytes (UTF-8)')
  end
  if not isInteger(priority, -cfg.max_priority, cfg.max_priority) then
    return bad(i, 'priority must be an integer from ' .. -cfg.max_priority .. ' to ' .. cfg.max_priority)
  end
  if not isInteger(maxAttempts, 1, cfg.max_attempts) then
    return bad(i, 'max_attempts must be an integer from 1 to ' .. cfg.max_attempts)
  end
  -- x ~= x is true only for NaN
  if absolute and delay and delay < 0 then
    delay = 0  -- a run_at in the past: at once
  end
  if not delay or delay ~= delay or delay < 0 or delay > cfg.max_delay_ms then
    if absolute then
      return bad(i, 'run_at must be a time at most ' .. cfg.max_delay_ms / 1000 .. ' s from now')
    end
    return bad(i, 'delay must be a number of ms from 0 to ' .. cfg.max_delay_ms)
  end
  if timeout == '' then
    timeout = typeTimeouts[jobType] or cfg.job_timeout_ms
  else
    timeout = tonumber(timeout)
    if not timeout or timeout ~= timeout or timeout < 1 or timeout > cfg.max_timeout_ms then
      return bad(i, 'timeout must be a number of ms from 1 to ' .. cfg.max_timeout_ms)
    end
  end
  if expiry ~= '' then
    local ttl, at = relative(expiry)
    if not ttl or ttl ~= ttl or ttl < 1 or ttl > cfg.max_delay_ms then
      if at then
        return bad(i, 'expires_at must be a time after now and at most ' .. cfg.max_delay_ms / 1000 ..
          ' s from now')
      end
      return bad(i, 'ttl must be a number of ms from 1 to ' .. cfg.max_delay_ms)
    end
    if ttl <= delay then
      return bad(i, 'the job would expire before it is due to run: expire it after its start')
    end
    expiry = now + math.floor(ttl)
  end
  local parents, refusal = checkParents(i, id, ARGV[base + 10])
  if parents == false then
    return refusal
  end
  batchIds[id] = true
  if not knownTypes[jobType] then
    if rcall('SISMEMBER', typesKey, jobType) == 0 then
      typeCount = (typeCount or rcall('SCARD', typesKey)) + 1
      if typeCount > cfg.max_job_types then
        return redis.error_reply('ERR_TOO_MANY_TYPES ' .. cfg.max_job_types)
      end
      newTypes[jobType] = true
    end
    knownTypes[jobType] = true
  end
  jobs[i] = {id, jobType, ARGV[base + 3], priority, maxAttempts, math.floor(delay), math.floor(timeout), expiry,
    group, parents}
end

-- Per batch, not per job: the sequence numbers (n taken at once: FIFO holds, unused ones are
-- harmless gaps), the added counters and the types set.
local nowText = tostring(now)  -- numbers go to Redis as text made once: Redis formats each Lua number
local out = {'OK'}
local counts = {}
local added = {}  -- the events of the batch, one stream entry (emitJobEvents)
local seq = nil
local statusOf = {}  -- the status of each job of the batch, once written: its children read it
local flagged = {}  -- the parents given the children flag in this call
local failedNow = {}  -- the failed events of the jobs failed at once by a parent

-- the parents of a new job still open (not completed), and the first failed or cancelled one
local function openParents(parents)
  local open = {}
  for _, parentId in ipairs(parents) do
    local status = statusOf[parentId] or parentStatus[parentId]
    if status == 'failed' or status == 'cancelled' then
      return open, parentId .. ' ' .. status
    elseif status ~= 'completed' then
      open[#open + 1] = parentId
    end
  end
  return open, nil
end

for i = 1, n do
  local id, jobType, payload, priority, maxAttempts, delay, timeout, expiry, group, parents = unpack(jobs[i])
  local jobKey = prefix .. 'job:' .. id
  local existing = rcall('HGET', jobKey, 'status')
  if existing then
    statusOf[id] = existing
    out[#out + 1] = id
    out[#out + 1] = existing
    -- HGET of a missing field is false, never equal to a given owner
    out[#out + 1] = (owner ~= '' and rcall('HGET', jobKey, 'owner') ~= owner) and 2 or 0
    if positions then
      out[#out + 1] = existing == 'pending'
        and rcall('ZRANK', prefix .. 'pending:' .. rcall('HGET', jobKey, 'type'), id) or -1
    end
  else
    local status = 'pending'
    local priorityText = tostring(priority)
    local fields = {'id', id, 'type', jobType, 'payload', payload, 'priority', priorityText,
      'max_attempts', tostring(maxAttempts), 'attempts', '0', 'created_at', nowText, 'updated_at', nowText}
    local open, broken = {}, nil
    if parents then
      open, broken = openParents(parents)
      fields[#fields + 1] = 'parents'
      fields[#fields + 1] = cjson.encode(parents)
    end
    if broken then
      -- a parent failed or cancelled already: the job could never run
      status = 'failed'
      local err = 'dependency failed: ' .. broken
      fields[#fields + 1], fields[#fields + 2] = 'error', err
      fields[#fields + 1], fields[#fields + 2] = 'finished_at', nowText
      expiry = ''
      countStat(counts, 'failed:' .. jobType, 1)
      local e = #failedNow
      failedNow[e + 1], failedNow[e + 2], failedNow[e + 3], failedNow[e + 4] = 'id', id, 'type', jobType
      failedNow[e + 5], failedNow[e + 6], failedNow[e + 7], failedNow[e + 8] = 'error', err, 'final', 1
      failedNow[e + 9], failedNow[e + 10] = 'attempt', 0
    elseif #open > 0 then
      status = 'waiting'
      rcall('ZADD', waitingKey, nowText, id)
      countStat(counts, 'waiting:' .. jobType, 1)
      fields[#fields + 1], fields[#fields + 2] = 'open_parents', tostring(#open)
      if delay > 0 then  -- its start, for when its parents are done
        fields[#fields + 1], fields[#fields + 2] = 'run_at', tostring(now + delay)
      end
      for _, parentId in ipairs(open) do
        rcall('SADD', prefix .. 'children:' .. parentId, id)
        if not flagged[parentId] then
          flagged[parentId] = true
          rcall('HSET', prefix .. 'job:' .. parentId, 'children', '1')
        end
      end
    elseif delay > 0 then
      status = 'scheduled'
      local runAt = tostring(now + delay)
      rcall('ZADD', scheduledKey, runAt, id)
      countStat(counts, 'scheduled:' .. jobType, 1)
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = runAt
    else
      seq = (seq or rcall('INCRBY', seqKey, n) - n) + 1
      local score = pendingScore(cfg, priority, seq)
      rcall('ZADD', prefix .. 'pending:' .. jobType, score, id)
      enterGroup(prefix, cfg, jobType, group, id, score, seq)
    end
    fields[#fields + 1] = 'status'
    fields[#fields + 1] = status
    -- only for the jobs that have them: a job without costs no call and no field
    if timeout > 0 then
      fields[#fields + 1] = 'timeout_ms'
      fields[#fields + 1] = tostring(timeout)
    end
    if expiry ~= '' then
      local expiresAt = tostring(expiry)
      rcall('ZADD', expiriesKey, expiresAt, id)
      fields[#fields + 1] = 'expires_at'
      fields[#fields + 1] = expiresAt
    end
    if group ~= '' then
      fields[#fields + 1] = 'group'
      fields[#fields + 1] = group
    end
    if owner ~= '' then
      fields[#fields + 1] = 'owner'
      fields[#fields + 1] = owner
    end
    rcall('HSET', jobKey, unpack(fields))
    if broken then
      trimFinished(prefix, failedKey, jobKey, id, nowText, cfg.keep_failed_ms, cfg.keep_failed_max, 4)
    end
    statusOf[id] = status
    countStat(counts, 'added:' .. jobType, 1)
    local e = #added
    added[e + 1], added[e + 2], added[e + 3], added[e + 4] = 'id', id, 'type', jobType
    added[e + 5], added[e + 6], added[e + 7], added[e + 8] = 'status', status, 'priority', priorityText
    out[#out + 1] = id
    out[#out + 1] = status
    out[#out + 1] = 1
    if positions then
      out[#out + 1] = status == 'pending' and rcall('ZRANK', prefix .. 'pending:' .. jobType, id) or -1
    end
  end
end
for jobType in pairs(newTypes) do
  if counts['added:' .. jobType] then
    rcall('SADD', typesKey, jobType)
  end
end
emitJobEvents(eventsKey, cfg.events_maxlen, 'added', added, 8)
emitJobEvents(eventsKey, cfg.events_maxlen, 'failed', failedNow, 10)
if claimFor ~= '' and isWorkerLive(prefix, workersKey, claimFor, now) then
  local assigned = {}
  local jobs = claimForWorker(prefix, activeKey, deadlinesKey, expiriesKey, counts, assigned, cfg, claimFor,
    now, leaseMs, maxClaim)
  for _, value in ipairs(jobs) do
    out[#out + 1] = value
  end
  emitJobEvents(eventsKey, cfg.events_maxlen, 'assigned', assigned, 8)
  if #jobs > 0 then
    refreshWorkerState(prefix, statesKey, statsKey, claimFor)
  end
end
flushStats(statsKey, counts)
return out
