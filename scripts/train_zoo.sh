#!/usr/bin/env bash
# Retrain checkpoints of the shipped model zoo. Each name runs the exact command recorded on the checkpoint's card
# (the card's "command" field) with its --out replaced by runs/retrain/{name}.safetensors: a retrain never touches
# the shipped file (and training refuses an existing --out unless --force). Compare, then copy over by hand.
# Runs on CPU; each card's command sets its own --threads.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  echo "usage: scripts/train_zoo.sh NAME [NAME ...]   (a checkpoint name, e.g. prefix_sums-recursive)" >&2
  exit 2
fi
mkdir -p runs/retrain
for name in "$@"; do
  python - "$name" <<'PY'
import json, shlex, subprocess, sys
from pathlib import Path
name = sys.argv[1]
card_path = Path("checkpoints") / f"{name}.json"
if not card_path.exists():
    sys.exit(f"error: no card checkpoints/{name}.json")
cmd = shlex.split(json.loads(card_path.read_text())["command"])
out = f"runs/retrain/{name}.safetensors"
if "--out" in cmd:
    cmd[cmd.index("--out") + 1] = out
else:
    cmd += ["--out", out]
print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
try:
    rc = subprocess.run([sys.executable, *cmd[1:]]).returncode
except KeyboardInterrupt:
    rc = 130
if rc == 130:
    print(f"interrupted: what was trained is in runs/retrain/{name}.interrupted.safetensors", file=sys.stderr)
sys.exit(rc)
PY
done
