"""``python -m agents.evaluate``: score a model on held-out suites (BFCL categories, ToolACE and math splits,
and any registered environment: ``docs/new-suite.md``).

Every suite is an environment, scored by the trainer's held-out evaluation (``agents.heldout``; greedy by
default). A suite's environment is made from its config (``configs/env/<name>.yaml``, the same ``kwargs``
the trainer uses) with ``<name>.kwargs`` on top; every suite's environment is made before the model loads,
so a bad path or argument is one ``config error:`` line. An environment's ``corpus_metrics`` hook adds
metrics computed over all of a suite's entries.
Output in ``out_dir``: ``results.json`` (every entry's prompt, output, failure and verdict; per-category
accuracy with its 95% Wilson interval, per task kind for ToolACE; failed entries by cause; BFCL aggregates)
and ``results.md`` (a table; with ``baseline=<results.json>`` both side by side, plus the entries gained and
lost against it and McNemar's exact p-value).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents import SamplingParams
from agents.call_format import SETTINGS as CALL_FORMAT_SETTINGS
from agents.call_format import renderer_for, resolve_call_format, set_chat_template
from agents.engines import EngineConfig, EngineConfigError, make_engine, resolve_engine
from agents.heldout import evaluate_tasks
from agents.models import ModelLoadError, load_model, load_tokenizer, resolve_device, resolve_dtype
from agents.scores import paired_change, wilson_interval
from envs import EnvConfig, EnvConfigError
from tools.call_grammar import GUIDED_CALLS

BFCL_PREFIX = "bfcl/"


@dataclass
class Suite:
    """One scored unit: an environment config, the split to score and how many of its entries."""

    name: str  # e.g. "bfcl/simple_python", "toolace/test", "bookshop/test"
    env: EnvConfig
    split: str | None
    limit: int | None
    _probe: Any = field(default=None, repr=False)

    def make(self) -> Any:
        """A new environment of this suite (``EnvConfigError`` naming the key if it cannot be made)."""
        return self.env.make(self.split, split_key=f"{self.env.where}.split")

    @property
    def probe(self) -> Any:
        """The suite's first environment, made once: it checks the config and computes corpus metrics."""
        if self._probe is None:
            self._probe = self.make()
        return self._probe


SUITE_KEYS = ("split", "limit", "kwargs")


def env_section(name: str) -> dict[str, Any]:
    """``configs/env/<name>.yaml`` (any directory on the config search path, ``--config-dir`` included),
    as plain data; just ``{"name": name}`` when there is none (an installed plugin, a registered id)."""
    from hydra import compose
    from hydra.errors import MissingConfigException

    try:
        composed = compose(config_name=f"env/{name}")
    except MissingConfigException:
        return {"name": name}
    section = OmegaConf.to_container(composed.get("env", composed), resolve=True)
    return section if isinstance(section, dict) else {"name": name}


def expand_suites(cfg: DictConfig, load_env: Callable[[str], dict[str, Any]] = env_section) -> list[Suite]:
    """The config's ``suites`` list: ``bfcl`` expanded into its categories; any other name is a registered
    environment (built-in, ``entry_point`` in its env config, or an installed plugin) scored on
    ``<name>.split`` (default: its config's ``eval_split``, else ``test``), with ``<name>.kwargs`` on top of
    its config's ``kwargs``. Raises ``EnvConfigError`` naming the key; nothing is made or loaded yet."""
    out: list[Suite] = []
    for name in cfg.suites:
        name = str(name)
        if name == "bfcl":
            for category in cfg.bfcl.categories:
                kwargs = {"category": str(category), "call_format": str(cfg.bfcl.get("call_format", "pythonic"))}
                env = EnvConfig(name="bfcl", kwargs=kwargs, train_kwargs={}, where="bfcl")
                out.append(Suite(f"{BFCL_PREFIX}{category}", env, None, cfg.bfcl.limit))
            continue
        section = cfg.get(name)
        section = {} if section is None else OmegaConf.to_container(section, resolve=True)
        if not isinstance(section, dict):
            raise EnvConfigError(f"{name}: the suite's settings must be a mapping of {', '.join(SUITE_KEYS)}")
        unknown = sorted(set(section) - set(SUITE_KEYS))
        if unknown:
            raise EnvConfigError(f"{name}.{unknown[0]}: unknown suite setting; expected {', '.join(SUITE_KEYS)}")
        env = EnvConfig.from_mapping({"name": name, **load_env(name)}, where=name)
        env.register()
        extra = section.get("kwargs") or {}
        if not isinstance(extra, dict):
            raise EnvConfigError(f"{name}.kwargs must be a mapping of constructor arguments")
        env = dataclasses.replace(env, kwargs={**env.kwargs, **extra})
        split = section.get("split") or env.eval_split or "test"
        limit = section.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise EnvConfigError(f"{name}.limit must be null or a positive integer, got {limit!r}")
        out.append(Suite(f"{name}/{split}", env, str(split), limit))
    return out


def evaluate_suite(suite: Suite, engine: Any, tokenizer: Any, sampling: SamplingParams, batch_size: int,
                   progress: Progress | None = None, guided_calls: str = "none") -> list[dict[str, Any]]:
    """Score the suite's first ``limit`` entries (``agents.heldout``), ``batch_size`` at a time; one
    ``results.json`` entry per task (suite, prompt, outputs, reward, failure, verdict).
    ``guided_calls`` (none | auto | required): schema-guided call lists, see ``tools.call_grammar``."""
    probe = suite.probe
    n = probe.num_tasks if suite.limit is None else min(int(suite.limit), probe.num_tasks)
    envs = [probe] + [suite.make() for _ in range(min(batch_size, n) - 1)]
    bar = progress.add_task(suite.name, total=n) if progress else None
    records = evaluate_tasks(envs, range(n), engine, tokenizer, sampling, guided_calls=guided_calls,
                             on_batch=None if progress is None else lambda k: progress.update(bar, advance=k))
    return [{"suite": suite.name, **record.entry()} for record in records]


def summarise(records: list[dict[str, Any]],
              corpus_metrics: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Per-suite accuracy with its 95% Wilson interval, per task kind where the environment names one
    (ToolACE: single, parallel, dependent, multi_turn, no_tool) and per sub-kind where the task's ``meta``
    names one (ToolACE's no_tool: irrelevant, missing_param, chitchat), the failed entries per cause where the
    environment names one (the entry's ``failure``), BFCL's aggregates over the BFCL categories present,
    and the suites' own corpus-level metrics (``ChatEnv.corpus_metrics``, by suite) where they have any."""
    def tally(counts: dict[str, dict[str, float]], key: str, correct: bool) -> None:
        c = counts.setdefault(key, {"n": 0, "correct": 0})
        c["n"] += 1
        c["correct"] += int(correct)

    per_suite: dict[str, dict[str, float]] = {}
    per_kind: dict[str, dict[str, dict[str, float]]] = {}
    per_subkind: dict[str, dict[str, dict[str, float]]] = {}
    failures: dict[str, dict[str, int]] = {}
    for r in records:
        tally(per_suite, r["suite"], r["correct"])
        verdict = r.get("verdict") or {}
        kind = verdict.get("kind")
        if isinstance(kind, str):
            tally(per_kind.setdefault(r["suite"], {}), kind, r["correct"])
            subkind = (verdict.get("meta") or {}).get("subkind")
            if isinstance(subkind, str):
                tally(per_subkind.setdefault(r["suite"], {}), f"{kind} · {subkind}", r["correct"])
        tag = r.get("failure")
        if not r["correct"] and tag:
            counts = failures.setdefault(r["suite"], {})
            counts[tag] = counts.get(tag, 0) + 1
    accuracy = {name: s["correct"] / s["n"] for name, s in per_suite.items() if s["n"]}
    intervals = {name: list(wilson_interval(int(s["correct"]), int(s["n"]))) for name, s in per_suite.items()}
    by_kind = {suite: {kind: k["correct"] / k["n"] for kind, k in sorted(kinds.items())}
               for suite, kinds in per_kind.items()}
    out: dict[str, Any] = {"accuracy": accuracy, "counts": per_suite, "interval95": intervals}
    if by_kind:
        out["accuracy_by_kind"] = by_kind
        out["counts_by_kind"] = per_kind
    if per_subkind:  # apart from the kinds, so that a suite's kind counts still add up to its entries
        out["accuracy_by_subkind"] = {suite: {key: k["correct"] / k["n"] for key, k in sorted(subs.items())}
                                      for suite, subs in per_subkind.items()}
        out["counts_by_subkind"] = per_subkind
    if failures:
        out["failures"] = {suite: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
                           for suite, counts in failures.items()}
    if corpus_metrics := {suite: dict(m) for suite, m in (corpus_metrics or {}).items() if m}:
        out["corpus_metrics"] = corpus_metrics
    bfcl_records = [{"category": r["suite"][len(BFCL_PREFIX):], "valid": r["correct"]}
                    for r in records if r["suite"].startswith(BFCL_PREFIX)]
    if bfcl_records:
        from envs.bfcl.scores import aggregates, category_accuracy

        out["bfcl_aggregates"] = aggregates(category_accuracy(bfcl_records))
    return out


def paired_with_baseline(records: list[dict[str, Any]], baseline_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per suite, tasks gained and lost against a baseline run on the same entries, with McNemar's exact
    p-value; entries are matched by (suite, id), and suites without a shared entry are left out."""
    before = {(r["suite"], str(r["id"])): bool(r["correct"]) for r in baseline_records}
    pairs: dict[str, tuple[list[bool], list[bool]]] = {}
    for r in records:
        key = (r["suite"], str(r["id"]))
        if key in before:
            b, a = pairs.setdefault(r["suite"], ([], []))
            b.append(before[key])
            a.append(bool(r["correct"]))
    return {suite: paired_change(b, a) for suite, (b, a) in pairs.items()}


def model_label(spec: str) -> str:
    """A short column name for a model: the spec, or for a checkpoint path its run and step
    (``runs/x/checkpoints/step-000012/hf`` -> ``x/step-000012``) rather than ``hf``."""
    parts = [p for p in Path(spec).parts if p not in ("hf", "checkpoints")]
    return "/".join(parts[-2:]) if len(Path(spec).parts) > 1 else spec


def baseline_label(spec: str, baseline_model: str, baseline_path: str) -> str:
    """The baseline column's name: its model's label, or, when the baseline is this same model scored another
    way (another turn length, masked tool names), the directory of its results so the two columns differ."""
    label = model_label(baseline_model)
    return f"baseline {Path(baseline_path).parent.name}" if label == model_label(spec) else label


def markdown_report(summary: dict[str, Any], name: str, baseline: dict[str, Any] | None = None,
                    baseline_name: str = "baseline") -> str:
    """A Markdown table of accuracies (percent) with the entry count and 95% Wilson interval, BFCL
    aggregates first, then each suite and its task kinds; a baseline column when given."""
    def row(label: str, value: float | None, base: float | None, counts: dict | None = None) -> str:
        cells = [label, "—" if value is None else f"{100 * value:.1f}"]
        if counts:
            lo, hi = wilson_interval(int(counts["correct"]), int(counts["n"]))
            cells += [str(int(counts["n"])), f"{100 * lo:.1f}-{100 * hi:.1f}"]
        else:
            cells += ["", ""]
        if baseline is not None:
            cells.append("—" if base is None else f"{100 * base:.1f}")
        return "| " + " | ".join(cells) + " |"

    header = ["| metric | " + name + " | n | 95% CI" + (f" | {baseline_name}" if baseline is not None else "") + " |",
              "|---|---:|---:|---:" + ("|---:" if baseline is not None else "") + "|"]
    lines = list(header)
    agg = summary.get("bfcl_aggregates", {})
    base_agg = (baseline or {}).get("bfcl_aggregates", {})
    for key in ("non_live_ast", "live_ast", "irrelevance", "multi_turn"):
        if agg.get(key) is not None:
            lines.append(row(f"BFCL {key}", agg.get(key), base_agg.get(key)))
    base_acc = (baseline or {}).get("accuracy", {})
    base_kind = (baseline or {}).get("accuracy_by_kind", {})
    base_sub = (baseline or {}).get("accuracy_by_subkind", {})
    for suite, value in summary["accuracy"].items():
        lines.append(row(suite, value, base_acc.get(suite), summary["counts"].get(suite)))
        subkinds = summary.get("accuracy_by_subkind", {}).get(suite, {})
        for kind, kind_value in summary.get("accuracy_by_kind", {}).get(suite, {}).items():
            lines.append(row(f"{suite} · {kind}", kind_value, base_kind.get(suite, {}).get(kind),
                             summary["counts_by_kind"][suite][kind]))
            for sub, sub_value in subkinds.items():
                if sub.startswith(f"{kind} · "):
                    lines.append(row(f"{suite} · {sub}", sub_value, base_sub.get(suite, {}).get(sub),
                                     summary["counts_by_subkind"][suite][sub]))
    corpus = summary.get("corpus_metrics", {})
    if corpus:
        base_corpus = (baseline or {}).get("corpus_metrics", {})
        with_base = baseline is not None
        lines += ["", "Corpus-level metrics (each suite's own, over all its entries):", "",
                  "| suite | metric | " + name + (f" | {baseline_name}" if with_base else "") + " |",
                  "|---|---|---:" + ("|---:" if with_base else "") + "|"]
        for suite, metrics in corpus.items():
            for metric, value in metrics.items():
                cells = [suite, metric, _number(value)]
                if with_base:
                    cells.append(_number(base_corpus.get(suite, {}).get(metric)))
                lines.append("| " + " | ".join(cells) + " |")
    failures = summary.get("failures", {})
    if failures:
        # a baseline written before failure causes were recorded has none: no column rather than zeros
        with_base = baseline is not None and "failures" in baseline
        base_failures = baseline["failures"] if with_base else {}
        lines += ["", "Failed entries by cause (the first failing turn; `docs/toolace.md`, BFCL's error types):", "",
                  "| suite | cause | " + name + (f" | {baseline_name}" if with_base else "") + " |",
                  "|---|---|---:" + ("|---:" if with_base else "") + "|"]
        for suite, counts in failures.items():
            base_counts = base_failures.get(suite, {})
            for tag in [*counts, *(t for t in base_counts if t not in counts)]:
                cells = [suite, tag, str(counts.get(tag, 0))]
                if with_base:
                    cells.append(str(base_counts.get(tag, 0)))
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_baseline(path: str) -> dict[str, Any]:
    """A previous run's ``results.json``; ``ValueError`` naming ``baseline`` and the path if it is not one."""
    try:
        run = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"baseline={path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"baseline={path}: not a results.json ({type(err).__name__}: {err})") from None
    if not isinstance(run, dict) or not isinstance(run.get("summary"), dict):
        raise ValueError(f"baseline={path}: not a results.json (no 'summary' object)")
    return run


def _number(value: Any) -> str:
    """A metric value as the environment gave it, to four significant digits; a dash when absent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:.4g}"


def corpus_metrics_of(suite: Suite, records: list[dict[str, Any]]) -> dict[str, float]:
    """The suite's ``corpus_metrics`` over its records, checked to be name -> number. A hook that fails is
    reported on stderr and gives nothing: the entries it could not summarise are kept all the same."""
    try:
        metrics = suite.probe.corpus_metrics(records)
        if not isinstance(metrics, dict):
            raise TypeError(f"returned {type(metrics).__name__}, not a dict of name -> number")
        bad = [k for k, v in metrics.items() if not isinstance(k, str) or isinstance(v, bool)
               or not isinstance(v, int | float)]
        if bad:
            raise TypeError(f"metric {bad[0]!r} is not a name -> number pair")
    except Exception as err:  # noqa: BLE001 - a user's hook must not lose the run's entries
        print(f"warning: {suite.name}: corpus_metrics failed ({type(err).__name__}: {err}); entries kept",
              file=sys.stderr, flush=True)
        return {}
    return {k: float(v) for k, v in metrics.items()}


def resolve_suite_call_formats(suites: list[Suite], tokenizer: Any) -> list[Suite]:
    """Suites whose ``call_format`` is ``native``/``auto``, resolved with the model's chat template
    (``agents.call_format``); a template that renders no tools makes ``native`` an ``EnvConfigError``."""
    out = []
    for suite in suites:
        setting = suite.env.kwargs.get("call_format")
        if setting in CALL_FORMAT_SETTINGS:
            key = "bfcl.call_format" if suite.env.where == "bfcl" else f"{suite.env.where}.kwargs.call_format"
            try:
                resolved = resolve_call_format(setting, tokenizer, key=key)
            except ValueError as err:
                raise EnvConfigError(str(err)) from None
            suite = dataclasses.replace(suite, env=dataclasses.replace(
                suite.env, kwargs={**suite.env.kwargs, "call_format": resolved}))
        out.append(suite)
    return out


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = str(cfg.model_path) if cfg.model_path else str(cfg.model.spec)
    if cfg.model_path and not str(cfg.model_path).startswith("hub:") and not Path(str(cfg.model_path)).is_dir():
        print(f"config error: model_path={cfg.model_path}: no such checkpoint directory (a hub model goes in "
              f"model_path=hub:org/name)", file=sys.stderr)
        sys.exit(2)
    tokenizer = None  # loaded here if a suite's call format is read off the template, else with the model
    try:
        suites = expand_suites(cfg)
        if any(s.env.kwargs.get("call_format") in CALL_FORMAT_SETTINGS for s in suites):
            tokenizer = set_chat_template(load_tokenizer(spec), cfg.model.get("chat_template"))
            suites = resolve_suite_call_formats(suites, tokenizer)
        for suite in suites:  # every suite's environment, before the model loads: a bad path fails in a second
            suite.probe  # noqa: B018
    except (EnvConfigError, ValueError, ModelLoadError) as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    guided_calls = str(cfg.get("guided_calls", "none"))
    if guided_calls not in GUIDED_CALLS:
        print(f"config error: guided_calls must be one of {', '.join(GUIDED_CALLS)}, got {guided_calls!r}",
              file=sys.stderr)
        sys.exit(2)
    try:
        engine_config = EngineConfig.from_mapping(OmegaConf.to_container(cfg.get("rollout") or {}, resolve=True))
        engine_kind = resolve_engine(engine_config, spec, {f"guided_calls={guided_calls}": guided_calls != "none"})
    except EngineConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        baseline_run = read_baseline(cfg.baseline) if cfg.baseline else None
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        device = resolve_device(str(cfg.device))
    except ValueError as err:
        print(f"config error: device: {err}", file=sys.stderr)
        sys.exit(2)
    templated = tokenizer is not None
    dtype = resolve_dtype(str(cfg.model.dtype), device)
    try:  # vLLM reads the weights itself: only the tokenizer is loaded here (unless it was above)
        if engine_kind == "vllm":
            model, tokenizer = None, tokenizer if templated else load_tokenizer(spec)
        else:
            model, tokenizer = load_model(spec, dtype=dtype, device=device,
                                          tokenizer=tokenizer)
    except ModelLoadError as err:
        key = "model_path" if cfg.model_path else "model.spec"
        print(f"config error: {key}={spec}: {err}", file=sys.stderr)
        sys.exit(2)
    if not templated:
        set_chat_template(tokenizer, cfg.model.get("chat_template"))
    engine = make_engine(engine_kind, model, tokenizer, model_spec=spec, dtype=dtype,
                         seed=int(cfg.seed), config=engine_config, batch_size=int(cfg.batch_size))
    sampling = SamplingParams(temperature=float(cfg.temperature), top_p=float(cfg.top_p),
                              max_new_tokens=int(cfg.max_new_tokens), greedy=bool(cfg.greedy), seed=int(cfg.seed))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    corpus: dict[str, dict[str, float]] = {}
    t0 = time.time()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not cfg.progress) as progress:
        for suite in suites:
            renderer = renderer_for(tokenizer, suite.env.kwargs.get("call_format"))
            suite_records = evaluate_suite(suite, engine, renderer, sampling, int(cfg.batch_size), progress,
                                           guided_calls)
            corpus[suite.name] = corpus_metrics_of(suite, suite_records)
            records.extend(suite_records)
    summary = summarise(records, corpus)
    summary.update({"model": spec, "seconds": time.time() - t0, "engine_kind": engine_kind,
                    "engine": dataclasses.asdict(engine.stats),
                    "config": OmegaConf.to_container(cfg, resolve=True)})
    baseline = baseline_run["summary"] if baseline_run else None
    if baseline_run:
        summary["paired_vs_baseline"] = paired_with_baseline(records, baseline_run.get("entries", []))
    (out_dir / "results.json").write_text(json.dumps({"summary": summary, "entries": records}, indent=1))
    table = markdown_report(summary, name=model_label(spec), baseline=baseline,
                            baseline_name=baseline_label(spec, str(baseline.get("model", "baseline")), str(cfg.baseline))
                            if baseline else "baseline")
    for suite, change in summary.get("paired_vs_baseline", {}).items():
        table += (f"\n{suite}, same {change['n']} entries as the baseline: {change['gained']} gained, "
                  f"{change['lost']} lost (McNemar exact p = {change['p_value']:.3g})\n")
    (out_dir / "results.md").write_text(table)
    print(table)
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")


if __name__ == "__main__":
    main()
