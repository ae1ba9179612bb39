#!/usr/bin/env bash
# Retrain the shipped model zoo. Each line is the exact command recorded on the checkpoint's card
# (the card's "command" field); then `python -m ttc measure ... --write` fills the card's accuracy table.
# Runs on CPU; each job uses one thread (--threads 1), so two can run side by side on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  python - "$name" <<'PY'
import json, shlex, subprocess, sys
card = json.load(open(f"checkpoints/{sys.argv[1]}.json"))
cmd = shlex.split(card["command"])
print("+", card["command"], flush=True)
subprocess.run([sys.executable, *cmd[1:]], check=True)
PY
done
