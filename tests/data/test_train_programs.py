"""`spml-data backbone` and `spml-data vlm` run the train stage's program as a child (spml/data imports no other
stage): a SIGTERM to the command reaches the training too, and the exit says the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_sigterm_to_spml_data_backbone_stops_its_training(tmp_path):
    env = dict(os.environ, SPML_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    seed = "913"  # a backbone no other test trains, so the child is found by its arguments
    proc = subprocess.Popen([sys.executable, "-m", "spml.data.cli", "backbone", "--seed", seed], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = []
    deadline = time.time() + 60
    while not child and time.time() < deadline:
        found = subprocess.run(["pgrep", "-f", f"spml.train.backbone_cli --seed {seed}"], capture_output=True, text=True)
        child = [int(p) for p in found.stdout.split()]
        time.sleep(0.2)
    assert child, "the training program never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in child):
        time.sleep(0.2)
    assert not any(_alive(p) for p in child), "the training went on after the command was stopped"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) counts as gone
        return f.read().split()[2] != "Z"
