"""`lca-interp`: a thin command line over the library.

Each subcommand parses its flags, builds the library's config objects (which validate themselves:
one source of truth for what is allowed), calls one function of the API and hands its result to
`lca_interp.report.save`, which writes the JSON and draws it. Heavy imports happen inside the
subcommands so `lca-interp --help` is instant. Bad input ends with one sentence on stderr and
exit status 2, and no partial output file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from lca_interp.options import DTYPES, MITIGATIONS, NEIGHBOURHOODS, PRECISIONS, SCHEMES


def _add_task_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=int, required=True, help="binary latents; V = 2^m tokens")
    parser.add_argument("--context-len", type=int, required=True, help="tokens per context (L)")
    parser.add_argument("--omega", type=float, default=0.5, help="weight of π in the context law")
    parser.add_argument("--beta", type=float, default=1.0, help="temperature of π")
    parser.add_argument("--neighbourhood", choices=NEIGHBOURHOODS, default="all")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=int, required=True)
    parser.add_argument("--freeze-wv", action="store_true", help="freeze W_V at the identity")
    parser.add_argument("--freeze-embed", action="store_true", help="freeze W_E at its Gaussian init")
    parser.add_argument("--steps", type=int, default=2000, help="the budget, or the cap with --plateau-window")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--eval-samples", type=int, default=10_000)
    parser.add_argument("--plateau-window", type=int, default=0,
                        help="stop when held-out accuracy gains < 0.005 over this many steps (0: train all --steps)")
    parser.add_argument("--seed", type=int, default=0, help="seeds both the init and the data")
    parser.add_argument("--device", default="cpu",
                        help="where the toy trains: cpu, cuda, cuda:N or mps (float32 everywhere; the data is the same)")


def _add_model_flags(parser: argparse.ArgumentParser, mixed: bool = False) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the best present)")
    parser.add_argument("--dtype", choices=PRECISIONS if mixed else DTYPES, default="float32",
                        help="the weights' and activations' dtype" + ("; mixed: bfloat16, and float32 for every (fact, k) "
                                                                       "whose margin is near a tie" if mixed else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lca-interp", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an LCA toy and write model, config, metrics, training.png")
    _add_task_flags(train)
    _add_train_flags(train)
    train.add_argument("--out", type=Path, required=True, help="output folder")
    train.set_defaults(run=_run_train)

    reproduce = commands.add_parser("reproduce", help="measure paper A's synthetic claims; write claims.json, figures, report.html")
    reproduce.add_argument("--quick", action="store_true", help="reduced size: minutes on 2 CPU cores")
    reproduce.add_argument("--seeds", type=int, default=None, help="seeds per claim (default: the scale's)")
    reproduce.add_argument("--claims", nargs="+", metavar="ID", help="only these claims (e.g. C1 T2)")
    reproduce.add_argument("--out", type=Path, required=True, help="output folder")
    reproduce.add_argument("--device", default="cpu", help="where the toys train: cpu, cuda, cuda:N or mps")
    reproduce.set_defaults(run=_run_reproduce)

    hijack = commands.add_parser("hijack", help="context hijacking: ES(k) of a pretrained LLM on fact data")
    hijack.add_argument("--model", required=True,
                        help="TL model name, local HF folder, google/gemma-3-270m offline, or a trained LCA toy folder (with --anatomy)")
    hijack.add_argument("--dataset", help="counterfact, capitals, or a CounterFact JSON file (not for a toy)")
    hijack.add_argument("--scheme", choices=SCHEMES, default="generic")
    hijack.add_argument("--max-prepends", type=int, default=3, help="largest k")
    hijack.add_argument("--limit", type=int, default=None, help="first N facts (of the relation, with --relation)")
    hijack.add_argument("--relation", metavar="PID", help="only facts of this Wikidata relation id, e.g. P190, or of any (known)")
    hijack.add_argument("--known-1000", type=Path, default=None,
                        help="ROME's known_1000.json, which maps CounterFact's templates to relation ids "
                             "(default: ../shared/data/known_1000.json when it exists)")
    hijack.add_argument("--batch-size", type=int, default=16)
    hijack.add_argument("--seed", type=int, default=0, help="bootstrap and capitals' false targets")
    hijack.add_argument("--out", type=Path, required=True, help="output folder")
    hijack.add_argument("--mitigation", nargs="+", choices=MITIGATIONS, default=[],
                        help="paper B's mitigations during the hijack, one or more (the intercept is fitted on capitals); "
                             "ES is reported with and without each")
    hijack.add_argument("--anatomy", action="store_true",
                        help="also write anatomy.json/.png/.html: heads that read the hijack and write o_, and ablating them")
    hijack.add_argument("--anatomy-k", type=int, default=1, help="hijack sentences in the anatomy's prompts")
    hijack.add_argument("--top-heads", type=int, default=3, help="heads the anatomy ablates (and as many random ones)")
    hijack.add_argument("--control-draws", type=int, default=20, help="random head sets the anatomy ablates as its control")
    hijack.add_argument("--workers", type=int, default=1,
                        help="score the shards on this many Ray workers (1: in this process; needs lca-interp[cluster])")
    hijack.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting a local instance")
    hijack.add_argument("--shard-size", type=int, default=200,
                        help="facts per shard; finished shards are kept under OUT/shards and a rerun resumes from them")
    hijack.add_argument("--calibration-records", type=int, default=200,
                        help="with --dtype mixed: the dataset's last N records measure the margin bound (they must not be reported)")
    _add_model_flags(hijack, mixed=True)
    hijack.set_defaults(run=_run_hijack)

    recall = commands.add_parser("recall", help="paper B: factual-recall mechanisms and the two mitigations")
    recall.add_argument("--model", required=True, help="TL model name, local HF folder, or google/gemma-3-270m offline")
    recall.add_argument("--dataset", default="capitals", help="capitals (default), counterfact, or a CounterFact JSON file")
    recall.add_argument("--shots", type=int, default=3, help="demonstrations in the few-shot prompts")
    recall.add_argument("--limit", type=int, default=None, help="first N facts with a single-token answer")
    recall.add_argument("--mlp-layer", type=int, default=None, help="MLP to decompose (default: after the top head)")
    recall.add_argument("--batch-size", type=int, default=16)
    recall.add_argument("--seed", type=int, default=0)
    recall.add_argument("--out", type=Path, required=True, help="output folder")
    _add_model_flags(recall)
    recall.set_defaults(run=_run_recall)

    report = commands.add_parser("report", help="redraw every figure and page of a results folder from its JSON, no model")
    report.add_argument("folder", type=Path, help="a folder of results (searched recursively)")
    report.set_defaults(run=_run_report)

    compare = commands.add_parser("compare", help="one offline page with several models' results side by side, from JSON")
    compare.add_argument("folders", type=Path, nargs="+", help="one folder of results per model")
    compare.add_argument("--out", type=Path, required=True, help="where compare.html goes")
    compare.set_defaults(run=_run_compare)

    demo = commands.add_parser("demo", help="the main job on the embedded default setting")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument("--steps", type=int, default=None, help="override the demo's training steps")
    _add_model_flags(demo)
    demo.set_defaults(run=_run_demo)
    return parser


def _settings(args: argparse.Namespace) -> dict:
    """Every flag of the command, as JSON-ready data, for the result's provenance."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
            if key not in ("run",)}


def _run_train(args: argparse.Namespace) -> None:
    from lca_interp import report
    from lca_interp.task import LCATask
    from lca_interp.toy import ToyConfig
    from lca_interp.training import TrainConfig, train

    task = LCATask(m=args.m, omega=args.omega, beta=args.beta, context_len=args.context_len, neighbourhood=args.neighbourhood)
    toy = ToyConfig(d_vocab=task.vocab_size, d_model=args.d_model, n_ctx=args.context_len, freeze_wv=args.freeze_wv,
                    freeze_embed=args.freeze_embed, seed=args.seed)
    every = max(1, args.steps // 20)
    if args.plateau_window > 0:  # about four evaluations per window, on a step count that divides it
        every = next(d for d in range(max(1, args.plateau_window // 4), 0, -1) if args.plateau_window % d == 0)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         eval_every=every, eval_samples=args.eval_samples, checkpoint_every=max(1, args.steps // 4),
                         seed=args.seed, plateau_window=args.plateau_window)
    metrics = train(task, toy, config, out_dir=args.out, device=args.device).metrics
    report.render(args.out / "metrics.json")
    stop = " (plateau)" if metrics["plateaued"] else ""
    print(f"accuracy {metrics['accuracy']:.4f} (Bayes ceiling {metrics['bayes_accuracy']:.4f}) after "
          f"{metrics['steps']} steps{stop} in {metrics['train_seconds']:.0f} s → {args.out}")


def _run_reproduce(args: argparse.Namespace) -> None:
    from lca_interp import report
    from lca_interp.evals.claims import FULL, QUICK
    from lca_interp.evals.claims.reproduce import reproduce

    result = reproduce(args.out, QUICK if args.quick else FULL, seeds=args.seeds, claim_ids=args.claims, device=args.device)
    report.save(result, args.out / "claims.json", _settings(args))
    for claim in result.claims:
        print(f"{claim.id:>4}  {'holds' if claim.holds else 'does NOT hold':<13}  {claim.claim}")
    print(f"{sum(c.holds for c in result.claims)}/{len(result.claims)} claims hold at the {result.scale.name} scale "
          f"in {result.seconds:.1f} s → {args.out / 'report.html'}")


def _run_hijack(args: argparse.Namespace) -> None:
    from lca_interp import report
    from lca_interp.runs import is_run_folder

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be ≥ 1, got {args.limit}.")
    if args.anatomy and args.anatomy_k < 1:
        raise ValueError(f"--anatomy-k must be ≥ 1, got {args.anatomy_k}.")
    if is_run_folder(args.model):
        return _run_toy_anatomy(args)
    if args.dataset is None:
        raise ValueError("--dataset is required for a pretrained model: counterfact, capitals, or a CounterFact JSON file.")
    from lca_interp.evals.hijack import hijack_with_mitigations
    from lca_interp.evals.recall import final_intercept
    from lca_interp.evals.hijack.shards import ShardPlan
    from lca_interp.facts import load_facts
    from lca_interp.facts.relations import select_relation, with_relation_ids
    from lca_interp.pretrained import load_model
    from lca_interp.prompts import Donors, hijackable

    loaded = load_facts(args.dataset, seed=args.seed)
    # relation ids: per-relation ES, --relation, donors
    every_fact = with_relation_ids(loaded.facts, args.known_1000, required=bool(args.relation) or args.scheme == "relation")
    facts = every_fact
    donors = Donors.of(facts) if args.scheme == "relation" else None  # donors come from every fact
    if args.relation:
        facts = select_relation(facts, args.relation)
    facts = facts[: args.limit] if args.limit else facts
    shards = ShardPlan(args.out / "shards", args.shard_size, args.workers, args.ray_address, model=args.model)
    if args.dtype == "mixed":  # checked before anything loads
        from lca_interp.evals.hijack.mixed import calibrate, calibration_facts

        calibration, described = calibration_facts(every_fact, facts, args.calibration_records, args.dataset)
        calibration, _ = hijackable(calibration, args.scheme, donors)
    model = load_model(args.model, args.device, args.dtype)
    intercept = final_intercept(model, batch_size=args.batch_size) if set(args.mitigation) - {"masked"} else None
    margin_bound = None
    if args.dtype == "mixed":
        margin_bound = calibrate(model, calibration, args.scheme, args.max_prepends, args.batch_size, donors,
                                 described=described, progress=True)
    result = hijack_with_mitigations(model, facts, args.mitigation, intercept, scheme=args.scheme,
                                     max_prepends=args.max_prepends, batch_size=args.batch_size, model_name=args.model,
                                     dataset_name=args.dataset, seed=args.seed, donors=donors, shards=shards,
                                     margin_bound=margin_bound)
    result.skipped_records += len(loaded.skipped)
    result.relation = args.relation
    report.save(result, args.out / "hijack.json", _settings(args))
    print(f"{result.summary()} → {args.out / 'hijack.json'}")
    for name, mitigated in result.mitigations.items():
        print(f"with the {name} mitigation: ES {', '.join(f'{v:.3f}' for v in mitigated['efficacy_score'])}")
    if args.anatomy:
        from lca_interp.evals.anatomy import hijack_anatomy

        anatomy = hijack_anatomy(model, facts, args.scheme, k=args.anatomy_k, max_prepends=args.max_prepends,
                                 top_n=args.top_heads, batch_size=args.batch_size, model_name=args.model, seed=args.seed,
                                 donors=donors, control_draws=args.control_draws)
        report.save(anatomy, args.out / "anatomy.json", _settings(args))
        top = ", ".join(f"{row['head']} ({row['selection_dla_shift']:+.2f})" for row in anatomy.ranked_heads(args.top_heads))
        split = anatomy.split
        print(f"heads chosen on {split['selection']} facts, whose direct vote moves most toward o_: {top}; on the other "
              f"{split['evaluation']}: ES {', '.join(f'{v:.3f}' for v in anatomy.es_baseline)}, with them ablated "
              f"{', '.join(f'{v:.3f}' for v in anatomy.es_top_ablated)}, random-head q05 "
              f"{', '.join(f'{v:.3f}' for v in anatomy.control['es_q05'])} → {args.out / 'anatomy.html'}")


def _run_toy_anatomy(args: argparse.Namespace) -> None:
    """The LCA toy has no facts: its hijack is a context mixed with another output's."""
    from lca_interp import report
    from lca_interp.evals.toy_anatomy import toy_hijack_anatomy
    from lca_interp.runs import load_toy

    if not args.anatomy or args.dataset is not None:
        raise ValueError(f"{args.model} is a trained LCA toy: pass --anatomy and no --dataset (its hijack mixes contexts of two outputs).")
    model, task = load_toy(args.model)
    anatomy = toy_hijack_anatomy(model, task, seed=args.seed)
    report.save(anatomy, args.out / "anatomy.json", _settings(args))
    rows = ", ".join(f"{f:.2f}: {m:.3f}/{u:.3f}" for f, m, u in zip(anatomy.fractions, anatomy.mass_foreign, anatomy.uniform_foreign))
    print(f"toy: attention on foreign tokens / uniform share, by mixed fraction: {rows}; flip rate "
          f"{', '.join(f'{r:.3f}' for r in anatomy.flip_rate)} → {args.out / 'anatomy.html'}")


def _run_recall(args: argparse.Namespace) -> None:
    from lca_interp import report
    from lca_interp.evals.recall import run_recall
    from lca_interp.facts import load_facts
    from lca_interp.pretrained import load_model

    if args.limit is not None and args.limit < 2:
        raise ValueError(f"--limit must be ≥ 2, got {args.limit}.")
    facts = load_facts(args.dataset, seed=args.seed).facts
    model = load_model(args.model, args.device, args.dtype)
    result, _ = run_recall(model, facts, shots=args.shots, limit=args.limit, mlp_layer=args.mlp_layer,
                           batch_size=args.batch_size, model_name=args.model, seed=args.seed)
    report.save(result, args.out / "recall.json", _settings(args))
    fixes = ", ".join(f"{name} {result.zero_shot[name]['p_mean']:.4f}" for name in MITIGATIONS)
    top = ", ".join(f"{h['head']} ({h['patch_effect']:+.3f})" for h in result.heads[:3])
    print(f"P(answer), zero-shot, n = {result.n}: baseline {result.zero_shot['baseline']['p_mean']:.4f}, {fixes}; "
          f"{result.shots}-shot baseline {result.few_shot['baseline']['p_mean']:.4f}; argument-passing heads {top} "
          f"→ {args.out / 'recall.json'}")


def _run_report(args: argparse.Namespace) -> None:
    from lca_interp import report

    began = time.perf_counter()
    found = report.results_in(args.folder)
    if not found:
        raise ValueError(f"{args.folder} holds no result JSON this library draws.")
    written = [path for result in found for path in report.render(result)]
    print(f"redrew {len(found)} results ({len(written)} figures and pages) in {time.perf_counter() - began:.1f} s "
          f"under {args.folder}")


def _run_compare(args: argparse.Namespace) -> None:
    from lca_interp.report.compare import compare_page

    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} is not a folder of results.")
    print(f"wrote {compare_page(args.folders, args.out)}")


def _run_demo(args: argparse.Namespace) -> None:
    from lca_interp.demo import run_demo

    for line in run_demo(args.out, steps=args.steps, device=args.device, dtype=args.dtype)["lines"]:
        print(line)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:  # bad input, missing files, failed writes: one sentence each
        print(f"lca-interp {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
