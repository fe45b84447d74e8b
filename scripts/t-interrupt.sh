#!/bin/bash
# A reader blocked in the background is ended by kill; the message it was
# waiting for goes to the next reader. Three waiting readers get one message each.
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir"

cat "$B/recv" > /dev/null &
pid=$!
wait_status receivers-waiting 1
start=$(now_ms)
kill -TERM "$pid"
for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.005; done
kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "blocked cat survived SIGTERM for 1.5 s"; }
took=$(( $(now_ms) - start ))
wait "$pid" 2>/dev/null
ok "kill -TERM ended a blocked cat in ${took} ms"

wait_status receivers-waiting 0
t 5 bash -c 'echo kept > "$B/send"' || fail "send"
out=$(t 5 cat "$B/recv") || fail "cat"
expect_eq "message after kill" "$out" "kept"
ok "message not lost"

tmp=$(mktemp -d) || fail mktemp
for i in 1 2 3; do timeout 10 cat "$B/recv" > "$tmp/$i" & done
wait_status receivers-waiting 3
t 5 bash -c 'for i in 1 2 3; do echo "msg $i" > "$B/send"; done' || fail "sends"
wait || true
got=$(cat "$tmp"/1 "$tmp"/2 "$tmp"/3 | sort | tr '\n' ,)
rm -rf "$tmp"
expect_eq "three readers" "$got" "msg 1,msg 2,msg 3,"
ok "three blocked readers, three messages, one each"
