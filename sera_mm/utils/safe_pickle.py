"""Read pickles that hold only plain data, refusing everything else.

The REFER toolkit ships its annotations (``refs(<split_by>).p``) as pickles.
``pickle.load`` on such a file runs whatever callable the file names (a
crafted ``refs(unc).p`` whose ``__reduce__`` returns ``os.system`` runs a
shell command), so these files are read with :class:`PlainUnpickler`, whose
``find_class`` resolves only the builtin containers and scalars a REFER file
can contain: ``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``,
``bytes``, ``int``, ``float``, ``bool`` (and ``None``, which needs no lookup),
plus ``_codecs.encode`` restricted to the one call python 3 pickles ``bytes``
with at protocols < 3 (``encode(<str>, 'latin1')``). Any other global (a
function, a class, a module attribute) raises :class:`UnsafePickleError`
naming the file and the refused ``module.name``.
"""
import codecs
import pickle
from typing import Any

#: Builtin names a plain-data pickle may look up. Protocols 0-2 pickle
#: ``set``/``frozenset`` (and empty ``bytes``) by reducing to the type, so
#: the types themselves are looked up; python-2 pickles name the module
#: ``__builtin__``.
PLAIN_BUILTINS = frozenset({'dict', 'list', 'tuple', 'set', 'frozenset',
                            'str', 'bytes', 'int', 'float', 'bool'})
_BUILTIN_MODULES = ('builtins', '__builtin__')


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the plain-data allow-list."""


def _is_latin1(encoding: Any) -> bool:
    try:
        return codecs.lookup(encoding).name == 'iso8859-1'
    except (LookupError, TypeError):
        return False


class PlainUnpickler(pickle.Unpickler):
    """An unpickler whose globals are limited to :data:`PLAIN_BUILTINS`.

    Args:
        file: a binary file object.
        name: how to name the source in errors (the file path).
        **kwargs: :class:`pickle.Unpickler` arguments (``encoding``,
            ``errors``, ``fix_imports``).
    """

    def __init__(self, file: Any, name: str = '<pickle>', **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if module in _BUILTIN_MODULES and name in PLAIN_BUILTINS:
            return super().find_class(module, name)
        if (module, name) == ('_codecs', 'encode'):
            return self._latin1_encode
        raise UnsafePickleError(
            f'{self.name}: refused to unpickle global {module}.{name}; '
            f'only plain data is allowed (builtins '
            f'{", ".join(sorted(PLAIN_BUILTINS))}, None) -- the file is '
            f'not a plain-data pickle or was tampered with')

    def _latin1_encode(self, obj: Any, encoding: str = 'utf-8') -> bytes:
        """Stand-in for ``_codecs.encode``, with which python 3 pickles
        ``bytes`` at protocols < 3 (``encode(str(b, 'latin1'), 'latin1')``).
        Only that call is allowed: a ``str`` argument and the latin-1
        codec."""
        if not isinstance(obj, str) or not _is_latin1(encoding):
            raise UnsafePickleError(
                f'{self.name}: refused _codecs.encode({type(obj).__name__}, '
                f'{encoding!r}); only encode(<str>, "latin1"), how bytes are '
                f'pickled, is allowed')
        return obj.encode('latin-1')

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f'{self.name}: refused persistent id {pid!r}; only plain data is '
            f'allowed')


def load_plain_pickle(path: str, encoding: str = 'ASCII',
                      errors: str = 'strict') -> Any:
    """Unpickle ``path`` allowing only plain builtin data.

    Args:
        path: the pickle file.
        encoding, errors: how python-2 ``str`` objects are decoded (as for
            :func:`pickle.load`; ``encoding='bytes'`` keeps them as bytes).

    Returns:
        The unpickled object (nested builtin containers and scalars).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the pickle names a global outside the allow-list
            (the message names ``path`` and the refused ``module.name``).
        pickle.UnpicklingError, UnicodeDecodeError, EOFError: a malformed
            pickle, or python-2 strings that ``encoding`` cannot decode.
    """
    with open(path, 'rb') as f:
        return PlainUnpickler(f, name=str(path), encoding=encoding,
                              errors=errors).load()
