"""Start and stop a real single-node SLURM cluster for the tests: munged, slurmctld and slurmd on this machine as
child processes of the test session, configured by tests/slurm/slurm.conf (this machine's name, CPUs and memory, a
scratch folder, free ports). Needs Debian's `slurm-wlm` and `munge` (22.05 tested)."""
from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL = 'apt-get install -y slurm-wlm munge'
PROGRAMS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'srun', 'squeue', 'scancel', 'scontrol', 'sinfo')


def _which(name):
    return shutil.which(name) or next((str(p) for d in ('/usr/sbin', '/sbin') if (p := Path(d)/name).exists()), None)


def missing() -> list[str]:
    "The programs a cluster needs that this machine lacks."
    return [p for p in PROGRAMS if _which(p) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**20


def _wait(what: str, ok, timeout: float, procs=(), log: Path | None = None):
    t0 = time.time()
    while not ok():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.time() - t0 > timeout:
            tail = log.read_text(errors='replace')[-2000:] if log and log.exists() else ''
            why = f"{dead[0].args[0]} exited with {dead[0].returncode}" if dead else f"not within {timeout:.0f} s"
            raise RuntimeError(f"SLURM test cluster: {what} failed ({why}). {tail}")
        time.sleep(0.1)


class Cluster:
    "A running single-node cluster; `env` holds SLURM_CONF for the client commands (sbatch, srun, squeue, ...)."

    def __init__(self, scratch: Path | None = None, cpus: int | None = None):
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix='tda-slurm-'))
        # munged wants every folder above its socket searchable by all and writable by none but its owner
        self.scratch.chmod(0o711)
        for d in ('munge', 'state', 'spool', 'log'): (self.scratch/d).mkdir(exist_ok=True)
        (self.scratch/'munge').chmod(0o711)
        self.host = socket.gethostname().split('.')[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.partition = 'debug'
        self.conf = self.scratch/'slurm.conf'
        self.env = {'SLURM_CONF': str(self.conf)}
        self.procs: list[subprocess.Popen] = []
        self.started = None

    def write_conf(self):
        fields = dict(host=self.host, user=getpass.getuser(), ctld_port=_free_port(), d_port=_free_port(),
                      first_job_id=random.randrange(1000, 1_000_000),
                      scratch=self.scratch, cpus=self.cpus, memory_mb=_memory_mb(), partition=self.partition)
        text = string.Template((HERE/'slurm.conf').read_text()).substitute(fields)
        self.conf.write_text(text)

    def _spawn(self, *args, log: str):
        fh = open(self.scratch/'log'/log, 'ab')
        p = subprocess.Popen([_which(args[0]), *args[1:]], stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, **self.env}, start_new_session=True)
        fh.close()
        self.procs.append(p)
        return p

    def run(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        "A client command (sinfo, squeue, scancel, ...) against this cluster."
        return subprocess.run([_which(args[0]), *map(str, args[1:])], capture_output=True, text=True, check=check,
                              timeout=timeout, env={**os.environ, **self.env})

    def start(self, timeout: float = 30) -> Cluster:
        "Start munged, slurmctld and slurmd; returns when the node is idle (and stops what it started if it fails)."
        try: return self._start(timeout)
        except BaseException:
            self.stop(timeout=10)
            raise

    def _start(self, timeout: float) -> Cluster:
        t0 = time.time()
        m = self.scratch/'munge'
        key = m/'munge.key'
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munged = self._spawn('munged', '--foreground', f'--socket={m/"munge.socket"}', f'--key-file={key}',
                             f'--pid-file={m/"munged.pid"}', f'--seed-file={m/"munged.seed"}',
                             f'--log-file={self.scratch/"log"/"munged.log"}', log='munged.out')
        _wait('munged', (m/'munge.socket').exists, timeout, [munged], self.scratch/'log'/'munged.out')
        self.write_conf()
        ctld = self._spawn('slurmctld', '-D', '-f', self.conf, log='slurmctld.out')
        d = self._spawn('slurmd', '-D', '-f', self.conf, log='slurmd.out')
        idle = lambda: 'idle' in self.run('sinfo', '-h', '-o', '%T', check=False, timeout=10).stdout
        _wait('slurmctld and slurmd', idle, timeout, [ctld, d], self.scratch/'log'/'slurmctld.log')
        self.started = time.time() - t0
        return self

    def jobs(self) -> str:
        return self.run('squeue', '-h', '-o', '%i %T', check=False).stdout

    def stop(self, timeout: float = 30) -> list[str]:
        "Cancel every job, stop the daemons; returns what had to be killed (nothing when all went well)."
        left = []
        if self.procs and all(p.poll() is None for p in self.procs):
            self.run('scancel', '--partition', self.partition, check=False)
            try: _wait('draining the jobs', lambda: not self.jobs().strip(), timeout)
            except RuntimeError: left.append(f"jobs still listed: {self.jobs().strip()}")
        for p in reversed(self.procs):
            if p.poll() is None: p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try: p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                left.append(f"{p.args[0]} ignored SIGTERM")
        self.procs = []
        left += self._kill_strays()
        return left

    def _kill_strays(self) -> list[str]:
        "Step daemons (slurmstepd) of this cluster that outlived slurmd: the ones holding files in its scratch."
        killed = []
        for proc in Path('/proc').iterdir():
            if not proc.name.isdigit(): continue
            try:
                if not (proc/'cmdline').read_bytes().startswith(b'slurmstepd'): continue
                mine = any(str(self.scratch) in os.readlink(fd) for fd in (proc/'fd').iterdir())
            except OSError: continue
            if mine:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(f"slurmstepd {proc.name}")
        return killed

    def remove(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


if __name__ == '__main__':  # by hand: python tests/slurm/cluster.py, export the SLURM_CONF it prints; kill it to stop
    c = Cluster().start()
    print(f"started in {c.started:.1f} s; export SLURM_CONF={c.conf}; Ctrl-C or SIGTERM stops it", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try: signal.pause()
    except KeyboardInterrupt: print('stopped; left:', c.stop(), flush=True)
    finally: c.remove()
