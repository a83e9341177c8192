--[[
  Append log lines to a job, from its current lease holder only (job id + worker + attempt, as
  progress): each line cut to max_log_line_bytes (at a character boundary, ending with the cut
  marker), the job's list kept to its newest max_log_lines. One event for the whole call, not one
  a line. The list `logs:<id>` goes with the job hash: every DEL of a job hash deletes it too
  (sweep, trimSet, removeJobs). It has no PEXPIRE of its own: a failed or cancelled job's hash
  expires at its retention, when the sweep's retention pass deletes both. The lease is not
  extended (heartbeats and progress do that), and the job hash is not written, so a job that logs
  costs nothing elsewhere.

  Input:
    KEYS[1] meta hash
    KEYS[2] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] job id
    ARGV[3] worker id
    ARGV[4] attempt
    ARGV[5] the marker that ends a cut line (empfast/limits.py LOG_CUT_MARKER)
    ARGV[6..] the lines, 1 to max_log_lines of them

  Output:
    {"OK", length}   length: the lines the job's log holds now
    {"NOT_FOUND"}    no such job
    {"LEASE_LOST"}   the job is not active under this worker and attempt (nothing written)
    error reply "ERR_BAD_ARG ..." when there are no lines or more than max_log_lines (nothing written)
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    log (type, worker, attempt, lines: the lines as stored, a JSON array)
]]
local rcall = redis.call
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/checkLease"

local metaKey, eventsKey = KEYS[1], KEYS[2]
local prefix, jobId, workerId, attempt, marker = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local FIRST = 6
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local count = #ARGV - FIRST + 1
if count < 1 or count > cfg.max_log_lines or #marker >= cfg.max_log_line_bytes then
  return redis.error_reply('ERR_BAD_ARG lines: 1 to ' .. cfg.max_log_lines .. ' lines a call')
end
local jobKey = prefix .. 'job:' .. jobId
local refused, jobType = checkLease(jobKey, workerId, attempt)
if refused then
  return {refused}
end
local maxBytes = cfg.max_log_line_bytes
local lines = {}
for i = FIRST, #ARGV do
  local line = ARGV[i]
  if #line > maxBytes then
    -- Lua's # counts bytes: keep whole characters only, so the stored line (and the event's JSON)
    -- stays valid UTF-8: while the first byte dropped continues a character, drop its start too
    local keep = maxBytes - #marker
    while keep > 0 do
      local byte = string.byte(line, keep + 1)
      if byte < 0x80 or byte >= 0xC0 then
        break
      end
      keep = keep - 1
    end
    line = string.sub(line, 1, keep) .. marker
  end
  lines[#lines + 1] = line
end
-- not job:<id>:logs, which a job whose id ends in ':logs' would own
local logsKey = prefix .. 'logs:' .. jobId
local length = rcall('RPUSH', logsKey, unpack(lines))
if length > cfg.max_log_lines then
  rcall('LTRIM', logsKey, -cfg.max_log_lines, -1)
  length = cfg.max_log_lines
end
emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'log', 'id', jobId, 'type', jobType, 'worker', workerId,
  'attempt', attempt, 'lines', cjson.encode(lines))
return {'OK', length}
