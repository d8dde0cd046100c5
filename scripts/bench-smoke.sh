#!/bin/bash
# A short run of the benchmarks issue 18 set figures for, as scripts/test-all.sh
# runs it in CI: the seal through the daemon against the null milter (OpenSSL
# and Go crypto builds), and the in-process seal against its bare signatures
# and `openssl speed`. Figures are printed, never judged (a shared CI machine
# is too noisy); a benchmark that fails or a message the load tool loses
# fails the run. The measured figures live in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "-- crypto floor: openssl speed rsa2048"
openssl speed -seconds 1 rsa2048 2>/dev/null | tail -2

echo "-- in process: a seal against its bare signatures (arc), the signing interface (sigcrypto)"
go test -run '^$' -bench 'BareSign|Seal/4KB|ARCFloor' -benchtime 30x ./arc/
go test -run '^$' -bench 'Sign|Verify' -benchtime 30x ./internal/sigcrypto/

echo "-- through the daemon: seal (OpenSSL and Go crypto) against the null milter"
go build -o "$tmp/tollgate.openssl" ./cmd/tollgate
CGO_ENABLED=0 go build -o "$tmp/tollgate.go" ./cmd/tollgate
go build -o "$tmp/tollgate-bench" ./cmd/tollgate-bench
"$tmp/tollgate.go" arc keygen --domain example.org --selector bench --out "$tmp/rsa.key" >/dev/null
cat >"$tmp/seal.yaml" <<YAML
authserv_id: mx.tollgate.test
arc: {sign: [{domain: example.org, selector: bench, key: $tmp/rsa.key}]}
acl: {rcpt: [{accept: {name: relay, control: [arc_sign]}}]}
YAML
"$tmp/tollgate.openssl" version | grep -q 'crypto=openssl' || { echo "the cgo build does not sign with OpenSSL" >&2; exit 1; }
"$tmp/tollgate-bench" --baseline \
	--exec "$tmp/tollgate.openssl run --config $tmp/seal.yaml --listen unix:{socket} --metrics-listen {metrics}" --label seal-openssl \
	--exec "$tmp/tollgate.go run --config $tmp/seal.yaml --listen unix:{socket} --metrics-listen {metrics}" --label seal-go \
	--concurrency 1,16 --messages 300 --duration 5s --warmup 20 --rounds 1
