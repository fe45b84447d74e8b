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

# A subshell's output is several writes; an external program's is one.
t 5 bash -c '{ echo x; echo y; } | cat > "$B/send"' || fail "pipe through cat"
status_is messages 1 || fail "output piped through cat should be one message"
out=$(t 5 cat "$B/recv") || fail "cat recv"
expect_eq "piped through cat" "$out" "$(printf 'x\ny')"
ok "piping through cat makes one message"
