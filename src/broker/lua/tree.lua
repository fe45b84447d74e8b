-- Every mailbox: for each, id, parent, name, dir "m u g", files (18
-- numbers), rule, capacity, max message size.
fence()
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', 'ipcfs:boxes')) do
  local v = redis.call('HMGET', box(id), 'parent', 'name', 'dir', 'files', 'rule', 'capacity', 'maxsize')
  if v[1] then
    out[#out + 1] = id
    for i = 1, 7 do
      out[#out + 1] = v[i]
    end
  end
end
return out
