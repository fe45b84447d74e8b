-- ARGV: 3 flight. Its messages reached their reader: receipts go to the
-- senders that asked for one, naming the reading pid and this node.
fence()
local inbox = 'ipcfs:inbox:' .. NODE
local e = redis.call('XRANGE', inbox, ARGV[3], ARGV[3])[1]
if not e then
  return 0
end
local f = fields(e[2])
for _, raw in ipairs(carried(f)) do
  local parts = lines(raw, 3)
  -- A broadcast message's receipt names the first process that took a
  -- copy: its mark is taken by the first ack.
  local first = true
  if parts[2] ~= '' and f.c and f.c ~= '' then
    first = redis.call('HDEL', box(f.m) .. ':bt', parts[1] .. ' ' .. parts[2]) == 1
  end
  if parts[2] ~= '' and first then
    post(parts[1], 't', 'receipt', 'tag', parts[2], 'pid', f.p, 'node', NODE)
  end
end
if redis.call('EXISTS', box(f.m)) == 1 then
  redis.call('HINCRBY', box(f.m), 'received', tonumber(f.n))
end
redis.call('XDEL', inbox, ARGV[3])
return 1
