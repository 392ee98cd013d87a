# Cairn build, test and benchmark entry points.
GO        ?= go
BIN       ?= bin/cairn
PKGS      ?= ./...
# Benchmarks write to a real disk (fsync figures mean nothing on tmpfs).
BENCH_DIR ?= $(CURDIR)/.bench

.PHONY: all build run test test-short soak vet fmt fuzz bench etcd compare clean docker

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) .

# A single member with sensible defaults: client URL http://localhost:2379,
# data in ./default.cairn.
run: build
	./$(BIN) serve

# The whole suite as CI runs it: race detector on, fuzz seeds included,
# multi-process tests build and kill the real binary.
# The multi-process tests (e2e/) time elections and failover, so they run
# after the other packages rather than beside them on the same two cores.
test: vet
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list $(PKGS) | grep -v '/e2e$$')
	$(GO) test -race -count=1 -timeout 30m ./e2e

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Longer runs of the randomized cluster tests: SOAK_ROUNDS fresh 3-member
# clusters of SOAK_DURATION each under partitions and restarts, every
# history checked for linearizability (race detector on; a violation
# leaves porcupine's visualisation in SOAK_ARTIFACTS), then the
# deterministic cluster simulation (internal/testcluster) over seeds
# 1..SOAK_SEEDS on 3 and on 5 members.
SOAK_ROUNDS    ?= 10
SOAK_DURATION  ?= 30s
SOAK_SEEDS     ?= 5000
SOAK_ARTIFACTS ?= $(CURDIR)/.soak
soak:
	CAIRN_ARTIFACTS=$(SOAK_ARTIFACTS) $(GO) test -race -count=1 -timeout 3h ./server -run '^TestLinearizability$$' -v \
	  -lin.rounds=$(SOAK_ROUNDS) -lin.duration=$(SOAK_DURATION) -lin.ops=10000000
	$(GO) test -count=1 -timeout 3h ./internal/testcluster -run '^TestSimulation$$' -seeds=$(SOAK_SEEDS)

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./api -run '^$$' -fuzz '^FuzzWriteString$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/leanhttp -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./httpapi -run '^$$' -fuzz '^FuzzKeyPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./httpapi -run '^$$' -fuzz '^FuzzParseKeyRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzCmdCodec$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzTreeRecord$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzEventRecord$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzMemberCodec$$' -fuzztime $(FUZZTIME)
	$(GO) test ./consensus -run '^$$' -fuzz '^FuzzPeerMessage$$' -fuzztime $(FUZZTIME)

# Go benchmarks over the HTTP API on the on-disk store (and 10,000 SSE
# watchers on a member process, once each), then the load generator against
# a real member: PUT at 1 and 64 clients, GET, quorum GET, a 90/10 mix at 64
# clients, and 10,000 SSE watchers on shared and on distinct keys.
BENCHTIME ?= 10s
bench: build
	mkdir -p $(BENCH_DIR)
	CAIRN_BENCH_DIR=$(BENCH_DIR) $(GO) test -run '^$$' -bench . -skip 'SSE|LongPoll' -benchtime 5000x ./server/
	CAIRN_BENCH_DIR=$(BENCH_DIR) $(GO) test -run '^$$' -bench 'SSE|LongPoll' -benchtime 1x -v ./server/ | grep -v '^=== '
	CAIRN_BENCH_DIR=$(BENCH_DIR) $(GO) test -run '^$$' -bench 'LoopbackFanout|PutFloor' -benchtime 1x ./bench/
	$(GO) test -run '^$$' -bench SteadyWrites -benchtime 300000x ./consensus/
	$(GO) test -run '^$$' -bench Export100k ./storage/
	BENCH_DIR=$(BENCH_DIR) BIN=$(BIN) BENCHTIME=$(BENCHTIME) bash scripts/bench.sh

# The reference etcd v3.5 (v2 API), built from the Go module proxy into
# bin/etcd, and the side-by-side comparison against it (MEMBERS=1 or 3).
etcd:
	bash scripts/build-etcd.sh

MEMBERS ?= 1
compare: build
	@[ -x bin/etcd ] || $(MAKE) etcd
	BENCH_DIR=$(BENCH_DIR) MEMBERS=$(MEMBERS) bash scripts/compare.sh

clean:
	rm -rf bin .bench .soak

# The image: the static binary in an empty (scratch) image, tagged cairn:latest.
docker:
	CGO_ENABLED=0 $(GO) build -trimpath -o docker/cairn .
	docker build -t cairn:latest docker
	rm -f docker/cairn
