#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted input (fuzz/), on the stable toolchain.
#
#   infra/fuzz.sh SECONDS [TARGET...]     each target (default: all) for SECONDS
#   FUZZ_SEED=N infra/fuzz.sh …            libFuzzer's seed (default: a random one per run)
#
# libFuzzer comes from libfuzzer-sys; the coverage instrumentation cargo-fuzz would add is
# passed by hand (`-Cpasses=sancov-module` and the sanitizer-coverage options work on stable;
# only `-Zsanitizer=address` needs nightly, and the targets are safe Rust). `--target` keeps
# the flags off build scripts and proc macros. Builds into target/fuzz; each target's corpus
# grows in target/fuzz/corpus/<target> from the seeds in fuzz/corpus/<target>. A crash, a
# timeout (10 s per input) or an out-of-memory (2 GiB) fails the run and prints the input's
# path (target/fuzz/artifacts/<target>/crash-…); replay it with `target/fuzz/<triple>/release/<target> <path>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: infra/fuzz.sh SECONDS [TARGET...]}
shift
triple=$(rustc -vV | sed -n 's/^host: //p')
out=target/fuzz
export CARGO_TARGET_DIR=$out
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi

t0=$(date +%s)
echo "fuzz: building ${#targets[@]} targets (libFuzzer, sanitizer coverage, release + overflow checks) …"
cargo build --manifest-path fuzz/Cargo.toml --release --target "$triple" --locked -q \
  $(printf -- '--bin %s ' "${targets[@]}") \
  || { echo "error: the fuzz targets did not build (cargo build --manifest-path fuzz/Cargo.toml)" >&2; exit 1; }
echo "fuzz: built in $(( $(date +%s) - t0 )) s; running each target for ${seconds} s"

failed=()
for t in "${targets[@]}"; do
  corpus=$out/corpus/$t
  artifacts=$out/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=$out/$t.log
  status=0
  "$out/$triple/release/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
    -max_len=70000 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$corpus" "fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  if [ "$status" -ne 0 ]; then
    input=$(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log" | tail -n 1)
    echo "fuzz: $t FAILED (exit $status) on ${input:-an input, see $log}"
    grep -m 3 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | sed 's/^/fuzz:   /' || true
    failed+=("$t")
  else
    echo "fuzz: $t ok: ${runs:-?} inputs, coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) files"
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $(( $(date +%s) - t0 )) s in all, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
