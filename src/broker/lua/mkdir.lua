-- ARGV: 3 parent, 4 name, 5 dir "m u g", 6 files, 7 rule, 8 capacity,
-- 9 maxsize, 10 policy text. Returns the new id.
fence()
local parent, name = ARGV[3], ARGV[4]
if parent ~= '0' and redis.call('EXISTS', box(parent)) == 0 then
  fail('ENOENT the parent mailbox is gone')
end
local path = parent .. '/' .. name
if redis.call('HEXISTS', 'ipcfs:names', path) == 1 then
  fail('EEXIST a mailbox of that name exists')
end
local id = redis.call('INCR', 'ipcfs:nextid')
redis.call('HSET', box(id), 'parent', parent, 'name', name, 'dir', ARGV[5], 'files', ARGV[6],
  'rule', ARGV[7], 'capacity', ARGV[8], 'maxsize', ARGV[9], 'policy', ARGV[10],
  'kids', 0, 'sent', 0, 'received', 0, 'dropped', 0, 'truncated', 0)
redis.call('HSET', 'ipcfs:names', path, id)
redis.call('SADD', 'ipcfs:boxes', id)
if parent ~= '0' then
  redis.call('HINCRBY', box(parent), 'kids', 1)
end
everyone('t', 'tree')
return id
