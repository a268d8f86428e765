"""`tlcli tune`: hyperparameter search of a new head, or of fine-tuning a trained run.

Both searches share this machinery and differ only in how a trial runs and what best.toml holds:

- The head search (tlcli/tune/head.py) computes the frozen backbone's features once and fits
  every trial's head on them, so a trial costs seconds rather than a pass over the images.
  Its best.toml is for `tlcli train --config best.toml DATA`.
- The fine-tuning search (tlcli/tune/finetune.py, `--finetune RUN_DIR`) starts every trial
  from the run's saved model, unfreezes the backbone from the trial's depth and fits on the
  images at the trial's learning rate. Its best.toml is for `tlcli finetune RUN_DIR --config best.toml`.

Every trial is scored on the validation images after early stopping has restored its best epoch.

Grid and random search use scikit-learn's ParameterGrid and ParameterSampler
(tlcli/tune/space.py): reproducible under a seed, and they plan every trial up front, so a
resumed search knows which trials are left. Bayesian optimisation and hyperband choose each
trial from the results so far; for those, KerasTuner's oracles propose the values
(tlcli/tune/adaptive.py), and tlcli runs and records the trials the same way.

The tuning directory (`--out`):

    tune.json         the search: which kind, settings, space, objective, seed
    leaderboard.csv   one row per finished trial, best first
    leaderboard.json  the same, with every trial's full result
    best.toml         the best trial as settings for the command named in its first lines
    trials/NNNN/      each trial's history.csv and TensorBoard logs
    keras_tuner/      the oracle's state (bayesian and hyperband)

Each finished trial is recorded at once (atomically), so `--resume` skips it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tlcli.errors import TlcliError
from tlcli.events import DETAIL, SILENT, Events
from tlcli.runs.directory import read_json, resumable
from tlcli.runs.atomic import write_atomic, write_json
from tlcli.runs.names import TUNE_SETTINGS
from tlcli.runs.outputs import claim_output, finish_run_dir, start_output_dir
from tlcli.runs.locks import locks_outputs
from tlcli.runs.staging import staged_output, url_sources
from tlcli.runs.run_dir import trial_run
from tlcli.settings import LoadedConfig, load_toml
from tlcli.storage import Location
from tlcli.tune.leaderboard import (  # better and the format_ helpers: for the command's leaderboard too
    better,
    format_epochs,
    format_params,
    format_score,
    format_value,
    read_leaderboard,
    to_toml,
    trial_record,
    write_leaderboard,
)
from tlcli.tune import finetune as finetune_search
from tlcli.tune import head as head_search
from tlcli.tune.space import plan_trials, trial_key
from tlcli.tune.trials import ADAPTIVE_SEARCHES, Trials, TuneConfig, check_search

# What `tlcli tune` needs, from its one workflow module: the search, its config and check, and the
# leaderboard's formatting for the table it draws.
__all__ = ["TuneConfig", "TuneOutcome", "better", "format_epochs", "format_score", "format_value", "search_config",
           "tune"]

TRIALS = "trials"
BEST = "best.toml"


def search_kind(finetune: bool):
    """The module of one kind of search, `tlcli.tune.head` or `tlcli.tune.finetune`: the one place
    that chooses. Each gives its SETTINGS, `settings_from`, `search_space` and TRIALS."""
    return finetune_search if finetune else head_search


def search_config(settings: dict, *, data: Path | None, finetune: Path | None, space: Location | None = None,
                  config: LoadedConfig | None = None, search: str = "random", **options) -> TuneConfig:
    """The search `tlcli tune` asks for, resolved: the searched runs' `settings` as given (train's
    option names, or finetune's with `finetune`), with the settings of a --config file that name no
    option; the space of --space, else of --config's [space] table, else the kind's default; and
    the search's own `options` (TuneConfig's trials, objective, out, augmentation, distribution)."""
    kind = search_kind(finetune is not None)
    if config is not None:
        config.check_known(kind.SETTINGS)
        settings = {**settings, **config.others}
    document, source = _space_document(space, config)
    check_search(search)
    base = kind.settings_from(settings, data) if finetune is None else kind.settings_from(settings, data, finetune)
    return TuneConfig(base=base, space=kind.search_space(document, search, base, source), search=search, **options)


def _space_document(space: Location | None, config: LoadedConfig | None) -> tuple[dict | None, str]:
    """The search space's TOML document and where it is: --space FILE, else --config's [space] table."""
    if space is not None:
        document = load_toml(space, "--space")
        return document.get("space", document), f"--space {space}"
    if config is not None:
        return config.tables.get("space"), f"{config.source} [space]"
    return None, ""


def search_trials(config: TuneConfig) -> Trials:
    return search_kind(config.kind == "finetune").TRIALS(config)


@dataclass
class TuneOutcome:
    out_dir: Path
    leaderboard: list[dict]  # finished trials, best first, each with its rank
    ran: int  # trials run by this invocation
    skipped: int  # finished earlier, not repeated
    next_command: str  # how to use best.toml
    baseline: float | None = None  # the score to beat, when the search starts from a trained run


@locks_outputs
def tune(config: TuneConfig, *, overwrite: bool = False, resume: bool = False, events: Events = SILENT) -> TuneOutcome:
    """Run the search into `config.out` (a folder, or a URL: runs.staging)."""
    base = config.base
    source = getattr(base, "source", None)
    sources = {**url_sources(getattr(base, "weights", None), "the --weights model"),
               **({source: "the source run"} if source is not None else {})}
    with staged_output(config.out, "tune", overwrite=overwrite, resume=resume, data=base.data,
                       sources=sources) as staged:
        outcome = _tune(dataclasses.replace(config, out=staged.local), overwrite=overwrite, resume=resume,
                        events=events)
        if staged.local is None:
            return outcome
        return dataclasses.replace(outcome, out_dir=staged.public(outcome.out_dir),
                                   next_command=outcome.next_command.replace(str(staged.local), str(staged.target)))


def _tune(config: TuneConfig, *, overwrite: bool, resume: bool, events: Events) -> TuneOutcome:
    trials = search_trials(config)
    out_dir = prepare_tune_dir(trials.open(config.out, events), config, trials, overwrite=overwrite, resume=resume)
    finished = {record["trial"]: record for record in (read_leaderboard(out_dir) if resume else [])}
    seed = config.base.fit.seed
    adaptive = config.search in ADAPTIVE_SEARCHES
    if adaptive:  # hyperband's number of trials follows from --epochs
        pending, total = None, (config.trials or 10) if config.search == "bayesian" else None
    else:
        planned = plan_trials(config.space, config.search, config.trials or 10, seed)
        done = {trial_key(record["params"]) for record in finished.values()}
        pending = [(number, params) for number, params in enumerate(planned, start=1) if trial_key(params) not in done]
        total = len(planned)
        if config.search == "grid" and config.trials:
            events.note("Grid search runs every combination; --trials is for random and bayesian search.", DETAIL)
        events.note(f"{config.search.capitalize()} search: {total} trial(s), {total - len(pending)} finished earlier.")
    next_command, baseline = trials.next_command(out_dir / BEST), trials.baseline(config.objective)
    if not pending and not adaptive:
        finish_run_dir(out_dir)
        return TuneOutcome(out_dir, write_tune_results(out_dir, list(finished.values()), config, trials),
                           ran=0, skipped=len(finished), next_command=next_command, baseline=baseline)

    trials.start(events)
    earlier = len(finished)

    def run_trial(number: int, params: dict) -> dict:
        """Run one trial and record its result at once."""
        with trial_run(out_dir / TRIALS / f"{number:04d}") as trial_dir:
            metrics = trials.run(params, trial_dir)
        record = trial_record(number, params, metrics, config.objective)
        finished[number] = record
        write_tune_results(out_dir, list(finished.values()), config, trials)
        events.note(f"trial {number}{f'/{total}' if total else ''}: {format_params(params)} -> "
                    f"{config.objective} {format_score(record['objective'])} "
                    f"({format_epochs(record)} epochs, {record['seconds']:.1f} s)")
        return record

    with resumable(out_dir):
        if adaptive:
            from tlcli.tune.adaptive import adaptive_search

            adaptive_search(config, out_dir, run_trial)
        else:
            for number, params in pending:
                run_trial(number, params)
    leaderboard = write_tune_results(out_dir, list(finished.values()), config, trials)
    finish_run_dir(out_dir)
    ran = len(pending) if pending is not None else len(finished) - earlier
    return TuneOutcome(out_dir, leaderboard, ran=ran, skipped=len(leaderboard) - ran, next_command=next_command,
                       baseline=baseline)


def prepare_tune_dir(path: Path, config: TuneConfig, trials: Trials, *, overwrite: bool, resume: bool) -> Path:
    """Claim the tuning directory (runs.claim_output), then create it or reopen it for --resume."""
    claim_output(path, "tune", overwrite=overwrite, resume=resume, data=trials.data, sources=trials.sources)
    settings_path = path / TUNE_SETTINGS
    description = config.description()
    if resume:
        if not settings_path.is_file():
            raise TlcliError(
                f"--resume: {path} holds no tuning search (tune.json is missing). "
                "Start one without --resume, or give the --out of the search to continue."
            )
        saved = {"kind": "head", **read_json(settings_path)}  # head searches came first
        changed = [key for key in ("kind", "search", "objective", "space") if saved.get(key) != description[key]]
        changed += [key for key in description["base"] if saved.get("base", {}).get(key) != description["base"][key]]
        if changed:
            raise TlcliError(
                f"--resume: the search in {path} had other settings ({', '.join(changed)}). "
                "Repeat the original command with --resume (only --trials may grow), or use --overwrite."
            )
        return path
    start_output_dir(path, "tune")
    write_json(settings_path, description)
    return path


def write_tune_results(out_dir: Path, records: list[dict], config: TuneConfig, trials: Trials) -> list[dict]:
    """The leaderboard and best.toml, each replaced atomically."""
    leaderboard = write_leaderboard(out_dir, records, config.objective, config.search)
    if leaderboard and leaderboard[0]["objective"] is not None:
        best = leaderboard[0]
        comment = (
            f"Best of {len(leaderboard)} trial(s) by {config.objective} = {best['objective']:.6g} "
            f"(trial {best['trial']}).\nRun it with: {trials.next_command(BEST)}"
        )
        write_atomic(out_dir / BEST, to_toml(trials.best_settings(best["params"]), comment))
    return leaderboard
