"""What every attempt of a run records about where it ran: the commit
(``git``) and the CPU threads of its torch."""
import os
import subprocess
from typing import Optional

from .plan import ROOT


def git_commit(root: str = ROOT) -> Optional[str]:
    """``HEAD``'s commit id (``+dirty`` when tracked files differ), or None
    outside a git checkout."""
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root,
                              capture_output=True, text=True, check=True)
        dirty = subprocess.run(['git', 'status', '--porcelain',
                                '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    commit = head.stdout.strip()
    return commit + ('+dirty' if dirty.stdout.strip() else '')


def cpu_threads() -> Optional[int]:
    """Threads a run's torch uses: ``OMP_NUM_THREADS`` if set to a number,
    else the CPU count. CPU threads change float summation order (not the
    seed's initialisation or data order), so every attempt records them."""
    value = os.environ.get('OMP_NUM_THREADS', '').strip()
    return int(value) if value.isdigit() else os.cpu_count()


def short_commit(commit: str) -> str:
    """``'0123abc'`` (``'0123abc+'`` for a dirty tree) of a recorded
    commit."""
    return commit[:7] + ('+' if commit.endswith('+dirty') else '')
