#!/bin/bash
# bash's own ways of reading: `read -r line < recv`, `msg=$(cat recv)`,
# and a descriptor kept open with `exec 3<recv`: message, EOF, message.
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir"

# read -r line < recv: the first line of one message.
t 5 bash -c 'echo "hello world" > "$B/send"' || fail "send"
IFS= read -r -t 5 line < "$B/recv" || fail "read < recv"
expect_eq "read -r line" "$line" "hello world"
status_is messages 0 || fail "read took the message"
status_is truncated 0 || fail "a fully read message is not truncated"
ok "read -r line < recv"

# msg=$(cat recv): a multi-line message (sent by an external program in one write).
t 5 /usr/bin/printf 'line 1\nline 2\nline 3\n' > "$B/send" || fail "printf > send"
status_is messages 1 || fail "printf output is one message"
msg=$(t 5 cat "$B/recv") || fail "cat"
expect_eq "msg=\$(cat recv)" "$msg" "$(printf 'line 1\nline 2\nline 3')"
ok 'msg=$(cat recv)'

# read of the first line of a two-line message drops the rest (counted as truncated).
t 5 /usr/bin/printf 'first\nrest\n' > "$B/send" || fail "printf > send"
IFS= read -r -t 5 line < "$B/recv" || fail "read < recv"
expect_eq "first line" "$line" "first"
wait_status truncated 1
status_is messages 0 || fail "the rest is not a new message"
ok "read of one line drops the rest of the message"

# exec 3<recv: message, end of file, next message on the same descriptor.
t 5 bash -c 'echo one > "$B/send"; echo two > "$B/send"; echo three > "$B/send"' || fail "sends"
exec 3<"$B/recv" || fail "exec 3<recv"
IFS= read -r -t 5 -u 3 a || fail "read -u 3 (first)"
expect_eq "first message" "$a" "one"
if IFS= read -r -t 5 -u 3 x; then fail "expected end of file after the first message, got '$x'"; fi
expect_eq "end of file" "$x" ""
IFS= read -r -t 5 -u 3 b || fail "read -u 3 (second)"
expect_eq "second message" "$b" "two"
if IFS= read -r -t 5 -u 3 x; then fail "expected end of file after the second message, got '$x'"; fi
# cat <&3 prints exactly one message and stops at its end of file.
out=$(t 5 cat <&3) || fail "cat <&3"
expect_eq "cat <&3" "$out" "three"
exec 3<&-
status_is messages 0 || fail "queue empty"
ok "exec 3<recv: message, EOF, message"
