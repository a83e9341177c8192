--[[
  Remove, in one slice of a bulk action, the jobs of a finished set (completed, failed or
  cancelled) that finished at or before a time, optionally of one type: the job hash, its log, its
  children set and its entry in the set. The action calls this slice after slice with the cursor the last one returned; jobs
  of another type stay and are passed by the cursor. Finished jobs have no lease and no pending
  entry, so nothing else refers to them. A dry run counts and changes nothing.

  Input:
    KEYS[1] the finished zset (completed, failed or cancelled)

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] the status the set holds: "completed", "failed" or "cancelled"
    ARGV[3] only jobs of this type ("" for all)
    ARGV[4] the cursor's score ("" for the first slice)
    ARGV[5] the cursor's job id
    ARGV[6] the latest finish time to remove (ms)
    ARGV[7] most jobs to look at in this slice, 1..500
    ARGV[8] "1" for a dry run

  Output:
    {looked, matched, more, last score, last id}
      looked: set entries looked at; matched: jobs removed (or, in a dry run, that would be);
      more: 1 when the set may hold more within the bounds after (last score, last id), the next
      slice's cursor, else 0
    error reply "ERR_BAD_ARG ..." (nothing written)

  Events:
    none: nothing follows a finished job (a subscriber of one has had its final event)
]]
local rcall = redis.call
--- @include "includes/rangeAfter"

local setKey = KEYS[1]
local prefix, status, onlyType, afterScore, afterId = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local upTo, want, dryRun = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
if (status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled') or not upTo or not want
    or want < 1 or want > 500 or (afterScore ~= '' and not tonumber(afterScore)) then
  return redis.error_reply('ERR_BAD_ARG removeJobs: status completed, failed or cancelled, a numeric ' ..
    'cursor and end, 1..500 jobs a slice')
end
local entries, ended = rangeAfter(setKey, true, afterScore, afterId, upTo, want)
local matched = 0
for _, entry in ipairs(entries) do
  local jobId = entry[1]
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'type')
  local gone = not f[1]
  if gone or (f[1] == status and (onlyType == '' or f[2] == onlyType)) then
    if not gone then
      matched = matched + 1
    end
    if not dryRun then
      rcall('ZREM', setKey, jobId)
      rcall('DEL', jobKey, prefix .. 'logs:' .. jobId, prefix .. 'children:' .. jobId)
    end
  end
end
local last = entries[#entries]
return {#entries, matched, ended and 0 or 1, last and last[2] or '', last and last[1] or ''}
