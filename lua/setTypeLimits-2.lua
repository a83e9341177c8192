--[[
  Set or clear a job type's limits: at most `concurrency` of its jobs active at once across every
  worker and hub, at most `rate` starts per `per_ms` (a token bucket, `{Q}:rate:<type>`), and at
  most `group_concurrency` active at once of each of its groups (groupedQueue). The
  claim enforces them (claimForWorker, claimJobById: see typeAllowance); a job held back waits,
  pending, in its order. The limits are one JSON object in the meta hash (`limits`: type ->
  {concurrency, rate, per_ms, group_concurrency}, the field absent when no type has any), which every claiming script
  reads already (getQueueConfig), so a queue without limits pays nothing for them. The bounds are
  the meta hash's max_type_concurrency, max_rate and max_rate_per_ms (empfast/limits.py).

  Input:
    KEYS[1] meta hash
    KEYS[2] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] job type
    ARGV[3] concurrency, or "" for none
    ARGV[4] rate (starts per period), or "" for none
    ARGV[5] the rate's period in ms (ignored without a rate)
    ARGV[6] group_concurrency (jobs active at once per group), or "" for none

  Output:
    {changed (1 or 0), pending jobs of the type, every type's limits as a JSON object}
    error reply "ERR_BAD_ARG ..." or "ERR_NO_CONFIG ..." (nothing written)

  Events:
    limits (type, pending, and concurrency, rate, per_ms, group_concurrency when set): the hubs keep
    the limits and wake the type's workers (a raised or cleared limit frees waiting jobs at once;
    so does a changed group limit, which puts every parked group back in the line)
]]
local rcall = redis.call
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/unparkGroup"

local metaKey, eventsKey = KEYS[1], KEYS[2]
local prefix, jobType = ARGV[1], ARGV[2]
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local bounds = rcall('HMGET', metaKey, 'max_type_concurrency', 'max_rate', 'max_rate_per_ms')
for i, name in ipairs({'max_type_concurrency', 'max_rate', 'max_rate_per_ms'}) do
  bounds[i] = tonumber(bounds[i])
  if not bounds[i] then
    return redis.error_reply('ERR_NO_CONFIG the meta hash has no ' .. name)
  end
end
if jobType == '' or #jobType > cfg.max_job_type_bytes then
  return redis.error_reply('ERR_BAD_ARG a job type is 1 to ' .. cfg.max_job_type_bytes .. ' bytes')
end
local function whole(text, name, most)
  if text == '' then
    return nil
  end
  local value = tonumber(text)
  if not value or value ~= math.floor(value) or value < 1 or value > most then
    return false, redis.error_reply('ERR_BAD_ARG ' .. name .. ' is a whole number from 1 to ' .. most)
  end
  return value
end
local concurrency, err = whole(ARGV[3], 'concurrency', bounds[1])
if err then
  return err
end
local rate
rate, err = whole(ARGV[4], 'rate', bounds[2])
if err then
  return err
end
local groupConcurrency
groupConcurrency, err = whole(ARGV[6] or '', 'group_concurrency', bounds[1])
if err then
  return err
end
local limit = {concurrency = concurrency, rate = rate, group_concurrency = groupConcurrency}
if rate then
  local perMs = tonumber(ARGV[5])
  if not perMs or perMs ~= math.floor(perMs) or perMs < 1 or perMs > bounds[3] then
    return redis.error_reply('ERR_BAD_ARG per_s is from 0.001 to ' .. bounds[3] / 1000 .. ' seconds')
  end
  limit.per_ms = perMs
end
local all = cfg.limits or {}
local before = all[jobType] and cjson.encode(all[jobType]) or ''
if concurrency or rate or groupConcurrency then
  all[jobType] = limit
else
  all[jobType] = nil
end
local after = all[jobType] and cjson.encode(all[jobType]) or ''
local pending = rcall('ZCARD', prefix .. 'pending:' .. jobType)
local empty = next(all) == nil
if before ~= after then
  if empty then
    rcall('HDEL', metaKey, 'limits')
  else
    rcall('HSET', metaKey, 'limits', cjson.encode(all))
  end
  if not rate then
    rcall('DEL', prefix .. 'rate:' .. jobType)  -- a later rate starts with a full bucket
  end
  -- the parked groups back in the line (the next claims park again the ones still at the limit)
  local parked = rcall('SMEMBERS', prefix .. 'parked:' .. jobType)
  table.sort(parked)  -- the same order on every Redis
  for _, group in ipairs(parked) do
    unparkGroup(prefix, jobType, group)
  end
  local fields = {'ev', 'limits', 'id', '', 'type', jobType, 'pending', pending}
  for _, name in ipairs({'concurrency', 'rate', 'per_ms', 'group_concurrency'}) do
    if limit[name] and (name ~= 'per_ms' or rate) then
      fields[#fields + 1] = name
      fields[#fields + 1] = limit[name]
    end
  end
  emitEvent(eventsKey, cfg.events_maxlen, unpack(fields))
end
return {before == after and 0 or 1, pending, empty and '{}' or cjson.encode(all)}
