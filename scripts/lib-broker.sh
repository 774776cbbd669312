# Sourced by the measuring scripts (latency.sh, floor.sh, loadgen-ab.sh): a scratch
# directory in $work, the broker the script starts in $broker, and on exit that broker
# (only it, by PID) stopped and the scratch directory removed.
work=$(mktemp -d)
broker=
cleanup() {
    [[ -n $broker ]] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# wait_port PORT: returns once something accepts on 127.0.0.1:PORT (5 s at most).
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "broker did not listen on $1" >&2
    return 1
}
