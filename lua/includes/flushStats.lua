--[[
  Function to write the counters a batch script gathered with countStat: one HINCRBY per counter.
]]
local function flushStats(statsKey, counts)
  for field, delta in pairs(counts) do
    if delta ~= 0 then
      rcall('HINCRBY', statsKey, field, delta)
    end
  end
end
