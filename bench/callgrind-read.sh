#!/bin/bash
# Instructions the server spends on reads of one message, repeatable on a noisy machine (callgrind
# counts instructions, not seconds). Run it twice with two request counts and divide the
# difference: bench/callgrind-read.sh BIN PORT 1000; bench/callgrind-read.sh BIN PORT 6000.
# Needs valgrind, curl, python3 and ab (apache2-utils).
BIN=$1; PORT=$2; N=$3; D=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN serve --port $PORT --host 127.0.0.1 --data-dir $D/data > $D/log 2>&1 &
PID=$!
for i in $(seq 300); do curl -s localhost:$PORT/health >/dev/null && break; sleep 0.2; done
T=$(curl -s -XPOST localhost:$PORT/applications -H 'content-type: application/json' -d '{"name":"a"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
curl -s -XPOST localhost:$PORT/applications/$T/chats >/dev/null
curl -s -XPOST localhost:$PORT/applications/$T/chats/1/messages -H 'content-type: application/json' -d '{"body":"hello there, a benchmark body of about forty"}' >/dev/null
[ "$N" -gt 0 ] && ab -q -k -n $N -c 2 http://127.0.0.1:$PORT/applications/$T/chats/1/messages/1 2>&1 | grep -E "Failed|Complete requests" | tr '\n' ' '
kill -TERM $PID; wait $PID 2>/dev/null
grep -E "^summary|^totals" $D/cg.out | head -1
rm -rf $D
