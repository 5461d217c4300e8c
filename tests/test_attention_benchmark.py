"The attention benchmark end to end at smoke size: real data, real training, real papermill runs of its sweep, the report."
import json
from pathlib import Path

import numpy as np

from conftest import REPO
from tda.experiments.benchmark_report import benchmark_report
from tda.sweep import load_sweep, run_sweep

MODELS = ['resnet18', 'resnet18_tdjoint_t2_m1', 'resnet18_tdaf_anar3_f3', 'hattnet_ctx_noquery']


def test_smoke_sweep_trains_scores_and_reports_every_family(tmp_path, env_paths):
    """The shipped smoke sweep on one family each of plain, TDAN, TDAF and progressive attention (the shipped file runs
    every model): the runs finish, their numbers are what they say, a second invocation runs nothing, and the report
    has its table, figures and claims."""
    sw = load_sweep(REPO/'nbs'/'experiments'/'attention_benchmark_smoke.sweep.yaml')
    sw.grid = {'seed': [0], 'difficulty': ['clutter'], 'model': MODELS}
    sw.parameters = {**sw.parameters, 'latency_repeats': 2, 'test_images': 32, 'resolutions': [48, 64]}
    rep = run_sweep(sw, jobs=2, progress=False)
    assert rep['failed'] == [] and len(rep['done']) == len(MODELS), rep
    root = Path(rep['dir'])
    runs = {json.loads((root/r/'run.json').read_text())['config']['parameters']['model']: root/r for r in rep['done']}
    s = {m: json.loads((d/'output'/'summary.json').read_text()) for m, d in runs.items()}
    for m in MODELS:
        assert s[m]['size'] == 'smoke' and s[m]['difficulty'] == 'clutter' and s[m]['test_images'] == 32
        last = max(int(k.removeprefix('top1_pass')) for k in s[m] if k.startswith('top1_pass'))
        # the resolution sweep at the training size is the last pass's accuracy on the same 32 test images
        assert s[m]['epochs_run'] == 1 and 0 <= s[m]['top1'] <= 1 and s[m]['top1_res64'] == s[m][f'top1_pass{last}']
        assert all(0 <= v <= 1 for maps in s[m]['maps'].values() for v in maps.values())
        assert (runs[m]/'output'/'maps.png').read_bytes()[:4] == b'\x89PNG'
        assert (Path(s[m]['train_dir'])/'checkpoints'/'best.pt').is_file()  # trained outside the run's folder
    # every family's own maps, placed by their geometry, and Grad-CAM per pass
    assert {'gradcam', 'gradcam.pass1', 'attention', 'layer4.1.td.pass2'} <= set(s['resnet18_tdjoint_t2_m1']['maps'])
    assert {'gradcam', 'attention', 'stage1.flow2', 'stage3.flow3'} <= set(s['resnet18_tdaf_anar3_f3']['maps'])
    assert {'gradcam', 'attention', 'attention1', 'attention4'} <= set(s['hattnet_ctx_noquery']['maps'])
    assert set(s['resnet18']['maps']) == {'gradcam'}
    assert s['resnet18']['latency_ratio'] > 0 and s['resnet18_tdjoint_t2_m1']['mmacs'] > s['resnet18']['mmacs']
    with np.load(runs['resnet18_tdaf_anar3_f3']/'output'/'samples.npz') as z:
        assert z['image'].shape == (4, 3, 64, 64) and z['map/stage3.flow3'].shape == (4, 64, 64)

    again = run_sweep(sw, jobs=2, progress=False, collect=False)  # finished runs are kept
    assert again['ran'] == [] and sorted(again['done']) == sorted(rep['done'])

    out = tmp_path/'report'
    r = benchmark_report(root, out, n_samples=2)
    assert {'table.md', 'maps.md', 'claims.md', 'claims.json', 'runs.csv', 'accuracy_cost.png', 'localisation.png',
            'resolution.png', 'samples_clutter.png', 'summary.json'} <= set(r['files'])
    for f in ('accuracy_cost.png', 'localisation.png', 'resolution.png', 'samples_clutter.png'):
        assert (out/f).read_bytes()[:4] == b'\x89PNG'
    assert all(f"| {name} |" in r['table.md'] for name in ('ResNet-18', 'TD-joint', 'TDAF f3', 'HAttNet-CTX'))
    claims = json.loads((out/'claims.json').read_text())
    assert {(c['a'], c['b'], c['metric']) for c in claims} >= {('resnet18_tdjoint_t2_m1', 'resnet18', 'top1'),
                                                               ('resnet18_tdaf_anar3_f3', 'resnet18', 'top1')}
    assert {c['verdict'] for c in claims} == {'too few seeds to tell'}  # one seed: no verdict

    # the report outlives the sweep folder: `report --from-csv` into a new folder rebuilds every run from runs.csv,
    # and into the first one changes nothing (a kept record wins over a rebuilt one)
    import subprocess, sys
    kept = {f.name: f.read_text() for f in (out/'runs').iterdir()}
    assert len(kept) == len(MODELS)
    script = [sys.executable, str(REPO/'bench'/'attention_benchmark.py'), 'report', '--root', str(tmp_path/'none')]
    for where in (out, tmp_path/'rebuilt'):
        p = subprocess.run(script + ['--out', str(where), '--from-csv', str(out/'runs.csv'), '--note', 'a test'],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]
    assert {f.name: f.read_text() for f in (out/'runs').iterdir()} == kept
    rebuilt = {f.name: json.loads(f.read_text()) for f in (tmp_path/'rebuilt'/'runs').iterdir()}
    assert set(rebuilt) == set(kept) and {r['source'] for r in rebuilt.values()} == {'rebuilt from runs.csv: a test'}
    assert (tmp_path/'rebuilt'/'headline.md').read_text() == (out/'headline.md').read_text()
