"""What each page kind's tables must show, read from its result JSON by hand, apart from
`lca_interp.report`: the browser checks compare these with the tables Chromium displays.

A `Table` is a header and rows; a cell is expected to show a string as it is, an int exactly, a float
to the page's 3 significant digits or 3 decimals, and `Numbers` as the numbers inside a sentence,
in order. Tables are found on the page by their header, so their order does not matter; rows
are matched in order, or by their first `key` cells where the page's order is not the JSON's.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


@dataclass(frozen=True)
class Numbers:
    values: tuple


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    key: int = 0  # rows matched by their first `key` cells; 0: in order


def _float_matches(text: str, value: float) -> bool:
    """`text` is `value` as a table shows it (to 3 decimals between 0.001 and 1, else to 3
    significant digits) or as a sentence does (to 3 decimals, written out: "0.000")."""
    try:
        shown = float(text)
    except ValueError:
        return False
    size = abs(value)
    if re.fullmatch(r"-?\d+\.\d{3}", text) or (size < 1 and (size >= 1e-3 or size == 0)):
        tolerance = 5e-4
    else:
        tolerance = 0.5 * 10 ** (math.floor(math.log10(size)) - 2)
    return abs(shown - value) <= tolerance * (1 + 1e-9)


def cell_matches(text: str, expected) -> bool:
    if isinstance(expected, Numbers):
        found = NUMBER.findall(text)
        return len(found) == len(expected.values) and all(cell_matches(t, v) for t, v in zip(found, expected.values))
    if isinstance(expected, (str, int)):  # bools too, as the page writes them
        return text == str(expected)
    if isinstance(expected, float):
        return _float_matches(text, expected)
    if isinstance(expected, (list, tuple)):
        return cell_matches(text, Numbers(tuple(expected)))
    raise TypeError(f"no rule for a cell expected to show {expected!r}")


def _head(head) -> str:
    return f"L{head[0]}H{head[1]}"


def _claims(data: dict) -> list[Table]:
    rows = [[c["id"], c["claim"], c["criterion"], "yes" if c["holds"] else "NO"] for c in data["claims"]]
    return [Table(["id", "claim", "criterion", "holds"], rows)]


def _keyed(records: list[dict]) -> Table:
    header = list(records[0])
    return Table(header, [[r[key] for key in header] for r in records])


def _anatomy(data: dict) -> list[Table]:
    return [_keyed(data["ranked_heads"])]


def _toy_anatomy(data: dict) -> list[Table]:
    header = ["fractions", "mass_foreign", "uniform_foreign", "write_foreign", "write_own", "flip_rate"]
    return [Table(header, [list(row) for row in zip(*(data[key] for key in header))])]


def _recall(data: dict) -> list[Table]:
    settings = [[label, name, values["p_mean"], values["logit_minus_mean"]]
                for label, block in (("zero-shot", data["zero_shot"]), (f"{data['shots']}-shot", data["few_shot"]))
                for name, values in block.items()]
    memory = [{"head": head, **score} for head, score in data["head_memory"].items()]
    return [Table(["prompts", "setting", "mean P(answer)", "logit − mean logit"], settings), _keyed(data["heads"][:15]),
            _keyed(memory)]


TABLES = {"claims": _claims, "anatomy": _anatomy, "toy_anatomy": _toy_anatomy, "recall": _recall,
          "toy_attention": lambda data: []}


def _label(hijack: dict) -> str:
    return hijack["scheme"] + (f" ({hijack['relation']})" if hijack.get("relation") else "")


def compare_tables(folder: Path) -> list[Table]:
    """A compare page's tables from every result JSON under `folder` (one subfolder per model):
    the findings (one column per model), the anatomy heads, and the mitigations against hijacking."""
    results: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("kind") in ("hijack", "anatomy", "recall"):
            results[data["model"]][data["kind"]].append(data)
    findings: dict[str, dict[str, object]] = defaultdict(dict)
    heads, fixes = [], []
    for model, kinds in results.items():
        largest: dict[str, dict] = {}
        for r in kinds["hijack"]:
            if r["n"] > largest.get(_label(r), {"n": -1})["n"]:
                largest[_label(r)] = r
        for label, r in largest.items():
            findings[f"paper A: ES(0) → ES(K), {label} scheme"][model] = Numbers((
                r["efficacy_score"][0], r["efficacy_score"][-1], r["efficacy_score_per_token"][0],
                r["efficacy_score_per_token"][-1], r["n"], r["k"][-1]))
        for r in kinds["hijack"]:
            for name, m in r.get("mitigations", {}).items():
                findings[f"A × B: ES(K) of {_label(r)} hijacking, without → with paper B's `{name}` fix (95% CI)"][model] = \
                    Numbers(tuple(x[-1] for x in (r["efficacy_score"], r["ci_low"], r["ci_high"], m["efficacy_score"],
                                                  m["ci_low"], m["ci_high"])) + (r["n"], r["k"][-1]))
                fixes.append([model, _label(r), name, r["efficacy_score"][-1], m["efficacy_score"][-1]])
        for a in kinds["anatomy"]:
            k, control = a["k"], a["control"]
            beats = "yes" if control["top_beats_q95"][k] else "no"
            label = (f"anatomy ({a['scheme']}, k = {k}): heads chosen on one split, ablated on the other, beat q95 of "
                     f"{len(control['es'])} random head sets")
            findings[label][model] = Numbers((a["es_baseline"][k], a["es_top_ablated"][k], control["es_q05"][k],
                                              control["es_q95"][k]))
            heads.append([model, a["scheme"], k, ", ".join(map(_head, a["top_heads"])), a["es_baseline"][k],
                          a["es_top_ablated"][k], Numbers((control["es_q05"][k], control["es_q95"][k])), beats,
                          Numbers((a["split"]["selection"], a["split"]["evaluation"]))])
        for recall in kinds["recall"]:
            zero = recall["zero_shot"]
            findings["paper B: zero-shot P(answer), baseline → masked / intercept / both"][model] = Numbers(
                tuple(zero[s]["p_mean"] for s in ("baseline", "masked", "intercept", "both")) + (recall["n"],))
    models = list(results)
    tables = [Table(["finding", *models], [[finding, *(by_model.get(m, "–") for m in models)]
                                           for finding, by_model in findings.items()], key=1)]
    if heads:
        tables.append(Table(["model", "scheme", "k", "top heads", "ES at k", "top ablated", "random q05–q95",
                             "beats q95", "split"], heads, key=3))
    if fixes:
        tables.append(Table(["model", "scheme", "mitigation", "ES at largest k", "with the mitigation"], fixes, key=3))
    return tables


def expected_tables(page: Path) -> list[Table]:
    """The tables `page` must show, from the result JSON it was drawn from: `report.html` from
    `claims.json`, `compare.html` from the folder it sits in, any other `<name>.html` from `<name>.json`."""
    if page.name == "compare.html":
        return compare_tables(page.parent)
    source = page.with_name("claims.json") if page.name == "report.html" else page.with_suffix(".json")
    data = json.loads(source.read_text())
    return TABLES[data["kind"]](data)


def table_mismatches(shown: list[list[list[str]]], expected: list[Table]) -> list[str]:
    """What differs between the tables a page displays and those its JSON gives; empty when equal."""
    problems = []
    if len(shown) != len(expected):
        problems.append(f"{len(shown)} tables shown, {len(expected)} expected")
    for header, rows, key in ((t.header, t.rows, t.key) for t in expected):
        table = next((t for t in shown if t and sorted(t[0]) == sorted(header)), None)
        if table is None:
            problems.append(f"no table with the columns {header}")
            continue
        columns = [table[0].index(name) for name in header]
        body = [[cells[c] if c < len(cells) else None for c in columns] for cells in table[1:]]
        if key:
            by_key = {tuple(cells[:key]): cells for cells in body}
            body = [by_key.get(tuple(str(v) for v in row[:key]), []) for row in rows] if len(by_key) == len(body) else body
        if len(body) != len(rows):
            problems.append(f"table {header[:3]}…: {len(body)} rows shown, {len(rows)} in the JSON")
            continue
        for i, (cells, values) in enumerate(zip(body, rows)):
            for name, text, value in zip(header, cells or [None] * len(header), values):
                if text is None or not cell_matches(text, value):
                    problems.append(f"table {header[:3]}…, row {i}, column {name!r}: shows {text!r}, the JSON has {value!r}")
    return problems
