"""Training speed of two runs that shared the machine, from their logs.

Two training runs started side by side (e.g. a config and its faster
variant, each with one thread on a 2-core machine) see the same machine
speed while both are training; their iteration rates over that common
wall-clock window are a fair before/after ratio even when the machine's
speed drifts between invocations::

    python tools/analysis/train_speed.py RUN_A/LOG RUN_B/LOG [--out speed.md]

Each argument is an mmengine log file (``<work_dir>/<timestamp>/<timestamp>
.log``) or a work dir / timestamp dir holding one. Reads the timestamped
``Iter(train) [i/N] ... time: t`` lines; reports, for each run, the
iterations done inside the window, seconds per iteration from the
timestamps, the median logged ``time`` and images per second (with
``--batch-size``), and the ratio b / a (below 1: b is faster).
"""
import argparse
import datetime as dt
import glob
import os
import os.path as osp
import re
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

LINE = re.compile(
    r'^(?P<stamp>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - '
    r'Iter\(train\) \[\s*(?P<iter>\d+)/\s*\d+\].*?\btime: (?P<time>[\d.]+)')

Point = Tuple[dt.datetime, int, float]


def find_log(path: str) -> str:
    """``path`` itself if it is a file, else the newest ``*.log`` under it
    (a work dir holds ``<timestamp>/<timestamp>.log``)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such log file or folder')
    logs = glob.glob(osp.join(path, '*.log')) + glob.glob(
        osp.join(path, '*', '*.log'))
    if not logs:
        raise FileNotFoundError(f'{path}: no mmengine log (*.log) in it or '
                                'in its timestamp folders')
    return max(logs, key=os.path.getmtime)


def read_points(log: str) -> List[Point]:
    """(timestamp, iteration, logged seconds per iteration) of every
    training log line of ``log``."""
    points = []
    with open(log, encoding='utf-8', errors='replace') as f:
        for line in f:
            m = LINE.match(line)
            if m:
                points.append((dt.datetime.strptime(m['stamp'],
                                                    '%Y/%m/%d %H:%M:%S'),
                               int(m['iter']), float(m['time'])))
    if len(points) < 2:
        raise ValueError(f'{log}: fewer than two timestamped training '
                         "iteration lines ('Iter(train) [i/N] ... time:')")
    return points


def window_rate(points: Sequence[Point], start: dt.datetime,
                end: dt.datetime) -> Optional[Dict[str, float]]:
    """Iterations and seconds per iteration of the lines inside
    [start, end] (None if fewer than two fall inside)."""
    inside = [p for p in points if start <= p[0] <= end]
    if len(inside) < 2 or inside[-1][1] == inside[0][1]:
        return None
    seconds = (inside[-1][0] - inside[0][0]).total_seconds()
    iters = inside[-1][1] - inside[0][1]
    return dict(first_iter=inside[0][1], last_iter=inside[-1][1],
                iters=iters, seconds=seconds, s_per_iter=seconds / iters,
                median_logged=statistics.median(p[2] for p in inside))


def compare_logs(log_a: str, log_b: str,
                 batch_size: Optional[int] = None) -> Dict[str, object]:
    """Both runs' rates over the window in which both were training.

    Raises:
        ValueError: the runs did not train at the same time (no window
            with at least two log lines of each).
    """
    a, b = read_points(log_a), read_points(log_b)
    start, end = max(a[0][0], b[0][0]), min(a[-1][0], b[-1][0])
    ra, rb = window_rate(a, start, end), window_rate(b, start, end)
    if start >= end or ra is None or rb is None:
        raise ValueError(
            f'the runs did not train at the same time: {log_a} logged '
            f'{a[0][0]}-{a[-1][0]}, {log_b} {b[0][0]}-{b[-1][0]}')
    out: Dict[str, object] = dict(start=start, end=end, a=ra, b=rb,
                                  ratio=rb['s_per_iter'] / ra['s_per_iter'],
                                  logged_ratio=rb['median_logged'] /
                                  ra['median_logged'])
    if batch_size:
        for r in (ra, rb):
            r['images_per_s'] = batch_size / r['s_per_iter']
    return out


def format_result(res: Dict[str, object], log_a: str, log_b: str) -> str:
    lines = ['# Training speed over a common window', '',
             f'Window: {res["start"]} - {res["end"]} (both runs training).',
             '', f'- a: `{log_a}`', f'- b: `{log_b}`', '',
             '| run | iterations | s / iteration | median logged time (s) '
             '| images / s |', '| --- | --- | ---: | ---: | ---: |']
    for key in ('a', 'b'):
        r = res[key]
        ips = f'{r["images_per_s"]:.2f}' if 'images_per_s' in r else ''
        lines.append(f'| {key} | {r["first_iter"]}-{r["last_iter"]} '
                     f'({r["iters"]}) | {r["s_per_iter"]:.3f} | '
                     f'{r["median_logged"]:.3f} | {ips} |')
    lines += ['', f'b / a time per iteration: **{res["ratio"]:.3f}** '
              f'(median logged times: {res["logged_ratio"]:.3f}); below 1: '
              'b is faster.', '']
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('a', help='log file or work dir of run a')
    parser.add_argument('b', help='log file or work dir of run b')
    parser.add_argument('--batch-size', type=int,
                        help='images per iteration (adds images / s)')
    parser.add_argument('--out', help='write the markdown table here')
    return parser.parse_args(argv)


def main(argv=None) -> Dict[str, object]:
    args = parse_args(argv)
    log_a, log_b = find_log(args.a), find_log(args.b)
    res = compare_logs(log_a, log_b, args.batch_size)
    text = format_result(res, args.a, args.b)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
    print(text)  # after the file: a closed pipe cannot lose it
    return res


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
