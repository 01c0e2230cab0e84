import numpy as np
import pytest

from melcnn.chunking import chunk
from melcnn.errors import MelcnnError, TooShortError

SR = 16000


def test_v2_non_overlapping_whole_chunks_only():
    y = np.arange(int(10.2 * SR), dtype=np.float32)
    c = chunk(y, sr=SR, chunk_s=3.0, overlap_s=0.0)
    assert len(c) == 3
    assert c.starts_s.tolist() == [0.0, 3.0, 6.0]
    assert c.ends_s.tolist() == [3.0, 6.0, 9.0]
    assert c.samples.shape == (3, 3 * SR)
    # chunks are the signal's samples, in order
    assert c.samples[1, 0] == 3 * SR and c.samples[2, -1] == 9 * SR - 1


def test_v3_overlapping_matches_specification_example():
    y = np.ones(int(7.0 * SR), dtype=np.float32)
    c = chunk(y, sr=SR, chunk_s=3.0, overlap_s=1.5)
    assert c.starts_s.tolist() == [0.0, 1.5, 3.0]
    assert c.ends_s.tolist() == [3.0, 4.5, 6.0]
    # the specification's while-loop, literally
    chunk_len, step = int(3.0 * SR), int(3.0 * SR) - int(1.5 * SR)
    starts, s = [], 0
    while s + chunk_len <= len(y):
        starts.append(s)
        s += step
    assert (np.array(starts) / SR).tolist() == c.starts_s.tolist()


def test_exactly_one_chunk():
    c = chunk(np.ones(3 * SR, dtype=np.float32), sr=SR, chunk_s=3.0, overlap_s=1.5)
    assert len(c) == 1


def test_too_short_says_duration_and_minimum():
    with pytest.raises(TooShortError, match=r"2\.50 s long, shorter than one 3 s chunk") as info:
        chunk(np.ones(int(2.5 * SR), dtype=np.float32), sr=SR, chunk_s=3.0)
    assert info.value.duration_s == pytest.approx(2.5)
    assert info.value.minimum_s == 3.0


@pytest.mark.parametrize("bad", [-0.1, 2.51, 2.9, 3.0, 4.0, float("nan"), "x"])
def test_overlap_must_be_at_most_chunk_less_half_a_second(bad):
    with pytest.raises(MelcnnError, match=r"overlap must be a number of seconds from 0 to 2\.5"):
        chunk(np.ones(6 * SR, dtype=np.float32), sr=SR, chunk_s=3.0, overlap_s=bad)
    assert len(chunk(np.ones(6 * SR, dtype=np.float32), sr=SR, chunk_s=3.0, overlap_s=2.5)) == 7
