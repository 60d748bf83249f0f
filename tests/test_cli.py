"""``run_cli``: expected errors of the command-line tools are one
``error:`` line and an exit status, ``--debug``/``SERA_DEBUG=1`` keep the
traceback; every tool uses it."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sera_mm.utils.cli import (EXIT_BAD_INPUT, EXIT_RUNTIME_ERROR,
                               add_debug_argument, debug_requested,
                               error_message, run_cli)

REPO = Path(__file__).resolve().parents[1]
TOOLS = ['train.py', 'test.py', 'infer.py', 'publish_checkpoint.py',
         'analysis/router_stats.py', 'analysis/param_report.py',
         'analysis/benchmark.py']


def _raiser(exc):
    def main(argv):
        raise exc
    return main


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    monkeypatch.delenv('SERA_DEBUG', raising=False)


@pytest.mark.parametrize('exc,status', [
    (ValueError('text[0]: expected a non-empty expression'), EXIT_BAD_INPUT),
    (FileNotFoundError('config file not found: x.py'), EXIT_BAD_INPUT),
    (KeyError('x.py has no test_dataloader'), EXIT_BAD_INPUT),
    (FileExistsError('out.pth exists; pass --force'), EXIT_BAD_INPUT),
    (OSError('No space left on device'), EXIT_BAD_INPUT),
    (RuntimeError('checkpoint does not match'), EXIT_RUNTIME_ERROR),
])
def test_expected_errors_are_one_line_and_a_status(exc, status):
    err = io.StringIO()
    with pytest.raises(SystemExit) as info:
        run_cli(_raiser(exc), ['a', 'b'], stderr=err)
    assert info.value.code == status
    assert err.getvalue() == f'error: {exc.args[0]}\n'


def test_multiline_message_is_joined_on_one_line():
    err = io.StringIO()
    with pytest.raises(SystemExit):
        run_cli(_raiser(ValueError('mismatches:\n  a.b: 1 != 2\n  c: x\n')),
                [], stderr=err)
    assert err.getvalue() == 'error: mismatches: a.b: 1 != 2 c: x\n'
    assert error_message(ValueError()) == 'ValueError'


def test_debug_flag_and_env_keep_the_traceback(monkeypatch):
    exc = ValueError('bad')
    with pytest.raises(ValueError, match='bad'):
        run_cli(_raiser(exc), ['cfg.py', '--debug'])
    assert not debug_requested(['cfg.py', '--', '--debug'])
    monkeypatch.setenv('SERA_DEBUG', '1')
    with pytest.raises(ValueError, match='bad'):
        run_cli(_raiser(exc), ['cfg.py'])
    monkeypatch.setenv('SERA_DEBUG', '0')
    with pytest.raises(SystemExit):
        run_cli(_raiser(exc), ['cfg.py'], stderr=io.StringIO())


def test_other_errors_and_success_pass_through():
    with pytest.raises(TypeError):  # a bug keeps its traceback
        run_cli(_raiser(TypeError('bug')), [])
    seen = []

    def main(argv):
        seen.append(argv)
        return {'ok': 1}

    assert run_cli(main, ['x', '--y']) == {'ok': 1}
    assert seen == [['x', '--y']]


def test_add_debug_argument():
    import argparse
    parser = argparse.ArgumentParser()
    add_debug_argument(parser)
    assert parser.parse_args(['--debug']).debug is True
    assert parser.parse_args([]).debug is False


def _run(args, **env):
    return subprocess.run(
        [sys.executable, *args], cwd=str(REPO), capture_output=True,
        text=True, timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', **env))


@pytest.mark.parametrize('tool', TOOLS)
def test_every_tool_uses_run_cli(tool):
    source = (REPO / 'tools' / tool).read_text()
    main_block = source.split("if __name__ == '__main__':", 1)[1]
    assert 'run_cli(main' in main_block, tool


@pytest.mark.parametrize('tool,args', [
    ('train.py', ['missing_cfg.py']),
    ('test.py', ['missing_cfg.py', 'missing.pth']),
    ('publish_checkpoint.py', ['missing.pth', 'out.pth']),
    ('analysis/router_stats.py', ['missing_cfg.py', 'missing.pth']),
])
def test_tools_answer_a_missing_file_with_one_line(tool, args, tmp_path):
    args = [str(tmp_path / a) for a in args]
    proc = _run([str(REPO / 'tools' / tool), *args])
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert 'Traceback' not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'missing' in errors[0], proc.stderr
    assert proc.stderr.rstrip('\n').splitlines()[-1] == errors[0]


def test_tool_debug_keeps_the_traceback(tmp_path):
    args = [str(REPO / 'tools' / 'publish_checkpoint.py'),
            str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth')]
    for proc in (_run([*args, '--debug']), _run(args, SERA_DEBUG='1')):
        assert proc.returncode == 1  # the uncaught exception
        assert 'Traceback' in proc.stderr
        assert 'FileNotFoundError' in proc.stderr
        assert 'missing.pth' in proc.stderr


@pytest.mark.parametrize('tool,head', [
    ('infer.py', ['cfg.py', 'ckpt.pth']),
    ('deployment/onnx_infer.py', ['model.onnx']),
])
@pytest.mark.parametrize('rest,message', [
    ([], 'give --image with --text, or --pairs'),
    (['--image', 'a.png'], '--image needs at least one --text'),
    (['--pairs', 'p.json', '--text', 'the dog'], '--text needs --image'),
])
def test_inference_tools_share_the_job_argument_checks(tool, head, rest,
                                                       message, capsys):
    """tools/infer.py and onnx_infer.py declare and check --image/--text/
    --pairs/--out-dir through one helper (prediction_io)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        f'job_args_{tool.replace("/", "_")}', str(REPO / 'tools' / tool))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as info:
        module.parse_args(head + rest)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    args = module.parse_args(head + ['--image', 'a.png', '--text', 'x'])
    assert args.out_dir == 'infer_out' and args.pairs is None


def test_check_base_argument_is_shared():
    import argparse

    from sera_mm.utils.cli import add_check_base_argument
    parser = argparse.ArgumentParser()
    add_check_base_argument(parser)
    assert parser.parse_args([]).check_base == 'error'
    assert parser.parse_args(['--check-base', 'warn']).check_base == 'warn'
    with pytest.raises(SystemExit):
        parser.parse_args(['--check-base', 'maybe'])
    for tool in ('test.py', 'demo/app.py', 'deployment/pytorch2onnx.py',
                 'deployment/onnx_latency.py', 'analysis/router_stats.py'):
        text = (REPO / 'tools' / tool).read_text(encoding='utf-8')
        assert 'add_check_base_argument(parser)' in text, tool
        assert "'--check-base'" not in text, tool
