"""Facts by name: "counterfact" (the hub), "capitals", or a CounterFact file or hub id."""

from __future__ import annotations

import os
from typing import Union

import torch

from lca_interp.facts.capitals import load_capitals
from lca_interp.facts.counterfact import COUNTERFACT_HUB_ID, load_counterfact
from lca_interp.facts.records import FactSet


def load_facts(
    name_or_path: Union[str, os.PathLike],
    limit: int | None = None,
    seed: Union[int, torch.Generator] = 0,
    on_malformed: str = "raise",
) -> FactSet:
    """Facts by name: "counterfact" (the hub copy, azhx/counterfact), "capitals", or any path / hub
    id `load_counterfact` accepts. `seed` only matters for capitals (their false targets).

    "counterfact" never falls back to a local copy behind your back: offline it raises a ValueError
    that names the local file to pass instead.
    """
    if name_or_path == "capitals":
        return load_capitals(seed=seed, limit=limit)
    if name_or_path == "counterfact":
        return load_counterfact(COUNTERFACT_HUB_ID, limit=limit, on_malformed=on_malformed)
    return load_counterfact(name_or_path, limit=limit, on_malformed=on_malformed)
