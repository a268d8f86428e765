"""Rows computed once and read back every epoch, in memory or spilled to a scratch file."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import AugmentConfig
from tlcli.data.dataset import load_dataset
from tlcli.data.pipeline import decode_into_cache, epoch_counter, image_dataset, row_dataset, tf
from tlcli.data.row_cache import RowCache


def _decoded_rows(samples, image_size, **cache_options):
    """A cache of every sample's decoded image, filled by the decoding pipeline itself."""
    cache = RowCache(len(samples), (image_size, image_size, 3), np.float32, **cache_options)
    for images, _, indices in image_dataset(samples, image_size, 5, with_index=True):
        cache.write(indices.numpy(), images.numpy())
    return cache


def _batches(dataset):
    return [tuple(part.numpy() for part in batch) for batch in dataset]


@pytest.mark.parametrize("memory_budget", [2**30, 0], ids=["in memory", "spilled to disk"])
def test_cached_rows_come_back_in_the_decoding_pipelines_own_batches(flat_dataset, tmp_path, memory_budget):
    samples = list(load_dataset(flat_dataset).split("train"))
    samples[3].path.write_bytes(b"garbage now")  # fails to decode: both routes drop it alone
    cache = _decoded_rows(samples, 16, memory_budget=memory_budget, scratch_dir=tmp_path / "scratch")
    assert cache.in_memory == (memory_budget > 0)
    assert cache.nbytes == len(samples) * 16 * 16 * 3 * 4
    assert list(np.flatnonzero(~cache.filled)) == [3]
    assert list((tmp_path / "scratch").glob("*")) == []  # a spilled cache leaves no file, even if killed
    for epoch in range(2):
        options = dict(shuffle=True, seed=7, with_index=True, shard=(2, 1))
        expected = _batches(image_dataset(samples, 16, 4, **options))
        got = _batches(row_dataset(cache, samples, 4, **options))
        assert len(got) == len(expected) > 1
        for (rows, labels, indices), (images, image_labels, image_indices) in zip(got, expected):
            np.testing.assert_array_equal(indices, image_indices)
            np.testing.assert_array_equal(labels, image_labels)
            np.testing.assert_array_equal(rows, images)
    cache.close()


def test_each_epoch_is_shuffled_as_the_decoding_pipeline_shuffles_it(flat_dataset):
    samples = load_dataset(flat_dataset).split("train")
    cache = RowCache(len(samples), (1,), np.int64, memory_budget=2**20)
    cache.write(np.arange(len(samples)), np.arange(len(samples))[:, None])
    counter = epoch_counter()
    orders = []
    for number in (0, 1, 0):
        counter.assign(number)
        rows = np.concatenate([batch[0].numpy()[:, 0] for batch in row_dataset(cache, samples, 4, shuffle=True,
                                                                               seed=1, epoch=counter)])
        images = np.concatenate([batch[2].numpy() for batch in image_dataset(samples, 8, 4, shuffle=True, seed=1,
                                                                             epoch=counter, with_index=True)])
        np.testing.assert_array_equal(rows, images)
        orders.append(list(rows))
    assert orders[0] == orders[2] != orders[1]
    assert sorted(orders[1]) == list(range(len(samples)))


def test_images_decoded_once_are_the_decoding_pipelines_rounded_and_augmented_alike(flat_dataset, tmp_path):
    samples = list(load_dataset(flat_dataset).split("train"))
    samples[3].path.write_bytes(b"garbage now")
    augment = build_augmenter(AugmentConfig(flip="horizontal", brightness=0.3), seed=2)
    in_memory = decode_into_cache(samples, 16, 5)
    spilled = decode_into_cache(samples, 16, 5, memory_budget=0, scratch_dir=tmp_path / "scratch")
    assert in_memory.in_memory and not spilled.in_memory and list((tmp_path / "scratch").glob("*")) == []
    assert in_memory.dtype == np.uint8 and in_memory.nbytes == len(samples) * 16 * 16 * 3
    assert list(np.flatnonzero(~spilled.filled)) == [3]
    counter = epoch_counter()
    for number in (0, 1):
        counter.assign(number)
        options = dict(shuffle=True, seed=7, epoch=counter, with_index=True, augment=augment)
        expected = _batches(image_dataset(samples, 16, 4, **options))
        got = {name: _batches(row_dataset(cache, samples, 4, dtype=tf.float32, **options))
               for name, cache in (("in memory", in_memory), ("spilled", spilled))}
        assert len(got["spilled"]) == len(expected) > 1
        for (memory_rows, *_), (spilled_rows, labels, indices), (images, image_labels, image_indices) in zip(
                got["in memory"], got["spilled"], expected, strict=True):
            np.testing.assert_array_equal(indices, image_indices)
            np.testing.assert_array_equal(labels, image_labels)
            np.testing.assert_array_equal(spilled_rows, memory_rows)
            assert spilled_rows.dtype == np.float32
            # The same flips and brightness, batch for batch: only the rounding to uint8 differs,
            # at most half a level (scaled by the brightness change, which adds, never scales).
            np.testing.assert_allclose(spilled_rows, images, atol=0.5 + 1e-4)
            assert not np.array_equal(spilled_rows, images)
    in_memory.close()
    spilled.close()


@pytest.mark.parametrize("memory_budget", [2**20, 0], ids=["in memory", "spilled to disk"])
def test_rows_are_read_back_in_any_order_as_they_were_written(tmp_path, memory_budget):
    from tlcli.data.row_cache import where

    rows = np.random.default_rng(0).normal(size=(7, 3, 2)).astype(np.float32)
    with RowCache(7, (3, 2), np.float32, memory_budget=memory_budget, scratch_dir=tmp_path) as cache:
        cache.write([4, 0, 6], rows[[4, 0, 6]])
        cache.write(np.array([1, 2, 3, 5]), rows[[1, 2, 3, 5]])
        assert len(cache) == 7 and cache.filled.all() and cache.nbytes == 7 * 3 * 2 * 4
        np.testing.assert_array_equal(cache.rows([6, 0, 3, 3]), rows[[6, 0, 3, 3]])
        assert where([cache]) == ("in memory" if memory_budget else "in a scratch file")
        assert list(tmp_path.iterdir()) == []
