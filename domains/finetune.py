"""Finetune the all-domain harmonizer on one domain, with the augmentation of a Table 1 row.

    python -m domains.finetune --domain MiniFlickr                    # row 7: originals + SycoNet(D)
    python -m domains.finetune --domain MiniFlickr --row 3            # originals + colour transfer
    python -m domains.finetune --domain HFlickr --data /path/to/iHarmony4 --steps 20000

The defaults and the rows are :func:`harmonizers.finetune.plan`'s. An entry module: it sits on top
of the layers (it trains with ``harmonizers`` and scores with ``eval``), so that the ``domains``
package itself never imports upward.
"""
from common.cli import print_json, run, shared_args
from eval.score import evaluate_checkpoint
from harmonizers.finetune import ROWS, plan  # noqa: F401 (part of the command's API)
from harmonizers.train import main as train_main


@shared_args
def main(domain: str, data: str | None = None, base: str | None = None, augment: str | None = None,
         arch: str = "issam", out: str | None = None, row: int | None = None, runs: str = "runs",
         steps: int = 300, batch_size: int = 16, lr: float = 1e-4, seed: int = 0, workers: int = -1,
         device: str = "auto", overwrite: bool = False, regrade: float = 0.0, val_every: int = 0,
         val_fraction: float = 0.1, compile: bool = False, calibrate_folds: int = 0, drift_limit=2.5,
         balance: str = "none") -> None:
    """Finetune the all-domain harmonizer on one domain (the module docstring lists the defaults).

    Args:
        domain: the domain to finetune on (MiniCOCO, ..., or HFlickr etc. with --data).
        base: starting harmonizer (default runs/<arch>_all.safetensors, else the shipped unified model).
        augment: augmentation spec (default syconet:runs/syconet_<domain>.safetensors, else the shipped SycoNet).
        arch: architecture family of the default base and output names (issam, rainnet or gct).
        out: checkpoint to write (default runs/<arch>_<domain>.safetensors).
        row: run Table 1 row N (1 evaluates the base; 2 originals; 3 +CT; 4 +LUT; 5 +SycoNet(all);
            6 SycoNet(D) only; 7 originals + SycoNet(D)).
        runs: folder of trained models that the defaults look in.
        regrade: share of training pairs re-graded (as in harmonizers.train).
        calibrate_folds: calibrate the gate scale by cross-fitting over K folds of the domain's
            training photos (as in harmonizers.train).
        drift_limit: the calibration's limit on a held-out real photo's change, levels, or inf (as in
            harmonizers.train).
        balance: none, collection or source: the groups that weigh the same in the batches and in
            the calibration (as in harmonizers.train).
    """
    args = plan(domain, data, base, augment, arch, out, row, runs)
    if args.get("row") == 1:
        print_json({"row": 1, **evaluate_checkpoint(args["base"], args["data"], domain)})
        return
    train_main(**args, steps=steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device,
               overwrite=overwrite, regrade=regrade, val_every=val_every, val_fraction=val_fraction, compile=compile,
               calibrate_folds=calibrate_folds, drift_limit=drift_limit, balance=balance)


CLI = main

if __name__ == "__main__":
    run(CLI)
