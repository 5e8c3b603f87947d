#!/usr/bin/env bash
# Fuzzes inferd's input surfaces (fuzz/: cargo-fuzz and libFuzzer, on nightly): builds the targets once, runs
# each for FUZZ_SECONDS (default 60) over its committed corpus, fuzz/corpus/TARGET, and prints executions and
# crashes per target. Fails if any target crashed; the crashing input is left in fuzz/artifacts/TARGET/ and
# becomes a regression test in tests/properties.rs.
#
# New corpus entries go to a scratch directory, never into the repository. FUZZ_MERGE=1 folds the ones that add
# coverage into fuzz/corpus/ (then commit them), FUZZ_TARGETS="manifest preprocess" runs only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
section() { printf '\n==== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

seconds="${FUZZ_SECONDS:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-predict_body v2_infer manifest preprocess}"
# No sanitizer: the code under test is safe Rust, where the bugs to find are panics (overflow checks and debug
# assertions stay on); AddressSanitizer would halve the executions. 16 codegen units: cargo-fuzz's default of
# one builds each of tract's crates on a single core.
build=(--sanitizer none --codegen-units 16)
declare -A dictionary=([predict_body]=json [v2_infer]=json [manifest]=manifest)

section "toolchain"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cargo +nightly --version
cargo fuzz --version

section "build"
cargo +nightly fuzz build "${build[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
logs=fuzz/artifacts/logs
mkdir -p "$logs"
table=()
failed=0
for target in "${targets[@]}"; do
  section "fuzz $target for ${seconds}s"
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target" "fuzz/corpus/$target"
  before=$(find "fuzz/artifacts/$target" -type f | wc -l)
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [[ -n "${dictionary[$target]:-}" ]]; then
    options+=(-dict="fuzz/dict/${dictionary[$target]}.dict")
  fi
  # libFuzzer writes new inputs into the first corpus directory only: the scratch one.
  set +e
  cargo +nightly fuzz run "${build[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- "${options[@]}" \
    >"$logs/$target.log" 2>&1
  status=$?
  set -e
  # The final stats, or (after a crash, which skips them) the last status line: "#RUNS ... exec/s: N ...".
  runs=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$logs/$target.log" ||
    grep -oP '^#\K\d+' "$logs/$target.log" | tail -1 || echo 0)
  rate=$(grep -oP '^stat::average_exec_per_sec:\s*\K\d+' "$logs/$target.log" ||
    grep -oP 'exec/s: \K\d+' "$logs/$target.log" | tail -1 || echo 0)
  crashes=$(($(find "fuzz/artifacts/$target" -type f | wc -l) - before))
  found=$(find "$scratch/$target" -type f | wc -l)
  grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written|Done)' "$logs/$target.log" || true
  if ((status != 0)); then
    failed=1
    ((crashes > 0)) || crashes="error (exit $status)"
    tail -40 "$logs/$target.log"
  elif [[ "${FUZZ_MERGE:-0}" == 1 ]] && ((found > 0)); then
    # Edge coverage only (no hit counts, no comparison operands): a corpus of a few hundred small inputs.
    cargo +nightly fuzz run "${build[@]}" "$target" "fuzz/corpus/$target" "$scratch/$target" -- -merge=1 \
      -use_counters=0 -use_cmp=0 >>"$logs/$target.log" 2>&1
  fi
  table+=("$(printf '%-14s %8s %12s %9s %11s  %s' "$target" "$seconds" "$runs" "$rate" "$found" "$crashes")")
done

section "summary"
printf '%-14s %8s %12s %9s %11s  %s\n' target seconds executions exec/s "new inputs" crashes
printf '%s\n' "${table[@]}"
echo "(full logs: $logs/; crashing inputs: fuzz/artifacts/TARGET/)"
exit "$failed"
