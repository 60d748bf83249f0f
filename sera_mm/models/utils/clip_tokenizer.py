"""A CLIP BPE tokenizer that builds offline.

If the pretrained folder holds tokenizer files they are used. Otherwise the
vocabulary is rebuilt from OpenAI's BPE merges file
(``bpe_simple_vocab_16e6.txt.gz``, shipped by the ``clip-anytorch`` package)
with OpenAI's construction: the 256 byte symbols, the same with ``</w>``,
one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``
(49408 tokens). ``vocab.json`` and ``merges.txt`` are written once into a
cache folder (atomically) and loaded by ``transformers.CLIPTokenizer``
(transformers 5: from the vocabulary and merges themselves; 4.x, whose
``CLIPTokenizer`` takes file paths: ``CLIPTokenizerFast`` from the two
files, the same tokenizers-backed BPE).
"""
import gzip
import importlib.util
import inspect
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

BPE_FILE = 'bpe_simple_vocab_16e6.txt.gz'
NUM_MERGES = 49152 - 256 - 2
DEFAULT_CACHE = osp.join('~', '.cache', 'sera_mm', 'clip_tokenizer')
_TOKENIZER_FILES = ('tokenizer.json', 'vocab.json', 'tokenizer_config.json')


def bytes_to_unicode() -> Dict[int, str]:
    """OpenAI/GPT-2's reversible byte -> printable unicode table."""
    bs = (list(range(ord('!'), ord('~') + 1)) +
          list(range(ord('¡'), ord('¬') + 1)) +
          list(range(ord('®'), ord('ÿ') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def find_clip_bpe_file() -> str:
    """Path of OpenAI's BPE merges file in the installed ``clip`` package.

    The package is located without being imported (importing it pulls in
    torchvision).
    """
    spec = importlib.util.find_spec('clip')
    dirs = list(spec.submodule_search_locations or []) if spec else []
    for folder in dirs:
        path = osp.join(folder, BPE_FILE)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'{BPE_FILE} not found: install the clip-anytorch package or give a '
        f'pretrained folder with tokenizer files')


def build_openai_vocab(bpe_path: str) -> Tuple[Dict[str, int], List[str]]:
    """OpenAI's vocabulary and merges from the gzipped BPE file."""
    with gzip.open(bpe_path, 'rt', encoding='utf-8') as f:
        lines = f.read().split('\n')
    merges = [tuple(m.split()) for m in lines[1:NUM_MERGES + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + '</w>' for s in byte_symbols]
    tokens += [''.join(m) for m in merges]
    tokens += ['<|startoftext|>', '<|endoftext|>']
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f'{bpe_path} gives duplicated tokens')
    return vocab, [' '.join(m) for m in merges]


def _write_cache(cache_dir: str, bpe_path: str) -> None:
    vocab, merges = build_openai_vocab(bpe_path)
    parent = osp.dirname(cache_dir.rstrip(os.sep))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.clip_tokenizer.', dir=parent)
    try:
        with open(osp.join(tmp, 'vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(osp.join(tmp, 'merges.txt'), 'w', encoding='utf-8') as f:
            f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
        try:
            os.rename(tmp, cache_dir)
        except OSError:  # another process finished first
            if not osp.isfile(osp.join(cache_dir, 'merges.txt')):
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def build_clip_tokenizer(pretrained: Optional[str] = None,
                         cache_dir: Optional[str] = None):
    """Return a ``transformers`` CLIP tokenizer without network access.

    Args:
        pretrained: a folder holding tokenizer files (or an HF hub id with a
            cached tokenizer); used when it has them.
        cache_dir: where ``vocab.json``/``merges.txt`` built from OpenAI's
            BPE file are kept (default ``~/.cache/sera_mm/clip_tokenizer``).
    """
    from transformers import AutoTokenizer, CLIPTokenizer

    if pretrained is not None:
        if osp.isdir(pretrained):
            if any(osp.isfile(osp.join(pretrained, n))
                   for n in _TOKENIZER_FILES):
                return AutoTokenizer.from_pretrained(pretrained)
        elif not osp.isfile(pretrained):
            try:  # hub id: the local cache, if it holds a tokenizer
                return AutoTokenizer.from_pretrained(pretrained)
            except (OSError, ValueError):
                pass
    cache_dir = osp.abspath(osp.expanduser(cache_dir or DEFAULT_CACHE))
    if not (osp.isfile(osp.join(cache_dir, 'vocab.json'))
            and osp.isfile(osp.join(cache_dir, 'merges.txt'))):
        _write_cache(cache_dir, find_clip_bpe_file())
    vocab_file = osp.join(cache_dir, 'vocab.json')
    merges_file = osp.join(cache_dir, 'merges.txt')
    if 'vocab' not in inspect.signature(CLIPTokenizer.__init__).parameters:
        # transformers 4.x: CLIPTokenizer(vocab_file, merges_file) is the
        # slow python BPE; the fast one reads the same files
        from transformers import CLIPTokenizerFast
        return CLIPTokenizerFast(vocab_file=vocab_file,
                                 merges_file=merges_file)
    with open(vocab_file, encoding='utf-8') as f:
        vocab = json.load(f)
    with open(merges_file, encoding='utf-8') as f:
        merges = [tuple(line.split()) for line in f.read().split('\n')[1:]
                  if line.strip()]
    return CLIPTokenizer(vocab=vocab, merges=merges)
