# Chorus: the commands a newcomer needs. Each target installs missing Debian packages first
# (scripts/install-deps.sh: idempotent, silent when nothing is missing), then builds what it runs.
JOBS ?= $(shell nproc)
SEEDS ?= 1..20
FUZZ_SECONDS ?= 600

.PHONY: all deps js-deps debug release sim-release run sim scenarios report soak ci-seeds test bench load fuzz fuzz-smoke clean

all: release

deps:
	@bash scripts/install-deps.sh

# Debug build with AddressSanitizer and UBSan: what the tests run on.
debug: deps
	@test -f build/debug/build.ninja || cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

# Release build: what `run` and `bench` use.
release: deps
	@test -f build/release/build.ninja || cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target chorusd chorus-sim

# The simulator alone in release (the soak and CI's seed sweep need no more).
sim-release: deps
	@test -f build/release/build.ninja || cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target chorus-sim

# The main job: a three-node cluster on loopback on the embedded default (SQLite); Ctrl-C stops it.
run: release
	@bash scripts/run-cluster.sh

# The simulator: every scenario (scenarios/*.yaml: the HA guide's procedures and failures, whole
# clusters with a load balancer and clients, every checker on) over seeds $(SEEDS), each run twice to
# prove determinism; then the foundation's ping cluster under random faults.
sim: release
	@./build/release/chorus-sim run scenarios/*.yaml --seeds $(SEEDS) --check-determinism
	@./build/release/chorus-sim swarm --seeds $(SEEDS) --nodes 5 --check-determinism

# The latest full run of the scenarios, committed under reports/scenarios/ (a page and an SVG timeline
# per scenario, and an index), and the simulator's speed for 3 nodes/100 clients and 9 nodes/1,000.
report: release
	@rm -rf reports/scenarios && ./build/release/chorus-sim run scenarios/*.yaml --report reports/scenarios
	@bash scripts/sim-speed.sh > reports/sim-speed.md && echo "wrote reports/sim-speed.md"

# Every scenario over many seeds on every core (SEEDS=N: seeds 1..N; or a range A..B), with a progress
# line; writes reports/soak.md (seeds run, failures with their replay commands, speed).
soak: sim-release
	@case "$(SEEDS)" in *..*) range="$(SEEDS)";; *) range="1..$(SEEDS)";; esac; \
	./build/release/chorus-sim run scenarios/*.yaml --seeds $$range --jobs $(JOBS) --soak-report reports/soak.md

# CI's seed volume: random-faults over 2,000 seeds of a range that moves with every commit.
ci-seeds: sim-release
	@bash scripts/ci-seeds.sh

# The official Mattermost client (npm, pinned by tests/js/package-lock.json) for the NGINX test.
js-deps: deps
	@test -d tests/js/node_modules/@mattermost/client -a -d tests/js/node_modules/s3rver || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

test: debug js-deps
	@ctest --preset debug -j 2
	@$(MAKE) --no-print-directory ci-seeds
	@$(MAKE) --no-print-directory fuzz-smoke

bench: deps
	@test -f build/release/build.ninja || cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target chorus_bench chorus_bench_report
	@mkdir -p reports
	@./build/release/bench/chorus_bench --benchmark_out=reports/bench.json --benchmark_out_format=json
	@./build/release/bench/chorus_bench_report reports/bench.json > reports/bench.md
	@cmake --build --preset release -j $(JOBS) --target chorus-sim
	@./build/release/chorus-sim membership --nodes 3,5,9,25 --seeds 1..50 --report reports/membership.md >/dev/null
	@echo "wrote reports/bench.json, reports/bench.md and reports/membership.md"

# The load test: a cluster of chorusd processes that the tool starts and stops, 10,000 idle WebSockets
# and post delivery latency across nodes (bench/chorus_load.cpp); writes reports/load.md.
load: deps
	@test -f build/release/build.ninja || cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target chorusd chorus_load
	@mkdir -p reports
	@./build/release/bench/chorus_load --report reports/load.md

# The libFuzzer targets (fuzz/README.md: clang-14, ASan and UBSan, build/fuzz): each for FUZZ_SECONDS
# (600), one after the other; writes reports/fuzz.md (executions, coverage and crashes per target).
fuzz: deps
	@JOBS=$(JOBS) bash fuzz/run.sh run $(FUZZ_SECONDS)

# The same, short: the kept crash inputs once each, then every target for a few seconds (under a minute in
# all); fails on any crash.
fuzz-smoke: deps
	@JOBS=$(JOBS) bash fuzz/run.sh smoke

clean:
	rm -rf build
