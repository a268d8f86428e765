"""Which machines take part in a multi-worker run: TF_CONFIG, or the Slurm step tlcli runs in.

Every worker must agree on the same list of addresses, in the same order, and know its own
place in it. TF_CONFIG states both. Inside a Slurm step (`srun tlcli train ...`) tlcli derives
the same description from Slurm's variables: one worker per task, on consecutive ports from
TLCLI_PORT_BASE (default 8888) on each node, nodes in Slurm's order and tasks in blocks
(Slurm's default distribution), so that task N is worker N.

TensorFlow's `SlurmClusterResolver` is not used: it orders nodes by name (n10 before n9, so task N
is not worker N), expands only node lists with one bracket at the end of a name (`scontrol` is
Slurm's own answer), reads os.environ rather than the environment given, and needs
SLURM_STEP_NUM_TASKS and a GPU count (nvidia-smi) that a CPU step does not have.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from tlcli.errors import TlcliError

DEFAULT_PORT_BASE = 8888
_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


def cluster_config(environ=os.environ) -> dict:
    """The cluster description: TF_CONFIG if set, else one derived from a Slurm step; checked,
    so that a mistake is an error here and not a hang in a collective."""
    text = environ.get("TF_CONFIG", "")
    if not text and "SLURM_PROCID" in environ and "SLURM_STEP_NODELIST" in environ:
        return slurm_config(environ)
    if not text:
        raise TlcliError(
            f"--strategy multi-worker needs TF_CONFIG, e.g. TF_CONFIG='{_EXAMPLE}', or to run inside a Slurm "
            "step (srun)."
        )
    try:
        document = json.loads(text)
        cluster, task = document["cluster"], document["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
        if not 0 <= index < len(members):
            raise IndexError(index)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise TlcliError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: {error}). "
            f"Expected e.g. {_EXAMPLE}, with this process's task type and index in the cluster."
        ) from None
    return document


def slurm_config(environ) -> dict:
    """The TF_CONFIG a Slurm step implies."""
    try:
        rank = int(environ["SLURM_PROCID"])
        hosts = expand_nodelist(environ["SLURM_STEP_NODELIST"])
        counts = expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
        port_base = int(environ.get("TLCLI_PORT_BASE", DEFAULT_PORT_BASE))
    except (KeyError, ValueError) as error:
        raise TlcliError(
            f"This Slurm step does not describe its tasks ({type(error).__name__}: {error}). Run tlcli with "
            "srun, which sets SLURM_PROCID, SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE, or set TF_CONFIG."
        ) from None
    if len(counts) != len(hosts):
        raise TlcliError(
            f"SLURM_STEP_TASKS_PER_NODE lists {len(counts)} node(s) but SLURM_STEP_NODELIST {len(hosts)}. "
            "Run tlcli with srun, or set TF_CONFIG."
        )
    workers = [(host, f"{host}:{port_base + local}") for host, count in zip(hosts, counts) for local in range(count)]
    if not 0 <= rank < len(workers):
        raise TlcliError(f"SLURM_PROCID {rank} is outside the step's {len(workers)} task(s). Run tlcli with srun.")
    own_host = environ.get("SLURMD_NODENAME")
    if own_host and own_host != workers[rank][0]:
        raise TlcliError(
            f"Slurm put task {rank} on {own_host}, but tlcli numbers tasks in blocks, which puts it on "
            f"{workers[rank][0]}. Run srun with --distribution=block, or set TF_CONFIG."
        )
    return {"cluster": {"worker": [address for _, address in workers]}, "task": {"type": "worker", "index": rank}}


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed node list ("gpu[01-03],cpu7") as host names, through `scontrol`; a plain
    comma-separated list needs no Slurm tools."""
    if "[" not in nodelist:
        return [host for host in nodelist.split(",") if host]
    if shutil.which("scontrol") is None:
        raise ValueError(f"scontrol is needed to expand the node list {nodelist!r}")
    output = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return output.stdout.split()


def expand_tasks_per_node(text: str) -> list[int]:
    """Slurm's tasks per node ("2(x3),1") as one count per node ([2, 2, 2, 1])."""
    counts = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ValueError(f"tasks per node {text!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts
