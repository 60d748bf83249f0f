"""The ablation reports: ``ablations.md`` / ``ablations.csv`` (one row per
config: overall mIoU, oIoU, Prec@0.5, Prec@0.9 and the mIoU of every
expression type on each split, trainable parameters, time and the commit
the runs ran at; rows with several seeds show mean +- sample standard
deviation) and ``paired.md`` / ``paired.csv`` (the paired comparisons of
:mod:`.compare`)."""
import csv
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from .compare import PairedResult
from .plan import RunSpec
from .provenance import short_commit
from .stats import BOOTSTRAP_RESAMPLES, CLUSTER_PLURALS
from .summary import (EXPR_TYPES, OVERALL_METRICS, RowSummary,
                      significant_differences, summarize, table_columns)


# ------------------------------------------------------------ ablations.md
def _fmt_value(value: Optional[Tuple[float, Optional[float]]]) -> str:
    if value is None:
        return '-'
    mean, std = value
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def _fmt_params(n: Optional[int]) -> str:
    if n is None:
        return '-'
    return f'{n / 1e6:.2f}M' if n >= 1e5 else str(n)


def _fmt_minutes(seconds: Optional[float]) -> str:
    return '-' if seconds is None else f'{seconds / 60:.1f}'


def format_markdown(summaries: Sequence[RowSummary],
                    splits: Sequence[str]) -> str:
    """One Markdown table per split (rows = configs), then the seed line."""
    out = ['# Ablations', '',
           'Metrics in percent; rows with several seeds show mean ± sample '
           'std. Per-type columns are mIoU. Time: wall minutes of '
           '`tools/train.py` (training + final evaluation), mean per run.',
           '']
    head = (['row', 'runs'] + list(OVERALL_METRICS) + list(EXPR_TYPES) +
            ['trainable', 'time (min)', 'commit'])
    for split in splits:
        out += [f'## {split}', '', '| ' + ' | '.join(head) + ' |',
                '|' + '---|' * len(head)]
        for s in summaries:
            cells = [s.row, f'{s.n_done}/{s.n_runs}']
            cells += [_fmt_value(s.values.get(f'{split}/{m}'))
                      for m in OVERALL_METRICS]
            cells += [_fmt_value(s.values.get(f'{split}/{t}/mIoU'))
                      for t in EXPR_TYPES]
            cells += [_fmt_params(s.trainable_params),
                      _fmt_minutes(s.wall_time_s),
                      ' '.join(short_commit(c) for c in s.commits) or '-']
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    lines = significant_differences(summaries, splits)
    if lines:
        out += ['## Seed variation', ''] + lines + ['']
    return '\n'.join(out)


def csv_rows(summaries: Sequence[RowSummary],
             splits: Sequence[str]) -> Tuple[List[str], List[dict]]:
    """(header, rows) of the CSV: raw numbers, a ``<col>_std`` column beside
    every metric (empty without several seeds)."""
    header = ['row', 'config', 'runs', 'done', 'seeds', 'trainable_params',
              'total_params', 'wall_time_min', 'commits']
    for col in table_columns(splits):
        header += [col, f'{col}_std']
    rows = []
    for s in summaries:
        r = dict(row=s.row, config=s.config, runs=s.n_runs, done=s.n_done,
                 seeds=' '.join('cfg' if x is None else str(x)
                                for x in s.seeds),
                 trainable_params='' if s.trainable_params is None else
                 s.trainable_params,
                 total_params='' if s.total_params is None else
                 s.total_params,
                 wall_time_min='' if s.wall_time_s is None else
                 round(s.wall_time_s / 60, 3),
                 commits=' '.join(s.commits))
        for col in table_columns(splits):
            mean, std = s.values.get(col, (None, None))
            r[col] = '' if mean is None else round(mean, 4)
            r[f'{col}_std'] = '' if std is None else round(std, 4)
        rows.append(r)
    return header, rows


def write_tables(runs: Sequence[RunSpec], splits: Sequence[str],
                 out_dir: str) -> Tuple[str, str]:
    """Summarise ``runs`` and write ``<out_dir>/ablations.md`` and
    ``ablations.csv``; returns their paths."""
    summaries = summarize(runs, splits)
    os.makedirs(out_dir, exist_ok=True)
    md_path = osp.join(out_dir, 'ablations.md')
    csv_path = osp.join(out_dir, 'ablations.csv')
    with open(md_path, 'w') as f:
        f.write(format_markdown(summaries, splits))
    header, rows = csv_rows(summaries, splits)
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return md_path, csv_path


# --------------------------------------------------------------- paired.md
def cluster_sentences(results: Sequence[PairedResult],
                      resamples: int = BOOTSTRAP_RESAMPLES) -> List[str]:
    """What the per-seed bootstrap resampled: one sentence naming the
    cluster unit(s), and one more for every fallback from images (no
    image id in the per-expression records)."""
    units = []
    for r in results:
        units += [u for u in r.units if u not in units]
    order = [u for u in ('image', 'ref', 'expression') if u in units]
    if not order:
        order = ['image']  # nothing compared yet: what would be used
    names = ' / '.join(CLUSTER_PLURALS[u] for u in order)
    out = [f'Per seed: the mean difference with a 95% cluster bootstrap '
           f'interval ({resamples} resamples of {names}; all expressions '
           'of a resampled cluster go together, since expressions of one '
           'image are not independent).']
    if 'ref' in order:
        out.append('**Clusters: referred objects, not images** '
                   f'({_which(results, "ref")}): the per-expression files '
                   'carry no image id, so the bootstrap resamples referred '
                   'objects (`ref_id`) with all their expressions. Objects '
                   'nest inside images: these intervals leave out the '
                   'correlation between the objects of one image and can '
                   'be narrower than image intervals.')
    if 'expression' in order:
        out.append('**Clusters: single expressions** '
                   f'({_which(results, "expression")}): the per-expression '
                   'files carry neither an image nor an object id, so the '
                   'bootstrap resamples expressions as if independent; '
                   'these intervals are too narrow where expressions share '
                   'an image.')
    return out


def _which(results: Sequence[PairedResult], unit: str) -> str:
    """'every comparison' or the rows / splits whose bootstrap used
    ``unit``."""
    hit = [r for r in results if unit in r.units]
    if len(hit) == len(results):
        return 'every comparison'
    pairs = list(dict.fromkeys(f'{r.row} on {r.split}' for r in hit))
    return ', '.join(pairs)


def format_paired_md(results: Sequence[PairedResult], reference: str,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> str:
    """Markdown: per split, one table of overall differences and one of
    per-type differences."""
    boot = cluster_sentences(results, resamples)
    out = [f'# Paired differences from `{reference}`', '',
           f'mIoU difference (row minus `{reference}`, points) on the same '
           'expressions, seed by seed. ' + boot[0] + ' Across seeds: the '
           'mean of the per-seed differences with a 95% t interval (n - 1 '
           'df); with one seed, the bootstrap interval (which leaves out '
           'seed variance; marked `boot`). Verdict: `higher`/`lower` only '
           'when the interval excludes 0.', '']
    for note in boot[1:]:
        out += [note, '']
    splits: List[str] = []
    for r in results:
        if r.split not in splits:
            splits.append(r.split)

    def _cell(mean, low, high):
        return f'{mean:+.2f} [{low:+.2f}, {high:+.2f}]'

    for split in splits:
        rows = [r for r in results if r.split == split]
        out += [f'## {split}', '',
                '| row | seeds | per seed | mean [95% CI] | verdict |',
                '|---|---|---|---|---|']
        for r in rows:
            if r.group != 'all':
                continue
            per = '; '.join(f's{k}: {_cell(m, lo, hi)}'
                            for k, _, m, lo, hi in r.per_seed)
            tag = '' if r.interval == 't' else ' (boot)'
            out.append(f'| {r.row} | {len(r.per_seed)} | {per} | '
                       f'{_cell(r.mean, r.low, r.high)}{tag} | '
                       f'{r.verdict} |')
        types = sorted({r.group for r in rows if r.group != 'all'})
        if types:
            out += ['', f'Per expression type ({split}): mean [95% CI], '
                    'verdict.', '',
                    '| row | ' + ' | '.join(types) + ' |',
                    '|---|' + '---|' * len(types)]
            for row in dict.fromkeys(r.row for r in rows):
                cells = []
                for t in types:
                    hit = [r for r in rows if r.row == row and r.group == t]
                    if not hit:
                        cells.append('-')
                        continue
                    r = hit[0]
                    mark = {'higher': ' ↑', 'lower': ' ↓', 'n.s.': ''}[
                        r.verdict]
                    cells.append(_cell(r.mean, r.low, r.high) + mark)
                out.append(f'| {row} | ' + ' | '.join(cells) + ' |')
        out.append('')
    if not results:
        out.append('No paired runs finished yet.')
    return '\n'.join(out) + '\n'


PAIRED_CSV_FIELDS = ('row', 'split', 'group', 'seeds', 'mean', 'low',
                     'high', 'interval', 'verdict', 'per_seed', 'clusters')


def paired_csv_rows(results: Sequence[PairedResult]) -> List[List]:
    """Rows of ``paired.csv`` (:data:`PAIRED_CSV_FIELDS`): ``per_seed`` is
    ``seed:n:mean:low:high`` per seed, ``clusters`` ``seed:unit:count``
    (the bootstrap's clusters) per seed."""
    out = []
    for r in results:
        out.append([
            r.row, r.split, r.group, len(r.per_seed), round(r.mean, 4),
            round(r.low, 4), round(r.high, 4), r.interval, r.verdict,
            ' '.join(f'{k}:{n}:{m:.4f}:{lo:.4f}:{hi:.4f}'
                     for k, n, m, lo, hi in r.per_seed),
            ' '.join(f'{k}:{unit}:{n}' for k, unit, n in r.clusters)])
    return out


def write_paired(results: Sequence[PairedResult], reference: str,
                 out_dir: str, resamples: int = BOOTSTRAP_RESAMPLES
                 ) -> Tuple[str, str]:
    """Write ``<out_dir>/paired.md`` and ``paired.csv``."""
    os.makedirs(out_dir, exist_ok=True)
    md_path = osp.join(out_dir, 'paired.md')
    csv_path = osp.join(out_dir, 'paired.csv')
    with open(md_path, 'w') as f:
        f.write(format_paired_md(results, reference, resamples))
    with open(csv_path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(PAIRED_CSV_FIELDS)
        writer.writerows(paired_csv_rows(results))
    return md_path, csv_path

