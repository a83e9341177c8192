--[[
  Retry, in one slice of a bulk action, the jobs of a finished set (failed, i.e. dead-lettered, or
  cancelled) that finished at or before the action started, optionally of one type: each becomes
  pending again as retryJob makes one (behind the waiting jobs of its priority, `extra` more
  attempts than it used, every attempt's error kept). The action calls this slice after slice with
  the cursor the last one returned; retried jobs leave the set, jobs of another type stay and are
  passed by the cursor, and jobs that fail again during the action finish after its start, so no
  job is retried twice by one action and the action always ends. A dry run counts and changes
  nothing.

  Input:
    KEYS[1] meta hash
    KEYS[2] seq counter
    KEYS[3] failed zset
    KEYS[4] cancelled zset
    KEYS[5] stats hash
    KEYS[6] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] the set to retry from: "failed" or "cancelled"
    ARGV[4] only jobs of this type ("" for all)
    ARGV[5] extra attempts, an integer from 1 to max_attempts of the meta hash
    ARGV[6] the cursor's score ("" for the first slice)
    ARGV[7] the cursor's job id
    ARGV[8] the latest finish time to retry (ms): the action's start
    ARGV[9] most jobs to look at in this slice, 1..500
    ARGV[10] "1" for a dry run

  Output:
    {looked, matched, more, last score, last id}
      looked: set entries looked at; matched: jobs retried (or, in a dry run, that would be);
      more: 1 when the set may hold more within the bounds after (last score, last id), the next
      slice's cursor, else 0
    error reply "ERR_BAD_ARG ..." or "ERR_NO_CONFIG ..." (nothing written)

  Events:
    pending (type) for the retried jobs, as for retryJob, in shared entries (emitJobEvents)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/reviveJob"
--- @include "includes/emitJobEvents"
--- @include "includes/rangeAfter"

local metaKey, seqKey, failedKey, cancelledKey, statsKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local prefix, from, onlyType = ARGV[1], ARGV[3], ARGV[4]
local extra, afterScore, afterId = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local upTo, want, dryRun = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10] == '1'
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
if (from ~= 'failed' and from ~= 'cancelled') or not upTo or not want or want < 1 or want > 500
    or (afterScore ~= '' and not tonumber(afterScore)) then
  return redis.error_reply('ERR_BAD_ARG retryJobs: from failed or cancelled, a numeric cursor and ' ..
    'end, 1..500 jobs a slice')
end
if not extra or extra < 1 or extra > cfg.max_attempts or extra % 1 ~= 0 then
  return redis.error_reply('ERR_BAD_ARG extra attempts must be an integer from 1 to ' .. cfg.max_attempts)
end
local setKey = from == 'failed' and failedKey or cancelledKey
local entries, ended = rangeAfter(setKey, true, afterScore, afterId, upTo, want)
local now = getTime(ARGV[2])
local matched, events, retriedByType = 0, {}, {}
for _, entry in ipairs(entries) do
  local jobId = entry[1]
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'type', 'priority', 'attempts')
  if f[1] == from and (onlyType == '' or f[2] == onlyType) then
    matched = matched + 1
    if not dryRun then
      reviveJob(prefix, seqKey, cfg, setKey, jobKey, jobId, f[2], f[3], f[4], extra, '', now)
      retriedByType[f[2]] = (retriedByType[f[2]] or 0) + 1
      events[#events + 1] = 'id'
      events[#events + 1] = jobId
      events[#events + 1] = 'type'
      events[#events + 1] = f[2]
    end
  elseif not f[1] and not dryRun then
    rcall('ZREM', setKey, jobId) -- its hash expired (retention): nothing left to retry
  end
end
for jobType, count in pairs(retriedByType) do
  rcall('HINCRBY', statsKey, 'retried:' .. jobType, count)
end
emitJobEvents(eventsKey, cfg.events_maxlen, 'pending', events, 4)
local last = entries[#entries]
return {#entries, matched, ended and 0 or 1, last and last[2] or '', last and last[1] or ''}
