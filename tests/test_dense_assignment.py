import torch

from slowfast_bmvit.models.dense_assignment import dense_assignment, dense_targets


def test_dense_assignment_takes_the_tokens_in_the_central_region_and_the_smallest_box():
    # A 3 x 3 grid of token centres at 1/6, 1/2, 5/6.
    centres = torch.tensor([[(j + 0.5) / 3, (i + 0.5) / 3] for i in range(3) for j in range(3)])
    tall = [0.5, 0.5, 0.2, 0.9]  # covers the middle column (tokens 1, 4, 7)
    small = [0.5, 0.8, 0.2, 0.2]  # around token 7 only
    tokens, persons = dense_assignment(centres, torch.tensor([tall, small]), region=1.0)
    assert dict(zip(tokens.tolist(), persons.tolist())) == {1: 0, 4: 0, 7: 1}  # token 7: the smaller box wins
    tokens, persons = dense_assignment(centres, torch.tensor([tall]), region=0.5)
    assert tokens.tolist() == [4]  # the central half (+-0.225 in y) holds only the middle token
    empty = dense_assignment(centres, torch.zeros(0, 4), region=1.0)
    assert empty[0].numel() == 0 and empty[1].numel() == 0


def test_dense_targets_skip_non_actors_and_carry_each_actors_box_and_labels():
    centres = torch.tensor([[(j + 0.5) / 3, (i + 0.5) / 3] for i in range(3) for j in range(3)])
    left = [1 / 6, 0.5, 0.3, 0.9]  # the left column: tokens 0, 3, 6
    right = [5 / 6, 0.5, 0.3, 0.3]  # token 5 only
    targets = [
        {"boxes": torch.tensor([left, right]), "labels": torch.tensor([[1.0, 0], [0, 1]]),
         "actor": torch.tensor([True, False])},  # the right person is not an actor: no tokens for it
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, 2), "actor": torch.zeros(0, dtype=torch.bool)},
        {"boxes": torch.tensor([right]), "labels": torch.tensor([[0.0, 1]]), "actor": torch.tensor([True])},
    ]
    clip_index, token_index, boxes, labels = dense_targets(centres, targets, region=1.0)
    assert clip_index.tolist() == [0, 0, 0, 2]
    assert token_index.tolist() == [0, 3, 6, 5]
    assert torch.equal(boxes, torch.tensor([left, left, left, right]))
    assert torch.equal(labels, torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]]))
    assert boxes.dtype == labels.dtype == torch.float32
