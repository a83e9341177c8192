--[[
  Function to tell whether a complete or fail that its lease check refused repeats what this
  worker's attempt already did (its reply was lost and it was sent again): the job's done_by is this
  worker/attempt and its outcome is of the same kind (completing: completed; failing: anything
  else). A complete after the attempt's own fail, or a fail after its own completion, is no repeat.
]]
local function isRepeat(jobKey, doneBy, completing)
  local f = rcall('HMGET', jobKey, 'done_by', 'status')
  return f[1] == doneBy and (f[2] == 'completed') == completing
end
