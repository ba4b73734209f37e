#!/usr/bin/env bash
# The fuzzers' long runs (`npm run fuzz`), kept beside the benchmarks because, like them, they
# are too long for `npm test`: each target of test/fuzz at its long count (1,000,000 cloud
# messages, 100,000 YAML files, ...) with a fresh seed, printed first so that a failure can be
# replayed with FUZZ_SEED=<seed> npm run fuzz. A failure is shrunk and saved under
# test/fixtures/fuzz/<target>/, where `npm test` replays it from then on. Extra arguments go to
# vitest (npm run fuzz -- -t yaml runs the tests named yaml only).
set -euo pipefail
cd "$(dirname "$0")/../.."
npm run build
FUZZ_LONG=1 exec npx vitest run test/fuzz --testTimeout=0 --hookTimeout=0 "$@"
