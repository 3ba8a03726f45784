#!/usr/bin/env bash
# The README's example output, made by running its workflow for real on this machine:
#   run (the quick preset) -> calibrate (3 more runs) -> compare with a CI gate -> history,
# and a 1280 px screenshot of the run's report in headless Chromium (the README's first-screen
# image). Every figure the README quotes comes from the files this writes:
#
#   scripts/readme_example.sh [OUT_DIR]   (default docs/results/readme; takes 6-8 minutes on 2 cores)
#
# OUT_DIR/run.txt, calibrate.txt, compare.txt, history.txt  what each command printed (stdout)
# OUT_DIR/results/<run-id>/                                 the quick run: cells, report.html, export/
# OUT_DIR/results/calibration.json                          this machine's run-to-run variation
# docs/first-screen.png                                     the report's first screen
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/results/readme}
py=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
mkdir -p "$out"
rm -rf "$out/results"

# the quick run, then three more of the same configuration: this machine's run-to-run variation
"$py" -m bench run --preset quick --name readme --out "$work" --export markdown > "$out/run.txt"
"$py" -m bench calibrate --preset quick --repeats 3 --out "$work" > "$out/calibrate.txt"

# the CI gate: a calibration run as the baseline, the quick run as the candidate
baseline=$(ls -d "$work"/*-calibrate | head -1)
candidate=$(ls -d "$work"/*-readme | head -1)
set +e
"$py" -m bench compare "$baseline" "$candidate" --results "$work" --fail-above 10 > "$out/compare.txt"
echo "exit code: $?" >> "$out/compare.txt"
set -e
"$py" -m bench history --results "$work" > "$out/history.txt"

# keep the quick run (its report and exports); the calibration runs only served the variation
# (the calibration beside it, so its report states how far its figures move between runs)
mkdir -p "$out/results"
cp -r "$candidate" "$out/results/"
cp "$work/calibration.json" "$out/results/"
find "$out/results" -name model.pt -delete  # trained weights serve --resume only
sed -i "s#$work#results#g" "$out"/*.txt
report="$out/results/$(basename "$candidate")/report.html"
"$py" -m bench report "$out/results/$(basename "$candidate")" --output "$report" > /dev/null
"$py" scripts/screenshot.py "$report" "$root/docs/first-screen.png"
echo "README example written to $out"
