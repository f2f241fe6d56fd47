"""Data parallelism on simulated CPU devices and across two local processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("parallel_worker.py")


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.mark.slow
def test_jit_mesh_shard_map_pmap_agree_on_8_devices(run_on_cpu_devices):
    result = run_on_cpu_devices([str(WORKER), "strategies"], 8)
    assert result.pop("devices") == 8
    # 4 strategies x (per-step, scan-fused, device-resident), 20 steps, same global batch.
    assert len(result) == 12
    for name, diff in result.items():
        assert diff <= 1e-5, (name, diff)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_gloo_match_one_process(tmp_path):
    port = _free_port()
    out = tmp_path / "multi.npz"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "host",
                str(pid),
                str(port),
                str(tmp_path / "w"),
                str(out),
            ],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in (0, 1)
    ]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [log[-2000:] for log in logs]
    single = subprocess.run(
        [sys.executable, str(WORKER), "single", str(tmp_path / "s"), str(tmp_path / "one.npz")],
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = np.load(out), np.load(tmp_path / "one.npz")
    assert sorted(a.files) == sorted(b.files) and a.files
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, rtol=0, err_msg=k)
    # Both processes wrote one shared checkpoint directory through Orbax.
    assert sorted(p.name for p in (tmp_path / "w" / "checkpoints").iterdir()) == ["10", "20"]
