"""Deterministic, resumable data order: EpochSampler and PerSampleSeeded."""

import random

import numpy as np
import torch

from slowfast_bmvit.datasets.samplers import EpochSampler, PerSampleSeeded


class RandomCrops(torch.utils.data.Dataset):
    """Each sample draws from all three global generators, like an augmentation pipeline."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return (index, random.random(), float(np.random.rand()), float(torch.rand(())))


def test_permutation_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(50, True, seed=3), EpochSampler(50, True, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(EpochSampler(50, True, seed=4)) != list(EpochSampler(50, True, seed=3))


def test_shards_cover_the_epoch_once_with_padding():
    shards = [EpochSampler(10, True, seed=0, num_replicas=3, rank=r) for r in range(3)]
    indices = [list(s) for s in shards]
    assert [len(i) for i in indices] == [4, 4, 4]  # ceil(10 / 3), padded by wrapping around
    assert set(sum(indices, [])) == set(range(10))
    single = EpochSampler(10, True, seed=0).epoch_indices()
    interleaved = [indices[r][k] for k in range(4) for r in range(3)]
    assert interleaved[:10] == single  # rank r takes every third index of the same permutation


def test_set_start_skips_exactly_the_consumed_prefix():
    sampler = EpochSampler(20, True, seed=1)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_start(7)
    assert list(sampler) == full[7:] and len(sampler) == 13
    sampler.set_epoch(3)  # a new epoch starts from its beginning
    assert len(sampler) == 20


def test_test_order_is_the_dataset_order():
    assert list(EpochSampler(7, False, seed=9)) == list(range(7))


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    dataset = PerSampleSeeded(RandomCrops(), seed=5)
    first = [dataset[i] for i in range(12)]
    assert [dataset[i] for i in reversed(range(12))][::-1] == first  # order of access does not matter
    dataset.epoch = 1
    assert dataset[3] != first[3]
    dataset.epoch = 0
    assert dataset[3] == first[3]


def test_workers_see_the_same_samples_as_the_main_process():
    dataset = PerSampleSeeded(RandomCrops(), seed=5)
    main = [dataset[i] for i in range(12)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    assert [tuple(float(x) for x in s) for s in loader] == [tuple(float(x) for x in s) for s in main]


def test_main_process_generators_are_left_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PerSampleSeeded(RandomCrops(), seed=5)[0]
    assert torch.equal(torch.rand(3), expected)  # model randomness (dropout) is not perturbed by data loading


def test_persistent_workers_follow_the_epoch_set_in_the_main_process():
    dataset = PerSampleSeeded(RandomCrops(), seed=5)
    expected = {}
    for epoch in (0, 1, 2):
        dataset.epoch = epoch
        expected[epoch] = [tuple(float(x) for x in dataset[i]) for i in range(12)]
    dataset.epoch = 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in (0, 1, 2):
        dataset.epoch = epoch
        assert [tuple(float(x) for x in s) for s in loader] == expected[epoch], epoch
    assert expected[0] != expected[1]
