"""Shim for tools that still call setup.py (all metadata lives in pyproject.toml), and the one build step metadata
cannot say: the recipes (data_gen/*.yaml), training configs (configs/*.yaml), experiment notebooks and sweep files
(nbs/experiments/) are copied into the package as tda/shipped/, in their checkout layout, so that an installed wheel
finds them by name (tda.core.find_file); so are the front page (nbs/index.ipynb) and the tutorials (nbs/tutorials/),
which `tda tutorials DIR` copies where a user works, and the Table 1 report the front page shows
(bench/results/table1_paper_cpu/: its table and Figure 5a; bench/results/gate_study_cpu.json: the gate study's
table). They stay where they are in the checkout: one copy in git, no symlinks."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {'data_gen': ('*.yaml',), 'configs': ('*.yaml',), 'nbs/experiments': ('*.ipynb', '*.yaml'),
           'nbs': ('index.ipynb',), 'nbs/tutorials': ('*.ipynb',),
           'bench/results/table1_paper_cpu': ('table.md', 'accuracy_per_scale.png'),
           'bench/results': ('gate_study_cpu.json',),
           'bench/results/attention_benchmark_cpu': ('headline.md', 'claims_brief.md')}


class BuildPyShipped(build_py):
    "build_py, then the shipped files into <build>/tda/shipped/ (an editable install reads them in the checkout)."

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return
        for folder, patterns in SHIPPED.items():
            files = sorted(f for p in patterns for f in (ROOT/folder).glob(p) if f.is_file())
            if not files: raise SystemExit(f"setup.py: no {patterns} in {ROOT/folder}; the wheel would miss them")
            dest = Path(self.build_lib)/'tda'/'shipped'/folder
            self.mkpath(str(dest))
            for f in files: self.copy_file(str(f), str(dest/f.name))


setup(cmdclass={'build_py': BuildPyShipped})
