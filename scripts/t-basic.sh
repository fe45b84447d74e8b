#!/bin/bash
# The README transcript: mkdir, echo > send, cat recv prints it, an empty read
# blocks until interrupted, rmdir.
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir $B"
for f in send recv policy status; do
    [ -f "$B/$f" ] || fail "mailbox file $f missing"
done
ok "mkdir created send recv policy status"

t 5 bash -c 'echo "build 42" > "$B/send"' || fail "echo > send"
status_is messages 1 || fail "one message queued"
out=$(t 5 cat "$B/recv") || fail "cat recv (rc $?)"
expect_eq "cat recv" "$out" "build 42"
status_is messages 0 || fail "queue empty after cat"
ok "echo > send; cat recv prints it"

# An empty mailbox blocks the reader; timeout (SIGTERM) ends it promptly.
start=$(now_ms)
timeout 1 cat "$B/recv"
rc=$?
took=$(( $(now_ms) - start ))
[ "$rc" -eq 124 ] || fail "timeout 1 cat on empty recv: rc $rc, want 124"
[ "$took" -lt 1500 ] || fail "timeout 1 cat took ${took} ms"
ok "empty read blocks and timeout ends it in ${took} ms"

# The interrupted reader did not eat the next message.
t 5 bash -c 'echo again > "$B/send"' || fail "second send"
out=$(t 5 cat "$B/recv") || fail "second cat"
expect_eq "message after interrupt" "$out" "again"

t 5 rmdir "$B" || fail "rmdir"
[ ! -e "$B" ] || fail "mailbox still exists after rmdir"
ok "rmdir"
