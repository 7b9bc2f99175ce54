"""The plan of a per-domain finetune: the all-domain harmonizer trained on one domain, with the
augmentation of a Table 1 row. The command is ``python -m domains.finetune`` (its entry module).

    python -m domains.finetune --domain MiniFlickr                    # row 7: originals + SycoNet(D)
    python -m domains.finetune --domain MiniFlickr --row 3            # originals + colour transfer
    python -m domains.finetune --domain HFlickr --data /path/to/iHarmony4 --steps 20000

Defaults (``--runs`` = ``runs``): data ``data/mini4`` for the Mini* domains; base model
``runs/<arch>_all.safetensors``; augmentation ``syconet:runs/syconet_<domain>.safetensors`` (the
domain's finetuned SycoNet); output ``runs/<arch>_<domain>.safetensors`` (``..._row<N>`` with
``--row``). ``--data``, ``--base``, ``--augment``, ``--arch``, ``--out`` override them.

Table 1 rows (all finetuning starts from the base model): 1 the base model itself (evaluated, no
training); 2 originals; 3 + CT; 4 + random LUT; 5 + SycoNet(all); 6 SycoNet(D) only; 7 originals +
SycoNet(D).
"""
from __future__ import annotations

from pathlib import Path

from common import shipped
from common.io import InputError
from domains.dataset import MINI4

from .augment import parse as parse_augment

ROWS = {2: ("none", False), 3: ("ct", False), 4: ("lut", False), 5: ("syconet:{all}", False),
        6: ("syconet:{dom}", True), 7: ("syconet:{dom}", False)}


def plan(domain: str, data=None, base=None, augment=None, arch: str = "issam", out=None, row: int | None = None,
         runs: str = "runs") -> dict:
    """Resolve the defaults into the arguments of ``harmonizers.train``. Where ``runs/`` has no base
    model or SycoNet yet (a fresh clone), the shipped ones stand in: the default zoo's unified
    harmonizer and ``models/syconet_all.safetensors``."""
    if data is None:
        if domain not in MINI4:
            raise InputError(f"--domain {domain}: pass --data (the default data/mini4 only holds {list(MINI4)})")
        data = "data/mini4"
    if not Path(data).is_dir():
        hint = " (build the offline benchmark with: make benchmark)" if str(data) == "data/mini4" else ""
        raise InputError(f"--data {data}: folder not found{hint}")
    r = Path(runs)
    if base is None:
        base = str(r / f"{arch}_all.safetensors")
        if arch == "issam":  # the shipped base is an issam64
            base = shipped.prefer(base, shipped.BASE_HARMONIZER, "base model")
    syconet_all = shipped.prefer(r / "syconet_all.safetensors", shipped.SYCONET_ALL, "SycoNet(all)")
    syconet_dom = shipped.prefer(r / f"syconet_{domain}.safetensors", Path(syconet_all), f"SycoNet({domain})")
    only_aug = False
    if row is not None:
        if row not in (1, *ROWS):
            raise InputError(f"--row must be 1..7, got {row}")
        if row == 1:
            return {"row": 1, "base": base, "data": data, "domain": domain}
        if augment is None:
            spec, only_aug = ROWS[row]
            augment = spec.format(all=syconet_all, dom=syconet_dom)
        out = out or str(r / f"{arch}_{domain}_row{row}.safetensors")
    augment = augment or f"syconet:{syconet_dom}"
    out = out or str(r / f"{arch}_{domain}.safetensors")
    if not Path(base).is_file():
        raise InputError(f"{base}: base model not found (train it with python -m harmonizers.train, or pass --base)")
    spec = parse_augment(augment)
    if spec.ckpt and not Path(spec.ckpt).is_file():
        raise InputError(f"{spec.ckpt}: SycoNet checkpoint not found (python -m syconet.train --domains {domain} "
                         f"--init runs/syconet_all.safetensors, or pass --augment)")
    return {"data": data, "domains": domain, "init": base, "augment": spec, "only_aug": only_aug, "out": out}
