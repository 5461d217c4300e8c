"bench/table1_cpu.py ships a training run's best weights with a card measured by today's metrics, and refuses an unfinished run."
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from tda.experiments.table1 import run_table1
from tda.models.pretrained import load_pretrained, pretrained_cards

SCRIPT = REPO/'bench'/'table1_cpu.py'


@pytest.fixture(scope='module')
def soft_run(tmp_path_factory, datasets):
    out = tmp_path_factory.mktemp('table1')
    s = run_table1(out, models=['soft'], data={'mref': datasets['mref']}, epochs=1, n_samples=2, progress=False,
                   batch_size=100)
    return out/'mref'/'soft', s['results']['mref']['soft']


def script(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_export_ships_the_runs_best_weights_with_a_card(soft_run, tmp_path, env_paths):
    run, res = soft_run
    r = script('export', run, 'mref', '--weights', tmp_path/'w', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    card = pretrained_cards(tmp_path/'w')[('soft', 'mref')]
    assert card['test']['accuracy'] == pytest.approx(res['accuracy']) and card['test']['n'] == res['n']
    assert card['paper'] == {'accuracy': 82.94, 'tps': 13.61, 'uniform_tps': 2.34, 'source': 'Seo et al., Table 1'}
    assert not load_pretrained('soft', 'mref', folder=tmp_path/'w').training
    again = script('export', run, 'mref', '--weights', tmp_path/'w', cwd=tmp_path)
    assert again.returncode == 2 and '--overwrite' in again.stderr


def test_export_refuses_an_unfinished_run_unless_interim(soft_run, tmp_path, env_paths):
    going = tmp_path/'going'
    shutil.copytree(soft_run[0], going)
    (going/'results.json').unlink()  # as if it were still training
    r = script('export', going, 'mref', '--weights', tmp_path/'w', cwd=tmp_path)
    assert r.returncode == 2 and 'has not finished' in r.stderr and '--interim' in r.stderr, r.stderr
    r = script('export', going, 'mref', '--weights', tmp_path/'w', '--interim', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'w'/'soft-mref.json').read_text())['stopped'].startswith('interim')


def test_report_refuses_a_malformed_record(tmp_path):
    r = script('report', '--record', 'mdist=somewhere', '--out', tmp_path/'r', cwd=tmp_path)
    assert r.returncode == 2 and 'VARIANT:MODEL=RUN' in r.stderr, r.stderr
