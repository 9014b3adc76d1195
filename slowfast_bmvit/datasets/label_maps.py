"""Class names of a detector's score columns, from its config alone (no dataset is read).

Column c of a model's class scores is:
- AVA / SynthAVA: action id c + 1 (AVA's 1-based ids; MODEL.NUM_CLASSES 80);
- UCF101-24 / JHMDB: ACT label c.
Which columns carry a class, and their names, depend on TEST.DATASET:
- "ava": the label map AVA.ANNOTATION_DIR / AVA.LABEL_MAP_FILE when the file is there (the 80-class
  `ava_action_list_v2.2.pbtxt` or the 60 evaluated classes of `ava_action_list_v2.2_for_activitynet_2019.pbtxt`);
  without it, the built-in copy of the file of that name (AVA v2.2, CC BY 4.0, Gu et al. CVPR 2018);
- "synthava": the 9 evaluated SynthAVA classes (real AVA ids and names);
- "ucf24" / "jhmdb": the labels of ACT.GT_FILE when the file is there, else the built-in 24 / 21 names.
Columns without a class get "" and are never shown.
"""

from __future__ import annotations

import os

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.evaluation.act_groundtruth import load_act_pickle
from slowfast_bmvit.evaluation.ava_io import read_labelmap

from .act_convert import JHMDB_CLASSES
from .synthetic_render import EVALUATED_CLASSES as SYNTHAVA_CLASSES

# AVA v2.2 action names by id (id = position + 1), from ava_action_list_v2.2.pbtxt.
AVA_ACTIONS = (
    'bend/bow (at the waist)', 'crawl', 'crouch/kneel', 'dance', 'fall down', 'get up', 'jump/leap', 'lie/sleep',
    'martial art', 'run/jog', 'sit', 'stand', 'swim', 'walk', 'answer phone', 'brush teeth',
    'carry/hold (an object)', 'catch (an object)', 'chop', 'climb (e.g., a mountain)', 'clink glass',
    'close (e.g., a door, a box)', 'cook', 'cut', 'dig', 'dress/put on clothing', 'drink',
    'drive (e.g., a car, a truck)', 'eat', 'enter', 'exit', 'extract', 'fishing', 'hit (an object)',
    'kick (an object)', 'lift/pick up', 'listen (e.g., to music)', 'open (e.g., a window, a car door)', 'paint',
    'play board game', 'play musical instrument', 'play with pets', 'point to (an object)', 'press',
    'pull (an object)', 'push (an object)', 'put down', 'read', 'ride (e.g., a bike, a car, a horse)', 'row boat',
    'sail boat', 'shoot', 'shovel', 'smoke', 'stir', 'take a photo', 'text on/look at a cellphone', 'throw',
    'touch (an object)', 'turn (e.g., a screwdriver)', 'watch (e.g., TV)', 'work on a computer', 'write',
    'fight/hit (a person)', 'give/serve (an object) to (a person)', 'grab (a person)', 'hand clap', 'hand shake',
    'hand wave', 'hug (a person)', 'kick (a person)', 'kiss (a person)', 'lift (a person)', 'listen to (a person)',
    'play with kids', 'push (another person)', 'sing to (e.g., self, a person, a group)',
    'take (an object) from (a person)', 'talk to (e.g., self, a person, a group)', 'watch (a person)',
)
# The 60 ids AVA v2.2 evaluates (ava_action_list_v2.2_for_activitynet_2019.pbtxt).
AVA_EVALUATED_IDS = (
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36, 37, 38, 41, 43, 45,
    46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 72, 73, 74, 76, 77, 78,
    79, 80,
)
# The official label map files whose content is built in: file name -> the ids it lists.
AVA_LABEL_MAP_IDS = {
    "ava_action_list_v2.2.pbtxt": tuple(range(1, len(AVA_ACTIONS) + 1)),
    "ava_action_list_v2.2_for_activitynet_2019.pbtxt": AVA_EVALUATED_IDS,
}
UCF24_CLASSES = (
    "Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving", "Fencing", "FloorGymnastics",
    "GolfSwing", "HorseRiding", "IceDancing", "LongJump", "PoleVault", "RopeClimbing", "SalsaSpin", "SkateBoarding",
    "Skiing", "Skijet", "SoccerJuggling", "Surfing", "TennisSwing", "TrampolineJumping", "VolleyballSpiking",
    "WalkingWithDog",
)


def _columns_of_ids(named_ids: list[tuple[int, str]], num_classes: int, source: str) -> list[str]:
    names = [""] * num_classes
    for class_id, name in named_ids:
        if not 1 <= class_id <= num_classes:
            raise ConfigError(f"MODEL.NUM_CLASSES: {num_classes} columns cannot hold class id {class_id} of {source}")
        names[class_id - 1] = name
    return names


def _columns_of_labels(labels, num_classes: int, source: str) -> list[str]:
    if len(labels) > num_classes:
        raise ConfigError(f"MODEL.NUM_CLASSES: {num_classes} columns cannot hold the {len(labels)} classes of {source}")
    return list(labels) + [""] * (num_classes - len(labels))


def _ava_names(cfg) -> list[str]:
    path = os.path.join(cfg.AVA.ANNOTATION_DIR, cfg.AVA.LABEL_MAP_FILE)
    if os.path.isfile(path):
        categories, _ = read_labelmap(path)
        return _columns_of_ids([(c["id"], c["name"]) for c in categories], cfg.MODEL.NUM_CLASSES, path)
    builtin = AVA_LABEL_MAP_IDS.get(os.path.basename(cfg.AVA.LABEL_MAP_FILE))
    if builtin is None:
        raise ConfigError(f"AVA.LABEL_MAP_FILE: {path} not found, and {cfg.AVA.LABEL_MAP_FILE!r} is not one of the "
                          f"built-in AVA label maps ({', '.join(AVA_LABEL_MAP_IDS)})")
    return _columns_of_ids([(i, AVA_ACTIONS[i - 1]) for i in builtin], cfg.MODEL.NUM_CLASSES,
                           cfg.AVA.LABEL_MAP_FILE)


def _act_names(cfg, builtin: tuple[str, ...]) -> list[str]:
    if cfg.ACT.GT_FILE and os.path.isfile(cfg.ACT.GT_FILE):
        return _columns_of_labels(load_act_pickle(cfg.ACT.GT_FILE)["labels"], cfg.MODEL.NUM_CLASSES, cfg.ACT.GT_FILE)
    return _columns_of_labels(builtin, cfg.MODEL.NUM_CLASSES, f"the built-in {cfg.TEST.DATASET} classes")


def column_names_from_cfg(cfg) -> list[str]:
    """MODEL.NUM_CLASSES names, one per score column ("" where no class is), for cfg's TEST.DATASET.

    Raises:
        ConfigError: an unknown dataset, a label map whose ids do not fit MODEL.NUM_CLASSES, or an AVA label map
            file that is neither present nor built in.
    """
    dataset = cfg.TEST.DATASET
    if dataset == "ava":
        return _ava_names(cfg)
    if dataset == "synthava":
        return _columns_of_ids([(i, name) for i, name, _ in SYNTHAVA_CLASSES], cfg.MODEL.NUM_CLASSES, "SynthAVA")
    if dataset == "ucf24":
        return _act_names(cfg, UCF24_CLASSES)
    if dataset == "jhmdb":
        return _act_names(cfg, JHMDB_CLASSES)
    raise ConfigError(f"TEST.DATASET: no label map for {dataset!r} (known: ava, synthava, ucf24, jhmdb)")
