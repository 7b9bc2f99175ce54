"""One training engine for SycoNet, the harmonizers and the domain classifier.

A task supplies a loss module ``task.model`` (``forward(batch) -> {"loss": ..., other scalars}``),
``meta() -> dict`` for the checkpoint, and optionally ``validate(module) -> {"score":
lower-is-better, ...}``, ``export(module) -> state_dict`` (the weights users load, default: all),
``on_step(step, total)`` and ``prepare(batch) -> batch`` (CPU batch work done where the loader
runs, in the workers when there are workers).
The engine owns the rest: device, AMP (bf16 on CUDA), DistributedDataParallel under ``torchrun``
(gloo on CPU, nccl on GPU), DataLoader workers, seeding, resume, validation with the best checkpoint
kept, a tqdm bar in images/s with ETA, and a JSON-lines log.

Files for ``out = runs/x.safetensors``:

- ``runs/x.safetensors``       final weights + meta (written when the run completes)
- ``runs/x.last.safetensors``  weights + optimizer + step, every ``save_every`` steps (resume point)
- ``runs/x.best.safetensors``  best validation score so far (when the task validates)
- ``runs/x.log.jsonl``, ``runs/x.config.json``

The log records, every ``log_every`` steps, the losses, the learning rate, the elapsed seconds, the
seconds spent waiting for batches so far (``data_wait_s``: the input pipeline's share of the run) and,
on CUDA with NVML available, the GPU's utilisation.

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
import random
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm import tqdm

from . import checkpoint
from .device import resolve as pick_device
from .io import InputError, write_text

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """Where the run writes and how often it saves, validates and logs."""
    out: str = "runs/model.safetensors"
    save_every: int = 100
    val_every: int = 0           # 0 = validate only at the end (when the task validates)
    log_every: int = 10
    resume: bool = True          # continue from <out>.last.safetensors when it exists
    overwrite: bool = False      # replace a finished <out>


@dataclass
class OptimConfig:
    """What is optimised how: Adam with a cosine schedule over ``steps``."""
    steps: int = 1000            # optimizer steps
    batch_size: int = 16         # global batch, split over processes
    lr: float = 1e-4
    seed: int = 0


@dataclass
class HardwareConfig:
    """Where it runs and how the data gets there."""
    device: str = "auto"
    workers: int = -1            # DataLoader workers per process; -1: auto (resolve_workers)
    amp: bool = True             # bf16 autocast, CUDA only
    channels_last: bool = False
    compile: bool = False        # torch.compile the task's networks (Task.networks)


@dataclass
class EngineConfig:
    """The engine's options in three groups, as a command's ``--help`` lists them; commands build it
    once at their door with :meth:`of`."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    hw: HardwareConfig = field(default_factory=HardwareConfig)

    @classmethod
    def of(cls, *, out: str, steps: int = 1000, batch_size: int = 16, lr: float = 1e-4, seed: int = 0,
           save_every: int = 100, val_every: int = 0, log_every: int = 10, resume: bool = True,
           overwrite: bool = False, device: str = "auto", workers: int = -1, amp: bool = True,
           channels_last: bool = False, compile: bool = False) -> "EngineConfig":
        """The three groups from a command's engine options, each named."""
        return cls(LoopConfig(out=str(out), save_every=save_every, val_every=val_every, log_every=log_every,
                              resume=resume, overwrite=overwrite),
                   OptimConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed),
                   HardwareConfig(device=device, workers=workers, amp=amp, channels_last=channels_last,
                                  compile=compile))

    def replace(self, **loop) -> "EngineConfig":
        """The same configuration with some of the loop's options changed (a fold's ``out``, ...)."""
        return dataclasses.replace(self, loop=dataclasses.replace(self.loop, **loop))


def begin(cfg: EngineConfig) -> torch.device:
    """Seed torch for building a task (its model's initial weights, its validation split) and return
    this process's device (its local rank's GPU under torchrun): a trainer calls it before it builds
    its task, and gives the device to :func:`train`. The seed and the device are the engine's."""
    torch.manual_seed(cfg.optim.seed)
    return pick_device(cfg.hw.device, dist_info()[2])


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
    ``(index, sample_seed)`` pairs. Epochs are seeded permutations of the dataset; with ``weights``
    (a probability per item: the dataset's ``weights``) each step's batch is drawn with replacement
    from them instead, seeded by the step (so a resumed run draws what it would have)."""

    def __init__(self, n: int, batch: int, steps: int, start: int, seed: int, rank: int = 0, world: int = 1,
                 weights=None):
        self.n, self.batch, self.steps, self.start, self.seed = n, batch, steps, start, seed
        self.rank, self.world = rank, world
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and len(self.weights) != n:
            raise ValueError(f"{len(self.weights)} sampling weights for {n} items")

    def __len__(self):
        return self.steps - self.start

    def indices(self, step: int) -> list[int]:
        if self.weights is not None:
            rng = np.random.default_rng(mix(self.seed, step, 78))
            return rng.choice(self.n, self.batch, p=self.weights / self.weights.sum()).tolist()
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
    """Runs the wrapped dataset's random transforms under a per-sample seed; yields (item, seed)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, item):
        i, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.ds[i], seed


class Collate:
    """Makes a batch where the loader runs (a worker process when there are workers): default
    collation, then the task's :meth:`Task.prepare` under a seed taken from the batch's first
    sample, so that a run draws the same whatever the number of workers."""

    def __init__(self, task: "Task"):
        self.task = task

    def __call__(self, pairs):
        batch = default_collate([item for item, _ in pairs])
        seed = pairs[0][1]
        state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.task.prepare(batch)
            finally:
                random.setstate(state)


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


class Task:
    """What a trainer gives the engine. ``model(batch) -> {"loss": …, other scalars}`` is the loss
    module; ``meta()`` the checkpoint metadata. The hooks have defaults: override what you need."""

    model: nn.Module
    find_unused_parameters: bool = False  # DDP: parts idle in some configurations

    def meta(self) -> dict:
        raise NotImplementedError

    def export(self, model: nn.Module) -> dict:
        """The weights a user loads (default: the whole loss module's state dict)."""
        return model.state_dict()

    def validate(self, model: nn.Module) -> dict | None:
        """Scores on held-out data, ``score`` (lower is better) choosing the best checkpoint; None
        when the task does not validate."""
        return None

    def train_mode(self, model: nn.Module) -> None:
        """Called after ``model.train()``: keep parts in eval mode (frozen batch-norm statistics)."""

    def on_step(self, step: int, total: int) -> None:
        """Called before every step (schedules such as a KL warm-up)."""

    def networks(self) -> list[nn.Module]:
        """The parts ``--compile`` compiles: the trained networks, not the loss module around them
        (whose augmenters run Python and numpy). Default: the task's ``net`` when it has one."""
        net = getattr(self, "net", None)
        return [net] if isinstance(net, nn.Module) else []

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The optimizer's parameter groups; a group's ``lr_mult`` scales the learning rate (and its
        schedule) for it. Default: every trainable parameter at the base rate."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def final(self, tensors: dict, meta: dict, out: Path, best: Path | None) -> tuple[dict, dict]:
        """The final checkpoint's weights and metadata as the engine is about to write them to
        ``out`` (``best``: the best validation checkpoint, when one was kept); a task may change
        both first (a gated harmonizer calibrates here), so that the file is written once."""
        return tensors, meta

    def prepare(self, batch: dict) -> dict:
        """Called on every batch where the loader runs (a worker when there are workers), under a
        per-batch seed (torch and ``random``): CPU-side batch work such as synthesising composites,
        done there in parallel instead of in the training step."""
        return batch


def resolve_workers(workers: int, device: torch.device, world: int = 1) -> int:
    """DataLoader workers for ``--workers``: as given when ≥ 0; for -1 (auto) none on the CPU (the
    model needs the cores) and on a GPU one per core left over by the training processes, up to 8:
    the GPU should not wait for the CPU's batches."""
    if workers >= 0:
        return workers
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) // max(world, 1) - 1))


def gpu_utilisation(device: torch.device) -> dict:
    """``{"gpu_util": percent}`` of a CUDA device at this moment (NVML via pynvml), else nothing."""
    if device.type != "cuda":
        return {}
    try:
        return {"gpu_util": int(torch.cuda.utilization(device))}
    except Exception:  # no pynvml, or a driver that does not report it
        return {}


def cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


class _Run:
    """One training run: paths, model, optimizer and the loop's named steps (see :func:`train`)."""

    def __init__(self, task: Task, cfg: EngineConfig, device: torch.device | None = None):
        self.task, self.cfg = task, cfg
        self.rank, self.world, local_rank = dist_info()
        self.device = device if device is not None else pick_device(cfg.hw.device, local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        setup_distributed(self.device)
        self.out = Path(cfg.loop.out)
        self.last, self.best_path = sibling(self.out, "last.safetensors"), sibling(self.out, "best.safetensors")
        self.log_path, self.cfg_path = sibling(self.out, "log.jsonl"), sibling(self.out, "config.json")
        self.resume = cfg.loop.resume
        if self.out.exists():
            if not cfg.loop.overwrite:
                raise InputError(f"{self.out}: already exists (a finished run); pass --overwrite to train again")
            self.resume = False  # a finished run is replaced by a fresh one
            if self.rank == 0:
                self.log_path.unlink(missing_ok=True)
        if cfg.optim.batch_size % self.world:
            raise InputError(f"batch_size {cfg.optim.batch_size} is not divisible by {self.world} processes")
        self.start, self.best, self.step, self.losses = 0, math.inf, 0, {}
        self.data_wait = 0.0  # seconds the loop waited for batches

    def build(self) -> None:
        """Model on the device, Adam with a cosine schedule, resumed from ``<out>.last`` when asked."""
        cfg = self.cfg
        torch.manual_seed(cfg.optim.seed)
        self.model = model = self.task.model.to(self.device)
        if cfg.hw.channels_last:  # 4-D weights only: a LUT bank (5-D) keeps its layout
            for prm in model.parameters():
                if prm.dim() == 4:
                    prm.data = prm.data.contiguous(memory_format=torch.channels_last)
        if cfg.hw.compile:  # in place: the modules and their state-dict keys stay as they are
            for net in self.task.networks():
                net.compile()
        self.opt = torch.optim.Adam([{**g, "lr": cfg.optim.lr * g.get("lr_mult", 1.0)}
                                     for g in self.task.param_groups(model)], lr=cfg.optim.lr)
        if self.resume and self.last.exists():
            tensors, meta = checkpoint.load(self.last)
            model.load_state_dict(checkpoint.prefixed(tensors, "model"))
            load_optimizer(self.opt, tensors, meta["optimizer"])
            self.start, self.best = meta["step"], meta.get("best", math.inf)
            if self.rank == 0:
                log.info("resuming %s from step %d", self.last, self.start)
        self.step = self.start
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: cosine(s, cfg.optim.steps), last_epoch=-1)
        for g in self.opt.param_groups:
            g["lr"] = cfg.optim.lr * g.get("lr_mult", 1.0) * cosine(self.start, cfg.optim.steps)
        self.sched.last_epoch = self.start
        self.ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.task.find_unused_parameters) if self.world > 1 else model
        self.train_mode()

    def loader(self, dataset: Dataset) -> DataLoader:
        sampler = StepSampler(len(dataset), self.cfg.optim.batch_size, self.cfg.optim.steps, self.start, self.cfg.optim.seed,
                              self.rank, self.world, weights=getattr(dataset, "weights", None))
        return DataLoader(Seeded(dataset), batch_sampler=sampler, collate_fn=Collate(self.task),
                          num_workers=resolve_workers(self.cfg.hw.workers, self.device, self.world),
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def train_mode(self) -> None:
        self.model.train()
        self.task.train_mode(self.model)

    def save_last(self) -> None:
        if self.rank != 0:
            return
        ot, om = optimizer_tensors(self.opt)
        tensors = {**{f"model.{k}": v for k, v in self.model.state_dict().items()}, **ot}
        checkpoint.save(self.last, tensors, {**self.task.meta(), "step": self.step, "best": self.best,
                                             "optimizer": om, "engine": asdict(self.cfg)})

    def _log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def validate(self) -> None:
        if self.rank == 0:
            self.model.eval()
            with torch.inference_mode():
                res = self.task.validate(self.model)
            self.train_mode()
            if res is not None:
                self._log({"step": self.step, "val": res})
                if res.get("score", math.inf) < self.best:
                    self.best = res["score"]
                    checkpoint.save(self.best_path, self.task.export(self.model),
                                    {**self.task.meta(), "step": self.step, "val": res})
                log.info("step %d validation %s", self.step, {k: round(v, 4) for k, v in res.items()})
        if self.world > 1:
            dist.barrier()

    def optimise(self, batch: dict, amp: bool) -> None:
        """One step: forward under autocast, refuse a non-finite loss, backward, Adam, schedule."""
        torch.manual_seed(mix(self.cfg.optim.seed, self.step, self.rank, 13))
        self.task.on_step(self.step, self.cfg.optim.steps)
        batch = move(batch, self.device, self.cfg.hw.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp):
            losses = self.ddp(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower --lr or check the data")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        self.losses = {k: float(v.detach()) for k, v in losses.items()}

    def report(self, bar, t0: float) -> None:
        """Every ``log_every`` steps: the global batch's losses on the bar and in the log."""
        if self.world > 1:  # log the global batch's losses, not this rank's slice
            vals = torch.tensor(list(self.losses.values()), dtype=torch.float64, device=self.device)
            dist.all_reduce(vals)
            self.losses = dict(zip(self.losses, (vals / self.world).tolist()))
        bar.set_postfix({k: f"{v:.4f}" for k, v in self.losses.items()})
        if self.rank == 0:
            self._log({"step": self.step, **self.losses, "lr": self.opt.param_groups[0]["lr"],
                       "elapsed_s": round(time.time() - t0, 2), "data_wait_s": round(self.data_wait, 3),
                       **gpu_utilisation(self.device)})

    def finish(self) -> None:
        """Validate and save the final weights (unless a finished run was only resumed)."""
        if self.step > self.start or not self.out.exists():
            self.validate()
            self.save_last()
            if self.rank == 0:
                tensors, meta = self.task.final(self.task.export(self.model),
                                                {**self.task.meta(), "step": self.step, "best": self.best},
                                                self.out, self.best_path if self.best_path.exists() else None)
                checkpoint.save(self.out, tensors, meta, overwrite=True)
        if self.world > 1:
            dist.barrier()


def train(task: Task, dataset: Dataset, cfg: EngineConfig, device: torch.device | None = None) -> dict:
    """Train ``task.model`` on ``dataset`` on ``device`` (:func:`begin`'s; by default resolved from
    ``cfg``); returns a summary (last losses, best score, timing)."""
    run = _Run(task, cfg, device)
    run.build()
    loader = run.loader(dataset)
    if run.rank == 0:
        write_text(json.dumps({"engine": asdict(cfg), "task": task.meta(), "world_size": run.world}, indent=1),
                   run.cfg_path, overwrite=True)
    amp = cfg.hw.amp and run.device.type == "cuda"
    bar = tqdm(total=cfg.optim.steps * cfg.optim.batch_size, initial=run.start * cfg.optim.batch_size, unit="img",
               unit_scale=False, disable=run.rank != 0, desc=run.out.stem, dynamic_ncols=True)
    t0 = time.time()
    batches = iter(loader)
    while True:
        tw = time.perf_counter()  # time the step waits for its batch: the input pipeline's share
        batch = next(batches, None)
        run.data_wait += time.perf_counter() - tw
        if batch is None:
            break
        run.optimise(batch, amp)
        bar.update(cfg.optim.batch_size)
        if run.step % cfg.loop.log_every == 0 or run.step == cfg.optim.steps:
            run.report(bar, t0)
        if cfg.loop.val_every and run.step % cfg.loop.val_every == 0 and run.step < cfg.optim.steps:
            run.validate()
        if run.step % cfg.loop.save_every == 0 and run.step < cfg.optim.steps:
            run.save_last()
    bar.close()
    elapsed = time.time() - t0
    run.finish()
    done = run.step - run.start
    return {"steps": run.step, "steps_this_run": done, "seconds": round(elapsed, 1),
            "images_per_s": round(done * cfg.optim.batch_size / max(elapsed, 1e-9), 2),
            "data_wait_share": round(run.data_wait / max(elapsed, 1e-9), 4),
            "last": run.losses, "best": run.best, "out": str(run.out)}
