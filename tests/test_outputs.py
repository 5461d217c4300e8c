"""Outputs that cannot be written, made real: a full device (a small tmpfs), a read-only file system, a folder this
user may not write (a user namespace: root's rights do not reach in), a file where a folder should be. Training and
generation end in one error line that says which, with the path; no traceback, no half-written file."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tda.data.mref import generate_mref, mref_params


def tda(*args, prefix=()):
    return subprocess.run([*prefix, sys.executable, '-m', 'tda.cli', *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def one_error(r, *words) -> str:
    "The command failed with one `tda: error:` line holding every word, and no traceback."
    errors = [line for line in r.stderr.splitlines() if line.startswith('tda: error: ')]
    assert r.returncode == 2 and len(errors) == 1 and 'Traceback' not in r.stderr, (r.returncode, r.stderr)
    for w in words: assert str(w) in errors[0], (w, errors[0])
    return errors[0]


@pytest.fixture
def mount(tmp_path):
    "mount(name, options): a tmpfs at tmp_path/name (root only: skipped elsewhere), unmounted after the test."
    done = []

    def mount(name, options):
        d = tmp_path/name
        d.mkdir()
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(d)], capture_output=True, text=True)
        if r.returncode: pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the test needs root")
        done.append(d)
        return d
    yield mount
    for d in done: subprocess.run(['umount', '-l', str(d)], capture_output=True)


@pytest.fixture
def cfg(tmp_path):
    data = generate_mref(tmp_path/'tiny.h5', mref_params('mref', splits={'train': 6, 'val': 3, 'test': 3}, seed=3),
                         workers=1, progress=False)
    p = tmp_path/'cfg.yaml'
    p.write_text(yaml.safe_dump({'model': 'soft', 'data': str(data), 'preset': 'seo2016', 'epochs': 1,
                                 'batch_size': 20, 'progress': False}))
    return p


def test_a_full_device_is_named_when_generating(mount):
    full = mount('full', 'size=1M')  # smoke MREF needs several MiB
    msg = one_error(tda('data', 'generate', '--out', full/'m.h5', '--workers', 1, '--quiet'),
                    f"no space left on the device of {full} (ENOSPC): writing m.h5 stopped after")
    assert 'free some space there or write elsewhere' in msg
    assert list(full.iterdir()) == []  # no temporary, no lock, no half-written file


def test_a_full_device_is_named_when_training(mount, cfg):
    full = mount('full', 'size=64k')  # run.json fits, a checkpoint (about 350 KiB) does not
    ck = full/'run'/'checkpoints'
    msg = one_error(tda('train', cfg, '--set', f'out_dir={full/"run"}'),
                    f"no space left on the device of {ck} (ENOSPC): writing last.pt stopped after")
    assert float(re.search(r' of about ([\d.]+) KiB', msg)[1]) > 64  # the checkpoint's tensors: more than the device
    assert list((full/'run'/'checkpoints').iterdir()) == []


@pytest.mark.parametrize('command', ['generate', 'train'])
def test_a_file_in_the_way_is_named(tmp_path, cfg, command):
    (tmp_path/'notes').write_text('a file, not a folder')
    out = tmp_path/'notes'/'sub'/'m'
    r = tda('data', 'generate', '--out', out, '--quiet') if command == 'generate' else \
        tda('train', cfg, '--set', f'out_dir={out}')
    one_error(r, f"cannot write {out}", f"{tmp_path/'notes'} is a file, not a folder")


@pytest.mark.parametrize('command', ['generate', 'train', 'train_into_it'])
def test_a_read_only_file_system_is_named(mount, cfg, command):
    ro = mount('ro', 'ro,size=64k')
    if command == 'generate': r, path = tda('data', 'generate', '--out', ro/'m.h5', '--quiet'), ro/'m.h5'
    elif command == 'train': r, path = tda('train', cfg, '--set', f'out_dir={ro/"run"}'), ro/'run'
    else: r, path = tda('train', cfg, '--set', f'out_dir={ro}'), ro/'run.json'  # the run folder is the mount
    msg = one_error(r, f"cannot write {path}: the file system is read-only")
    assert 'overwrite' not in msg


@pytest.mark.parametrize('command', ['generate', 'train', 'overwrite'])
def test_a_folder_this_user_may_not_write_is_a_permission_error(tmp_path, cfg, command):
    "Run as an unprivileged user in a user namespace (root outside it): mode bits apply, as for any user."
    if shutil.which('unshare') is None or subprocess.run(['unshare', '--user', 'true']).returncode:
        pytest.skip('needs unshare --user')
    locked = tmp_path/'locked'
    locked.mkdir()
    ns = ['unshare', '--user']
    if command == 'overwrite':  # a finished run whose folder has since become read-only for this user
        assert tda('train', cfg, '--set', f'out_dir={locked/"run"}').returncode == 0
        os.chmod(locked/'run', 0o555)
        r = tda('train', cfg, '--set', f'out_dir={locked/"run"}', '--overwrite', prefix=ns)
        words = [f"cannot clear {locked/'run'} to start the run again: Permission denied"]
    else:
        os.chmod(locked, 0o555)
        out = locked/('m.h5' if command == 'generate' else 'run')
        r = tda('data', 'generate', '--out', out, '--quiet', prefix=ns) if command == 'generate' else \
            tda('train', cfg, '--set', f'out_dir={out}', prefix=ns)
        words = [f"cannot write {out}: permission denied in {locked}"]
    msg = one_error(r, *words)
    assert 'corrupt' not in msg and 'exist' not in msg
