#!/bin/bash
# Programs that size their output buffer from st_blksize send their whole output
# as one message when it fits. Note: glibc's stdio uses st_blksize only up to
# BUFSIZ (8 KiB), so a C stdio program's output is one message only up to 8 KiB;
# the kernel rounds st_blksize down to a power of two (524288 for 1044480).
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir"
blk=$(stat -c %o "$B/send")
max=$(t 5 cat "$B/policy" | sed -n 's/.*max-message-size=\([0-9]*\).*/\1/p')
[ -n "$max" ] || fail "no max-message-size in policy"
[ "$blk" -le "$max" ] && [ $((blk * 2)) -gt "$max" ] || fail "st_blksize $blk is not the largest power of two <= $max"
ok "st_blksize of send ($blk) follows the max message size ($max)"

t 10 seq 1 1500 > "$B/send" || fail "seq > send"
status_is messages 1 || fail "seq 1 1500 output (6393 bytes) should be one message"
got=$(t 5 cat "$B/recv" | md5sum)
want=$(seq 1 1500 | md5sum)
expect_eq "seq output" "$got" "$want"
ok "seq 1 1500 > send is one message"

t 10 ls -l /usr/bin/bash /usr/bin/ls > "$B/send" || fail "ls -l > send"
status_is messages 1 || fail "ls -l output should be one message"
got=$(t 5 cat "$B/recv")
want=$(ls -l /usr/bin/bash /usr/bin/ls)
expect_eq "ls -l output" "$got" "$want"
ok "ls -l > send is one message"

tmp=$(mktemp) || fail mktemp
seq 1 20000 > "$tmp"
t 10 cat "$tmp" > "$B/send" || fail "cat file > send"
status_is messages 1 || fail "cat of a 108894-byte file should be one message"
got=$(t 5 cat "$B/recv" | md5sum)
want=$(md5sum < "$tmp")
rm -f "$tmp"
expect_eq "cat file" "$got" "$want"
ok "cat file > send is one message"
