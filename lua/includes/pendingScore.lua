--[[
  Function to give a pending job its score in its type's pending set: higher priority first, FIFO
  within a priority by the sequence number the job took when it became ready.
  Score = (max_priority - priority) * 2^42 + seq. A double is exact below 2^53, so this holds while
  2 * max_priority + 1 <= 2^11 (max_priority at most 1023) and seq < 2^42; pending scores written
  under one max_priority are not comparable with those of another, so changing it needs a new data
  layout (empfast/keys.py LAYOUT_VERSION).
]]
local function pendingScore(cfg, priority, seq)
  return (cfg.max_priority - priority) * 4398046511104 + seq
end
