-- ARGV: 3 flight (an entry of this node's inbox). Its messages go to the
-- next waiting readers or back to the head of the queue, in order.
fence()
local inbox, eid = flight_entry(ARGV[3])
local e = redis.call('XRANGE', inbox, eid, eid)[1]
if not e then
  return 0
end
local f = fields(e[2])
redis.call('XDEL', inbox, eid)
untake(f)
restore(f.m, carried(f), f.c)
return 1
