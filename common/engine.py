"""One training engine for SycoNet, the harmonizers and the domain classifier.

A task supplies a loss module ``task.model`` (``forward(batch) -> {"loss": ..., other scalars}``),
``meta() -> dict`` for the checkpoint, and optionally ``validate(module) -> {"score":
lower-is-better, ...}``, ``export(module) -> state_dict`` (the weights users load, default: all)
and ``on_step(step, total)``.
The engine owns the rest: device, AMP (bf16 on CUDA), DistributedDataParallel under ``torchrun``
(gloo on CPU, nccl on GPU), DataLoader workers, seeding, resume, validation with the best checkpoint
kept, a tqdm bar in images/s with ETA, and a JSON-lines log.

Files for ``out = runs/x.safetensors``:

- ``runs/x.safetensors``       final weights + meta (written when the run completes)
- ``runs/x.last.safetensors``  weights + optimizer + step, every ``save_every`` steps (resume point)
- ``runs/x.best.safetensors``  best validation score so far (when the task validates)
- ``runs/x.log.jsonl``, ``runs/x.config.json``

Determinism: the batch indices of step ``s`` and each sample's augmentation seed depend only on
``(seed, s)``, and the step's noise is seeded from ``(seed, s, rank)``, so a killed run resumed from
its last checkpoint follows the same curve as one that never stopped. Under ``torchrun`` every
process takes its slice of the same global batch, so the global batch size is what you set.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from . import checkpoint
from .device import resolve as pick_device  # noqa: F401 - the trainers' name for it
from .io import InputError, write_text

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    out: str = "runs/model.safetensors"
    steps: int = 1000            # optimizer steps
    batch_size: int = 16         # global batch, split over processes
    lr: float = 1e-4
    workers: int = 0             # DataLoader workers per process
    seed: int = 0
    amp: bool = True             # bf16 autocast, CUDA only
    channels_last: bool = False
    save_every: int = 100
    val_every: int = 0           # 0 = validate only at the end (when the task validates)
    log_every: int = 10
    device: str = "auto"
    resume: bool = True          # continue from <out>.last.safetensors when it exists
    overwrite: bool = False      # replace a finished <out>


def sibling(out, tag: str) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + f".{tag}")


# ---- distributed helpers -----------------------------------------------------------------------

def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (1 process otherwise)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def setup_distributed(device: torch.device) -> None:
    rank, world, _ = dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


# ---- deterministic, step-addressed sampling ----------------------------------------------------

def mix(*xs: int) -> int:
    """A 63-bit seed from integers (stable across runs and processes)."""
    return int(np.random.SeedSequence([int(x) % 2 ** 32 for x in xs]).generate_state(1, np.uint64)[0] >> 1)


class StepSampler(Sampler):
    """Yields, for steps ``start..steps-1``, this rank's slice of the global batch as
    ``(index, sample_seed)`` pairs. Epochs are seeded permutations of the dataset."""

    def __init__(self, n: int, batch: int, steps: int, start: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.steps, self.start, self.seed = n, batch, steps, start, seed
        self.rank, self.world = rank, world

    def __len__(self):
        return self.steps - self.start

    def indices(self, step: int) -> list[int]:
        out, pos = [], step * self.batch
        while len(out) < self.batch:
            epoch, off = divmod(pos, self.n)
            perm = np.random.default_rng(mix(self.seed, epoch, 77)).permutation(self.n)
            take = perm[off:off + self.batch - len(out)]
            out += take.tolist()
            pos += len(take)
        return out

    def __iter__(self):
        for s in range(self.start, self.steps):
            idx = self.indices(s)
            mine = list(range(self.rank, self.batch, self.world))
            yield [(idx[j], mix(self.seed, s, j)) for j in mine]


class Seeded(Dataset):
    """Runs the wrapped dataset's random transforms under a per-sample seed."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, item):
        i, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.ds[i]


# ---- optimizer state ↔ flat tensors (no pickle) ------------------------------------------------

def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---- the loop ----------------------------------------------------------------------------------

def move(batch, device, channels_last: bool = False):
    """Tensors of a batch to ``device`` (images ``N×C×H×W`` in channels-last layout when asked)."""
    def one(v):
        if not torch.is_tensor(v):
            return v
        v = v.to(device, non_blocking=True)
        return v.contiguous(memory_format=torch.channels_last) if channels_last and v.ndim == 4 else v
    return {k: one(v) for k, v in batch.items()}


def train(task, dataset: Dataset, cfg: EngineConfig) -> dict:
    """Train ``task.model`` on ``dataset``; returns a summary (last losses, best score, timing)."""
    rank, world, local_rank = dist_info()
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    setup_distributed(device)
    out = Path(cfg.out)
    last, best_path = sibling(out, "last.safetensors"), sibling(out, "best.safetensors")
    log_path, cfg_path = sibling(out, "log.jsonl"), sibling(out, "config.json")
    resume = cfg.resume
    if out.exists():
        if not cfg.overwrite:
            raise InputError(f"{out}: already exists (a finished run); pass --overwrite to train again")
        resume = False  # a finished run is replaced by a fresh one
        if rank == 0:
            log_path.unlink(missing_ok=True)
    if cfg.batch_size % world:
        raise InputError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")

    torch.manual_seed(cfg.seed)
    model: nn.Module = task.model.to(device)
    if cfg.channels_last:  # 4-D weights only: a LUT bank (5-D) keeps its layout
        for prm in model.parameters():
            if prm.dim() == 4:
                prm.data = prm.data.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    start, best = 0, math.inf
    if resume and last.exists():
        tensors, meta = checkpoint.load(last)
        model.load_state_dict(checkpoint.prefixed(tensors, "model"))
        load_optimizer(opt, tensors, meta["optimizer"])
        start, best = meta["step"], meta.get("best", math.inf)
        if rank == 0:
            log.info("resuming %s from step %d", last, start)
    sched = torch.optim.lr_scheduler.LambdaLR(  # cosine decay over the run
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / max(1, cfg.steps))), last_epoch=-1)
    for g in opt.param_groups:
        g["lr"] = cfg.lr * sched.lr_lambdas[0](start)
    sched.last_epoch = start
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=getattr(task, "find_unused_parameters", False)) if world > 1 else model

    sampler = StepSampler(len(dataset), cfg.batch_size, cfg.steps, start, cfg.seed, rank, world)
    loader = DataLoader(Seeded(dataset), batch_sampler=sampler, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    if rank == 0:
        write_text(json.dumps({"engine": asdict(cfg), "task": task.meta(), "world_size": world}, indent=1),
                   cfg_path, overwrite=True)
    amp = cfg.amp and device.type == "cuda"
    bar = tqdm(total=cfg.steps * cfg.batch_size, initial=start * cfg.batch_size, unit="img",
               unit_scale=False, disable=rank != 0, desc=out.stem, dynamic_ncols=True)
    t0, step, last_losses = time.time(), start, {}
    def train_mode():  # the task may keep parts in eval mode (frozen batch-norm statistics)
        model.train()
        if hasattr(task, "train_mode"):
            task.train_mode(model)

    train_mode()

    def export(module):  # the weights a user loads: the task may strip loss-only parts
        return task.export(module) if hasattr(task, "export") else module.state_dict()

    def save_last(step):
        if rank != 0:
            return
        ot, om = optimizer_tensors(opt)
        tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **ot}
        checkpoint.save(last, tensors, {**task.meta(), "step": step, "best": best,
                                        "optimizer": om, "engine": asdict(cfg)})

    def validate(step):
        nonlocal best
        if rank == 0 and hasattr(task, "validate"):
            model.eval()
            with torch.inference_mode():
                res = task.validate(model)
            train_mode()
            rec = {"step": step, "val": res}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if res.get("score", math.inf) < best:
                best = res["score"]
                checkpoint.save(best_path, export(model), {**task.meta(), "step": step, "val": res})
            log.info("step %d validation %s", step, {k: round(v, 4) for k, v in res.items()})
        if world > 1:
            dist.barrier()

    for batch in loader:
        torch.manual_seed(mix(cfg.seed, step, rank, 13))
        if hasattr(task, "on_step"):
            task.on_step(step, cfg.steps)
        batch = move(batch, device, cfg.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            losses = ddp(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower --lr or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        last_losses = {k: float(v.detach()) for k, v in losses.items()}
        bar.update(cfg.batch_size)
        if step % cfg.log_every == 0 or step == cfg.steps:
            if world > 1:  # log the global batch's losses, not this rank's slice
                vals = torch.tensor(list(last_losses.values()), dtype=torch.float64, device=device)
                dist.all_reduce(vals)
                last_losses = dict(zip(last_losses, (vals / world).tolist()))
            bar.set_postfix({k: f"{v:.4f}" for k, v in last_losses.items()})
            if rank == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, **last_losses, "lr": opt.param_groups[0]["lr"],
                                        "elapsed_s": round(time.time() - t0, 2)}) + "\n")
        if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps:
            validate(step)
        if step % cfg.save_every == 0 and step < cfg.steps:
            save_last(step)
    bar.close()
    elapsed = time.time() - t0
    if step > start or not out.exists():
        validate(step)
        save_last(step)
        if rank == 0:
            checkpoint.save(out, export(model), {**task.meta(), "step": step, "best": best},
                            overwrite=True)
    if world > 1:
        dist.barrier()
    done = step - start
    return {"steps": step, "steps_this_run": done, "seconds": round(elapsed, 1),
            "images_per_s": round(done * cfg.batch_size / max(elapsed, 1e-9), 2),
            "last": last_losses, "best": best, "out": str(out)}
