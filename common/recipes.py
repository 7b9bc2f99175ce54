"""The training recipes of the shipped models and the README's figures, in one place.

``scripts/train_models.sh`` runs each stage as ``python -m <command> $(python -m common.recipes args NAME)``
plus the paths of that run (data, output, init, domain); ``eval.tables`` trains what its tables need
with :func:`kwargs` of the same recipes. A recipe names its command and the options that make it the
recipe; the sizes are those of the 2-core CPU budget written in the README.

    python -m common.recipes show               # every recipe
    python -m common.recipes args syconet_all   # --domains all --size 128 ... (for the shell)
"""
from __future__ import annotations

import shlex

from .io import InputError

RECIPES: dict[str, dict] = {
    # the default family on all domains: fresh pairs from every process, 80 % unperturbed, every pair
    # re-graded; the gate scale cross-fitted over 5 folds of the training photos (6 trainings), at
    # the lowest held-out fMSE (no drift limit: the zoo's composite detector keeps real photos still)
    "gct_all": {"command": "harmonizers.train", "args": {
        "domains": "all", "arch": "gct64", "augment": "processes:0.8", "regrade": 1.0, "steps": 2000,
        "batch_size": 32, "lr": 1e-3, "calibrate_folds": 5, "drift_limit": float("inf")}},
    # per domain, from gct_all, on the domain's own processes (--augment processes:0.8:<its processes>)
    "gct_domain": {"command": "domains.finetune", "args": {
        "arch": "gct", "regrade": 1.0, "steps": 600, "batch_size": 32, "lr": 5e-4, "calibrate_folds": 5,
        "drift_limit": float("inf")}},
    # the composite detector: real photos with their masks against cut-and-paste composites made from
    # them, the cut-outs pasted into them and the benchmark's composites (python -m router.detect),
    # colour statistics and an ImageNet network's early features (--style: the [pretrained] extra);
    # scripts/train_models.sh adds LABELME's photos and real composites when that variable names them
    "detector": {"command": "router.detect", "args": {"cutouts": "assets/cutouts", "folds": 5, "trees": 300,
                                                      "style": True}},
    # the probe head: each domain, and each source of photos inside it, weighing the same; MiniFlickr's
    # composites taken to night as MiniDay2night rows (its few night photos come from few sources)
    "router": {"command": "router.train", "args": {"head": "probe", "size": 224, "batch_size": 32, "balance": "source",
                                                   "relight": "MiniFlickr:MiniDay2night"}},
    # the pixel-predicting families at about the CPU budget of gct_all
    "issam_all": {"command": "harmonizers.train", "args": {
        "domains": "all", "arch": "issam64", "steps": 300, "batch_size": 16, "lr": 5e-4}},
    "rainnet_all": {"command": "harmonizers.train", "args": {
        "domains": "all", "arch": "rainnet64", "steps": 1200, "batch_size": 16, "lr": 5e-4}},
    # SycoNet on all domains (LUT loss at 128 px, encoders at 64), then finetuned per domain (--init)
    "syconet_all": {"command": "syconet.train", "args": {
        "domains": "all", "arch": "syconet_r18", "size": 128, "enc_size": 64, "steps": 1500, "batch_size": 16,
        "lr": 3e-4}},
    "syconet_domain": {"command": "syconet.train", "args": {
        "arch": "syconet_r18", "size": 128, "enc_size": 64, "steps": 100, "batch_size": 16, "lr": 1e-4}},
    # Table 2: each ablation from scratch on one domain (--ablation, --domains)
    "syconet_ablation": {"command": "syconet.train", "args": {
        "arch": "syconet_r18", "size": 128, "enc_size": 64, "steps": 100, "batch_size": 16, "lr": 3e-4}},
    # iS2AM per domain with SycoNet augmentation (Table 1 row 7) and the SycoNet-augmented unified iS2AM
    "issam_domain": {"command": "domains.finetune", "args": {"steps": 60, "batch_size": 8, "lr": 1e-4}},
    "issam_unified": {"command": "harmonizers.train", "args": {
        "domains": "all", "steps": 100, "batch_size": 8, "lr": 1e-4}},
    # GPU, on iHarmony4 (scripts/train_models.sh with IHARMONY4=/path): HRNet18 + iDIH256 as the
    # official recipe trains it (180 epochs of 65,742 composites at batch 16, Adam 1e-3, the HRNet at
    # 0.1x; its ImageNet weights from HRNET_IMAGENET=/path/hrnetv2_w18_imagenet_pretrained.pth)
    "hrnet18_idih256_gpu": {"command": "harmonizers.train", "args": {
        "domains": "all", "arch": "hrnet18_idih256", "steps": 740000, "batch_size": 16, "lr": 1e-3,
        "device": "cuda", "workers": 8, "save_every": 5000}},
}


def get(name: str) -> dict:
    if name not in RECIPES:
        raise InputError(f"no recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def kwargs(name: str, **overrides) -> dict:
    """The recipe's options with ``overrides`` on top (``None`` values leave the recipe's)."""
    return {**get(name)["args"], **{k: v for k, v in overrides.items() if v is not None}}


def argv(name: str) -> list[str]:
    """The recipe's options as command-line flags."""
    return [x for k, v in get(name)["args"].items() for x in (f"--{k}", str(v))]


def _args(name: str) -> None:
    """Print a recipe's flags, shell-quoted (for scripts/train_models.sh).

    Args:
        name: the recipe (python -m common.recipes show lists them).
    """
    print(" ".join(shlex.quote(a) for a in argv(name)))


def _command(name: str) -> None:
    """Print the module a recipe runs (python -m MODULE).

    Args:
        name: the recipe.
    """
    print(get(name)["command"])


def _show() -> None:
    """Print every recipe as the command it runs."""
    for name in RECIPES:
        print(f"{name}: python -m {get(name)['command']} {' '.join(argv(name))}")


CLI = {"args": _args, "command": _command, "show": _show}

if __name__ == "__main__":
    from .cli import run
    run(CLI)
