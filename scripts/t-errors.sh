#!/bin/bash
# Error numbers as the shell shows them.
. "$(dirname "$0")/lib.sh"

t 5 mkdir "$B" || fail "mkdir"

err=$(t 5 bash -c 'echo x > "$B/newfile"' 2>&1) && fail "creating a plain file succeeded"
case $err in *"Operation not permitted"*) ;; *) fail "create plain file: '$err'";; esac
err=$(t 5 ln -s /etc/passwd "$B/link" 2>&1) && fail "symlink succeeded"
case $err in *"Operation not permitted"*) ;; *) fail "symlink: '$err'";; esac
err=$(t 5 mkfifo "$B/fifo" 2>&1) && fail "mkfifo succeeded"
case $err in *"Operation not permitted"*) ;; *) fail "mkfifo: '$err'";; esac
t 5 touch "$B/send" || fail "touch of existing send"
ok "EPERM for plain files, symlinks, FIFOs; touch works"

err=$(t 5 mkdir "$B/send" 2>&1) && fail "mkdir box/send succeeded"
case $err in *"File exists"*) ;; *) fail "mkdir box/send: '$err'";; esac
err=$(t 5 mkdir "$M/policy" 2>&1) && fail "mkdir policy succeeded"
case $err in *"File exists"*) ;; *) fail "mkdir policy: '$err'";; esac
ok "reserved names"

t 5 mkdir -p "$B/child/grandchild" || fail "mkdir -p"
err=$(t 5 rmdir "$B" 2>&1) && fail "rmdir of a mailbox with children succeeded"
case $err in *"Directory not empty"*) ;; *) fail "rmdir parent: '$err'";; esac
t 5 rmdir "$B/child/grandchild" "$B/child" || fail "rmdir children"
ok "ENOTEMPTY only for child mailboxes"

err=$(t 5 dd if=/dev/zero of="$B/send" bs=2M count=1 2>&1) && fail "2 MiB write succeeded"
case $err in *"Message too long"*) ;; *) fail "2 MiB write: '$err'";; esac
status_is messages 0 || fail "nothing queued after EMSGSIZE"
ok "EMSGSIZE"

err=$(t 5 dd if="$B/recv" of=/dev/null iflag=nonblock count=1 2>&1) && fail "non-blocking read on empty succeeded"
case $err in *"Resource temporarily unavailable"*) ;; *) fail "non-blocking read: '$err'";; esac
ok "EAGAIN"

t 5 bash -c 'echo queued > "$B/send"' || fail "send"
t 5 rmdir "$B" || fail "rmdir with a queued message"
[ ! -e "$B" ] || fail "mailbox still there"
ok "rmdir with queued messages"
