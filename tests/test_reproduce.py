"""`reproduce` end to end at the quick scale: every claim measured, written and drawn."""

from __future__ import annotations

import json
import re

import pytest

from lca_interp.evals.lca import CLAIMS, QUICK, mix_contexts
from lca_interp.evals.reproduce import reproduce


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return out, reproduce(out, QUICK, seeds=1, progress=False)


def test_quick_reproduce_measures_every_claim(quick_run):
    out, result = quick_run
    assert [c.id for c in result.claims] == list(CLAIMS)
    written = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in written] == list(CLAIMS)
    for entry in written:
        assert {"id", "claim", "criterion", "measured", "holds", "figure"} <= set(entry)
        assert isinstance(entry["holds"], bool) and entry["measured"]
        assert (out / entry["figure"]).stat().st_size > 5_000  # a real PNG, not a stub
    assert json.loads((out / "reproduce.json").read_text())["seconds"] > 0


def test_report_is_one_offline_page_with_every_figure(quick_run):
    out, result = quick_run
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(CLAIMS)
    assert page.count("var CircuitsVis=") == 1  # the bundle inlined once
    assert page.count("CircuitsVis.render(") == 2
    assert not re.search(r'<script[^>]+src=|https?://[^"\s]*\.js', page)  # nothing fetched


def test_claims_that_need_no_training_hold_at_quick_scale(quick_run):
    """Theorem 1 and Lemma 2 are exact statements about constructed models; they must hold."""
    _, result = quick_run
    by_id = {c.id: c for c in result.claims}
    assert by_id["T1"].holds and by_id["T2"].holds
    assert by_id["T2"].measured["identity_error"]["mean"] > 0


def test_reproduce_reuses_trained_toys(quick_run, monkeypatch):
    out, _ = quick_run
    import lca_interp.evals.zoo as zoo

    def no_training(*args, **kwargs):
        raise AssertionError("a toy was retrained although the zoo holds it")

    monkeypatch.setattr(zoo, "train", no_training)
    again = reproduce(out, QUICK, seeds=1, claim_ids=["C1", "C2"], progress=False)
    assert [c.id for c in again.claims] == ["C1", "C2"]


def test_reproduce_rejects_unknown_claims_and_bad_seeds(tmp_path):
    with pytest.raises(ValueError, match="unknown claim"):
        reproduce(tmp_path, QUICK, claim_ids=["C42"], progress=False)
    with pytest.raises(ValueError, match="seeds"):
        reproduce(tmp_path, QUICK, seeds=0, progress=False)
    assert not any(tmp_path.iterdir())


def test_mix_contexts_replaces_a_prefix_and_keeps_the_last_token():
    import torch

    own = torch.arange(10).repeat(2, 1)
    other = -torch.arange(10).repeat(2, 1) - 1
    mixed = mix_contexts(own, other, 0.5)
    assert mixed[0].tolist() == [-1, -2, -3, -4, 4, 5, 6, 7, 8, 9]
    assert torch.equal(mix_contexts(own, other, 0.0), own)
    assert mix_contexts(own, other, 1.0)[0, -1] == 9
