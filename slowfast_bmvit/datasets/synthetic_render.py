"""SynthAVA scenes: articulated people whose actions are defined by motion, rendered with cv2 at 30 fps.

A video is a textured background, 1-4 people, optional occluding poles and a small camera jitter; `SceneStyle`
sets how cluttered the background is, how thick the limbs are, how many people and how often a pole (its defaults
are SynthAVA's original look). Each person follows one action per one-second segment; segment k spans frames
[30k - 15, 30k + 15) and is centred on the frame of second k, so the label of keyframe second k is exactly what the
person does around it.

Actions (AVA ids) and what tells them apart:
- stand (12), walk (14), run/jog (10): the same body; standing people hold random stances that look like a frame of
  a stride, so only the displacement and the leg cycle over time separate them (walk 0.35, run 0.9 body heights/s);
- jump/leap (7): two hops per second, landing exactly at the keyframe (the keyframe alone shows a standing pose);
- fall down (5) / get up (6): the body pivots about the feet between upright and lying in 0.6 s centred on the
  keyframe; get up is exactly fall down played backwards (same keyframe image, different label);
- hand wave (69): a raised arm swinging (standing people also raise an arm, still);
- talk to (79): two people facing each other, the talker's head bobs, mouth opens and hand gestures; the partner
  listens ("listen to", 74: not evaluated);
- carry/hold (17): a held box, together with stand / walk / run.
Non-actors do only unevaluated things: crouch/kneel (3), lie/sleep (8, also after a fall), listen to (74).

Coordinates: pixels, x right, y down on screen; bodies are built in a body frame (x forward, y up, origin at the hip)
in units of the standing height h, then placed so the lowest foot touches the person's ground line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import cv2
import numpy as np

FPS = 30
SEGMENT_HALF_FRAMES = FPS // 2

# AVA action ids used by SynthAVA: evaluated ones are written to the label map, the others only to the GT CSVs.
STAND, WALK, RUN, JUMP, FALL_DOWN, GET_UP, CARRY, HAND_WAVE, TALK_TO = 12, 14, 10, 7, 5, 6, 17, 69, 79
CROUCH, LIE, LISTEN_TO = 3, 8, 74
EVALUATED_CLASSES: tuple[tuple[int, str, str], ...] = (
    (FALL_DOWN, "fall down", "PERSON_MOVEMENT"),
    (GET_UP, "get up", "PERSON_MOVEMENT"),
    (JUMP, "jump/leap", "PERSON_MOVEMENT"),
    (RUN, "run/jog", "PERSON_MOVEMENT"),
    (STAND, "stand", "PERSON_MOVEMENT"),
    (WALK, "walk", "PERSON_MOVEMENT"),
    (CARRY, "carry/hold (an object)", "OBJECT_MANIPULATION"),
    (HAND_WAVE, "hand wave", "PERSON_INTERACTION"),
    (TALK_TO, "talk to (e.g., self, a person, a group)", "PERSON_INTERACTION"),
)

# Body proportions in units of the standing height (feet to top of the head = 1).
THIGH, SHIN, TORSO, NECK, HEAD_R, UPPER_ARM, FOREARM = 0.245, 0.245, 0.29, 0.04, 0.09, 0.16, 0.15
WALK_SPEED, RUN_SPEED = 0.35, 0.9  # body heights per second
WALK_CADENCE, RUN_CADENCE = 0.8, 1.6  # stride cycles per second
FALL_SECONDS = 0.6  # duration of a fall / get up, centred on the keyframe
_SUBPIXEL_SHIFT = 2  # cv2 drawing with 2 fractional bits


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def fall_progress(t: float) -> float:
    """Fraction of a fall completed at time t (seconds from the keyframe): 0 before -0.3 s, 0.5 at 0, 1 after 0.3 s."""
    return _smoothstep((t + FALL_SECONDS / 2) / FALL_SECONDS)


@dataclass(frozen=True)
class SceneStyle:
    """How hard a scene is to see; the actions and their timing do not depend on it.

    clutter: scale of the background's texture and of the contrast of its panels and floor lines against the wall
        and floor (0: flat wall and floor with only fine noise; 1: the original look).
    limb_thickness: limb width as a fraction of the standing height (the torso is drawn 1.9x as wide).
    max_people: at most this many people per video (1-4; the odds of 1-4 people are truncated and renormalised).
    occluder_probability: chance that a video has a vertical pole in front of the people.
    """

    clutter: float = 1.0
    limb_thickness: float = 0.075
    max_people: int = 4
    occluder_probability: float = 0.35

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.clutter <= 4.0:
            problems.append(f"clutter must be in [0, 4], got {self.clutter}")
        if not 0.0 < self.limb_thickness <= 0.3:
            problems.append(f"limb_thickness must be in (0, 0.3], got {self.limb_thickness}")
        if self.max_people not in (1, 2, 3, 4):
            problems.append(f"max_people must be 1, 2, 3 or 4, got {self.max_people}")
        if not 0.0 <= self.occluder_probability <= 1.0:
            problems.append(f"occluder_probability must be in [0, 1], got {self.occluder_probability}")
        if problems:
            raise ValueError("SceneStyle: " + "; ".join(problems))


@dataclass(frozen=True)
class Appearance:
    """What a person looks like: standing height and limb thickness (px), BGR colours, an optional held box."""

    height: float
    thickness: float
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    prop: Optional[tuple[int, int, int]] = None


@dataclass(frozen=True)
class RestPose:
    """A still pose (radians): leg angles from vertical (+ forward), knee bends, arm angles, elbow bends, lean."""

    hip_a: float = 0.1
    hip_b: float = -0.1
    knee_a: float = 0.0
    knee_b: float = 0.0
    arm_front: float = 0.1
    arm_back: float = -0.1
    elbow_front: float = 0.2
    elbow_back: float = 0.2
    lean: float = 0.0


@dataclass(frozen=True)
class Segment:
    """What one person does during one segment.

    action: "stand", "walk", "run", "jump", "fall", "getup", "lie" or "crouch".
    direction: walking direction (+1 right, -1 left); fall_dir: side the body falls to / lies on.
    wave / talk / listen / carry: overlays on the action (labels 69 / 79 / 74 / 17).
    """

    action: str
    rest: RestPose = field(default_factory=RestPose)
    direction: int = 1
    fall_dir: int = 1
    wave: bool = False
    talk: bool = False
    listen: bool = False
    carry: bool = False
    phase: float = 0.0

    def labels(self) -> list[int]:
        """AVA action ids of the segment (evaluated and not)."""
        base = {"stand": STAND, "walk": WALK, "run": RUN, "jump": JUMP, "fall": FALL_DOWN, "getup": GET_UP,
                "lie": LIE, "crouch": CROUCH}[self.action]
        extra = [(self.wave, HAND_WAVE), (self.talk, TALK_TO), (self.listen, LISTEN_TO), (self.carry, CARRY)]
        return [base] + [label for flag, label in extra if flag]


@dataclass
class Pose:
    """Everything needed to draw one person in one frame (angles in radians, positions in world pixels)."""

    x: float
    ground: float
    facing: int
    lift: float = 0.0
    tilt: float = 0.0
    hip_a: float = 0.0
    hip_b: float = 0.0
    knee_a: float = 0.0
    knee_b: float = 0.0
    arm_front: float = 0.0
    arm_back: float = 0.0
    elbow_front: float = 0.0
    elbow_back: float = 0.0
    lean: float = 0.0
    bob: float = 0.0
    mouth_open: bool = False
    carry: bool = False


@dataclass
class PersonState:
    """What carries over between segments: position, facing, stride phase and the side a fallen body lies on."""

    x: float
    ground: float
    facing: int
    phase: float = 0.0
    fall_dir: int = 1


def segment_frames(k: int, num_frames: int) -> range:
    """Frames of segment k: [30k - 15, 30k + 15) within the video."""
    return range(max(0, FPS * k - SEGMENT_HALF_FRAMES), min(num_frames, FPS * k + SEGMENT_HALF_FRAMES))


def simulate_segment(state: PersonState, segment: Segment, k: int, frames: range, height: float) -> list[Pose]:
    """Poses of one person over `frames` of segment k; advances `state` (no randomness: all of it is in `segment`)."""
    poses = []
    rest = segment.rest
    for frame in frames:
        t = (frame - FPS * k) / FPS  # seconds from the keyframe
        pose = Pose(x=state.x, ground=state.ground, facing=state.facing, hip_a=rest.hip_a, hip_b=rest.hip_b,
                    knee_a=rest.knee_a, knee_b=rest.knee_b, arm_front=rest.arm_front, arm_back=rest.arm_back,
                    elbow_front=rest.elbow_front, elbow_back=rest.elbow_back, lean=rest.lean, carry=segment.carry)
        action = segment.action
        if action in ("walk", "run"):
            running = action == "run"
            speed, cadence = (RUN_SPEED, RUN_CADENCE) if running else (WALK_SPEED, WALK_CADENCE)
            amplitude, knee_swing = (0.65, 1.3) if running else (0.4, 0.5)
            state.facing = segment.direction
            state.x += segment.direction * speed * height / FPS
            state.phase += 2 * math.pi * cadence / FPS
            swing = math.sin(state.phase)
            pose.x, pose.facing = state.x, state.facing
            pose.hip_a, pose.hip_b = amplitude * swing, -amplitude * swing
            pose.knee_a = knee_swing * max(0.0, math.cos(state.phase))
            pose.knee_b = knee_swing * max(0.0, -math.cos(state.phase))
            pose.arm_front, pose.arm_back = -0.8 * amplitude * swing, 0.8 * amplitude * swing
            pose.elbow_front = pose.elbow_back = 1.4 if running else 0.3
            pose.lean = 0.12 if running else 0.03
        elif action == "jump":
            hop = abs(math.sin(2 * math.pi * (t + 0.5)))  # two hops per second, on the ground at the keyframe
            pose.lift = 0.22 * height * hop
            pose.hip_a, pose.hip_b = 0.05 + 0.35 * hop, 0.05 + 0.35 * hop
            pose.knee_a = pose.knee_b = 0.15 + 0.7 * hop
            pose.arm_front = pose.arm_back = 0.3 + 2.0 * hop
            pose.elbow_front = pose.elbow_back = 0.2
        elif action in ("fall", "getup", "lie"):
            # Blend from the rest pose to lying: a fall starts from (and a get-up ends in) the standing pose.
            done = {"fall": fall_progress(t), "getup": 1.0 - fall_progress(t), "lie": 1.0}[action]
            up = 1.0 - done
            state.fall_dir = segment.fall_dir
            pose.tilt = segment.fall_dir * (math.pi / 2) * done
            pose.hip_a, pose.hip_b = rest.hip_a * up + 0.08 * done, rest.hip_b * up - 0.08 * done
            pose.knee_a, pose.knee_b = rest.knee_a * up + 0.1 * done, rest.knee_b * up
            pose.arm_front, pose.arm_back = rest.arm_front * up + 2.2 * done, rest.arm_back * up + 2.2 * done
            pose.elbow_front, pose.elbow_back = rest.elbow_front * up + 0.2 * done, rest.elbow_back * up + 0.2 * done
            pose.lean = rest.lean * up
        elif action == "crouch":
            pose.hip_a = pose.hip_b = 1.5
            pose.knee_a = pose.knee_b = 2.4
            pose.lean = 0.35
            pose.arm_front, pose.arm_back, pose.elbow_front, pose.elbow_back = 0.6, 0.4, 0.6, 0.6
        if action == "stand":
            if segment.wave:
                pose.arm_front = 2.55 + 0.45 * math.sin(2 * math.pi * 2.2 * t + segment.phase)
                pose.elbow_front = 0.35 + 0.3 * math.sin(2 * math.pi * 2.2 * t + segment.phase + 1.0)
            if segment.talk:
                pose.bob = 0.025 * height * math.sin(2 * math.pi * 3.0 * t + segment.phase)
                pose.mouth_open = (frame // 3 + int(segment.phase * 4)) % 2 == 0  # random phase per segment
                pose.arm_front = 0.45
                pose.elbow_front = 1.3 + 0.45 * math.sin(2 * math.pi * 1.7 * t + segment.phase)
        if segment.carry:
            pose.arm_front, pose.elbow_front = 0.25, 1.35
        poses.append(pose)
    return poses


# ------------------------------------------------------------------------------------------------------ geometry
@dataclass
class Skeleton:
    """Screen points (px) of one person: named joints [2] each, plus radii for boxes and drawing."""

    points: dict[str, np.ndarray]
    head_radius: float
    limb: float


def build_skeleton(pose: Pose, height: float, thickness: float) -> Skeleton:
    """Forward kinematics: body frame -> feet on the ground -> facing -> tilt about the feet -> lift -> screen."""
    h = height

    def polar(origin, angle, length, down=True):
        # angle from the vertical, positive forward; `down` points the limb towards the feet.
        return (origin[0] + length * h * math.sin(angle),
                origin[1] + (-1.0 if down else 1.0) * length * h * math.cos(angle))

    hip = (0.0, 0.0)
    knee_a, knee_b = polar(hip, pose.hip_a, THIGH), polar(hip, pose.hip_b, THIGH)
    foot_a = polar(knee_a, pose.hip_a - pose.knee_a, SHIN)
    foot_b = polar(knee_b, pose.hip_b - pose.knee_b, SHIN)
    shoulder = polar(hip, pose.lean, TORSO, down=False)
    neck = polar(shoulder, pose.lean, NECK, down=False)
    head = polar(neck, pose.lean, HEAD_R, down=False)
    head = (head[0], head[1] + pose.bob)
    elbow_f, elbow_b = polar(shoulder, pose.arm_front, UPPER_ARM), polar(shoulder, pose.arm_back, UPPER_ARM)
    hand_f = polar(elbow_f, pose.arm_front + pose.elbow_front, FOREARM)
    hand_b = polar(elbow_b, pose.arm_back + pose.elbow_back, FOREARM)
    names = ("hip", "knee_a", "knee_b", "foot_a", "foot_b", "shoulder", "neck", "head", "elbow_f", "elbow_b",
             "hand_f", "hand_b")
    body = np.array([hip, knee_a, knee_b, foot_a, foot_b, shoulder, neck, head, elbow_f, elbow_b, hand_f, hand_b])
    body[:, 1] -= min(foot_a[1], foot_b[1], knee_a[1], knee_b[1])  # lowest point on the ground
    body[:, 0] *= pose.facing
    cos_t, sin_t = math.cos(pose.tilt), math.sin(pose.tilt)  # tilt > 0 falls towards +x on screen
    screen = np.empty_like(body)
    screen[:, 0] = pose.x + body[:, 0] * cos_t + body[:, 1] * sin_t
    screen[:, 1] = pose.ground - (-body[:, 0] * sin_t + body[:, 1] * cos_t + pose.lift)
    return Skeleton(dict(zip(names, screen)), HEAD_R * h, thickness)


def skeleton_box(skeleton: Skeleton) -> np.ndarray:
    """Tight box (x1, y1, x2, y2) in px around the drawn body (limbs padded by half their thickness)."""
    limbs = np.stack([p for n, p in skeleton.points.items() if n != "head"])
    pad = skeleton.limb * 0.95  # the torso is drawn 1.9x thicker than the legs
    head = skeleton.points["head"]
    r = skeleton.head_radius
    lo = np.minimum(limbs.min(axis=0) - pad / 2, head - r)
    hi = np.maximum(limbs.max(axis=0) + pad / 2, head + r)
    return np.concatenate([lo, hi])


# ------------------------------------------------------------------------------------------------------- drawing
def _pt(p: np.ndarray, offset: np.ndarray) -> tuple[int, int]:
    q = (p - offset) * (1 << _SUBPIXEL_SHIFT)
    return int(round(q[0])), int(round(q[1]))


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)


def draw_person(img: np.ndarray, skeleton: Skeleton, pose: Pose, look: Appearance, offset: np.ndarray) -> None:
    """Draw one person (BGR, in place); `offset` is the camera position subtracted from world points."""
    names = list(skeleton.points)
    fixed = np.rint((np.stack(list(skeleton.points.values())) - offset) * (1 << _SUBPIXEL_SHIFT)).astype(int)
    p = dict(zip(names, map(tuple, fixed.tolist())))
    w = skeleton.limb

    def line(a, b, colour, width):
        cv2.line(img, p[a], p[b], colour, max(1, int(round(width))), cv2.LINE_AA, _SUBPIXEL_SHIFT)

    line("shoulder", "elbow_b", _shade(look.shirt, 0.7), 0.8 * w)
    line("elbow_b", "hand_b", _shade(look.skin, 0.8), 0.7 * w)
    line("hip", "knee_b", _shade(look.pants, 0.7), w)
    line("knee_b", "foot_b", _shade(look.pants, 0.7), w)
    line("hip", "shoulder", look.shirt, 1.9 * w)
    line("hip", "knee_a", look.pants, w)
    line("knee_a", "foot_a", look.pants, w)
    line("shoulder", "neck", look.skin, 0.8 * w)
    head, r = skeleton.points["head"], skeleton.head_radius
    # Hair on the back of the head shows which way the person faces.
    back = head - np.array([0.25 * r * pose.facing * math.cos(pose.tilt), 0.25 * r * math.sin(pose.tilt)])
    scale = 1 << _SUBPIXEL_SHIFT
    cv2.circle(img, _pt(back, offset), int(round(0.95 * r * scale)), look.hair, -1, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    cv2.circle(img, p["head"], int(round(0.85 * r * scale)), look.skin, -1, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    if pose.mouth_open:
        forward = np.array([pose.facing * 0.55 * r, 0.4 * r])
        cv2.circle(img, _pt(head + forward, offset), int(round(0.28 * r * scale)), (30, 20, 60), -1, cv2.LINE_AA,
                   _SUBPIXEL_SHIFT)
    line("shoulder", "elbow_f", look.shirt, 0.8 * w)
    line("elbow_f", "hand_f", look.skin, 0.7 * w)
    if pose.carry and look.prop is not None:
        hand = skeleton.points["hand_f"]
        half = np.array([0.08, 0.06]) * skeleton.head_radius / HEAD_R
        cv2.rectangle(img, _pt(hand - half, offset), _pt(hand + half, offset), look.prop, -1, cv2.LINE_AA,
                      _SUBPIXEL_SHIFT)


def make_background(rng: np.random.Generator, height: int, width: int, clutter: float = 1.0) -> np.ndarray:
    """A textured BGR room: wall and floor tones, low-frequency noise, a few panels and floor lines. [H, W, 3].

    clutter scales the low-frequency noise and pulls panels and floor lines towards the wall / floor tone (1: as
    drawn, 0: invisible). The random draws do not depend on it, so only the look changes.
    """
    wall = rng.uniform(60, 200, 3)
    floor = np.clip(wall * rng.uniform(0.5, 0.9) + rng.uniform(-30, 30, 3), 0, 255)
    horizon = int(height * rng.uniform(0.3, 0.6))
    img = np.empty((height, width, 3), np.float32)
    img[:horizon] = wall
    img[horizon:] = floor
    coarse = rng.normal(0, 18, (max(2, height // 12), max(2, width // 12), 3)).astype(np.float32)
    if clutter != 1.0:  # (the branch keeps the original look bit-exact)
        coarse *= clutter
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)

    def toned(colour: np.ndarray, base: np.ndarray) -> tuple[float, ...]:
        return tuple(float(c) for c in (colour if clutter == 1.0 else base + clutter * (colour - base)))

    for _ in range(int(rng.integers(2, 6))):  # panels: windows, doors, posters
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, max(1, horizon)))
        pw, ph = int(rng.integers(width // 12, width // 4)), int(rng.integers(height // 10, height // 3))
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), toned(rng.uniform(20, 235, 3), wall), -1)
    for _ in range(int(rng.integers(2, 5))):  # floor boards
        y = int(rng.integers(horizon, height))
        cv2.line(img, (0, y), (width, y + int(rng.integers(-5, 6))), toned(floor * 0.7, floor), 1)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Occluder:
    """A vertical pole in world pixels, drawn in front of people whose ground line is above `ground`."""

    x0: float
    x1: float
    top: float
    ground: float
    colour: tuple[int, int, int]


def draw_occluder(img: np.ndarray, occluder: Occluder, offset: np.ndarray) -> None:
    top_left = _pt(np.array([occluder.x0, occluder.top]), offset)
    bottom_right = _pt(np.array([occluder.x1, occluder.ground]), offset)
    cv2.rectangle(img, top_left, bottom_right, occluder.colour, -1, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    edge = _shade(occluder.colour, 0.6)
    cv2.rectangle(img, top_left, bottom_right, edge, 1, cv2.LINE_AA, _SUBPIXEL_SHIFT)


@dataclass
class Actor:
    """A person of a scene: looks, per-frame poses and per-second segments (index = second of the video)."""

    look: Appearance
    poses: list[Pose]
    segments: list[Segment]


@dataclass
class Scene:
    """Everything needed to render a video: background (with margin), people, occluders, camera offsets [F, 2]."""

    background: np.ndarray
    margin: int
    height: int
    width: int
    actors: list[Actor]
    occluders: list[Occluder]
    camera: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.camera)

    def render(self, frame: int) -> np.ndarray:
        """BGR uint8 [H, W, 3] image of `frame`."""
        dx, dy = (int(v) for v in self.camera[frame])
        m = self.margin
        img = self.background[m + dy:m + dy + self.height, m + dx:m + dx + self.width].copy()
        offset = np.array([dx, dy], dtype=np.float64)
        layers = [(a.poses[frame].ground, 0, i) for i, a in enumerate(self.actors)]
        layers += [(o.ground, 1, i) for i, o in enumerate(self.occluders)]
        for _, kind, index in sorted(layers):
            if kind == 0:
                actor = self.actors[index]
                pose = actor.poses[frame]
                draw_person(img, self.skeleton(index, frame), pose, actor.look, offset)
            else:
                draw_occluder(img, self.occluders[index], offset)
        return img

    def skeleton(self, actor_index: int, frame: int) -> Skeleton:
        actor = self.actors[actor_index]
        return build_skeleton(actor.poses[frame], actor.look.height, actor.look.thickness)

    def box(self, actor_index: int, frame: int) -> np.ndarray:
        """Person box (x1, y1, x2, y2) normalised to the frame and clipped to [0, 1], as seen at `frame`."""
        box = skeleton_box(self.skeleton(actor_index, frame)) - np.tile(self.camera[frame].astype(np.float64), 2)
        box = box / np.array([self.width, self.height, self.width, self.height])
        return np.clip(box, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- scene planning
def random_appearance(rng: np.random.Generator, height: float, carries: bool,
                      limb_thickness: float = SceneStyle.limb_thickness) -> Appearance:
    def bright():
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(110, 256)]]])
        return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])

    skins = [(160, 190, 230), (120, 160, 210), (80, 120, 170), (60, 90, 130), (40, 60, 90)]
    skin = skins[int(rng.integers(len(skins)))]
    pants = _shade(bright(), rng.uniform(0.35, 0.8))
    hair = _shade(bright(), rng.uniform(0.1, 0.4))
    return Appearance(height=height, thickness=max(2.0, limb_thickness * height), shirt=bright(), pants=pants,
                      skin=skin, hair=hair, prop=bright() if carries else None)


def random_rest_pose(rng: np.random.Generator) -> RestPose:
    """A standing pose that could also be one frame of a stride (so one frame does not say stand vs walk vs run)."""
    spread = rng.uniform(0.0, 0.6)
    front = rng.uniform(0.3, 1.0)
    raised = rng.random() < 0.25  # a still raised arm: a single frame must not say "hand wave"
    return RestPose(
        hip_a=spread * front, hip_b=-spread * (1 - front) - 0.05,
        knee_a=rng.uniform(0.0, 0.5) * (rng.random() < 0.5), knee_b=rng.uniform(0.0, 0.9) * (rng.random() < 0.5),
        arm_front=rng.uniform(2.2, 2.9) if raised else rng.uniform(-0.4, 0.5), arm_back=rng.uniform(-0.4, 0.4),
        elbow_front=rng.uniform(0.0, 1.5), elbow_back=rng.uniform(0.0, 1.5), lean=rng.uniform(-0.05, 0.14))


def _room(x: float, direction: int, distance: float, lo: float, hi: float) -> bool:
    return lo <= x + direction * distance <= hi


def plan_person(rng: np.random.Generator, role: str, state: PersonState, height: float, num_seconds: int,
                width: int, talk_plan: Optional[list[str]] = None) -> list[Segment]:
    """Segments 0..num_seconds (one per second, the last one half) for a person of `role`.

    role: "mobile" (stand / walk / run / jump / fall and get up, waves), "carrier" (stand / walk / run holding a box),
    "talker" (stands, talks or listens as `talk_plan` says per second: "talk", "listen" or "none"), "crouch" or
    "lie" (non-actors). Walks and runs turn at the frame edges; falls need room on the side the body lands.
    """
    lo, hi = 0.1 * height, width - 0.1 * height  # feet may come near the edges; boxes are clipped
    num_frames = FPS * num_seconds
    segments: list[Segment] = []
    x, facing, lying, rest = state.x, state.facing, False, random_rest_pose(rng)
    for k in range(num_seconds + 1):
        if rng.random() < 0.5:
            rest = random_rest_pose(rng)
        if role in ("crouch", "lie"):
            fall_dir = 1 if x + height < width - 2 else -1
            segments.append(Segment(role, rest, fall_dir=fall_dir))
            continue
        if role == "talker":
            plan = talk_plan[k] if talk_plan else "none"
            segments.append(Segment("stand", rest, talk=plan == "talk", listen=plan == "listen",
                                    phase=rng.uniform(0, 2 * math.pi)))
            continue
        carry = role == "carrier"
        if lying:
            if k > 0 and segments[-1].action == "lie" and segments[-2].action == "lie" or rng.random() < 0.6:
                segments.append(Segment("getup", rest, fall_dir=segments[-1].fall_dir))
                lying = False
            else:
                segments.append(Segment("lie", rest, fall_dir=segments[-1].fall_dir))
            continue
        choices = ["stand", "walk", "run"] if carry else ["stand", "walk", "run", "jump", "fall"]
        weights = np.array([0.3, 0.35, 0.35] if carry else [0.2, 0.22, 0.22, 0.16, 0.2])
        action = str(rng.choice(choices, p=weights / weights.sum()))
        segment = Segment("stand", rest, carry=carry, wave=not carry and rng.random() < 0.45,
                          phase=rng.uniform(0, 2 * math.pi))
        if action in ("walk", "run"):
            distance = (RUN_SPEED if action == "run" else WALK_SPEED) * height
            options = [d for d in (facing, -facing) if _room(x, d, distance, lo, hi)]
            if options:
                facing = options[0] if len(options) == 1 or rng.random() < 0.75 else options[1]
                segment = Segment(action, rest, direction=facing, carry=carry)
                x += facing * distance * len(segment_frames(k, num_frames)) / FPS
        elif action == "fall":
            sides = [d for d in (-1, 1) if 0 <= x + d * 0.7 * height <= width]
            if sides:
                segment = Segment("fall", rest, fall_dir=int(rng.choice(sides)))
                lying = True
        elif action == "jump":
            segment = Segment("jump", rest)
        segments.append(segment)
    return segments


def simulate_person(state: PersonState, segments: list[Segment], height: float, num_frames: int) -> list[Pose]:
    """Per-frame poses [num_frames] from the segments (deterministic)."""
    poses: list[Pose] = []
    for k, segment in enumerate(segments):
        poses += simulate_segment(state, segment, k, segment_frames(k, num_frames), height)
    if len(poses) != num_frames:
        raise AssertionError(f"segments cover {len(poses)} frames, expected {num_frames}")
    return poses


def camera_path(rng: np.random.Generator, num_frames: int, amplitude: float) -> np.ndarray:
    """Smooth random integer camera offsets [F, 2] within +-amplitude pixels."""
    if amplitude <= 0:
        return np.zeros((num_frames, 2), np.int64)
    steps = rng.normal(0, 1, (num_frames + 20, 2))
    kernel = np.hanning(21)
    smooth = np.stack([np.convolve(steps[:, i], kernel, mode="valid")[:num_frames] for i in range(2)], axis=1)
    smooth = smooth / (np.abs(smooth).max() + 1e-9) * amplitude
    return np.round(smooth).astype(np.int64)


def random_scene(rng: np.random.Generator, height: int, width: int, num_seconds: int,
                 style: SceneStyle = SceneStyle()) -> Scene:
    """A video of `num_seconds` seconds: 1-4 people with varied roles, occluders and camera jitter."""
    num_frames = FPS * num_seconds
    jitter = max(1, round(0.02 * width))
    margin = jitter + 1
    background = make_background(rng, height + 2 * margin, width + 2 * margin, style.clutter)
    odds = [0.2, 0.35, 0.3, 0.15][:style.max_people]
    odds = odds if style.max_people == 4 else list(np.array(odds) / sum(odds))
    num_people = int(rng.choice(list(range(1, style.max_people + 1)), p=odds))
    roles = [str(rng.choice(["mobile", "carrier", "crouch", "lie"], p=[0.66, 0.2, 0.07, 0.07]))
             for _ in range(num_people)]
    talk_pair = num_people >= 2 and rng.random() < 0.35
    talk_plan: list[str] = []
    if talk_pair:
        roles[0] = roles[1] = "talker"
        talk_plan = [str(rng.choice(["talk", "listen", "none"], p=[0.45, 0.45, 0.1])) for _ in range(num_seconds + 1)]
    actors = []
    pair_anchor: Optional[tuple[float, float, float, int]] = None
    for index, role in enumerate(roles):
        if role == "talker" and pair_anchor is not None:
            x0, ground0, h0, facing0 = pair_anchor
            h = float(np.clip(h0 * rng.uniform(0.9, 1.1), 0.4 * height, 0.85 * height))
            ground = float(np.clip(ground0 + rng.uniform(-0.03, 0.03) * height, h + 0.02 * height, height - 1))
            x = x0 + facing0 * rng.uniform(0.5, 0.65) * (h + h0) / 2
            state = PersonState(x=x, ground=ground, facing=-facing0)
        else:
            h = float(rng.uniform(0.4, 0.85) * height)
            ground = float(rng.uniform(h + 0.02 * height, height - 1))
            span = 0.3 * h
            facing = int(rng.choice([-1, 1]))
            if role == "talker":  # leave room for the partner in front
                facing = 1 if rng.random() < 0.5 else -1
                lo, hi = (span, width - 0.9 * h) if facing == 1 else (0.9 * h, width - span)
                x = float(rng.uniform(lo, max(lo, hi)))
                pair_anchor = (x, ground, h, facing)
            else:
                x = float(rng.uniform(span, width - span))
            state = PersonState(x=x, ground=ground, facing=facing)
        look = random_appearance(rng, h, carries=role == "carrier", limb_thickness=style.limb_thickness)
        plan = talk_plan if index == 0 else [{"talk": "listen", "listen": "talk"}.get(p, p) for p in talk_plan]
        segments = plan_person(rng, role, replace(state), h, num_seconds, width, plan if role == "talker" else None)
        poses = simulate_person(replace(state), segments, h, num_frames)
        actors.append(Actor(look, poses, segments))
    occluders = []
    if rng.random() < style.occluder_probability:
        x0 = float(rng.uniform(0, width * 0.9))
        pole = float(rng.uniform(0.05, 0.1) * width)
        top = float(rng.uniform(-0.1, 0.3) * height)
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        occluders.append(Occluder(x0, x0 + pole, top, float(rng.uniform(0.85, 1.1) * height), colour))
    return Scene(background, margin, height, width, actors, occluders, camera_path(rng, num_frames, jitter))
