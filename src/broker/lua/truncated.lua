-- ARGV: 3 id.
fence()
redis.call('HINCRBY', existing(ARGV[3]), 'truncated', 1)
return 1
