"""OpenMMLab's ``mim`` runs SERA-MM's tools.

``mim train sera_mm CONFIG`` runs the installed package's
``sera_mm/.mim/tools/train.py`` (``mim test`` its ``test.py``) and finds a
config given by file name under ``sera_mm/.mim``. setup.py fills that
folder from ``configs/``, ``tools/``, ``model-index.yml`` and the projects
the model index imports: linked in the source tree by an editable install,
copied into a wheel (also one built from the sdist).

Checked here: the folder's contents (setup.py's helper, no mim needed),
the wheel built from the sdist, and, with openmim installed (the test
extra), where mim locates the package and a real run: ``mim train`` of
the tiny config on a generated dataset from the source checkout
(``python -m mim`` in the repository root, as docs/en/get_started.md says
for editable installs) writing a checkpoint, and ``mim test`` of that
checkpoint from the installed wheel, the config given by name.
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = 'configs/sera/sera_tiny_synthetic.py'
# mim imports pkg_resources, whose deprecation warning is not ours to show
ENV = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONWARNINGS='ignore')


def _setup_module():
    spec = importlib.util.spec_from_file_location(
        'sera_setup', osp.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() is not called
    return module


def _tiny_options(data):
    """The tiny config for two iterations, its data under ``data``."""
    return ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
            'default_hooks.checkpoint.interval=2'] + [
        f'{k}.dataset.data_root={data}' for k in (
            'train_dataloader', 'val_dataloader', 'test_dataloader')]


def _run(cmd, cwd, env=ENV, timeout=300):
    out = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout + out.stderr


# ------------------------------------------------------ the .mim folder


def test_mim_files_hold_the_model_index_and_its_configs():
    paths = _setup_module().mim_files(ROOT)
    assert paths[:3] == ['configs', 'tools', 'model-index.yml']

    def held(rel):
        return any(rel == p or rel.startswith(p + '/') for p in paths)

    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    assert imports and all(held(p) for p in imports)
    for metafile in imports:
        with open(osp.join(ROOT, metafile)) as f:
            models = yaml.safe_load(f)['Models']
        for model in models:
            assert held(model['Config']), model['Config']
    # each project's package comes along (its configs import it)
    assert 'projects/cris_sera/cris_sera' in paths
    assert not any('/results' in p for p in paths)


def test_add_mim_extension_links_or_copies(tmp_path):
    setup = _setup_module()
    link = tmp_path / 'link' / '.mim'
    paths = setup.add_mim_extension(str(link), 'symlink', ROOT)
    for rel in paths:
        target = link / rel
        assert target.is_symlink() and not osp.isabs(os.readlink(target))
        assert osp.realpath(target) == osp.realpath(osp.join(ROOT, rel))
    assert (link / 'tools' / 'train.py').is_file()

    copy = tmp_path / 'copy' / '.mim'
    setup.add_mim_extension(str(copy), 'copy', ROOT)
    for dirpath, dirnames, filenames in os.walk(copy):
        assert '__pycache__' not in dirnames
        for name in dirnames + filenames:
            assert not osp.islink(osp.join(dirpath, name))
    with open(copy / 'configs' / 'sera' / 'sera_tiny_synthetic.py') as f, \
            open(osp.join(ROOT, TINY)) as g:
        assert f.read() == g.read()
    assert (copy / 'projects' / 'cris_sera' / 'cris_sera'
            / 'cris_neck.py').is_file()

    # recreated from scratch; removing links leaves the repository alone
    setup.add_mim_extension(str(copy), 'symlink', ROOT)
    assert (copy / 'configs').is_symlink()
    setup.add_mim_extension(str(link), 'copy', ROOT)
    assert not (link / 'configs').is_symlink()
    assert osp.isfile(osp.join(ROOT, TINY))
    with pytest.raises(ValueError, match='mode'):
        setup.add_mim_extension(str(link), 'hardlink', ROOT)


def test_config_names_are_unique_in_the_package():
    """mim finds a config given by file name by searching the whole
    installed package folder (``.mim`` included): each config's name must
    occur once there."""
    setup = _setup_module()
    names = {}
    roots = [osp.join(ROOT, 'sera_mm')] + [
        osp.join(ROOT, p) for p in setup.mim_files(ROOT)]
    for top in roots:
        if osp.isfile(top):
            names.setdefault(osp.basename(top), []).append(top)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames
                           if d not in ('__pycache__', '.mim')]
            for name in filenames:
                names.setdefault(name, []).append(osp.join(dirpath, name))
    configs = [p for p in setup.mim_files(ROOT)
               if p == 'configs' or p.endswith('/configs')]
    checked = 0
    for top in configs:
        for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d not in ('_base_',
                                                           '__pycache__')]
            for name in filenames:
                if name.endswith('.py'):
                    assert len(names[name]) == 1, names[name]
                    checked += 1
    assert checked > 30


# ------------------------------------------------ the sdist and its wheel


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """A wheel built from the sdist of a copy of the repository's sources
    (run artefacts and generated files left out), and the folder it is
    unpacked into (what installing a pure-Python wheel does)."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    skip = shutil.ignore_patterns('__pycache__', '*.py[cod]', '.mim',
                                  'results', '*.egg-info', 'build', 'dist')
    src.mkdir()
    for name in ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE',
                 'CITATION.cff', 'model-index.yml'):
        shutil.copy(osp.join(ROOT, name), src / name)
    for name in ('requirements', 'sera_mm', 'configs', 'tools', 'projects'):
        shutil.copytree(osp.join(ROOT, name), src / name, ignore=skip)
    _run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp)],
         cwd=src)
    sdist = [p for p in tmp.iterdir() if p.name.endswith('.tar.gz')]
    assert len(sdist) == 1
    _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
          '--no-build-isolation', '--no-index', '-w', str(tmp),
          str(sdist[0])], cwd=tmp)
    built = [p for p in tmp.iterdir() if p.name.endswith('.whl')]
    assert len(built) == 1
    site = tmp / 'site'
    with zipfile.ZipFile(built[0]) as z:
        z.extractall(site)
    return built[0], site


def test_wheel_from_sdist_holds_the_mim_files(wheel):
    whl, _ = wheel
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
    for rel in ('tools/train.py', 'tools/test.py', 'model-index.yml',
                'configs/sera/sera_tiny_synthetic.py',
                'configs/_base_/default_runtime.py',
                'projects/cris_sera/metafile.yaml',
                'projects/cris_sera/configs/cris_tiny_synthetic.py',
                'projects/cris_sera/cris_sera/cris_neck.py'):
        assert 'sera_mm/.mim/' + rel in names, rel
    assert not any('/results/' in n or '__pycache__' in n for n in names)


# ------------------------------------------------------------ mim itself


def _where(cwd, env=ENV):
    """Where mim locates the package (what `mim train` and `mim test` use),
    from ``cwd`` with ``python -c`` (which puts ``cwd`` first on the path,
    as ``python -m mim`` does)."""
    code = ('import json; from mim.utils import get_installed_path, '
            'is_installed, module_full_name; print(json.dumps({n: ['
            'is_installed(n), module_full_name(n), get_installed_path(n)] '
            'for n in ("sera_mm", "sera-mm")}))')
    out = _run([sys.executable, '-c', code], cwd=cwd, env=env)
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def mim_trained(tmp_path_factory):
    """`mim train sera_mm` of the tiny config from the source checkout
    (two iterations on a generated 24-image dataset)."""
    pytest.importorskip('mim')
    pkg = osp.join(ROOT, 'sera_mm')
    if not osp.isfile(osp.join(pkg, '.mim', 'tools', 'train.py')):
        pytest.fail('sera_mm/.mim is missing: reinstall the package '
                    '(pip install -e ., or bash tools/install.sh --tests)')
    where = _where(ROOT)
    for name in ('sera_mm', 'sera-mm'):
        installed, full_name, path = where[name]
        assert installed and full_name == name
        assert osp.realpath(path) == osp.realpath(pkg), (
            'mim locates sera_mm elsewhere; is sera_mm.egg-info (written by '
            'pip install -e .) in the repository root?')
    tmp = tmp_path_factory.mktemp('mim')
    work = tmp / 'work'
    log = _run([sys.executable, '-m', 'mim', 'train', 'sera_mm', TINY,
                '--work-dir', str(work), '--cfg-options',
                *_tiny_options(tmp / 'data')], cwd=ROOT)
    return tmp, work, log


def test_mim_train_from_the_source_checkout(mim_trained):
    _, work, log = mim_trained
    script = osp.join(ROOT, 'sera_mm', '.mim', 'tools', 'train.py')
    assert f'Training command is {sys.executable} {script} {TINY}' in log
    assert '--launcher none' in log and '--gpus' not in log
    assert 'Training finished successfully' in log
    assert (work / 'iter_2.pth').is_file()
    assert (work / 'last_checkpoint').is_file()


def test_mim_test_from_the_wheel_finds_the_config_by_name(wheel,
                                                          mim_trained):
    _, site = wheel
    tmp, work, _ = mim_trained
    # the unpacked wheel first on the path: mim locates its sera_mm
    env = dict(ENV, PYTHONPATH=os.pathsep.join(
        [str(site)] + [p for p in [ENV.get('PYTHONPATH')] if p]))
    cwd = tmp / 'elsewhere'
    cwd.mkdir()
    installed, _, path = _where(cwd, env)['sera_mm']
    assert installed and osp.realpath(path) == osp.realpath(
        site / 'sera_mm')
    mim_dir = site / 'sera_mm' / '.mim'
    log = _run([sys.executable, '-m', 'mim', 'test', 'sera_mm',
                'sera_tiny_synthetic.py', '--checkpoint',
                str(work / 'iter_2.pth'), '--work-dir', str(tmp / 'test'),
                '--cfg-options', *_tiny_options(tmp / 'data')],
               cwd=cwd, env=env)
    config = mim_dir / 'configs' / 'sera' / 'sera_tiny_synthetic.py'
    assert f'will use {config} instead' in log
    script = mim_dir / 'tools' / 'test.py'
    assert f'Testing command is {sys.executable} {script} {config}' in log
    assert 'Testing finished successfully' in log
    assert '| all | 16 |' in log  # the metric table of the 16 val refs
    assert not (cwd / 'data').exists()
