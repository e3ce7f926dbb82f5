"""The ``stream-monitor`` command line. Every setting also comes from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .errors import ConfigError, UsageError
from .settings import ConnectionSettings, Settings

if TYPE_CHECKING:
    from .adapters.hooks import StepHooks


class _Commands(TyperGroup):
    """Every command runs inside this: a user mistake (a bad config, a missing or unreadable
    file, an unknown model, a missing extra) ends with its message and exit code 2, never a
    traceback. Other exceptions are bugs and keep their traceback (exit code 1)."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # one line per problem: the field and the fix
            _error(str(exc))
        except UsageError as exc:
            _error(f"error: {exc}")
        except OSError as exc:
            if exc.filename is None or exc.strerror is None:
                raise
            # A file named on the command line that is missing, unreadable or a directory.
            _error(f"error: {exc.filename}: {exc.strerror}")
        raise typer.Exit(2)


def _error(message: str) -> None:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True)
# Wide enough for the demo's tables when stderr is not a terminal (CI logs).
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="SM_CONFIG",
                                         help="Monitoring config (YAML).", show_envvar=True)]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"stream-monitor {version('stream-monitor')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Online drift monitoring for ML models that publish predictions to Kafka.

    Exit codes: 0 done; 1 failed (e.g. replay found nothing usable); 2 a mistake in what was
    given (config, file, option), printed as one line per problem.
    """


def _settings_error(exc: Exception) -> typer.Exit:
    """Print what is wrong with the environment, one line per variable (never its value: it
    may be a secret), and return the exit to raise."""
    from pydantic import ValidationError

    from .settings import settings_problems

    problems = (settings_problems(exc) if isinstance(exc, ValidationError)
                else [("(settings)", str(exc))])
    for var, msg in problems:
        _error(f"invalid environment settings: {var}: {msg}")
    return typer.Exit(2)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        raise _settings_error(exc) from None


def _preflight(settings: ConnectionSettings, redis_prefix: str | None) -> None:
    """Connect to Kafka (and Redis, when the process uses it) once before starting: a wrong
    password, an unknown CA or a missing ACL permission ends the process here, in seconds,
    with one line naming the setting (docs/security.md). Exit code 2."""
    from .adapters.kafka_clients import preflight
    from .errors import ConnectionCheckError
    from .state.connection import redis_preflight

    async def check() -> None:
        await preflight(settings)
        if redis_prefix is not None:
            await redis_preflight(settings, redis_prefix)

    try:
        asyncio.run(check())
    except ConnectionCheckError as exc:
        _error(f"cannot start: {exc}")
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(
    config: ConfigOpt,
    events: Annotated[Path | None, typer.Option(
        help="A sample of inference events (JSON lines): also list the signals found in it, "
        "watched or still collecting their reference (replayed in memory).")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Label records to merge with --events (performance signals).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Validate a monitoring config and print its plan: per model rule the signals it
    watches, their detectors and false-alarm budget, the reference each needs, the value
    rules; with --events, the concrete signals of a sample."""
    import orjson

    from .config import load_config
    from .plan import config_plan, observe, render_plan

    cfg = load_config(config)
    plan = config_plan(cfg)
    observed = observe(cfg, events, labels) if events is not None else None
    if json_out:
        sys.stdout.buffer.write(orjson.dumps({"config": str(config), "plan": plan,
                                              "observed": observed},
                                             option=orjson.OPT_INDENT_2) + b"\n")
        return
    out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
    out.print(f"ok: {config}: {len(cfg.models)} model rules, {len(cfg.detectors)} detectors",
              markup=False, highlight=False)
    for line in render_plan(plan, observed):
        out.print(line, markup=False, highlight=False)


def settings_help(settings: type[BaseSettings]) -> str:
    """Every setting of a settings class, one line each: its environment variable, default and
    the first sentence of its description (generated, so the help cannot leave one out)."""
    lines = []
    for name, field in settings.model_fields.items():
        var = field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
        default = field.get_default(call_default_factory=True)
        shown = "-" if default is None else str(default).lower() if isinstance(
            default, bool) else str(default)
        desc = (field.description or "").split(". ")[0].rstrip(".")
        lines.append(f"{var} (default {shown}): {desc}")
    # \b keeps click/typer from joining the lines into one paragraph.
    return "\b\n" + escape("\n".join(lines))


@app.command(epilog="Environment (docs/config.md):\n\n"
             + settings_help(Settings))
def worker(config: ConfigOpt) -> None:
    """Run the Kafka worker: batches from the inference (and labels) topic, state in Redis,
    offsets committed once a batch's state is saved and its outputs are acknowledged.

    Every setting comes from the environment; all of them are listed below.
    """
    run_worker(config)


def run_worker(config: Path, hooks: StepHooks | None = None) -> None:
    """The worker command; exits (typer.Exit) with the worker's exit code. ``hooks``: a
    :class:`~stream_monitor.adapters.hooks.StepHooks` a test entry point passes (the
    crash-safety tests' failpoints, tests/failpoints.py); the command itself passes none."""
    settings = _settings()
    from .config import load_config

    cfg = load_config(config, settings)
    _registry_preflight(cfg, settings)
    from .observability.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    _preflight(settings, settings.key_prefix)  # Kafka and Redis, as the worker will use them
    # Start-up objects (River, numpy, aiokafka) live for the whole run: keep the cyclic GC
    # from re-scanning them, and collect the young generation less often (each event
    # allocates a few dicts and floats).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    rc = asyncio.run(_run_worker(cfg, settings, hooks))
    raise typer.Exit(rc)


def _registry_preflight(cfg: Any, settings: Settings) -> None:
    """A registry format needs SCHEMA_REGISTRY_URL and the registry extra: say so at start."""
    used = [f"input.{t}.format: {getattr(cfg.input, t).format}" for t in ("inference", "labels")
            if getattr(cfg.input, t).format != "json"]
    if not used:
        return
    if not settings.schema_registry_url:
        _error(f"error: {'; '.join(used)} reads schemas from a Schema Registry, but "
               "SCHEMA_REGISTRY_URL is not set; set it (e.g. "
               "http://registry:8080/apis/ccompat/v7), or use format: json")
        raise typer.Exit(2)
    try:
        import confluent_kafka.schema_registry  # noqa: F401
        import fastavro  # noqa: F401
    except ImportError:
        _error(f"error: {'; '.join(used)} needs the registry extra: pip install "
               "'stream-monitor[registry]'")
        raise typer.Exit(2) from None


async def _run_worker(cfg: Any, settings: Settings, hooks: StepHooks | None = None) -> int:
    from prometheus_client import REGISTRY

    from .adapters.hooks import NO_HOOKS
    from .adapters.worker import KafkaWorker
    from .errors import StartupError
    from .observability import WorkerMetrics
    from .observability.worker_hooks import ObservedStore, serve_worker_health, worker_readiness
    from .state.connection import redis_client
    from .state.dedupe import RedisDedupe
    from .state.label_store import RedisLabelStore
    from .state.redis import RedisStore

    metrics = WorkerMetrics(REGISTRY, max_models=settings.metrics_max_models,
                            max_signal_series=settings.metrics_max_signal_series,
                            signal_gauges=cfg.metrics.signal_gauges, signals=cfg.metrics.signals)
    # The three Redis stores share one client and key prefix: state (with the outbox), event-id
    # claims, and the delayed-label join.
    client, prefix = redis_client(settings), settings.key_prefix
    store = ObservedStore(RedisStore(settings.redis_url, prefix, client=client,
                                     wait_replicas=settings.redis_wait_replicas), metrics)
    runtime = KafkaWorker(cfg, settings, store, dedupe=RedisDedupe(client, prefix),
                          labels=RedisLabelStore(client, prefix), metrics=metrics,
                          hooks=hooks if hooks is not None else NO_HOOKS)
    health = None
    if settings.metrics_port:
        health = asyncio.ensure_future(serve_worker_health(
            runtime, metrics, worker_readiness(runtime, store, input_topic=cfg.topics.inference),
            port=settings.metrics_port, host=settings.metrics_host,
            input_topic=cfg.topics.inference))
    try:
        return await runtime.run()
    except StartupError as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        return 1
    finally:
        if health is not None:
            health.cancel()
            with contextlib.suppress(BaseException):
                await health


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="JSON-lines file of inference events.")],
    config: ConfigOpt,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write output records (JSON lines); default "
        "stdout.")] = None,
    batch: Annotated[int, typer.Option(help="Events per batch.")] = 2000,
    labels: Annotated[Path | None, typer.Option(
        help="JSON-lines label records, merged with the events by timestamp.")] = None,
) -> None:
    """Run the same core over a file with in-memory state. Needs neither Kafka nor Redis.

    Exits with 1 when nothing in the input was usable (an empty file, every record
    dead-lettered, or no event of a model the config watches), and warns when most of it was
    dead-lettered.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .adapters.replay import replay_file
    from .config import load_config

    cfg = load_config(config)
    lines = sum(1 for _ in events.open("rb")) + (sum(1 for _ in labels.open("rb")) if labels
                                                   else 0)
    out = output.open("wb") if output else sys.stdout.buffer
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=output is None) as progress:
        task = progress.add_task("replay", total=lines)
        states: list = []
        total = replay_file(cfg, events, out, batch=batch, labels=labels, state_out=states,
                            on_batch=lambda done, _: progress.update(task, completed=done))
    if output:
        out.close()
    err.print(f"{total.events} records: {total.alerts} drift alerts, {total.retrain_requests} "
              f"retrain requests, {total.dead_letters} dead letters, {total.unwatched} of "
              f"unwatched models" + (f", {total.pairs} joined labels" if labels else ""))
    from .core.monitor import collecting

    pending = collecting(states[0]) if states else []
    if pending:
        shown = ", ".join(f"{r['model_id']} {r['signal']} ({r['have']}/{r['need']})"
                          for r in pending[:8])
        more = f" and {len(pending) - 8} more" if len(pending) > 8 else ""
        err.print(f"not yet watched: {len(pending)} signals still collecting their reference "
                  f"(values have/need): {shown}{more}")
    _report_not_watchable(states[0] if states else None)
    _report_estimates(states[0] if states else None)
    _report_performance(states[0] if states else None)
    _check_usable(events, total)


def _report_estimates(state: Any) -> None:
    """The confidence-based performance estimates against the realized errors of the last
    labelled events (docs/probabilities.md)."""
    from .core.probabilities import estimates

    if state is None:
        return
    rows = estimates([(m.model_id, m.model_version, m.estimate) for m in state.models.values()
                      if m.estimate is not None and (m.estimate.calibrations
                                                     or m.estimate.confidence)])
    for r in rows[:8]:
        who = r["model_id"] + (f" v{r['model_version']}" if r["model_version"] else "")
        if "gap" not in r:
            state_ = ("calibrated, no labelled event since" if r["calibrated"] else
                      f"calibrating ({r['collecting']} labelled events so far)")
            err.print(f"performance estimate: {who}: {state_}")
            continue
        err.print(f"performance estimate: {who}: estimated error {r['estimated_error']:.4f}, "
                  f"realized {r['realized_error']:.4f} over the last {r['window']} labelled "
                  f"events (gap {r['gap']:+.4f}, standard error {r['gap_standard_error']:.4f}); "
                  f"calibrated on {r['calibrated_on']} ({r['calibrations']} fits)")
    if len(rows) > 8:
        err.print(f"performance estimate: and {len(rows) - 8} more models")


def _report_performance(state: Any) -> None:
    """The windowed performance metrics of the models with labelled events (docs/metrics.md)."""
    from .core.performance import metrics_rows

    if state is None:
        return
    rows = metrics_rows([(m.model_id, m.model_version, m.performance)
                         for m in state.models.values() if m.performance is not None])
    for r in rows[:8]:
        who = r["model_id"] + (f" v{r['model_version']}" if r["model_version"] else "")
        err.print(f"performance: {who}: {performance_line(r)}")
    if len(rows) > 8:
        err.print(f"performance: and {len(rows) - 8} more models")


def performance_line(r: dict[str, Any]) -> str:
    """One model's windowed metrics on one line (replay's summary)."""
    names = ("accuracy", "f1_macro", "auc", "brier", "ece", "rmse", "mae", "mape")
    shown = ", ".join(f"{k} {r[k]:.4f}" for k in names if k in r)
    return f"{shown} over the last {r['window']} labelled events ({r['labelled']} in all)"


def _report_not_watchable(state: Any) -> None:
    """The signals whose reference cannot support their budget, and what each needs."""
    from .core.monitor import not_watchable
    from .core.watchable import describe

    rows = not_watchable(state) if state is not None else []
    if not rows:
        return
    err.print(f"not watchable yet: {len(rows)} signals whose reference cannot support the "
              "false-alarm budget (docs/detection.md \"What can be watched\"):")
    _print_not_watchable(rows, "  ", lambda r: describe(r["assessment"]))


def _print_not_watchable(rows: list[dict[str, Any]], prefix: str,
                         why: Callable[[dict[str, Any]], str]) -> None:
    """One line per not-watchable signal (the first 8): whether it is watched meanwhile and
    what it lacks; then how many more."""
    for r in rows[:8]:
        how = ("reference still growing" if not r["watched"] else
               "watched slowly, reference still growing" if r["growing"] else
               "watched, slowly")
        err.print(f"{prefix}{r['model_id']} {r['signal']} ({how}): {why(r)}")
    if len(rows) > 8:
        err.print(f"{prefix}and {len(rows) - 8} more")


def _check_usable(events: Path, total: Any) -> None:
    """Exit 1 when a replay used nothing of its input; warn when it dead-lettered most of it."""
    from collections import Counter

    reasons: Counter[str] = Counter()
    for (_, reason), n in total.quality.dead_letters.items():
        reasons[reason] += n
    why = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
    dead = f"{total.dead_letters} of {total.events} records dead-lettered" + (
        f" ({why})" if why else "")
    if total.events == 0:
        _error(f"error: {events}: no records (an empty file); nothing was monitored")
        raise typer.Exit(1)
    if total.events - total.dead_letters - total.unwatched <= 0:
        parts = ([dead] if total.dead_letters else []) + (
            [f"{total.unwatched} events of models no model rule matches"]
            if total.unwatched else [])
        _error(f"error: nothing in {events} was usable: {'; '.join(parts)}")
        raise typer.Exit(1)
    if total.dead_letters * 2 > total.events:
        err.print(f"warning: most of {events} was not usable: {dead}", style="yellow",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    events: Annotated[Path, typer.Argument(help="JSON-lines file of inference events.")],
    config: ConfigOpt,
    changes: Annotated[Path, typer.Option("--changes", help="Labelled change points (JSON, "
                                          "docs/detection.md).")],
    margin: Annotated[int, typer.Option(help="An alert this many values after a change "
                                        "detects it.")] = 300,
    image: Annotated[Path | None, typer.Option("--plot", help="PNG to write (needs the "
                                               "[plot] extra).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full scores "
                                                  "as JSON here.")] = None,
    budgets: Annotated[list[float] | None, typer.Option(
        "--budget", help="Also evaluate with this top-level false-alarm budget (1 per N "
        "values; repeatable) and compare: what a looser budget buys.")] = None,
    minimums: Annotated[list[int] | None, typer.Option(
        "--reference-min-size", help="Also evaluate with this windows.reference_min_size "
        "(repeatable) and compare.")] = None,
) -> None:
    """Score a config's drift alerts on history with known change points: delay, misses,
    false alarms per 10,000 values, F1 at a margin, localization error, per signal; the
    signals whose reference cannot support the budget, and what other budgets or reference
    minimums would buy."""
    import orjson
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .config import compile_plan, read_config
    from .evaluate import evaluate as run_evaluate
    from .evaluate import load_changes, plot_evaluation, with_option

    schema = read_config(config)
    cfg = compile_plan(schema)
    if image is not None:
        from .plot import pyplot

        pyplot()  # fail now, not after the evaluation, when the [plot] extra is missing
    cps = load_changes(changes)  # EvaluateError, a missing file: one line, exit 2 (_Commands)
    lines = sum(1 for _ in events.open("rb"))
    with Progress(TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("evaluate", total=lines)
        result = run_evaluate(cfg, events, cps, margin=margin,
                              on_progress=lambda done: progress.update(task, completed=done))
    table = Table("model", "signal", "values", "changes", "detected", "misses", "false alarms",
                  "FA/10k", "median delay", "median loc. error")
    for s in result.signals:
        r = s.row()
        table.add_row(s.model_id, s.signal, str(s.values), str(s.changes), str(s.detected),
                      str(s.misses), str(s.false_alarms), f"{r['false_alarms_per_10k']:.3f}",
                      _fmt(r["median_delay"]), _fmt(r["median_localization_error"]))
    err.print(table)
    summ = result.summary()
    err.print(f"summary: {summ['changes']} changes, {summ['detected']} detected, "
              f"{summ['misses']} missed, {summ['false_alarms']} false alarms "
              f"({summ['false_alarms_per_10k']:.3f} per 10,000 values); F1 at {margin} values: "
              f"{_fmt(summ['f1'])}; median delay {_fmt(summ['median_delay'])}, median "
              f"localization error {_fmt(summ['median_localization_error'])} values"
              + (f"; {summ['dead_letters']} events were dead-lettered (not scored)"
                 if summ["dead_letters"] else "")
              + (f"; {summ['not_watchable']} signals not watchable at their budget"
                 if summ["not_watchable"] else ""))
    _print_not_watchable(result.not_watchable, "not watchable: ", lambda r: r["why"])
    variants = [(f"budget 1 per {b:,.0f} values", with_option(schema, budget=b))
                for b in budgets or []]
    variants += [(f"reference_min_size {m}", with_option(schema, reference_min_size=m))
                 for m in minimums or []]
    compared = []
    if variants:
        options = Table("option", "not watchable", "detected", "missed", "false alarms",
                        "FA/10k", "median delay")
        for label, vcfg in [("as configured", cfg), *variants]:
            res = result if vcfg is cfg else run_evaluate(vcfg, events, cps, margin=margin)
            o = res.summary()
            compared.append({"option": label, "summary": o, "not_watchable": res.not_watchable})
            options.add_row(label, str(o["not_watchable"]), str(o["detected"]), str(o["misses"]),
                            str(o["false_alarms"]), f"{o['false_alarms_per_10k']:.3f}",
                            _fmt(o["median_delay"]))
        err.print(options)
    if json_out is not None:
        data = result.to_json()
        if compared:
            data["options"] = compared
        json_out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    if image is not None:
        err.print(f"wrote {plot_evaluation(result, image)}")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


@app.command()
def simulate(
    config: ConfigOpt,
    rate: Annotated[list[str], typer.Option("--rate", help="MODEL=EVENTS_PER_SECOND, "
                                            "repeatable.")],
    events: Annotated[Path | None, typer.Option(help="A sample of inference events (JSON "
                                                "lines) to learn each model's signals.")] = None,
    signals: Annotated[list[str] | None, typer.Option(
        "--signals", help="MODEL=SIGNAL,SIGNAL,... (instead of or beside --events), "
        "repeatable.")] = None,
) -> None:
    """Expected false drift alerts per day of a deployment, under the calibrated budget."""
    import orjson

    from .config import load_config
    from .evaluate import simulate as run_simulate

    cfg = load_config(config)
    rates: dict[str, float] = {}
    for r in rate:
        model, _, value = r.partition("=")
        try:
            rates[model] = float(value)
        except ValueError:
            rates[model] = -1.0
        if not model or not rates[model] >= 0:
            raise UsageError(f"--rate {r!r}: write MODEL=EVENTS_PER_SECOND, e.g. "
                             "credit-risk=200")
    sigs: dict[str, set[str]] = {}
    for s in signals or []:
        model, _, listed = s.partition("=")
        if not model or not listed:
            raise UsageError(f"--signals {s!r}: write MODEL=SIGNAL,SIGNAL, e.g. "
                             "credit-risk=feature:amount,prediction")
        sigs.setdefault(model, set()).update(n for n in listed.split(",") if n)
    if events is not None:
        for line in events.open("rb"):
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            mid = ev.get("model_id") if isinstance(ev, dict) else None
            if not isinstance(mid, str):
                continue
            names = sigs.setdefault(mid, set())
            names.update("feature:" + k for k, v in (ev.get("features") or {}).items()
                         if isinstance(v, int | float))
            if isinstance(ev.get("prediction"), int | float):
                names.add("prediction")
            if ev.get("label") is not None:
                names.add("performance:error")
    missing = [m for m in rates if not sigs.get(m)]
    if missing:
        raise UsageError(f"no signals known for {', '.join(missing)}: pass --events with a "
                         "sample or --signals MODEL=SIGNAL,...")
    out = run_simulate(cfg, rates, {m: sorted(v) for m, v in sigs.items()})
    for m in out["models"]:
        if not m["watched"]:
            err.print(f"{m['model_id']}: not watched by any model rule")
            continue
        per_day = sum(s["false_alerts_per_day"] or 0.0 for s in m["signals"])
        err.print(f"{m['model_id']}: {m['events_per_second']:g} events/s, "
                  f"{len(m['signals'])} watched signals, at most {per_day:.4g} false alerts/day")
    err.print(f"deployment: at most {out['false_alerts_per_day']:.4g} false alerts per day "
              f"({out['false_alerts_per_week']:.4g} per week) from "
              f"{out['values_per_second']:g} monitored values/s"
              + (f"; {out['uncalibrated_signals']} signals have no budget (uncalibrated)"
                 if out["uncalibrated_signals"] else ""))


@app.command()
def synth(
    output: Annotated[Path, typer.Argument(help="Where to write the JSON-lines stream.")],
    events: Annotated[int, typer.Option(help="Events per model.")] = 6000,
    models: Annotated[str, typer.Option(help="Comma-separated model ids.")] = "credit-risk",
    seed: int = 7,
    labels: Annotated[Path | None, typer.Option(
        help="Instead: a classifier `churn-model` whose error rate jumps from 10% to 40% at its "
        "middle, its inputs unchanged; its delayed labels go to this file.")] = None,
) -> None:
    """Write a seeded synthetic stream with drift at its middle (amount, utilization,
    prediction)."""
    from .synth import Drift, LabelledSpec, StreamSpec, generate, labelled

    if labels is not None:
        s = labelled(LabelledSpec(events=events, concept_drift_at=events // 2, seed=seed))
        output.write_bytes(b"".join(v + b"\n" for v in s.inference))
        labels.write_bytes(b"".join(v + b"\n" for v in s.early + s.labels))
        err.print(f"wrote {len(s.inference)} events to {output} and {len(s.early + s.labels)} "
                  f"labels to {labels} (error 10% -> 40% at event {events // 2})")
        return

    half = events // 2
    spec = StreamSpec(models=tuple(models.split(",")), events_per_model=events, seed=seed,
                      drifts=(Drift(half, "amount", 1.5), Drift(half, "utilization", -1.5),
                              Drift(half, "prediction", 1.0)))
    with output.open("wb") as f:
        for line in generate(spec):
            f.write(line + b"\n")
    err.print(f"wrote {events * len(spec.models)} events to {output} (drift at event {half} of "
              "each model)")


@app.command()
def plot(
    events: Annotated[Path, typer.Argument(help="JSON-lines inference events.")],
    outputs: Annotated[Path, typer.Argument(
        help="JSON-lines output records (from replay or demo).")],
    image: Annotated[Path, typer.Option("--image", "-o", help="PNG to write.")] = Path(
        "out/signals.png"),
    model: Annotated[str | None, typer.Option(help="Model id (default: the first one).")] = None,
) -> None:
    """Plot each alerted signal of a model with its drift points marked (needs the [plot]
    extra). Each alert is drawn at the inference event it names; an unknown --model is an
    error (exit 2) that lists the models in the files."""
    from .plot import plot_signals

    unplaced: list[str] = []
    path = plot_signals(events, outputs, image, model, unplaced=unplaced)
    for what in unplaced:
        err.print(f"not drawn: {what}", markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {path}")


def example_config() -> contextlib.AbstractContextManager[Path]:
    """The example monitoring config shipped in the package (the demo's default), as a file."""
    from importlib import resources

    return resources.as_file(resources.files("stream_monitor") / "examples" / "monitor.yaml")


@app.command()
def demo(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="SM_CONFIG", show_envvar=True,
        help="Monitoring config (YAML); default: the example config shipped with the package "
        "(examples/monitor.yaml).")] = None,
    events: Annotated[int, typer.Option(help="Events in the demo stream.")] = 6000,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the outputs.")] = 120.0,
) -> None:
    """End to end on real Kafka and Redis: start a worker, feed it a drifting stream, show the
    alerts and retrain requests read back from the output topics. Writes to ./out."""
    from .demo import run_demo

    settings = _settings()
    with example_config() if config is None else contextlib.nullcontext(config) as path:
        code = asyncio.run(run_demo(path, settings, events=events, timeout=timeout,
                                    console=err))
    raise typer.Exit(code)


@app.command()
def notify(
    targets: Annotated[Path, typer.Option("--targets", "-t", envvar="SM_NOTIFY_CONFIG",
                                          help="Notification targets (YAML).", show_envvar=True)],
    check: Annotated[bool, typer.Option("--check", help="Validate the targets and their "
                                        "secrets, then exit.")] = False,
) -> None:
    """Forward drift alerts and retrain requests to Alertmanager, PagerDuty, Slack, webhooks.

    Environment: KAFKA_BOOTSTRAP_SERVERS, SM_NOTIFY_GROUP, SM_TOPIC_ALERTS, SM_TOPIC_RETRAIN,
    SM_NOTIFY_TOPIC_DEAD_LETTER, SM_NOTIFY_HTTP_HOST, SM_NOTIFY_HTTP_PORT (/metrics /healthz
    /readyz; 0 disables), SM_LOG_LEVEL, SM_LOG_FORMAT (text|json), and the variables the
    targets name for their secrets.
    """
    from .notify.config import NotifySettings, load_notify_config, resolve_targets
    from .observability.logging import configure_logging

    try:
        settings = NotifySettings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        raise _settings_error(exc) from None
    try:
        cfg = load_notify_config(targets, settings)
        resolved = resolve_targets(cfg, source=str(targets))
    except ConfigError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if check:
        err.print(f"ok: {len(resolved)} targets: "
                  + ", ".join(f"{t.name} ({t.spec.type})" for t in resolved))
        return
    configure_logging(settings.log_level, settings.log_format)
    _preflight(settings, None)
    from .notify.service import run_notifier

    asyncio.run(run_notifier(cfg, resolved, settings,
                             group_id=settings.consumer_group, http_host=settings.http_host,
                             http_port=settings.http_port))


def main() -> None:
    logging.basicConfig(level=os.environ.get("SM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiokafka narrates every metadata change at INFO; keep ours readable.
    for noisy in ("aiokafka", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
