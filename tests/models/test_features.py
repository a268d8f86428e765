"""Running a frozen backbone over images once: each image's features are the extractor's own output
for that image, in sample order, whatever the batches, and a file that fails to decode is left out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tiny_backbone import TINY
from tlcli.data.dataset import Sample, load_dataset
from tlcli.data.pipeline import decode_into_cache, image_dataset, tf
from tlcli.models.build import build_feature_extractor
from tlcli.models.features import extract_features, feature_batches, forward_pass
from tlcli.models.weights import WeightsSource

SIZE = 32


@pytest.fixture(scope="module")
def extractor():
    return build_feature_extractor(TINY, SIZE, WeightsSource("none"))


@pytest.fixture
def samples(colour_dataset, tmp_path):
    """The colour dataset's training images, in a copy a test may damage."""
    shutil.copytree(colour_dataset / "train", tmp_path / "data" / "train")
    shutil.copytree(colour_dataset / "val", tmp_path / "data" / "val")
    return list(load_dataset(tmp_path / "data").split("train"))


def _decoded(samples) -> np.ndarray:
    return np.concatenate([batch[0].numpy() for batch in image_dataset(samples, SIZE, 64)])


def test_features_are_the_extractors_output_for_each_image_in_sample_order(extractor, samples):
    told = []
    found = extract_features(extractor, samples, SIZE, batch_size=5, advance=told.append)
    expected = np.asarray(extractor(_decoded(samples), training=False))
    np.testing.assert_allclose(found.features, expected, rtol=1e-5, atol=1e-6)
    assert found.features.shape == (24, TINY.feature_size) and found.features.dtype == np.float32
    assert list(found.labels) == [sample.label for sample in samples] and list(found.indices) == list(range(24))
    assert told == [5, 5, 5, 5, 4] and not found.multi_label


def test_a_file_that_fails_to_decode_is_left_out_and_the_rest_keep_their_rows(extractor, samples):
    expected = np.asarray(extractor(_decoded(samples), training=False))
    samples[3].path.write_bytes(b"no longer an image")
    found = extract_features(extractor, samples, SIZE, batch_size=8)
    kept = [index for index in range(24) if index != 3]
    assert list(found.indices) == kept and list(found.labels) == [samples[index].label for index in kept]
    np.testing.assert_allclose(found.features, expected[kept], rtol=1e-5, atol=1e-6)


def test_images_decoded_once_give_the_features_of_their_rounded_pixels(extractor, samples):
    rounded = np.round(np.clip(_decoded(samples), 0, 255))  # the cache keeps uint8 pixels
    decoded = decode_into_cache(samples, SIZE, 8)
    found = extract_features(extractor, samples, SIZE, batch_size=8, decoded=decoded)
    decoded.close()
    np.testing.assert_allclose(found.features, np.asarray(extractor(rounded, training=False)), rtol=1e-5, atol=1e-6)


def test_multi_label_samples_keep_their_targets(extractor, samples):
    targets = [(1, 0, 1), (0, 0, 0), (0, 1, 1)]
    listed = [Sample(sample.path, -1, targets=target) for sample, target in zip(samples, targets)]
    found = extract_features(extractor, listed, SIZE)
    assert found.multi_label and found.labels.tolist() == [list(target) for target in targets]


def test_batches_come_as_the_asked_dtype_from_one_traced_pass(extractor, samples):
    assert forward_pass(extractor) is forward_pass(extractor)
    full = [batch.features for batch in feature_batches(extractor, samples[:6], SIZE, 4)]
    half = [batch.features for batch in feature_batches(extractor, samples[:6], SIZE, 4, dtype=tf.float16)]
    assert [len(batch) for batch in full] == [4, 2]
    assert all(batch.dtype == np.float16 for batch in half)
    np.testing.assert_array_equal(np.concatenate(half), np.concatenate(full).astype(np.float16))
