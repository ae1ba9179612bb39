import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
torch.set_num_threads(int(os.environ.get("TTC_TEST_THREADS", "2")))
