"""The evaluation harness: strategies x models scored on datasets, reported like the papers' tables.

::

    from studio.context import AppContext
    from studio.eval import EvalSpec, load_dataset, parse_methods, run_eval
    from studio.settings import Settings
    from studio.strategies import StrategyParams

    with AppContext(Settings.load()) as ctx:                     # the script's store and model registry
        dataset = load_dataset("cove_lists", limit=5)            # shipped set, JSONL, HF dir or store:SET
        spec = EvalSpec(parse_methods("system1,cove:factored"), ("smollm2-135m",),
                        StrategyParams(max_new_tokens=128))
        outcome = run_eval(dataset, spec, ctx.store, ctx.registry, progress=print)
        report = outcome.report()
        print(report.to_markdown())
        report.save(outcome.dir)                                   # table.csv, table.md, plot.png, report.json

- :mod:`studio.eval.data`: items and loaders; :mod:`studio.eval.datasets`: the shipped sets and generators.
- :mod:`studio.eval.metrics`: exact match, contains-answer, numeric, multiple choice, list precision/recall.
- :mod:`studio.eval.runner`: batched, resumable runs, stored; :mod:`studio.eval.results`: the results file.
- :mod:`studio.eval.report`: the table with bootstrap CIs, CSV / Markdown / PNG exports.
"""

from studio.eval.data import EvalDataset, EvalItem, load_dataset
from studio.eval.datasets import SHIPPED, load_shipped
from studio.eval.metrics import (
    STATS,
    contains_answer,
    exact_match,
    extract_choice,
    extract_entities,
    list_score,
    mc_accuracy,
    normalize,
    numeric_match,
    score_item,
)
from studio.eval.report import Report, build_report
from studio.eval.results import ResultsFile
from studio.eval.runner import EvalOutcome, EvalSpec, eval_dir, run_eval
from studio.methods import Method, parse_methods

__all__ = [
    "SHIPPED",
    "STATS",
    "EvalDataset",
    "EvalItem",
    "EvalOutcome",
    "EvalSpec",
    "Method",
    "Report",
    "ResultsFile",
    "build_report",
    "contains_answer",
    "eval_dir",
    "exact_match",
    "extract_choice",
    "extract_entities",
    "list_score",
    "load_dataset",
    "load_shipped",
    "mc_accuracy",
    "normalize",
    "numeric_match",
    "parse_methods",
    "run_eval",
    "score_item",
]
