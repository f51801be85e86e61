#!/usr/bin/env bash
# One prepared GPU run: install the carried wheels, then environment, warm-up, calibration, validation,
# packed into at most 8 files in OUT_DIR (calibrate/device_run.py says what each phase does).
#
#   bash calibrate/device_run.sh OUT_DIR BUDGET_S [--dry-run] [--profile ID]
#
# On the bare GPU image (torch, transformers, numpy, pandas, pyyaml, nvidia-ml-py; no pydantic, no package
# index) the missing packages come from .device_wheels/ in the repository root, prepared on a machine with
# an index (see calibrate/README.md):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .device_wheels pydantic pydantic-core annotated-types typing-inspection typing-extensions
# They are installed with pip --no-index --no-deps --target into a private folder put first on PYTHONPATH.
set -u -o pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR BUDGET_S [--dry-run] [--profile ID]" >&2
  exit 2
fi
OUT=$1
BUDGET=$2
shift 2
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${DEVICE_WHEELS:-$REPO/.device_wheels}
SITE=${DEVICE_SITE:-/tmp/roofline-device-site}
mkdir -p "$OUT"
LOG="$OUT/device_run.log"
START=$(date +%s)
{
  echo "device_run: $(date -u +%Y-%m-%dT%H:%M:%SZ) repo $REPO, python $($PY -c 'import sys; print(sys.version.split()[0])'), budget ${BUDGET} s"
  if ! $PY -c "import pydantic" 2>/dev/null; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
      echo "device_run: installing $(ls "$WHEELS"/*.whl | wc -l) carried wheel(s) from $WHEELS into $SITE"
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl || {
        echo "device_run: error: the carried wheels did not install (one version of each, cp312 manylinux x86_64?)" >&2; exit 3; }
      export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
      echo "device_run: error: pydantic is missing and $WHEELS holds no wheels; prepare them (calibrate/README.md)" >&2
      exit 3
    fi
  fi
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
  $PY -c "import pydantic, roofline, calibrate; print('device_run: pydantic', pydantic.VERSION, 'roofline from', roofline.__file__)" || exit 3
  # what the wheels and the start took comes off the budget
  LEFT=$(( BUDGET - ($(date +%s) - START) ))
  cd "$REPO" && $PY -m calibrate.device_run --out "$OUT" --budget-s "$LEFT" "$@" || exit $?
  for f in summary.md summary.csv environment.json results.tar.gz; do
    [ -f "$OUT/$f" ] || { echo "device_run: error: $OUT/$f was not written" >&2; exit 4; }
  done
} 2>&1 | tee "$LOG"
