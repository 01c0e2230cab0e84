import numpy as np
import pytest

from melcnn.chunking import ChunkStream, chunk
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


def _random_blocks(y: np.ndarray, rng: np.random.Generator, largest: int) -> list[np.ndarray]:
    """``y`` cut at random places into blocks of 0 to ``largest`` samples."""
    cuts = np.cumsum(rng.integers(0, largest + 1, size=2 * len(y) // max(largest, 1) + 2))
    return np.split(y, cuts[cuts < len(y)])


@pytest.mark.parametrize(("overlap_s", "batch", "largest"), [(0.0, 16, 70_000), (1.5, 16, 5_000), (2.5, 3, 200_000)])
def test_chunk_stream_hands_out_chunks_of_the_whole_signal_in_batches(rng, overlap_s, batch, largest):
    y = rng.standard_normal(int(61.3 * SR)).astype(np.float32)
    whole = chunk(y, sr=SR, chunk_s=3.0, overlap_s=overlap_s)
    stream = ChunkStream(sr=SR, chunk_s=3.0, overlap_s=overlap_s, batch=batch)
    batches, kept, allocated = [], 0, 0
    for block in _random_blocks(y, rng, largest):
        batches += stream.push(block)
        kept = max(kept, stream.n_samples - stream.n_chunks * stream.step)  # from the next chunk's start
        allocated = max(allocated, stream._buf.size)
    assert all(len(b) == batch for b in batches)
    batches += stream.flush()
    assert 1 <= len(batches[-1]) <= batch and stream.flush() == []
    got = np.concatenate(batches)
    np.testing.assert_array_equal(got, whole.samples)
    starts, ends = stream.times()
    assert starts.tolist() == whole.starts_s.tolist() and ends.tolist() == whole.ends_s.tolist()
    # what is kept: less than one batch's span, and the buffer for it (and a block), not the signal
    span = (batch - 1) * stream.step + 3 * SR
    assert kept < span and allocated <= 2 * (span + largest)


def test_chunk_stream_of_a_short_signal_has_no_chunks():
    stream = ChunkStream(sr=SR, chunk_s=3.0)
    assert stream.push(np.ones(2 * SR, np.float32)) == [] and stream.flush() == []
    assert stream.n_chunks == 0 and stream.times()[0].size == 0
    with pytest.raises(MelcnnError, match="overlap"):
        ChunkStream(sr=SR, chunk_s=3.0, overlap_s=2.9)
