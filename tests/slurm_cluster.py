"""A one-node SLURM cluster on this machine, for the tests of the job files in ``jobs/``.

    cluster = OneNodeCluster(tmp_dir)   # writes a munge key and slurm.conf under tmp_dir
    cluster.start()                     # munged, slurmctld and slurmd, until the node is idle
    env = cluster.client_env()          # SLURM_CONF for sbatch, squeue, scontrol
    cluster.stop()                      # cancels its jobs, then stops the three daemons

Everything it writes lives under ``tmp_dir``: its own munge key and socket (a munged of the
system, if any, is left alone), the configuration, the state and spool directories, the logs.
The ports are picked free, so a stale daemon of another run cannot answer in its place. The
daemons run in the foreground as children of the test, so stopping them stops exactly what
was started. Starting needs root (slurmd runs every job as its submitting user).

Debian's packages: ``apt-get install slurmctld slurmd slurm-client munge``.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "sinfo", "squeue", "scancel")
PARTITION = "debug"


def missing_binaries():
    """The SLURM and munge programs not found on PATH (or in /usr/sbin, where Debian puts the daemons)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=path) is None]


def _binary(name):
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def running_cluster(env=None):
    """True when ``scontrol ping`` (with the caller's SLURM_CONF or /etc/slurm) reaches a controller."""
    if _binary("scontrol") is None:
        return False
    try:
        ping = subprocess.run(
            ["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return ping.returncode == 0 and "UP" in ping.stdout


def default_partition(env=None):
    """The name of the partition sbatch uses without -p (marked with '*' by sinfo)."""
    names = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], env=env, capture_output=True, text=True, timeout=20, check=True
    ).stdout.split()
    return next((name.rstrip("*") for name in names if name.endswith("*")), names[0].rstrip("*"))


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb():
    """MemTotal in MB, less a tenth: slurmd drains a node that has less memory than slurm.conf says."""
    with open("/proc/meminfo") as meminfo:
        kilobytes = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return max(kilobytes // 1024 * 9 // 10, 1)


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, however, so no daemon outlives it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ClusterError(RuntimeError):
    """The cluster did not come up; the message ends with the tail of each daemon's log."""


class OneNodeCluster:
    def __init__(self, root):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = len(os.sched_getaffinity(0))
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge_socket" / "munge.socket.2"
        self.logs = {name: self.root / "log" / f"{name}.log" for name in DAEMONS}
        self.processes = {}

    # ------------------------------------------------------------ configuration

    def write_files(self):
        for sub in ("munge", "munge_socket", "log", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a key others can read; its socket's directory must be open to every client
        (self.root / "munge").chmod(0o700)
        (self.root / "munge_socket").chmod(0o755)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        controller_port, node_port = _free_port(), _free_port()
        self.conf.write_text(
            f"""\
# A one-node cluster for the tests: this host is controller and compute node.
ClusterName=test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
MailProg=/bin/true
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}/slurmd_%n
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.logs["slurmctld"]}
SlurmdLogFile={self.logs["slurmd"]}
PlugStackConfig={self.root / "plugstack.conf"}
# no cgroups in a container: track processes by their parent, bind no CPUs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node's CPUs and memory are what this file says, whatever slurmd counts
SlurmdParameters=config_overrides
ReturnToService=2
# a dependent job whose dependency failed is cancelled, so sbatch --wait on it returns
DependencyParameters=kill_invalid_depend
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        (self.root / "plugstack.conf").write_text("")

    def client_env(self, base=None):
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    # ------------------------------------------------------------ daemons

    def _spawn(self, name, args):
        out = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - closed in stop()
        self.processes[name] = (
            subprocess.Popen(
                [_binary(name), *args],
                env=self.client_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ),
            out,
        )

    def _wait_for(self, what, ready, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, (process, _) in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with code {process.returncode} while waiting for {what}"
                    )
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout} s waiting for {what}")

    def _node_state(self):
        sinfo = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        return sinfo.stdout.strip() if sinfo.returncode == 0 else ""

    def start(self, timeout=90):
        """Start munged, slurmctld and slurmd; return once the node is idle. Raises ClusterError."""
        if os.geteuid() != 0:
            raise ClusterError("starting a SLURM cluster needs root (slurmd runs jobs as their user)")
        self.write_files()
        started = time.monotonic()
        try:
            self._spawn(
                "munged",
                [
                    "--foreground",
                    "--force",
                    f"--key-file={self.root / 'munge' / 'munge.key'}",
                    f"--socket={self.munge_socket}",
                    f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                    f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                    f"--log-file={self.logs['munged']}",
                ],
            )
            self._wait_for("munged's socket", self.munge_socket.exists, 20)
            # -i: ignore any state a previous run left; -D: stay in the foreground
            self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)])
            self._wait_for(
                "slurmctld to answer scontrol ping", lambda: running_cluster(self.client_env()), 60
            )
            self._spawn("slurmd", ["-D", "-N", self.host, "-f", str(self.conf)])
            remaining = max(timeout - (time.monotonic() - started), 10)
            self._wait_for("the node to be idle", lambda: self._node_state() == "idle", remaining)
        except (ClusterError, OSError, subprocess.SubprocessError) as error:
            report = f"{error}\n{self.log_tails()}"
            self.stop()
            raise ClusterError(report) from None
        self.start_seconds = time.monotonic() - started
        return self

    def log_tails(self, lines=30):
        """The last lines of each daemon's log and console output, for failure messages."""
        parts = []
        for name in DAEMONS:
            for path in (self.logs[name], self.root / "log" / f"{name}.out"):
                if path.exists() and path.stat().st_size:
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self):
        """Cancel every job of this cluster, then stop the daemons it started, newest first."""
        if "slurmctld" in self.processes and self.processes["slurmctld"][0].poll() is None:
            subprocess.run(
                ["scancel", "--full", "--user", str(os.geteuid())],
                env=self.client_env(),
                capture_output=True,
                timeout=20,
                check=False,
            )
            self._wait_jobs_gone(timeout=20)
        for name in reversed(DAEMONS):
            if name not in self.processes:
                continue
            process, out = self.processes.pop(name)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            out.close()

    def _wait_jobs_gone(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = subprocess.run(
                ["squeue", "-h", "-o", "%i"],
                env=self.client_env(),
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if queue.returncode != 0 or not queue.stdout.strip():
                return
            time.sleep(0.5)
