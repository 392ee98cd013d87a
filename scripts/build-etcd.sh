#!/usr/bin/env bash
# Builds the reference etcd (v3.5, the last line with the v2 API) from the
# Go module proxy into bin/etcd, for side-by-side benchmarks
# (scripts/compare.sh) and the differential tests (e2e/etcddiff_test.go).
# Nothing of it is part of Cairn.
set -euo pipefail
ETCD_VERSION=${ETCD_VERSION:-v3.5.35}
out=$(cd "$(dirname "$0")/.." && pwd)/bin/etcd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/main.go" <<'GO'
// Command etcd is etcd's own main, built from its module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
printf 'module etcdref\n\ngo 1.23\n' >"$work/go.mod"
cd "$work"
go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
go mod tidy
mkdir -p "$(dirname "$out")"
CGO_ENABLED=0 go build -trimpath -o "$out" .
"$out" --version | head -1
