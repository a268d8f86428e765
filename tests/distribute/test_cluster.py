"""Which machines take part in a multi-worker run: TF_CONFIG as given, or the description a Slurm
step implies, and every mistake in either as one line before any collective could hang on it."""

from __future__ import annotations

import json
import re

import pytest

from tlcli.distribute.cluster import cluster_config, expand_nodelist, expand_tasks_per_node
from tlcli.errors import TlcliError


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"SLURM_PROCID": "1", "SLURM_STEP_NODELIST": "n1,n2", "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
          "SLURMD_NODENAME": "n2"}, "Run srun with --distribution=block"),
        ({"SLURM_PROCID": "4", "SLURM_STEP_NODELIST": "n1,n2", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"},
         "SLURM_PROCID 4 is outside the step's 4 task(s)"),
        ({"SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "n1"}, "This Slurm step does not describe its tasks"),
        ({"SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "n1,n2", "SLURM_STEP_TASKS_PER_NODE": "1"},
         "lists 1 node(s) but SLURM_STEP_NODELIST 2"),
    ],
)
def test_a_slurm_step_that_cannot_be_a_cluster_is_a_clear_error(environment, message):
    with pytest.raises(TlcliError, match=re.escape(message)):
        cluster_config(environment)


def test_a_slurm_step_gives_every_task_its_own_worker_address():
    environment = {"SLURM_PROCID": "3", "SLURM_STEP_NODELIST": "n1,n2", "SLURM_STEP_TASKS_PER_NODE": "3,1",
                   "SLURMD_NODENAME": "n2", "TLCLI_PORT_BASE": "20000"}
    assert cluster_config(environment) == {
        "cluster": {"worker": ["n1:20000", "n1:20001", "n1:20002", "n2:20000"]},
        "task": {"type": "worker", "index": 3},
    }


def test_a_slurm_step_of_one_node_numbers_its_tasks_from_the_default_port():
    environment = {"SLURM_PROCID": "1", "SLURM_STEP_NODELIST": "gpu7", "SLURM_STEP_TASKS_PER_NODE": "2",
                   "SLURMD_NODENAME": "gpu7"}
    assert cluster_config(environment) == {"cluster": {"worker": ["gpu7:8888", "gpu7:8889"]},
                                           "task": {"type": "worker", "index": 1}}


def test_tf_config_wins_over_a_slurm_step():
    document = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    environment = {"TF_CONFIG": json.dumps(document), "SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "n1",
                   "SLURM_STEP_TASKS_PER_NODE": "1"}
    assert cluster_config(environment) == document


@pytest.mark.parametrize("text, error", [
    ('{"cluster": {"worker": ["a:1"]}}', "KeyError: 'task'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "KeyError: 'chief'"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": -1}}', "IndexError: -1"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "first"}}', "ValueError"),
    ('["a:1"]', "TypeError"),
])
def test_a_tf_config_that_does_not_place_this_process_is_one_line(text, error):
    with pytest.raises(TlcliError) as raised:
        cluster_config({"TF_CONFIG": text})
    message = str(raised.value)
    assert message.startswith(f"TF_CONFIG is not a valid cluster description ({error}") and "\n" not in message
    assert 'Expected e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}' in message


def test_without_tf_config_or_slurm_a_multi_worker_run_says_what_to_set():
    with pytest.raises(TlcliError, match=re.escape("--strategy multi-worker needs TF_CONFIG, e.g. TF_CONFIG='{")):
        cluster_config({"SLURM_PROCID": "0"})  # a Slurm job, but not a step of srun: no node list


@pytest.mark.parametrize("text, counts", [("2", [2]), ("2(x3),1", [2, 2, 2, 1]), ("1, 4(x2)", [1, 4, 4])])
def test_slurms_tasks_per_node_are_one_count_per_node(text, counts):
    assert expand_tasks_per_node(text) == counts


def test_a_plain_node_list_needs_no_slurm_tools_and_a_compressed_one_needs_scontrol(monkeypatch):
    assert expand_nodelist("n1,n2,,n3") == ["n1", "n2", "n3"]
    monkeypatch.setenv("PATH", "")  # no scontrol, as off a Slurm cluster
    with pytest.raises(ValueError, match=re.escape("scontrol is needed to expand the node list 'gpu[01-03]'")):
        expand_nodelist("gpu[01-03]")
    environment = {"SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "gpu[01-03]", "SLURM_STEP_TASKS_PER_NODE": "1(x3)"}
    message = "This Slurm step does not describe its tasks (ValueError: scontrol is needed"
    with pytest.raises(TlcliError, match=re.escape(message)):
        cluster_config(environment)
