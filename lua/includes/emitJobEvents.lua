--[[
  Function to append the job events of one kind that a script call gathered (in `groups`, flat: each
  job's group is 'id', job id, then its fields, `width` values in all) to the stream as one entry:
  'ev', kind, then the groups one after another, at most 100 jobs an entry. One entry for a batch of
  jobs costs Redis a fraction of one entry per job, and so does reading it (docs/data-model.md,
  "Events"). Nothing is written for an empty batch.
]]
local function emitJobEvents(eventsKey, maxLen, kind, groups, width)
  local perEntry = 100 * width
  for first = 1, #groups, perEntry do
    rcall('XADD', eventsKey, 'MAXLEN', '~', maxLen, '*', 'ev', kind,
      unpack(groups, first, math.min(first + perEntry - 1, #groups)))
  end
end
