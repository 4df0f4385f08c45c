"""A throwaway one-node Slurm cluster for tests: the machine's slurmctld and slurmd (Debian's
slurm-wlm) on 127.0.0.1, with configuration, state, spool and logs under one directory.

- ``AuthType=auth/none`` and ``CredType=cred/none``: no munge. Slurm ships these plugins up
  to 23.02 (Debian 12 has 22.05); without them the tests skip.
- The daemons run as root (``SlurmUser=root``), in the foreground, so that their pids are
  the ones started here; jobs run as the current user, root.
- Free ports for both daemons; ``AuthInfo=cred_expire=5`` lets a requeued job start again
  after 6 s instead of Slurm's default 121 s. The node claims 8 CPUs and 32 GB whatever the
  machine has (``SlurmdParameters=config_overrides``), so that the templates' requests fit.
- On exit, also after a failure: cancel every job, stop both daemons by pid, then kill (by
  pid) whatever still runs with this cluster's ``SLURM_CONF`` in its environment
  (``slurmstepd`` and job processes).
"""

from __future__ import annotations

import getpass
import glob
import os
import signal
import socket
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Callable, Iterator, Optional, Union

DAEMONS = ("slurmctld", "slurmd")
COMMANDS = ("sbatch", "scontrol", "squeue", "scancel", "sinfo")
PLUGIN_DIRS = ("/usr/lib/*/slurm-wlm", "/usr/lib/slurm-wlm", "/usr/lib*/slurm", "/usr/local/lib*/slurm")
NODE = "bftest"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}

CONFIG = """\
ClusterName=boltzflowtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs=8 RealMemory=32000 State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> Optional[str]:
    """Why no test cluster can start on this machine, or ``None``."""
    missing = [c for c in DAEMONS + COMMANDS if which(c) is None]
    if missing:
        return f"Slurm is not installed (no {', '.join(missing)}); .ci/run installs Debian's slurm-wlm"
    if os.geteuid() != 0:
        return "the test cluster runs slurmctld and slurmd as root (SlurmUser=root); these tests run as a user"
    if not any(glob.glob(f"{d}/auth_none.so") for d in PLUGIN_DIRS):
        return "this Slurm has no auth/none plugin (gone since Slurm 23.11), which the test cluster uses instead of munge"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running test cluster: ``cluster("squeue", "-h")`` runs a Slurm command against it."""

    root: Path
    conf: Path
    env: dict
    pids: list[int]  # slurmctld, slurmd

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}\n{self.logs()}")
        return proc.stdout

    def job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (``JobState``, ``Restarts``, ``ExitCode``, ...)."""
        fields = self("scontrol", "show", "job", "-o", job_id).split()
        return dict(f.split("=", 1) for f in fields if "=" in f)

    def wait_for_jobs(self, job_ids: list[str], timeout: float) -> dict:
        """Wait until the jobs have ended; returns their final states."""
        states = {}

        def ended() -> bool:
            states.update({j: self.job(j)["JobState"] for j in job_ids})
            return set(states.values()) <= FINAL_STATES

        self.wait(ended, timeout, lambda: f"jobs to end: {states}")
        return states

    def wait(self, condition: Callable[[], bool], timeout: float, what: Union[str, Callable[[], str]]) -> None:
        """Poll ``condition`` until it holds; fail after ``timeout`` s, saying ``what`` was awaited."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                text = what() if callable(what) else what
                raise AssertionError(f"timed out after {timeout:g} s waiting for {text}\n{self.logs()}")
            time.sleep(0.25)

    def logs(self) -> str:
        tails = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / name
            if path.is_file():
                tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(tails)


def _processes_with(variable: bytes) -> list[int]:
    """Pids of processes whose environment holds ``variable`` (``b"SLURM_CONF=..."``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if variable in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return pids


def _stop(cluster: SlurmCluster, daemons: list[subprocess.Popen]) -> None:
    if len(daemons) == 2 and all(p.poll() is None for p in daemons):
        try:
            cluster("scancel", f"--user={getpass.getuser()}", check=False)
            cluster.wait(lambda: not cluster("squeue", "-h", check=False).strip(), 20, "cancelled jobs to end")
        except (AssertionError, subprocess.TimeoutExpired):
            pass  # the daemons are stopped below, and what they leave is killed
    for proc in reversed(daemons):
        proc.terminate()
    for proc in daemons:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in _processes_with(f"SLURM_CONF={cluster.conf}".encode()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start a one-node cluster under ``root`` and stop everything of it on exit."""
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True)
    conf = root / "slurm.conf"
    conf.write_text(CONFIG.format(host=socket.gethostname().split(".")[0], root=root, node=NODE,
                                  ctld_port=_free_port(), slurmd_port=_free_port()))
    cluster = SlurmCluster(root, conf, {**os.environ, "SLURM_CONF": str(conf)}, [])
    daemons: list[subprocess.Popen] = []
    with ExitStack() as files:
        try:
            for command in (["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-N", NODE, "-f", str(conf)]):
                out = files.enter_context(open(root / f"{command[0]}.out", "w"))
                daemons.append(subprocess.Popen(command, env=cluster.env, stdout=out, stderr=subprocess.STDOUT))
                cluster.pids.append(daemons[-1].pid)
            cluster.wait(lambda: cluster("sinfo", "-h", "-o", "%T", check=False).strip() == "idle"
                         or any(p.poll() is not None for p in daemons), 30, "the node to come up")
            if any(p.poll() is not None for p in daemons):
                raise AssertionError(f"a Slurm daemon exited at start\n{cluster.logs()}")
            yield cluster
        finally:
            _stop(cluster, daemons)
