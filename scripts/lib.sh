# Helpers sourced by scripts/t-*.sh. Run a scenario as:  M=/mountpoint bash scripts/t-foo.sh
# Every blocking command runs under `timeout`; a failure prints a message and exits 1.
set -u
: "${M:?set M to an ipcfs mountpoint}"
export LC_ALL=C
NAME=$(basename "$0" .sh)
B="$M/$NAME.$$"          # this scenario's mailbox (unique, so a shared mount is fine)
export M B

fail() { echo "FAIL [$NAME]: $*" >&2; exit 1; }
ok() { echo "ok [$NAME]: $*"; }

# t N CMD...: run CMD with a deadline of N seconds.
t() { local n=$1; shift; timeout -k 1 "$n" "$@"; }

# status_is KEY VALUE [BOX]: the status file shows `KEY: VALUE`.
status_is() { t 5 grep -qx "$1: $2" "${3:-$B}/status"; }

# wait_status KEY VALUE [BOX]: poll (5 s) until status shows `KEY: VALUE`.
wait_status() {
    local i
    for i in $(seq 1 500); do
        status_is "$@" && return 0
        sleep 0.01
    done
    fail "timed out waiting for '$1: $2' in ${3:-$B}/status: $(t 5 cat "${3:-$B}/status" | tr '\n' ' ')"
}

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

# now_ms: milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() { [ -d "$B" ] && t 5 rmdir "$B" 2>/dev/null; true; }
trap cleanup EXIT
