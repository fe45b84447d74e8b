-- ARGV: 3 flight (an entry of this node's inbox). Its messages go to the
-- next waiting readers or back to the head of the queue, in order.
fence()
local inbox = 'ipcfs:inbox:' .. NODE
local e = redis.call('XRANGE', inbox, ARGV[3], ARGV[3])[1]
if not e then
  return 0
end
local f = fields(e[2])
redis.call('XDEL', inbox, ARGV[3])
restore(f.m, carried(f), f.c)
return 1
