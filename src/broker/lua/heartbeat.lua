-- ARGV[3]: lease in ms. Renews this node's lease, then reaps every node
-- whose lease key is gone.
fence()
redis.call('PEXPIRE', 'ipcfs:node:' .. NODE, ARGV[3])
local reaped = 0
for _, n in ipairs(redis.call('SMEMBERS', 'ipcfs:nodes')) do
  if not alive(n) then
    reap(n)
    reaped = reaped + 1
  end
end
return reaped
