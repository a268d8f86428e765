"""`tlcli tune`, run for real on the colour fixture with TinyNet: the search's tuning directory,
its resume, and one-line errors. The head and fine-tuning searches have modules of their own
(test_head.py, test_finetune.py), as have spaces, adaptive searches and the leaderboard."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import invoke, kill_when

COMMON = ("--model", "tinynet", "--weights", "none", "--image-size", 32, "--epochs", 2, "--quiet")


def leaderboard(tune_dir):
    return json.loads((tune_dir / "leaderboard.json").read_text())["trials"]


def write_space(path, text):
    path.write_text(text)
    return path


def test_an_existing_tuning_directory_is_not_overwritten(grid_search, colour_dataset):
    tune_dir, _ = grid_search
    before = (tune_dir / "leaderboard.json").read_text()
    result = invoke("tune", colour_dataset, *COMMON, "--search", "grid", "--out", tune_dir, expect=2)
    assert "already exists" in result.output and "--resume" in result.output
    assert (tune_dir / "leaderboard.json").read_text() == before


@pytest.mark.slow
def test_random_search_repeats_under_a_seed_and_resume_skips_finished_trials(colour_dataset, tmp_path):
    space = write_space(tmp_path / "space.toml", "[space]\nlearning_rate = {low = 0.001, high = 0.1, log = true}\n"
                        "dropout = {low = 0.0, high = 0.5}\noptimizer = ['adam', 'sgd']\n")
    args = ("tune", colour_dataset, *COMMON, "--space", space, "--seed", 3, "--objective", "val_accuracy")
    invoke(*args, "--trials", 2, "--out", tmp_path / "a")
    invoke(*args, "--trials", 2, "--out", tmp_path / "b")
    first, second = leaderboard(tmp_path / "a"), leaderboard(tmp_path / "b")
    assert [t["params"] for t in first] == [t["params"] for t in second]
    assert [t["val_accuracy"] for t in first] == pytest.approx([t["val_accuracy"] for t in second])
    assert first[0]["params"] != first[1]["params"]

    result = invoke(*args, "--trials", 3, "--out", tmp_path / "a", "--resume")
    assert "1 run now, 2 earlier" in result.output
    resumed = leaderboard(tmp_path / "a")
    assert sorted(t["trial"] for t in resumed) == [1, 2, 3]
    by_trial = {t["trial"]: t for t in resumed}
    for old in first:  # finished trials are kept as they were, not run again
        assert {k: v for k, v in by_trial[old["trial"]].items() if k != "rank"} == {k: v for k, v in old.items() if k != "rank"}
    accuracies = [t["val_accuracy"] for t in resumed]
    assert accuracies == sorted(accuracies, reverse=True)

    changed = invoke(*args, "--trials", 4, "--seed", 4, "--out", tmp_path / "a", "--resume", expect=2)
    assert "other settings" in changed.output and "seed" in changed.output


def test_a_bad_space_file_is_named_as_the_space_option(colour_dataset, tmp_path):
    broken = write_space(tmp_path / "broken.toml", "learning_rate = [0.1\n")
    for path, what in ((tmp_path / "missing.toml", "does not exist"), (tmp_path, "is a folder"),
                       (broken, "is not valid TOML")):
        result = invoke("tune", colour_dataset, *COMMON, "--space", path, "--out", tmp_path / "out", expect=2)
        assert result.output.startswith(f"Error: --space {path} {what}") and "--config" not in result.output


def test_an_image_size_beyond_the_backbones_maximum_is_refused_before_anything_is_written(colour_dataset, tmp_path):
    result = invoke("tune", colour_dataset, *COMMON, "--image-size", 10000, "--out", tmp_path / "out", expect=2)
    assert result.output.startswith("Error: --image-size 10000 is too large for tinynet (maximum 512)")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_errors_in_a_config_files_space_table_name_the_table(colour_dataset, tmp_path):
    settings = write_space(tmp_path / "tune.toml", "[tune]\nsearch = 'grid'\n[space]\ndropout = {low = 0.0, high = 0.5}\n")
    result = invoke("tune", colour_dataset, *COMMON, "--config", settings, "--out", tmp_path / "out", expect=2)
    assert f"--config {settings} [space]: dropout is a range, but grid search needs a list" in result.output




def test_a_search_interrupted_by_ctrl_c_resumes_without_repeating_finished_trials(colour_dataset, tmp_path,
                                                                                   monkeypatch):
    """The in-process twin of the SIGKILL test below: Ctrl-C as the third of four trials starts
    (linear heads, each solved at the L2 penalty of its weight decay)."""
    from tlcli.tune.head import HeadTrials

    tune_dir = tmp_path / "stopped"
    space = write_space(tmp_path / "space.toml", "weight_decay = [0.0001, 0.001, 0.01, 0.1]\n")
    args = ("tune", colour_dataset, *COMMON, "--search", "grid", "--space", space, "--out", tune_dir)
    run, started = HeadTrials.run, []

    def interrupt_the_third(self, params, trial_dir):
        started.append(params)
        if len(started) == 3:
            raise KeyboardInterrupt
        return run(self, params, trial_dir)

    monkeypatch.setattr(HeadTrials, "run", interrupt_the_third)
    interrupted = invoke(*args, expect=130)
    monkeypatch.setattr(HeadTrials, "run", run)
    assert interrupted.output.startswith(f"Error: Interrupted. {tune_dir} keeps the last completed")
    before = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert sorted(before) == [1, 2] and (tune_dir / ".in-progress").exists()

    again = invoke(*args, expect=2)
    assert "--resume" in again.output and "--overwrite" in again.output
    changed = invoke(*args, "--seed", 4, "--resume", expect=2)
    assert "other settings" in changed.output and "seed" in changed.output
    resumed = invoke(*args, "--resume")
    after = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert sorted(after) == [1, 2, 3, 4]
    assert all(after[number] == {**trial, "rank": after[number]["rank"]} for number, trial in before.items())
    assert "2 run now, 2 earlier" in resumed.output
    assert not (tune_dir / ".in-progress").exists()


@pytest.mark.subprocess
def test_a_killed_search_resumes_without_repeating_finished_trials(colour_dataset, tmp_path):
    tune_dir = tmp_path / "killed"
    space = write_space(tmp_path / "space.toml", "learning_rate = [0.003, 0.01, 0.03, 0.1]\ndropout = [0.0, 0.2]\n")
    command = [sys.executable, "-m", "tlcli", "tune", colour_dataset, *COMMON[:-3], "--epochs", 6,
               "--early-stopping", 0, "--search", "grid", "--space", space, "--quiet", "--out", tune_dir]
    command = [str(part) for part in command]
    kill_when(command, lambda: (tune_dir / "leaderboard.json").exists() and len(leaderboard(tune_dir)) >= 2)
    before = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert 2 <= len(before) < 8, "the search should have been killed mid-way"

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert sorted(after) == list(range(1, 9))
    assert all(after[number]["seconds"] == trial["seconds"] for number, trial in before.items())
    assert f"{8 - len(before)} run now, {len(before)} earlier" in resumed.stdout
    assert not (tune_dir / ".in-progress").exists()
