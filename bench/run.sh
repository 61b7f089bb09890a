#!/usr/bin/env bash
# The benchmark (not part of the tests): `bash bench/run.sh` prints a Markdown table.
# BENCH_RUNS=N sets the warm-promotion sample size (default 50); BENCH_COMMITS and BENCH_FILES
# the generated repository's size (default 10,000 commits over 2,000 files); BENCH_CONSOLE_ONLY=1
# runs only the web console's rows (its pages with 1,000 runs over 200 pipelines, 8 clients at once, and
# first contentful paints in headless Chromium when chromium and chromedriver are installed), BENCH_ONE_SHOT_ONLY=1
# only the one-shot `phasegate promote` rows (cold against a bare clone, warm against the floor).
# BENCH_DELTA_HEAVY=1 makes the pages 6 KB of incompressible text rewritten a line at a time and
# packs the repository with `git gc --aggressive` (long delta chains, as real monorepos have).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
cargo build --release --locked --bin phasegate --example bench
./target/release/examples/bench ./target/release/phasegate
