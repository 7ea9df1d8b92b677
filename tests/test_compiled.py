"""Compiled loops: cached where a folder can be written, compiled anyway where none can."""

from nfcompress.compiled import compiled


def _add(a, b):
    return a + b


def test_a_loop_compiles_without_a_cache_where_numba_finds_no_folder_to_write(monkeypatch):
    from numba.core.dispatcher import Dispatcher

    def no_folder(self):
        raise RuntimeError("cannot cache function '_add': no locator available for file 'x.py'")

    monkeypatch.setattr(Dispatcher, "enable_caching", no_folder)
    add = compiled(_add)
    assert add(2, 3) == 5 and add.py_func is _add
    assert add.signatures  # it ran compiled, not as Python


def test_a_loop_is_cached_where_a_folder_can_be_written():
    add = compiled(_add)
    assert add(2, 3) == 5 and add._cache.cache_path  # numba's cache of it
