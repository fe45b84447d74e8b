-- ARGV: 3 flight. Its messages reached their reader: receipts go to the
-- senders that asked for one, naming the reading pid and this node.
fence()
local inbox, eid = flight_entry(ARGV[3])
local e = redis.call('XRANGE', inbox, eid, eid)[1]
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
redis.call('XDEL', inbox, eid)
return 1
