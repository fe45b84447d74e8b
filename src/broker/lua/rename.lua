-- ARGV: 3 parent, 4 name, 5 new parent, 6 new name.
fence()
local from = ARGV[3] .. '/' .. ARGV[4]
local to = ARGV[5] .. '/' .. ARGV[6]
local id = redis.call('HGET', 'ipcfs:names', from)
if not id then
  fail('ENOENT no such mailbox')
end
if ARGV[5] ~= '0' and redis.call('EXISTS', box(ARGV[5])) == 0 then
  fail('ENOENT the new parent mailbox is gone')
end
-- A mailbox cannot move into itself or below itself.
local up = ARGV[5]
while up ~= '0' do
  if up == id then
    fail('EINVAL a mailbox cannot move below itself')
  end
  up = redis.call('HGET', box(up), 'parent') or '0'
end
local there = redis.call('HGET', 'ipcfs:names', to)
if there == id then
  return 1
end
if there then
  fail('EEXIST a mailbox of the new name exists')
end
redis.call('HDEL', 'ipcfs:names', from)
redis.call('HSET', 'ipcfs:names', to, id)
redis.call('HSET', box(id), 'parent', ARGV[5], 'name', ARGV[6])
if ARGV[3] ~= '0' then
  redis.call('HINCRBY', box(ARGV[3]), 'kids', -1)
end
if ARGV[5] ~= '0' then
  redis.call('HINCRBY', box(ARGV[5]), 'kids', 1)
end
everyone('t', 'tree')
return 1
