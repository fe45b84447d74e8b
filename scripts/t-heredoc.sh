#!/bin/bash
# `cat <<EOF > send` sends a here-document as ONE message; bash's builtin
# `echo -e 'a\nb'` writes one line per write(2), so it sends TWO.
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir"

t 5 bash -c 'cat <<END > "$B/send"
alpha
beta
gamma
END' || fail "cat <<EOF > send"
status_is messages 1 || fail "here-document should be one message: $(t 5 cat "$B/status" | tr '\n' ' ')"
out=$(t 5 cat "$B/recv") || fail "cat recv"
expect_eq "here-document" "$out" "$(printf 'alpha\nbeta\ngamma')"
status_is messages 0 || fail "queue empty"
ok "here-document is one message"

t 5 bash -c "echo -e 'a\nb' > \"\$B/send\"" || fail "echo -e > send"
status_is messages 2 || fail "builtin echo -e 'a\\nb' should be two messages: $(t 5 cat "$B/status" | tr '\n' ' ')"
out=$(t 5 cat "$B/recv") || fail "cat recv 1"
expect_eq "first line" "$out" "a"
out=$(t 5 cat "$B/recv") || fail "cat recv 2"
expect_eq "second line" "$out" "b"
ok "builtin echo -e 'a\\nb' is two messages"

# A here-string carries a variable's lines as one message too. (Piping a
# subshell through cat does not: cat may read the first line before the
# second is in the pipe, and writes what it read each time.)
t 5 bash -c 'v=$(printf "x\ny"); cat <<< "$v" > "$B/send"' || fail "cat <<< \$v > send"
status_is messages 1 || fail "a here-string should be one message"
out=$(t 5 cat "$B/recv") || fail "cat recv"
expect_eq "here-string" "$out" "$(printf 'x\ny')"
ok "a here-string is one message"
