"""The documentation names only files that exist and tools that run.

Checked documents: ``README.md``, every ``docs/en/**/*.md`` and
``configs/sera/README.md``. From each, three kinds of path are read:

- relative Markdown links and images (``[text](path)``), resolved against
  the document's folder (web addresses and in-page anchors are not paths);
- paths in inline code spans and in fenced code blocks that start with a
  top-level folder of the repository (``configs/``, ``tools/``,
  ``projects/``, ``docs/``, ``sera_mm/``, ``checkpoints/``, ``tests/``),
  resolved against the repository root.

What a command *produces* is not a repository file, so these are left out
by rule, not by a list of exceptions:

- paths under folders that are not repository folders (``data/``,
  ``work_dirs/``, ``out/``, ...): they are examples of where data or
  results go;
- the value of an output option (``--out``, ``--out-dir``, ``--work-dir``,
  ``--work-root``, ``--show-dir``);
- placeholders: a path holding ``<``, ``>``, ``*``, ``{``, ``}``, ``$``,
  ``[``, ``]``, ``|`` or ``...`` (``projects/<name>/``,
  ``docs/benchmark/vitb_sweep_*``, ``$A/full.py``);
- checkpoints that training writes under mmengine's names
  (``iter_<N>.pth``, ``epoch_<N>.pth``, ``best_*.pth``): run artefacts,
  never committed.

A link to a heading (``page.md#anchor`` or ``#anchor``) must name a
heading of that page, as GitHub forms its anchors.

Every ``tools/**.py`` script named in the documents must answer ``--help``
with exit status 0. The scripts run in parallel from one fixture, each in
its own interpreter, so the whole file takes about as long as the slowest
imports (torch, mmseg, gradio) divided over the CPU cores.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
DOCS = sorted([README, ROOT / 'configs' / 'sera' / 'README.md'] +
              list((ROOT / 'docs' / 'en').rglob('*.md')))
MAX_README_LINES = 220

REPO_FOLDERS = ('configs/', 'tools/', 'projects/', 'docs/', 'sera_mm/',
                'checkpoints/', 'tests/')
OUTPUT_OPTIONS = {'--out', '--out-dir', '--work-dir', '--work-root',
                  '--show-dir'}
PLACEHOLDER = re.compile(r'[<>*{}$\[\]|]|\.\.\.')
RUN_ARTEFACT = re.compile(r'^(iter_\d+|epoch_\d+|best_.*)\.pth$')

FENCE = re.compile(r'^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$', re.M | re.S)
INLINE_CODE = re.compile(r'`([^`\n]+)`')
LINK = re.compile(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
STRIP = '\'"`,;:.)('

# the Quick start's two commands; CI (.ci/run) runs the second
QUICK_START = (
    'python3 -m venv .venv && . .venv/bin/activate && bash tools/install.sh '
    '--pretrained && python tools/train.py '
    'configs/sera/sera_mnv2-minilm_synthetic.py',
    'python3 -m venv .venv && . .venv/bin/activate && bash tools/install.sh '
    '--tests --pretrained --demo --deploy && python -m pytest -q tests',
)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def split_code(text: str):
    """(prose without fenced blocks, [code snippets])."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    prose = FENCE.sub('', text)
    return prose, blocks + INLINE_CODE.findall(prose)


def is_checked(token: str) -> bool:
    return not (PLACEHOLDER.search(token)
                or RUN_ARTEFACT.match(token.rstrip('/').rsplit('/', 1)[-1]))


def code_paths(code: str):
    """Repository paths named in a code snippet, output options left out."""
    tokens = code.split()
    for i, raw in enumerate(tokens):
        token = raw.strip(STRIP)
        if not token.startswith(REPO_FOLDERS):
            continue
        prev = tokens[i - 1] if i else ''
        if prev in OUTPUT_OPTIONS or raw.startswith(tuple(
                opt + '=' for opt in OUTPUT_OPTIONS)):
            continue
        if is_checked(token):
            yield token


def link_paths(prose: str, doc: Path):
    """(as written, resolved) for every relative link of a document."""
    for target in LINK.findall(prose):
        if re.match(r'^([a-z][a-z0-9+.-]*:|#)', target, re.I):
            continue  # a web address, mailto: or an in-page anchor
        path = target.split('#', 1)[0]
        if path and is_checked(path):
            yield target, (doc.parent / path).resolve()


def named_paths():
    """[(document, path as written, resolved path)] over every document."""
    found = []
    for doc in DOCS:
        if not doc.is_file():
            continue  # reported by test_documents_exist
        prose, code = split_code(doc.read_text(encoding='utf-8'))
        for snippet in code:
            for token in code_paths(snippet):
                found.append((doc, token, ROOT / token))
        for target, path in link_paths(prose, doc):
            found.append((doc, target, path))
    return found


def named_tool_scripts():
    scripts = {token for _, token, path in named_paths()
               if token.startswith('tools/') and token.endswith('.py')
               and path.is_file()}
    return sorted(scripts)


def test_documents_exist():
    missing = [rel(d) for d in DOCS if not d.is_file()]
    assert not missing, missing
    assert len(DOCS) > 20, 'docs/en is expected to hold the guides'


def test_named_paths_exist():
    found = named_paths()
    assert len(found) > 100, 'the path parser found too few paths'
    missing = sorted({f'{rel(doc)}: {written}'
                      for doc, written, path in found if not path.exists()})
    assert not missing, 'paths named in the docs do not exist:\n' + \
        '\n'.join(missing)


def test_links_stay_inside_the_repository():
    outside = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        prose, _ = split_code(doc.read_text(encoding='utf-8'))
        for target, path in link_paths(prose, doc):
            if ROOT not in path.parents and path != ROOT:
                outside.append(f'{rel(doc)}: {target}')
    assert not outside, outside


def heading_anchors(path: Path):
    """GitHub's anchors of a Markdown file's headings: lower case, spaces
    to hyphens, punctuation other than hyphens and underscores dropped,
    repeats numbered."""
    prose, _ = split_code(path.read_text(encoding='utf-8'))
    anchors, seen = set(), {}
    for line in prose.splitlines():
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        slug = re.sub(r'[^\w\- ]', '', m.group(1).lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f'{slug}-{n}')
    return anchors


def test_link_anchors_exist():
    missing = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        prose, _ = split_code(doc.read_text(encoding='utf-8'))
        targets = [(t, p) for t, p in link_paths(prose, doc) if '#' in t]
        targets += [(t, doc) for t in LINK.findall(prose)
                    if t.startswith('#')]
        for target, path in targets:
            anchor = target.split('#', 1)[1]
            if path.suffix == '.md' and path.is_file() and \
                    anchor not in heading_anchors(path):
                missing.append(f'{rel(doc)}: {target}')
    assert not missing, 'links to headings that do not exist:\n' + \
        '\n'.join(missing)


def test_parser_applies_the_exclusion_rules():
    code = ('python tools/train.py configs/sera/x.py --work-dir '
            'docs/new_run --out-dir=docs/new_dir\n'
            'python tools/publish_checkpoint.py docs/run/iter_600.pth '
            'checkpoints/y.pth  # projects/<name>/ $A/full.py '
            'docs/benchmark/vitb_sweep_* work_dirs/z data/refcoco')
    assert list(code_paths(code)) == [
        'tools/train.py', 'configs/sera/x.py',
        'tools/publish_checkpoint.py', 'checkpoints/y.pth']
    prose = ('[a](../x.md#part) [b](https://example.org) [c](#here) '
             '![d](img.png)')
    doc = ROOT / 'docs' / 'en' / 'page.md'
    assert [t for t, _ in link_paths(prose, doc)] == ['../x.md#part',
                                                      'img.png']


def test_readme_is_short():
    lines = README.read_text(encoding='utf-8').splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f'README.md has {len(lines)} lines; the details belong in docs/en/')


def test_quick_start_commands_are_unchanged():
    text = README.read_text(encoding='utf-8')
    for command in QUICK_START:
        assert command in text.splitlines(), command
    ci = (ROOT / '.ci' / 'run').read_text(encoding='utf-8')
    assert 'bash tools/install.sh --tests --pretrained --demo --deploy' in ci


@pytest.fixture(scope='module')
def help_runs(request):
    """Run ``--help`` of the selected tool scripts, in parallel."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    env['HF_HUB_OFFLINE'] = '1'
    env['TRANSFORMERS_OFFLINE'] = '1'
    env.setdefault('MPLBACKEND', 'Agg')

    def run(script):
        return subprocess.run(
            [sys.executable, script, '--help'], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=180)

    # only the scripts whose tests were selected (pytest -k ...)
    scripts = sorted({
        item.callspec.params['script'] for item in request.session.items
        if 'script' in getattr(getattr(item, 'callspec', None), 'params', {})
    })
    workers = max(2, min(len(scripts), os.cpu_count() or 2, 4))
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {s: pool.submit(run, s) for s in scripts}
    yield futures
    pool.shutdown(wait=True)


def test_tool_scripts_are_found():
    scripts = named_tool_scripts()
    for expected in ('tools/train.py', 'tools/test.py', 'tools/infer.py',
                     'tools/demo/app.py',
                     'tools/deployment/pytorch2onnx.py',
                     'tools/analysis/router_stats.py'):
        assert expected in scripts, expected


@pytest.mark.parametrize('script', named_tool_scripts())
def test_tool_answers_help(script, help_runs):
    proc = help_runs[script].result()
    assert proc.returncode == 0, (
        f'{script} --help exited with {proc.returncode}:\n'
        f'{proc.stderr[-3000:]}')
    assert 'usage' in proc.stdout.lower(), proc.stdout[:500]


def load_yaml(path: Path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def test_model_index_and_metafiles():
    index = load_yaml(ROOT / 'model-index.yml')
    imports = index.get('Import')
    assert isinstance(imports, list) and imports, 'model-index.yml: Import'
    names = set()
    for entry in imports:
        metafile = ROOT / entry
        assert metafile.is_file(), f'model-index.yml imports {entry}'
        meta = load_yaml(metafile)
        collections = {c['Name'] for c in meta.get('Collections', [])}
        assert collections, f'{entry}: no Collections'
        models = meta.get('Models')
        assert isinstance(models, list) and models, f'{entry}: no Models'
        for model in models:
            where = f'{entry}: {model.get("Name")}'
            assert model.get('Name') and model['Name'] not in names, where
            names.add(model['Name'])
            assert model.get('In Collection') in collections, where
            config = model.get('Config')
            assert config and (ROOT / config).is_file(), \
                f'{where}: config {config} does not exist'
            weights = model.get('Weights')
            if weights and not re.match(r'^[a-z]+://', weights):
                assert (ROOT / weights).is_file(), \
                    f'{where}: weights {weights} do not exist'
            for result in model.get('Results') or []:
                assert result.get('Task') and result.get('Dataset'), where
                metrics = result.get('Metrics')
                assert isinstance(metrics, dict) and metrics, where
                assert all(isinstance(v, (int, float))
                           for v in metrics.values()), where


def test_citation_names_the_package_version():
    scope = {}
    exec((ROOT / 'sera_mm' / 'version.py').read_text(encoding='utf-8'),
         scope)
    citation = load_yaml(ROOT / 'CITATION.cff')
    assert str(citation['version']) == scope['__version__']
    assert any('2603.12538' in str(ref.get('url', ''))
               for ref in citation.get('references', []))
