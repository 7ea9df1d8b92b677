"""Coding many images together: the same files as one at a time, and each file its own verdict."""

import numpy as np
import pytest
from conftest import float_file, photo_like

from nfcompress.codec import Codec
from nfcompress.coders.flow.tiles import runs as _runs
from nfcompress.errors import ChecksumError, FormatError, ModelMismatch, NfcError


def _images() -> list[np.ndarray]:
    """Small images of every mode and several shapes, some of several chunks."""
    shapes = [(32, 32, 3), (32, 32, 3), (24, 30, 3), (40, 72, 3), (32, 32, 1), (20, 21, 2), (31, 40, 4), (70, 45, 3)]
    images = [photo_like(h, w, c, seed=i) for i, (h, w, c) in enumerate(shapes)]
    return [im[..., 0] if im.shape[2] == 1 else im for im in images]


@pytest.fixture(scope="module")
def portable(tiny_models_dir) -> Codec:
    return Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=4, coder="flow")


@pytest.mark.parametrize("effort", [1, 3])
def test_encode_many_writes_the_files_encode_writes(portable, effort):
    images = _images()
    many = portable.encode_many(images, effort=effort)
    alone = [portable.encode(im, effort=effort) for im in images]
    assert [r.data for r in many] == [r.data for r in alone]
    assert [r.ideal_bits for r in many] == pytest.approx([r.ideal_bits for r in alone])


def test_old_float_files_decode_one_at_a_time_among_many(portable):
    images = _images()[:4]
    out = portable.decode_many([float_file(portable, im) for im in images])
    assert all(np.array_equal(got, want) for got, want in zip(out, images))


def test_decode_many_gives_every_image_back(portable):
    images = _images()
    datas = [r.data for r in portable.encode_many(images)] + [float_file(portable, images[0])]
    out = portable.decode_many(datas)
    for got, want in zip(out, [*images, images[0]]):
        assert isinstance(got, np.ndarray) and np.array_equal(got, want)


def test_a_bad_file_among_many_fails_alone(portable, tiny_models_dir):
    images = _images()
    datas = [r.data for r in portable.encode_many(images)]
    damaged = bytearray(datas[1])
    damaged[-6] ^= 0x40
    other = float_file(Codec.load(str(tiny_models_dir / "plain.safetensors"), tile=32, batch=4), images[2])
    datas[1], datas[2], datas[3] = bytes(damaged), other, b"not a file"
    out = portable.decode_many(datas)
    assert isinstance(out[1], (ChecksumError, FormatError))
    assert isinstance(out[2], ModelMismatch)
    assert isinstance(out[3], FormatError)
    for i in (0, 4, 5, 6, 7):
        assert np.array_equal(out[i], images[i])
    with pytest.raises(NfcError):
        portable.decode(datas[1])


def test_runs_share_a_key_up_to_the_batch_and_none_runs_alone():
    jobs = [(2, "a"), (1, "b"), (2, "a"), (1, "a"), (3, None), (1, None), (1, "b")]
    assert _runs(jobs, 4) == [[0, 2], [1, 6], [3], [4], [5]]


def test_run_jobs_sends_large_inputs_alone_and_small_ones_together():
    from nfcompress.batch import SMALL, run_jobs

    calls = []

    def fn(pairs):
        calls.append([src for src, _ in pairs])
        return [{"input": src} for src, _ in pairs]

    sizes = {"a": 10, "big": SMALL + 1, "b": 10, "c": SMALL, "d": 10}
    jobs = [(src, src + ".out") for src in sizes]
    got = list(run_jobs(fn, jobs, 1, sizes.get))
    assert sorted(src for src, _ in got) == sorted(sizes) and all(r["input"] == src for src, r in got)
    assert calls == [["big"], ["a", "b", "c", "d"]]
    calls.clear()
    list(run_jobs(fn, jobs, 1))  # without sizes, every input goes alone
    assert calls == [[src] for src in sizes]


def test_run_jobs_gives_the_workers_the_largest_inputs_first(monkeypatch):
    from concurrent.futures import Future

    from nfcompress import batch

    submitted, events = [], []

    class InOrder:
        """A pool that runs each job at once, in the order it is given."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args, **kw):
            if args:
                submitted.append([src for src, _ in args[0]])
            else:
                events.append("worker started")
            done = Future()
            done.set_result(fn(*args, **kw))
            return done

    def sized(src):
        events.append("sized")
        return sizes[src]

    monkeypatch.setattr(batch, "worker_pool", lambda *args: InOrder())
    sizes = {"a": batch.SMALL + 5, "b": 10, "big": batch.SMALL * 9, "c": 20, "mid": batch.SMALL * 2}
    jobs = [(src, src + ".out") for src in sizes]
    got = list(batch.run_jobs(lambda pairs: [{"input": s} for s, _ in pairs], jobs, 2, sized))
    assert sorted(src for src, _ in got) == sorted(sizes)
    assert submitted == [["big"], ["mid"], ["a"], ["b", "c"]]
    # Both workers are set going before the inputs are sized, which takes a while for many files.
    assert events == ["worker started"] * 2 + ["sized"] * len(sizes)
