import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import checkpoint
from common.engine import EngineConfig, StepSampler, load_optimizer, optimizer_tensors, train
from common.io import InputError
from domains.dataset import HarmonyDataset, fingerprint
from harmonizers.models import create
from harmonizers.train import HarmonizerTask

from ..conftest import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)


def _task(data):
    torch.manual_seed(0)  # same initial weights, as the CLIs seed before building the model
    model = create("issam_test")
    ds = HarmonyDataset(data, "all", "train", size=32)
    return HarmonizerTask(model, None, False, ds.domains, fingerprint(ds.samples), None, {}), ds


def _losses(path):
    rows = [json.loads(x) for x in open(path)]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_sampler_is_step_addressed():
    a = StepSampler(10, 4, 6, 0, seed=1)
    b = StepSampler(10, 4, 6, 3, seed=1)
    assert list(a)[3:] == list(b)
    halves = [list(StepSampler(10, 4, 6, 0, seed=1, rank=r, world=2)) for r in (0, 1)]
    for full, h0, h1 in zip(a, *halves):
        assert sorted(full) == sorted(h0 + h1)


def test_optimizer_state_roundtrip():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.sum().backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    load_optimizer(opt2, tensors, json.loads(json.dumps(meta)))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_resume_after_kill_follows_the_same_curve(mini_data, tmp_path):
    cfg = dict(steps=6, batch_size=4, lr=1e-3, save_every=3, log_every=1, device="cpu", seed=3)
    task, ds = _task(mini_data)
    train(task, ds, EngineConfig.of(out=str(tmp_path / "a.safetensors"), **cfg))

    class Killed(Exception):
        pass

    task, ds = _task(mini_data)

    def die(step, total):
        if step == 4:
            raise Killed
    task.on_step = die
    with pytest.raises(Killed):
        train(task, ds, EngineConfig.of(out=str(tmp_path / "b.safetensors"), **cfg))
    assert (tmp_path / "b.last.safetensors").exists() and not (tmp_path / "b.safetensors").exists()
    task, ds = _task(mini_data)
    res = train(task, ds, EngineConfig.of(out=str(tmp_path / "b.safetensors"), **cfg))
    assert res["steps_this_run"] == 3  # killed after 4 steps; resumed from the step-3 checkpoint
    la, lb = _losses(tmp_path / "a.log.jsonl"), _losses(tmp_path / "b.log.jsonl")
    for s in range(1, 7):
        assert lb[s] == pytest.approx(la[s], rel=1e-4), s
    wa, _ = checkpoint.load(tmp_path / "a.safetensors", kind="harmonizer")
    wb, _ = checkpoint.load(tmp_path / "b.safetensors", kind="harmonizer")
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-4), k
    with pytest.raises(InputError, match="already exists"):
        task, ds = _task(mini_data)
        train(task, ds, EngineConfig.of(out=str(tmp_path / "b.safetensors"), **cfg))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(mini_data, tmp_path):
    common = ["--data", str(mini_data), "--arch", "issam_test", "--steps", "3", "--batch_size", "4",
              "--device", "cpu", "--lr", "1e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "harmonizers.train", *common, "--out", str(tmp_path / "one.safetensors")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "harmonizers.train", *common, "--out", str(tmp_path / "two.safetensors")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    cfg = json.loads((tmp_path / "two.config.json").read_text())
    assert cfg["world_size"] == 2
    l1, l2 = _losses(tmp_path / "one.log.jsonl"), _losses(tmp_path / "two.log.jsonl")
    # same initial weights and global batch: the first loss agrees (batch norm sees half batches)
    assert l2[3] == pytest.approx(l1[3], rel=0.2)
    assert checkpoint.read_meta(tmp_path / "two.safetensors")["step"] == 3


def test_channels_last_with_a_5d_lut_bank(mini_data, tmp_path):
    """--channels_last converts the 4-D weights and leaves SycoNet's 5-D LUT bank alone."""
    from syconet.train import main
    out = tmp_path / "s.safetensors"
    main(data=str(mini_data), domains="MiniDay2night", out=str(out), arch="syconet_test", size=32, steps=2,
         batch_size=2, device="cpu", channels_last=True)
    tensors, meta = checkpoint.load(out, kind="syconet")
    assert meta["step"] == 2 and all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile needs a C compiler")
def test_compile_trains_the_same_and_saves_the_same_keys(mini_data, tmp_path):
    """--compile compiles the task's networks in place: the same losses as eager, the same
    checkpoint keys (no compile wrapper names), a loss module left eager around them."""
    from harmonizers.train import main
    logs, keys = {}, {}
    for c in (False, True):
        out = tmp_path / f"c{int(c)}.safetensors"
        main(data=str(mini_data), arch="gct_test", augment="processes:0.5", steps=2, batch_size=4, size=32,
             device="cpu", out=str(out), save_every=100, compile=c)
        logs[c] = [json.loads(x)["loss"] for x in open(tmp_path / f"c{int(c)}.log.jsonl") if '"loss"' in x]
        keys[c] = sorted(checkpoint.load(out)[0])
        assert json.loads((tmp_path / f"c{int(c)}.config.json").read_text())["engine"]["hw"]["compile"] is c
    assert logs[True] and logs[True] == pytest.approx(logs[False], rel=1e-4)
    assert keys[True] == keys[False]
    task = HarmonizerTask(create("gct_test"), None, False, ["A"], "fp", None, {})
    assert task.networks() == [task.net]


def test_config_groups_are_built_once_and_the_engine_owns_seed_and_device():
    from dataclasses import asdict, fields

    from common.engine import HardwareConfig, LoopConfig, OptimConfig, begin
    cfg = EngineConfig.of(out="x.safetensors", steps=7, lr=0.5, workers=3, channels_last=True, seed=4, device="cpu")
    assert (cfg.loop.out, cfg.optim.steps, cfg.optim.lr, cfg.hw.workers, cfg.hw.channels_last) == ("x.safetensors", 7, 0.5, 3, True)
    assert cfg.optim.batch_size == OptimConfig().batch_size and cfg.loop.resume is True  # defaults for the rest
    names = [f.name for g in (LoopConfig, OptimConfig, HardwareConfig) for f in fields(g)]
    assert len(names) == len(set(names))  # one group per option
    assert set(asdict(cfg)) == {"loop", "optim", "hw"}
    fold = cfg.replace(out="f.safetensors", val_every=0)
    assert fold.loop.out == "f.safetensors" and cfg.loop.out == "x.safetensors" and fold.optim == cfg.optim
    with pytest.raises(TypeError):
        EngineConfig.of(out="x", arch="issam64")  # a command's own option is not the engine's
    assert begin(cfg) == torch.device("cpu")
    a = torch.rand(3)
    begin(cfg)
    assert torch.equal(torch.rand(3), a)  # seeded from the engine's seed


def test_the_log_measures_the_wait_for_data(mini_data, tmp_path):
    """A slow dataset shows as time waiting for batches; a fast one barely does."""
    import time

    class Slow(torch.utils.data.Dataset):
        def __init__(self, base, delay):
            self.base, self.delay = base, delay

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            time.sleep(self.delay)
            return self.base[i]

    shares = {}
    for delay in (0.0, 0.2):
        task, ds = _task(mini_data)
        res = train(task, Slow(ds, delay), EngineConfig.of(
            out=str(tmp_path / f"w{delay}.safetensors"), steps=3, batch_size=4, log_every=1, device="cpu"))
        rows = [json.loads(x) for x in open(tmp_path / f"w{delay}.log.jsonl") if "elapsed_s" in x]
        waits = [r["data_wait_s"] for r in rows]
        assert waits == sorted(waits) and 0 <= res["data_wait_share"] <= 1
        shares[delay] = res["data_wait_share"]
    # 0.8 s of sleeping per batch against a tiny model's step (and reading the images, whatever else runs)
    assert shares[0.2] > 0.6 and shares[0.2] > shares[0.0] + 0.3


def test_auto_workers_leave_the_cpu_alone_and_feed_a_gpu(monkeypatch):
    from common.engine import resolve_workers
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_workers(-1, cpu) == 0 and resolve_workers(3, cpu) == 3 and resolve_workers(0, gpu) == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert resolve_workers(-1, gpu) == 8 and resolve_workers(-1, gpu, world=4) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert resolve_workers(-1, gpu) == 1 and resolve_workers(-1, gpu, world=2) == 0


def test_weighted_sampler_draws_by_weight_and_by_step():
    from common.engine import StepSampler
    w = np.array([0.0, 1.0, 3.0, 0.0])
    a = StepSampler(4, 64, 50, 0, seed=3, weights=w)
    b = StepSampler(4, 64, 50, 20, seed=3, weights=w)  # a resumed run draws the same batches
    assert a.indices(25) == b.indices(25) and a.indices(25) != a.indices(26)
    drawn = np.bincount(sum((a.indices(s) for s in range(50)), []), minlength=4)
    assert drawn[0] == drawn[3] == 0 and 2.5 < drawn[2] / drawn[1] < 3.5
    with pytest.raises(ValueError, match="3 sampling weights for 4 items"):
        StepSampler(4, 8, 10, 0, 0, weights=[1, 1, 1])
