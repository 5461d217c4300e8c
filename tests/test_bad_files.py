"""Damaged, incomplete and foreign data files, made on purpose from real ones: every reader, `tda data info [--check]`
and `tda train` end in one clear error that names the file, what is wrong and the command that makes the file again."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tda.core import TdaError
from tda.data.dataset import MREFDataset
from tda.data.imagefolder import mref_crops
from tda.data.mref import SPLITS, mref_info, verify_mref
from tda.data.tasks import MovingDigitsDataset, MREFObjectsDataset, make_moving_digits, verify_moving_digits


def tda(*args):
    cmd = [sys.executable, '-m', 'tda.cli', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def one_error(r, *words, alone=True) -> str:
    "The command failed with one `tda: error:` line that holds every word (`alone`: and nothing else on stderr)."
    lines = r.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith('tda: error: ')]
    assert r.returncode == 2 and len(errors) == 1 and 'Traceback' not in r.stderr, (r.returncode, r.stderr)
    assert not alone or len(lines) == 1, r.stderr
    for w in words: assert str(w) in errors[0], (w, errors[0])
    return errors[0]


def remade(msg: str) -> str:
    "The command a message gives as the fix (between backticks)."
    return msg.split('`')[-2]


@pytest.fixture
def mref(datasets, tmp_path):
    "A copy of the session's tiny MREF file, to damage (the shared file is never touched)."
    return Path(shutil.copy(datasets['mref'], tmp_path/'mref.h5'))


def edit(fn, change):
    with h5py.File(fn, 'r+') as f: change(f)
    return fn


def zero_chunk(fn, name, index):
    "Overwrite the middle of the compressed chunk of dataset `name` at `index` with zeros."
    with h5py.File(fn) as f:
        c = f[name].id.get_chunk_info_by_coord((index,) + (0,) * (f[name].ndim - 1))
    with open(fn, 'r+b') as b:
        b.seek(c.byte_offset + c.size // 2)
        b.write(bytes(min(64, c.size // 2)))
    return fn


def set_rows(name, field, value, rows=slice(0, 1)):
    def change(f):
        t = f[name][()]
        t[field][rows] = value
        f[name][...] = t
    return change


def repeat_first(name):
    "The table `name` with its first row once more at its end."
    def change(f):
        t = f[name][()]
        del f[name]
        f.create_dataset(name, data=np.concatenate([t, t[:1]]))
    return change


def shorter_instances(f):
    inst = f['train/instances'][()]
    del f['train/instances']
    f.create_dataset('train/instances', data=inst[:-1], chunks=(1,) + inst.shape[1:], compression='gzip')


def delete(*names):
    def change(f):
        for n in names: del f[n]
    return change


DAMAGE = {  # name: (change, the split to open, what the error says)
    'no_questions': (delete('train/questions'), 'train', 'lacks the dataset(s) train/questions'),
    'no_images': (delete('val/images'), 'val', 'lacks the dataset(s) val/images'),
    'no_palette': (lambda f: f.attrs.__delitem__('palette'), 'test', "lacks the attribute(s) ['palette']"),
    'no_splits': (delete(*SPLITS), None, 'holds no split (train, val, test)'),
    'answer_out_of_range': (set_rows('train/questions', 'answer', 9), 'train', 'answer is not a palette index (0-4)'),
    'query_out_of_range': (set_rows('test/questions', 'query', 12), 'test', 'query is not a digit'),
    'question_about_no_digit': (set_rows('val/questions', 'slot', 15), 'val', 'rows about no digit of val/digits'),
    'instances_shorter_than_images': (shorter_instances, 'train', 'of uint8 (23, 100, 100), not uint8 (24, 100, 100)'),
    'digit_of_no_image': (set_rows('test/digits', 'image', 99), 'test', 'rows whose image is not one of the 8 images'),
    # in range, but not the digit's: the tables are checked against each other on opening, so before any training
    'wrong_answer': (set_rows('val/questions', 'answer', 0, slice(None)), 'val', "not their digit's label or colour"),
    'wrong_query': (set_rows('train/questions', 'query', 0, slice(None)), 'train', "not their digit's label or colour"),
    'repeated_digit': (repeat_first('test/digits'), 'test', '1 test/digits rows that repeat an image and slot'),
}


@pytest.mark.parametrize('name', DAMAGE)
def test_damaged_file_is_one_clear_error(mref, name):
    change, split, says = DAMAGE[name]
    fn = edit(mref, change)
    fix = 'tda data generate --variant mref --size smoke --seed 7'  # rebuilt from the parameters the file records
    if split is not None:
        with pytest.raises(TdaError) as e: MREFDataset(fn, split)
        assert str(fn) in str(e.value) and says in str(e.value) and fix in str(e.value), e.value
        with pytest.raises(TdaError, match='tda data generate'): MREFObjectsDataset(fn, split)
    one_error(tda('data', 'info', fn), fn, says, fix, '--overwrite')


def test_the_fix_makes_the_file_again(mref, datasets, tmp_path):
    "The command an error gives, run as given, writes the file again: the same arrays as the undamaged one."
    msg = one_error(tda('data', 'info', edit(mref, delete('train/questions'))), 'train/questions')
    cmd = shlex.split(remade(msg))
    assert cmd[:3] == ['tda', 'data', 'generate'] and cmd[-3:] == ['--out', str(mref), '--overwrite']
    r = tda(*cmd[1:], '--quiet')
    assert r.returncode == 0, r.stderr
    assert verify_mref(mref) == verify_mref(datasets['mref'])
    with h5py.File(mref) as a, h5py.File(datasets['mref']) as b:
        for s in SPLITS:
            for k in ('images', 'instances', 'digits', 'questions'):
                assert np.array_equal(a[s][k][()], b[s][k][()]), (s, k)


def test_corrupt_chunk_is_found_when_read_and_by_check(mref, tmp_path):
    fn = zero_chunk(mref, 'test/images', 3)
    assert tda('data', 'info', fn).returncode == 0  # opening reads no image: it stays cheap
    one_error(tda('data', 'info', '--check', fn), fn, 'reading image 3 of the test split failed', '--seed 7')
    ds = MREFDataset(fn, 'test')
    bad = [i for i in range(len(ds)) if int(ds.questions['image'][i]) == 3]
    ds[bad[0] - 1]  # the other images read
    with pytest.raises(TdaError, match='reading image 3 of the test split failed'): ds[bad[0]]
    with pytest.raises(TdaError, match='is corrupt'): MREFDataset(fn, 'test', in_memory=True)
    with pytest.raises(TdaError, match='is corrupt'): MREFObjectsDataset(fn, 'test')
    with pytest.raises(TdaError, match='reading image 3 of the test split'):
        mref_crops(fn, tmp_path/'crops', progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mref.h5']  # no crops folder, whole or half


@pytest.mark.parametrize('change, says', [
    (lambda f: f['train/instances'].__setitem__((0, 0, 0), 200), 'image 0 of the train split has instance ids [200]'),
], ids=['stray_instance'])
def test_check_finds_what_opening_cannot(mref, change, says):
    "Values that are in range but wrong: only the full read of --check sees them."
    fn = edit(mref, change)
    assert tda('data', 'info', fn).returncode == 0
    one_error(tda('data', 'info', '--check', fn), fn, says, 'tda data generate --variant mref')


def h5py_trips(x) -> bool:
    "Whether plain h5py raises on reading the tables, shapes and palette of the file `x`."
    try:
        with h5py.File(x) as f:
            for s in SPLITS: f[s]['questions'][()], f[s]['images'].shape
            json.loads(f.attrs['palette'])
    except Exception: return True
    return False


def test_flipped_header_byte(mref, tmp_path):
    """Flip every fourth byte of the first 2 KB (the superblock, the root group, its attributes, the first object
    headers): the readers raise nothing but a `TdaError`, and the first flip that makes plain h5py raise is one error
    line of `tda data info`."""
    good, first = mref.read_bytes(), None
    x = tmp_path/'x.h5'
    for off in range(0, 2048, 4):
        b = bytearray(good)
        b[off] ^= 0xff
        x.write_bytes(b)
        for read in (lambda: mref_info(x), lambda: MREFDataset(x, 'train'), lambda: MREFDataset(x, 'test')):
            try: read()
            except TdaError as e: assert str(x) in str(e)
        if first is None and h5py_trips(x): first = off
    assert first is not None
    b = bytearray(good)
    b[first] ^= 0xff
    x.write_bytes(b)
    one_error(tda('data', 'info', x), x)


def test_temporary_file_is_named_as_such(mref):
    t = mref.with_name(f'.mref.h5.tmp-{os.uname().nodename}-4242-0123abcd')
    shutil.copy(mref, t)
    one_error(tda('data', 'info', t), 'temporary file of an unfinished write', mref.name)


def test_training_on_damaged_files(mref, tmp_path):
    "Out-of-range answers stop `tda train` before it starts; a corrupt chunk a worker reads mid-epoch: one error line."
    cfg = tmp_path/'cfg.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'hattnet_ctx', 'data': str(mref), 'epochs': 1, 'batch_size': 40,
                                   'eval_batch_size': 40, 'progress': False}))
    bad = edit(Path(shutil.copy(mref, tmp_path/'answers.h5')), set_rows('train/questions', 'answer', 200, slice(5, 9)))
    r = tda('train', cfg, '--set', f'data={bad}', '--set', f'out_dir={tmp_path/"a"}')
    one_error(r, bad, '4 train/questions rows whose answer is not a palette index (0-4) (the first is row 5)',
              alone=False)
    for j in range(24): zero_chunk(mref, 'train/images', j)
    r = tda('train', cfg, '--set', 'dataset_args={}', '--set', 'num_workers=2', '--set', f'out_dir={tmp_path/"c"}')
    one_error(r, mref, 'of the train split failed', 'tda data generate --variant mref', alone=False)


@pytest.fixture
def clips(tmp_path):
    return make_moving_digits(tmp_path/'clips.h5', train=6, val=2, test=2, seed=5, progress=False)


@pytest.mark.parametrize('change, says', [
    (delete('train/labels'), 'lacks the dataset(s) train/labels'),
    (lambda f: f.attrs.__delitem__('classes'), "lacks the attribute(s) ['classes']"),
    (lambda f: f['train/labels'].__setitem__(1, 7), '1 train/labels that are not a class (0-3) (the first is row 1)'),
    (lambda f: f.attrs.__setitem__('format', 'tda.mref/1'), "is not a moving-digits file"),
], ids=['no_labels', 'no_classes', 'label_out_of_range', 'foreign'])
def test_damaged_clips_are_one_clear_error(clips, change, says):
    fn = edit(clips, change)
    with pytest.raises(TdaError) as e: MovingDigitsDataset(fn, 'train')
    assert str(fn) in str(e.value) and says in str(e.value), e.value
    foreign = 'not a moving' in says  # `tda data info` reads it as what it claims to be, and says what it lacks
    one_error(tda('data', 'info', fn), fn, 'lacks the attribute(s)' if foreign else says)


def test_truncated_and_corrupt_clips(clips, tmp_path):
    assert verify_moving_digits(clips) == {'train': {'clips': 6}, 'val': {'clips': 2}, 'test': {'clips': 2}}
    cut = tmp_path/'cut.h5'
    cut.write_bytes(clips.read_bytes()[:clips.stat().st_size // 2])
    with pytest.raises(TdaError, match='truncated'): MovingDigitsDataset(cut, 'test')
    fn = zero_chunk(clips, 'train/clips', 4)
    fix = 'tda data generate --set dataset=moving_digits --seed 5 --set train=6'
    with pytest.raises(TdaError, match='reading the clips of the train split failed') as e:
        MovingDigitsDataset(fn, 'train')
    assert fix in str(e.value)
    assert len(MovingDigitsDataset(fn, 'val')) == 2
    assert tda('data', 'info', fn).returncode == 0
    one_error(tda('data', 'info', '--check', fn), fn, 'reading clip 4 of the train split failed', fix)
    with pytest.raises(TdaError, match="format attribute is 'tda.moving_digits/1'"): MREFDataset(fn, 'train')


def test_training_resumes_past_the_temporary_of_a_killed_writer(mref, tmp_path):
    "What a SIGKILL in the middle of saving a checkpoint leaves is ignored by `--resume`, and removed by the next save."
    out, cfg = tmp_path/'run', tmp_path/'cfg.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'hattnet_ctx', 'data': str(mref), 'epochs': 1, 'batch_size': 40,
                                   'eval_batch_size': 40, 'progress': False, 'out_dir': str(out)}))
    assert tda('train', cfg).returncode == 0
    ck = out/'checkpoints'
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    half = ck/f'.last.pt.tmp-{int(dead.stdout)}-0123abcd'  # of a process that has ended (an earlier version's name)
    half.write_bytes((ck/'last.pt').read_bytes()[:1000])
    r = tda('train', cfg, '--resume', '--set', 'epochs=2')
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in ck.iterdir()) == ['best.pt', 'last.pt']


@pytest.fixture
def train_cfg(tmp_path):
    cfg = tmp_path/'cfg.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'soft', 'epochs': 1, 'batch_size': 20, 'eval_batch_size': 40,
                                   'progress': False, 'out_dir': str(tmp_path/'run')}))
    return cfg


def small(tmp_path, name, variant='mref', **splits):
    from tda.data.mref import generate_mref, mref_params
    params = mref_params(variant, splits={'train': 6, 'val': 3, 'test': 3, **splits}, seed=2)
    return generate_mref(tmp_path/name, params, workers=1, progress=False)


@pytest.mark.parametrize('case', ['wrong_queries', 'empty_val', 'empty_train', 'other_variant'])
def test_training_checks_the_data_whole_before_writing(mref, tmp_path, train_cfg, case):
    """Queries that are not their digits' classes, an empty split, another variant than the config's: one error line
    before anything is written (before: trained silently, or a whole epoch then KeyError / IndexError)."""
    if case == 'wrong_queries':
        data = edit(mref, set_rows('train/questions', 'query', 0, slice(None)))
        says = ['train/questions rows whose query or answer is not their digit\'s label or colour', 'tda data generate']
    elif case == 'other_variant':
        data, says = small(tmp_path, 'mdist.h5', 'mdist'), ["holds MDIST data, but the config expects variant 'mref'"]
    else:
        split = case.split('_')[1]
        data = small(tmp_path, f'{case}.h5', **{split: 0})
        says = [f"has no samples in its {split} split; training needs all three"]
    r = tda('train', train_cfg, '--set', f'data={data}', *(['--set', 'variant=mref'] if case == 'other_variant' else []))
    one_error(r, data, *says, alone=False)
    assert not (tmp_path/'run').exists() and not (tmp_path/'.run.lock').exists()


def test_a_config_that_does_not_fit_the_model_writes_nothing(mref, tmp_path, train_cfg):
    "Checked by one forward pass on two samples before run.json: the rerun is not blocked by a run.json left behind."
    for bad, says in ((['--set', 'inputs=[image]'], "missing 1 required positional argument: 'query'"),
                      (['--set', 'target=scale'], 'expected target dtype to be Long')):
        r = tda('train', train_cfg, '--set', f'data={mref}', *bad)
        one_error(r, 'the config does not fit the model: soft on a two-sample batch', says, alone=False)
        assert not (tmp_path/'run').exists()  # no run.json to block the rerun


@pytest.mark.parametrize('kind', ['folder', 'link_loop', 'dangling_link', 'unreadable'])
def test_a_path_that_is_no_file_is_named_for_what_it_is(mref, tmp_path, train_cfg, kind):
    "A folder is a folder, a link loop a link loop, an unreadable file a permission error (no advice to regenerate)."
    x = tmp_path/'x.h5'
    prefix = []
    if kind == 'folder': x.mkdir()
    elif kind == 'link_loop': x.symlink_to(x)
    elif kind == 'dangling_link': x.symlink_to(tmp_path/'gone.h5')
    else:  # run as an unprivileged user in a user namespace: mode bits apply (root's rights do not reach in)
        if shutil.which('unshare') is None or subprocess.run(['unshare', '--user', 'true']).returncode:
            pytest.skip('needs unshare --user')
        shutil.copy(mref, x)
        x.chmod(0)
        prefix = ['unshare', '--user']
    says = {'folder': 'is a folder, not a file', 'link_loop': 'is a symbolic link loop',
            'dangling_link': f"is a symbolic link to {tmp_path/'gone.h5'}, which does not exist",
            'unreadable': 'cannot be read: permission denied; give this user read access'}[kind]
    for args in (['data', 'info', x], ['train', train_cfg, '--set', f'data={x}']):
        r = subprocess.run([*prefix, sys.executable, '-m', 'tda.cli', *map(str, args)], capture_output=True, text=True,
                           timeout=600)
        msg = one_error(r, x, says, alone=False)
        assert 'corrupt' not in msg and 'overwrite' not in msg and 'generate' not in msg, msg
    assert not (tmp_path/'run').exists()


def test_data_check_finds_every_bad_image_file(tmp_path):
    """`tda data check FOLDER`: the header check of the index finds an empty file and an HTML page under a JPEG's name;
    `--decode` also finds a truncated JPEG; CMYK, greyscale, 16-bit and a PNG under a JPEG's name are good files.
    Any bad file: the list on stdout, one error line, exit status 2."""
    from PIL import Image
    root = tmp_path/'folder'
    rgb = np.random.default_rng(0).integers(0, 256, (20, 16, 3), np.uint8)
    for split in ('train', 'val'):
        for c in ('a', 'b'): (root/split/c).mkdir(parents=True)
        Image.fromarray(rgb).save(root/split/'a'/'rgb.jpg')
        Image.fromarray(rgb).convert('CMYK').save(root/split/'a'/'cmyk.jpg')
        Image.fromarray(rgb[..., 0]).save(root/split/'b'/'grey.jpg')
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root/split/'b'/'deep.png')
        Image.fromarray(rgb).save(root/split/'b'/'png.JPEG', format='PNG')
    r = tda('data', 'check', root, '--decode', '--workers', '2')
    assert r.returncode == 0 and 'every file\'s header and data read, all good' in r.stdout, r.stderr
    assert f"{root/'train'}: 5 images in 2 classes, 0 bad" in r.stdout, r.stdout
    (root/'train'/'a'/'empty.jpg').write_bytes(b'')
    (root/'train'/'b'/'page.JPEG').write_text('<html>404</html>')
    jpeg = (root/'val'/'a'/'rgb.jpg').read_bytes()
    (root/'val'/'a'/'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    r = tda('data', 'check', root, '--quiet')
    one_error(r, '2 file(s) of', 'cannot be used (listed above)', alone=False)
    assert 'train/a/empty.jpg: empty (0 bytes)' in r.stdout and "train/b/page.JPEG: not an image" in r.stdout
    r = tda('data', 'check', root, '--decode', '--quiet')
    one_error(r, '3 file(s) of', alone=False)
    assert 'val/a/cut.jpg: UnidentifiedImageError: cannot identify image file' in r.stdout, r.stdout  # cut in its header


def erase_digit(split, image, slot):
    "The digit `slot` of `image` made background (black, instance 0): its tables still name it, so opening passes."
    def change(f):
        inst, img = f[f'{split}/instances'][image], f[f'{split}/images'][image]
        img[inst == slot] = 0
        inst[inst == slot] = 0
        f[f'{split}/images'][image], f[f'{split}/instances'][image] = img, inst
    return change


def pixel_outside_box(split, image, slot):
    "One background pixel outside the box of digit `slot` of `image` marked as that digit's."
    def change(f):
        box = next(r['box'] for r in f[f'{split}/digits'][()] if r['image'] == image and r['slot'] == slot)
        inst = f[f'{split}/instances'][image]
        free = inst == 0
        free[box[0]:box[2], box[1]:box[3]] = False
        y, x = np.argwhere(free)[0]
        inst[y, x] = slot
        f[f'{split}/instances'][image] = inst
    return change


@pytest.mark.parametrize('damage, says', [
    (erase_digit('train', 2, 1), 'image 2 of the train split has digit 1 with no pixels'),
    (pixel_outside_box('val', 1, 2), 'image 1 of the val split has digit 2 with pixels outside its box'),
    ('chunk', 'reading image 5 of the train split failed'),
], ids=['digit_without_pixels', 'pixels_outside_box', 'corrupt_chunk'])
def test_training_and_the_check_refuse_the_same_files(mref, train_cfg, tmp_path, damage, says):
    """A file that `tda data info --check` refuses, training refuses before it writes anything, with the same words
    (both run `tda.data.files.verify_data`); before, training let a digit without pixels through, which generator 1.0
    wrote (issue 37), and met a corrupt chunk only when it read it."""
    fn = zero_chunk(mref, 'train/images', 5) if damage == 'chunk' else edit(mref, damage)
    assert tda('data', 'info', fn).returncode == 0  # the tables are in order: opening passes
    check = one_error(tda('data', 'info', '--check', fn), fn, says, 'tda data generate --variant mref', '--overwrite')
    # read from the file (not in memory): the pixels are first read by the check, not by the dataset's constructor
    train = one_error(tda('train', train_cfg, '--set', f'data={fn}', '--set', 'dataset_args={}'), alone=False)
    assert train == check
    assert not (tmp_path/'run').exists() and not (tmp_path/'.run.lock').exists()
