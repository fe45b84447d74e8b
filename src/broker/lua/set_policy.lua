-- ARGV: 3 id, 4 rule, 5 capacity (-1 unlimited), 6 maxsize, 7 text.
fence()
local b = existing(ARGV[3])
redis.call('HSET', b, 'rule', ARGV[4], 'capacity', ARGV[5], 'maxsize', ARGV[6], 'policy', ARGV[7])
-- A larger capacity is room for blocked senders.
pump(ARGV[3])
everyone('t', 'tree')
return 1
