-- ARGV: 3 id, 4 dir "m u g", 5 files (18 numbers).
fence()
local b = existing(ARGV[3])
redis.call('HSET', b, 'dir', ARGV[4], 'files', ARGV[5])
everyone('t', 'tree')
return 1
