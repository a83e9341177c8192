--[[
  Add one job or a batch of jobs. Idempotent on the job id: an id that exists already returns the
  existing job's status with created = 0; it is never duplicated and never overwritten (also when
  the same id appears twice in one batch). Every job is validated before anything is written, so a
  bad batch changes nothing. A job with a delay goes to the scheduled set, the others to their
  type's pending set.

  Input:
    KEYS[1] meta hash
    KEYS[2] scheduled zset
    KEYS[3] stats hash
    KEYS[4] events stream
    KEYS[5] types set

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] number of jobs n
    then 6 values per job:
      id, type, payload (JSON text, stored as is), priority (integer -1000..1000),
      max_attempts (integer 1..1000), delay_ms (number >= 0)

  Output:
    {"OK", id1, status1, created1, id2, status2, created2, ...}
    error reply "ERR_BAD_ARG job <i>: <field> ..." when a job is invalid (nothing written)

  Events:
    added (type, status, priority) for each job created
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/enqueuePending"

local metaKey, scheduledKey, statsKey, eventsKey, typesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix = ARGV[1]
local n = tonumber(ARGV[3])
local FIELDS = 6

local function bad(i, msg)
  return redis.error_reply('ERR_BAD_ARG job ' .. i .. ': ' .. msg)
end

if not n or n < 0 or #ARGV ~= 3 + n * FIELDS then
  return redis.error_reply('ERR_BAD_ARG expected ' .. tostring(n) .. ' jobs of 6 values')
end

local jobs = {}
for i = 1, n do
  local base = 3 + (i - 1) * FIELDS
  local id, jobType = ARGV[base + 1], ARGV[base + 2]
  local priority, maxAttempts, delay = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6])
  if id == '' or #id > 256 then return bad(i, 'job_id must be 1 to 256 characters') end
  if jobType == '' or #jobType > 128 then return bad(i, 'job_type must be 1 to 128 characters') end
  if not priority or priority ~= math.floor(priority) or priority < -1000 or priority > 1000 then
    return bad(i, 'priority must be an integer from -1000 to 1000')
  end
  if not maxAttempts or maxAttempts ~= math.floor(maxAttempts) or maxAttempts < 1 or maxAttempts > 1000 then
    return bad(i, 'max_attempts must be an integer from 1 to 1000')
  end
  if not delay or delay < 0 or delay ~= delay then return bad(i, 'delay must be a number >= 0') end
  jobs[i] = {id, jobType, ARGV[base + 3], priority, maxAttempts, math.floor(delay)}
end

local now = getTime(ARGV[2])
local cfg = getQueueConfig(metaKey)
local out = {'OK'}
for i = 1, n do
  local id, jobType, payload, priority, maxAttempts, delay = unpack(jobs[i])
  local jobKey = prefix .. 'job:' .. id
  local existing = rcall('HGET', jobKey, 'status')
  if existing then
    out[#out + 1] = id
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    rcall('HSET', jobKey, 'id', id, 'type', jobType, 'payload', payload, 'priority', priority,
      'max_attempts', maxAttempts, 'attempts', 0, 'created_at', now)
    local status
    if delay > 0 then
      status = 'scheduled'
      rcall('ZADD', scheduledKey, now + delay, id)
      rcall('HSET', jobKey, 'status', status, 'run_at', now + delay, 'updated_at', now)
    else
      status = 'pending'
      enqueuePending(prefix, jobKey, id, jobType, priority, now)
    end
    rcall('SADD', typesKey, jobType)
    rcall('HINCRBY', statsKey, 'added:' .. jobType, 1)
    emitEvent(eventsKey, cfg.eventsMaxLen, 'ev', 'added', 'id', id, 'type', jobType,
      'status', status, 'priority', priority)
    out[#out + 1] = id
    out[#out + 1] = status
    out[#out + 1] = 1
  end
end
return out
