--[[
  List one page of jobs of a status, in the order of its sorted set, after a cursor. Read only:
  changes nothing. A page is the ids after the cursor's (score, id), in the set's order (score,
  then id, as Redis orders a sorted set; reversed for the newest first), then each job's row: so a
  page is consistent and costs O(log n + page). Ids at the cursor's score are skipped up to and
  including the cursor's id, so a page boundary inside a tie (a batch finished in one millisecond)
  loses nothing and repeats nothing. Pending jobs of every type are the merge of the types' pending
  sets in dispatch order, at most `limit` ids from each. A type filter on a queue-wide set reads
  each id's type and looks at no more than `budget` ids per page; the page may then hold fewer rows
  than asked, with a cursor to go on. Ids whose hash is gone (retention) are skipped.

  Input:
    KEYS[1] the status's sorted set (scheduled, active, completed, failed, cancelled, or one
            type's pending set), or the types set to list the pending jobs of every type

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] "set": KEYS[1] is the set to list; "types": merge the pending sets of KEYS[1]'s types
    ARGV[3] "asc" (oldest first) or "desc" (newest first)
    ARGV[4] rows wanted, 1..500
    ARGV[5] the cursor's score ("" for the first page)
    ARGV[6] the cursor's job id
    ARGV[7] only jobs of this type ("" for all)
    ARGV[8] "1" to add each job's payload and result
    ARGV[9] most ids to look at for a type filter

  Output:
    {scanned, more, last score, last id, then per row: score, job id, type, status, priority,
     attempts, max_attempts, worker, progress, created_at, started_at, finished_at, run_at,
     error, timeout_ms, expires_at[, payload, result]}
    scanned: the ids looked at; more: 1 when the set may hold more jobs after the last id looked
    at (the next page's cursor: last score, last id; "" when none was), 0 at its end
    error reply "ERR_BAD_ARG ..." for a bad argument

  Events:
    none
]]
local rcall = redis.call
--- @include "includes/rangeAfter"
local prefix, mode, order = ARGV[1], ARGV[2], ARGV[3]
local limit, afterScore, afterId = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local onlyType, withPayloads, budget = ARGV[7], ARGV[8] == '1', tonumber(ARGV[9])
if not limit or limit < 1 or limit > 500 or not budget or (order ~= 'asc' and order ~= 'desc')
    or (mode ~= 'set' and mode ~= 'types') or (afterScore ~= '' and not tonumber(afterScore)) then
  return redis.error_reply('ERR_BAD_ARG listJobs: limit 1..500, order asc or desc, mode set or types, ' ..
    'a numeric cursor score')
end
local ascending = order == 'asc'

local candidates, ended
if mode == 'types' then
  candidates, ended = {}, true
  for _, jobType in ipairs(rcall('SMEMBERS', KEYS[1])) do
    local found, typeEnded = rangeAfter(prefix .. 'pending:' .. jobType, ascending, afterScore, afterId,
      nil, limit)
    for _, entry in ipairs(found) do
      candidates[#candidates + 1] = entry
    end
    ended = ended and typeEnded
  end
  table.sort(candidates, function(a, b)
    if a[3] ~= b[3] then
      if ascending then return a[3] < b[3] end
      return a[3] > b[3]
    end
    if ascending then return a[1] < b[1] end
    return a[1] > b[1]
  end)
  if #candidates > limit then
    ended = false
  end
else
  candidates, ended = rangeAfter(KEYS[1], ascending, afterScore, afterId, nil,
    onlyType == '' and limit or budget)
end

local fields = {'type', 'status', 'priority', 'attempts', 'max_attempts', 'worker', 'progress',
  'created_at', 'started_at', 'finished_at', 'run_at', 'error', 'timeout_ms', 'expires_at'}
if withPayloads then
  fields[#fields + 1] = 'payload'
  fields[#fields + 1] = 'result'
end
local out = {0, 0, '', ''}
local rows, scanned = 0, 0
for _, entry in ipairs(candidates) do
  if rows == limit then
    ended = false
    break
  end
  scanned = scanned + 1
  out[3], out[4] = entry[2], entry[1]
  local row = rcall('HMGET', prefix .. 'job:' .. entry[1], unpack(fields))
  if row[1] and (onlyType == '' or row[1] == onlyType) then
    out[#out + 1] = entry[2]
    out[#out + 1] = entry[1]
    for i = 1, #fields do
      out[#out + 1] = row[i]
    end
    rows = rows + 1
  end
end
if scanned < #candidates then
  ended = false
end
out[1], out[2] = scanned, ended and 0 or 1
return out
