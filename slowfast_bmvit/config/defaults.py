"""Configuration defaults.

Key groups and names follow PySlowFast's `slowfast/config/defaults.py`, so that upstream YAML files and
`KEY VALUE` overrides work unchanged; the BMVIT group holds this method's own knobs and the ACT group the
UCF101-24 / JHMDB data. Every key has a one-line comment: this file is the documentation of the knobs.
"""

from fvcore.common.config import CfgNode

_C = CfgNode()

# ---------------------------------------------------------------------------- #
# Batch norm options (MViT uses LayerNorm; BatchNorm appears only in the optional MVIT.CONV_STEM_CHANNELS stem).
# Keys marked "refused" accept only their default value (config/validation.py).
# ---------------------------------------------------------------------------- #
_C.BN = CfgNode()
# Recompute precise BN statistics before evaluation (refused: not offered).
_C.BN.USE_PRECISE_STATS = False
# Batches used to recompute precise BN statistics (refused: not offered).
_C.BN.NUM_BATCHES_PRECISE = 200
# Weight decay of BatchNorm weights and biases (the convolutional stem's), whatever SOLVER.ZERO_WD_1D_PARAM says.
_C.BN.WEIGHT_DECAY = 0.0
# Norm type (refused unless "batchnorm": the stem uses plain BatchNorm3d).
_C.BN.NORM_TYPE = "batchnorm"
# Number of splits for sub_batchnorm (refused: not offered).
_C.BN.NUM_SPLITS = 1
# Number of devices to sync statistics over for sync_batchnorm (refused: not offered).
_C.BN.NUM_SYNC_DEVICES = 1
# Use the global (all-device) statistics for sync_batchnorm (refused: not offered).
_C.BN.GLOBAL_SYNC = False

# ---------------------------------------------------------------------------- #
# Training options
# ---------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
# Run training.
_C.TRAIN.ENABLE = True
# Dataset name in DATASET_REGISTRY ("ava", "ucf24", "jhmdb", "synthava").
_C.TRAIN.DATASET = "ava"
# Global batch size over all processes (clips per step).
_C.TRAIN.BATCH_SIZE = 64
# Validate every this many epochs.
_C.TRAIN.EVAL_PERIOD = 10
# Save a checkpoint every this many epochs.
_C.TRAIN.CHECKPOINT_PERIOD = 10
# Also save a checkpoint every this many iterations within an epoch (0: never), for resumable long epochs.
_C.TRAIN.CHECKPOINT_ITER_PERIOD = 0
# Resume from the newest checkpoint in OUTPUT_DIR/checkpoints when one exists.
_C.TRAIN.AUTO_RESUME = True
# Checkpoint to initialise from (e.g. a K400 MViTv2-S .pyth); "" for none.
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Checkpoint format (refused unless "pytorch": Caffe2 files do not load).
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"
# Inflate a 2-D image checkpoint to 3-D video weights, as upstream does for ImageNet init (refused: not offered).
_C.TRAIN.CHECKPOINT_INFLATE = False
# Start from epoch 0 and a fresh optimizer even if the checkpoint has "epoch" (fine-tuning K400 -> AVA).
_C.TRAIN.CHECKPOINT_EPOCH_RESET = False
# Substrings upstream strips from checkpoint key names (refused: the loader finds the key prefix itself).
_C.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = ()
# Train with automatic mixed precision.
_C.TRAIN.MIXED_PRECISION = False
# Autocast dtype under MIXED_PRECISION: "bfloat16" or "float16" (float16 uses a GradScaler).
_C.TRAIN.MIXED_PRECISION_DTYPE = "bfloat16"
# Freeze the backbone (train the heads only): no gradients, and its BatchNorm statistics and dropout in eval mode.
_C.TRAIN.FREEZE_BACKBONE = False

# ---------------------------------------------------------------------------- #
# Augmentation options: upstream's Kinetics classification recipe, refused unless at these defaults (detection
# augments with DATA.RANDOM_FLIP, DATA.TRAIN_JITTER_SCALES and AVA.TRAIN_USE_COLOR_AUGMENTATION)
# ---------------------------------------------------------------------------- #
_C.AUG = CfgNode()
# Enable RandAugment / random erasing for classification training (refused).
_C.AUG.ENABLE = False
# Number of augmented copies of each sampled clip (refused).
_C.AUG.NUM_SAMPLE = 1
# Colour jitter strength of the classification recipe (refused; see AVA.TRAIN_USE_COLOR_AUGMENTATION).
_C.AUG.COLOR_JITTER = 0.4
# RandAugment policy string.
_C.AUG.AA_TYPE = "rand-m9-mstd0.5-inc1"
# Interpolation for the augmentations: "bilinear" or "bicubic".
_C.AUG.INTERPOLATION = "bicubic"
# Random erasing probability.
_C.AUG.RE_PROB = 0.25
# Random erasing fill mode.
_C.AUG.RE_MODE = "pixel"
# Number of random erasing boxes.
_C.AUG.RE_COUNT = 1
# Do not random-erase the first augmentation split.
_C.AUG.RE_SPLIT = False

# ---------------------------------------------------------------------------- #
# MixUp options: upstream's classification recipe, refused unless at these defaults
# ---------------------------------------------------------------------------- #
_C.MIXUP = CfgNode()
# Enable MixUp / CutMix.
_C.MIXUP.ENABLE = False
# MixUp alpha.
_C.MIXUP.ALPHA = 0.8
# CutMix alpha.
_C.MIXUP.CUTMIX_ALPHA = 1.0
# Probability of applying MixUp or CutMix to a batch (refused).
_C.MIXUP.PROB = 1.0
# Probability of switching to CutMix instead of MixUp.
_C.MIXUP.SWITCH_PROB = 0.5
# Label smoothing applied with MixUp.
_C.MIXUP.LABEL_SMOOTH_VALUE = 0.1

# ---------------------------------------------------------------------------- #
# Testing options
# ---------------------------------------------------------------------------- #
_C.TEST = CfgNode()
# Run testing after training (or alone when TRAIN.ENABLE is False).
_C.TEST.ENABLE = True
# Dataset name in DATASET_REGISTRY for testing.
_C.TEST.DATASET = "ava"
# Global test batch size.
_C.TEST.BATCH_SIZE = 8
# Checkpoint to test; "" tests the newest checkpoint in OUTPUT_DIR/checkpoints, else TRAIN.CHECKPOINT_FILE_PATH.
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Test even when the checkpoint leaves model tensors at their random initial values, or there is none (warned).
_C.TEST.ALLOW_RANDOM_WEIGHTS = False
# Clips per keyframe at test: 1 (upstream's multi-view classification test is refused; see TEST.FLIP_AVERAGE).
_C.TEST.NUM_ENSEMBLE_VIEWS = 1
# Spatial crops per clip at test: 1 (upstream's multi-crop classification test is refused).
_C.TEST.NUM_SPATIAL_CROPS = 1
# Checkpoint format of TEST.CHECKPOINT_FILE_PATH (refused unless "pytorch").
_C.TEST.CHECKPOINT_TYPE = "pytorch"
# Also pickle the raw test detections (per clip: boxes, class and actor scores as numpy arrays, meta) to this file
# inside OUTPUT_DIR ("" to skip).
_C.TEST.SAVE_RESULTS_PATH = ""
# Detection: also run each test clip mirrored left-right and average the two predictions (BMViT: token by token;
# RoI models: box by box; models/flip_average.py). Twice the test cost; not in the paper, which tests one view.
_C.TEST.FLIP_AVERAGE = False

# ---------------------------------------------------------------------------- #
# Model options
# ---------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
# Architecture family, informational (the model is MODEL.MODEL_NAME); "slowfast" (two pathways) is refused.
_C.MODEL.ARCH = "mvit"
# Registered model name: "MViT" / "ViT" (classifiers), "BMViT" (single-stage detector), "MViTRoI" (two-stage
# baseline); the detectors' backbone is BMVIT.BACKBONE.
_C.MODEL.MODEL_NAME = "BMViT"
# Number of output classes (80 for AVA v2.2 label ids 1..80, 24 for UCF101-24, 21 for JHMDB).
_C.MODEL.NUM_CLASSES = 80
# Upstream's classifier loss (refused unless the default: detectors use BMVIT.CLASS_LOSS, MViTRoI sigmoid BCE).
_C.MODEL.LOSS_FUNC = "cross_entropy"
# Dropout before the final classification layer.
_C.MODEL.DROPOUT_RATE = 0.5
# Drop-connect rate (refused: stochastic depth is MVIT.DROPPATH_RATE).
_C.MODEL.DROPCONNECT_RATE = 0.0
# Final activation of classifiers at test time: "softmax", "sigmoid" or "none".
_C.MODEL.HEAD_ACT = "softmax"
# Recompute block activations in the backward pass to save memory (torch.utils.checkpoint).
_C.MODEL.ACT_CHECKPOINT = False
# Compile the model with torch.compile (TorchInductor), in place: parameter names and checkpoints stay the same. The
# first iterations, and each new clip shape (multigrid, a different test crop), wait for the compiler. Off by
# default: on the CPU compiling costs minutes for a small gain (benchmarks/results/speed.md); on a GPU, measure first.
_C.MODEL.COMPILE = False
# Single-pathway architectures (PySlowFast's list; refused unless the default).
_C.MODEL.SINGLE_PATHWAY_ARCH = ["2d", "c2d", "i3d", "slow", "x3d", "mvit", "vit"]
# Multi-pathway architectures (PySlowFast's list; refused unless the default).
_C.MODEL.MULTI_PATHWAY_ARCH = ["slowfast"]

# ---------------------------------------------------------------------------- #
# MViT options (PySlowFast MViTv2 keys and value formats)
# ---------------------------------------------------------------------------- #
_C.MVIT = CfgNode()
# Attention pooling mode: "conv" (depthwise Conv3d + LayerNorm, MViTv2); upstream's "max" / "avg" are refused.
_C.MVIT.MODE = "conv"
# Pool q/k/v before the linear projection (MViTv1 style; refused unless False).
_C.MVIT.POOL_FIRST = False
# Prepend a class token.
_C.MVIT.CLS_EMBED_ON = True
# Patch embedding kernel (T, H, W).
_C.MVIT.PATCH_KERNEL = [3, 7, 7]
# Patch embedding stride (T, H, W).
_C.MVIT.PATCH_STRIDE = [2, 4, 4]
# Patch embedding padding (T, H, W).
_C.MVIT.PATCH_PADDING = [2, 4, 4]
# Convolutional stem (not in MViTv2; for small MViTs trained from scratch): output channels of Conv3d(3x3x3,
# stride (1, 2, 2), padding 1) + BatchNorm3d + ReLU layers run before the patch embedding, each halving H and W
# (so the token grid's H/W stride is PATCH_STRIDE x 2^len); the patch projection is then followed by a BatchNorm3d.
# Empty: upstream's single-Conv3d patch embedding and state_dict (K400 checkpoints load only then). A plain patch
# embedding learns SynthAVA's motion classes very slowly from scratch (benchmarks/results/demo.md).
_C.MVIT.CONV_STEM_CHANNELS = []
# Use a 2D patch embedding (images; refused when the model is built unless False).
_C.MVIT.PATCH_2D = False
# Base embedding dimension.
_C.MVIT.EMBED_DIM = 96
# Base number of attention heads.
_C.MVIT.NUM_HEADS = 1
# MLP hidden size as a multiple of the block dimension.
_C.MVIT.MLP_RATIO = 4.0
# Bias in the qkv projection.
_C.MVIT.QKV_BIAS = True
# Stochastic depth rate, increasing linearly from 0 to this value over the blocks.
_C.MVIT.DROPPATH_RATE = 0.1
# Number of transformer blocks.
_C.MVIT.DEPTH = 16
# Normalisation layer (refused unless "layernorm").
_C.MVIT.NORM = "layernorm"
# [[block index, multiplier], ...]: the block at which the dimension is multiplied.
_C.MVIT.DIM_MUL = []
# [[block index, multiplier], ...]: the block at which the head count is multiplied.
_C.MVIT.HEAD_MUL = []
# [[block index, stride_t, stride_h, stride_w], ...]: key/value pooling strides per block.
_C.MVIT.POOL_KV_STRIDE = []
# [t, h, w]: initial key/value stride, divided by each query stride as blocks go (None: use POOL_KV_STRIDE).
_C.MVIT.POOL_KV_STRIDE_ADAPTIVE = None
# [[block index, stride_t, stride_h, stride_w], ...]: query pooling strides per block.
_C.MVIT.POOL_Q_STRIDE = []
# [t, h, w]: pooling kernel for q, k and v (None: derived from the strides).
_C.MVIT.POOL_KVQ_KERNEL = None
# Exclude positional embeddings and the class token from weight decay.
_C.MVIT.ZERO_DECAY_POS_CLS = True
# Normalise the patch-embedding output (upstream MViTv1 key; refused unless False).
_C.MVIT.NORM_STEM = False
# Separate spatial and temporal absolute position embeddings (MViTv1; refused unless False).
_C.MVIT.SEP_POS_EMBED = False
# Dropout rate inside the transformer MLPs.
_C.MVIT.DROPOUT_RATE = 0.0
# Absolute position embeddings.
_C.MVIT.USE_ABS_POS = True
# Decomposed relative position embeddings along H and W.
_C.MVIT.REL_POS_SPATIAL = False
# Decomposed relative position embeddings along T.
_C.MVIT.REL_POS_TEMPORAL = False
# Zero-initialise the relative position tables.
_C.MVIT.REL_POS_ZERO_INIT = False
# Add the pooled query to the attention output (MViTv2 residual pooling).
_C.MVIT.RESIDUAL_POOLING = False
# Change the dimension inside attention (qkv projects to dim_out) rather than in the MLP.
_C.MVIT.DIM_MUL_IN_ATT = False
# Separate q, k, v linear layers instead of one qkv layer (refused unless False).
_C.MVIT.SEPARATE_QKV = False
# Head initialisation scale.
_C.MVIT.HEAD_INIT_SCALE = 1.0
# Use the mean of the tokens (not the class token) for classification (refused unless False).
_C.MVIT.USE_MEAN_POOLING = False
# Fixed sine-cosine absolute position embedding instead of a learned one (refused when the model is built unless
# False).
_C.MVIT.USE_FIXED_SINCOS_POS = False
# LayerScale init value of the residual branches (0: no LayerScale; refused unless 0).
_C.MVIT.LAYER_SCALE_INIT_VALUE = 0.0
# Attention implementation (all give the same numbers up to rounding; models/attention.py):
#   "auto"     the fastest measured on the input's device (attention.AUTO_ATTN_IMPL; benchmarks/results/speed.md);
#   "folded"   scaled_dot_product_attention without a mask, the relative-position terms folded into the dot product
#              as extra q/k channels (flash-kernel eligible);
#   "sdpa"     scaled_dot_product_attention with the relative-position terms as an additive mask;
#   "explicit" upstream's matmul + softmax formulation (the reference the others are tested against).
_C.MVIT.ATTN_IMPL = "auto"
# Block indices whose query pooling is removed (BMViT removes it at block 14 to keep a 16x16 output at 256 px).
_C.MVIT.REMOVE_Q_POOL_BLOCKS = []

# ---------------------------------------------------------------------------- #
# Plain ViT options (VideoMAE-style ViT-B backbone, models/vit.py; read when BMVIT.BACKBONE or MODEL.MODEL_NAME is ViT)
# ---------------------------------------------------------------------------- #
_C.VIT = CfgNode()
# Tubelet (patch) size (T, H, W): kernel and stride of the Conv3d patch embedding (VideoMAE: 2x16x16).
_C.VIT.PATCH_SIZE = [2, 16, 16]
# Embedding dimension (ViT-B: 768).
_C.VIT.EMBED_DIM = 768
# Number of transformer blocks (ViT-B: 12).
_C.VIT.DEPTH = 12
# Number of attention heads (ViT-B: 12).
_C.VIT.NUM_HEADS = 12
# MLP hidden size as a multiple of the embedding dimension.
_C.VIT.MLP_RATIO = 4.0
# Stochastic depth rate, increasing linearly from 0 to this value over the blocks.
_C.VIT.DROPPATH_RATE = 0.1
# Absolute positions: "sincos" (VideoMAE's fixed 1-D sinusoid table, not saved in checkpoints) or "learned".
_C.VIT.POS_EMBED = "sincos"
# Token grid [T', H', W'] the position table is made for (a VideoMAE K400 checkpoint: [8, 14, 14], 16x224); other
# grids get it resized as [T', H', W', C] (linear in time, bicubic in space; docs/backbones/vit.md). []: the grid of
# the training clip (DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE).
_C.VIT.POS_EMBED_GRID = []
# Convolutional stem before the patch embedding, as MVIT.CONV_STEM_CHANNELS (each layer halves H and W; for small
# ViTs trained from scratch). Empty: VideoMAE's single Conv3d, the only layout its checkpoints load into.
_C.VIT.CONV_STEM_CHANNELS = []

# ---------------------------------------------------------------------------- #
# Hiera options (the official `hiera-transformer` video models; defaults: hiera_base_16x224, docs/backbones/hiera.md)
# ---------------------------------------------------------------------------- #
_C.HIERA = CfgNode()
# Width of the first stage (96 Hiera-B, 112 Hiera-B+, 144 Hiera-L, 256 Hiera-H); each later stage multiplies it.
_C.HIERA.EMBED_DIM = 96
# Attention heads of the first stage (1 Hiera-B, 2 Hiera-B+ / L, 4 Hiera-H).
_C.HIERA.NUM_HEADS = 1
# Blocks per stage ([2, 3, 16, 3] Hiera-B / B+, [2, 6, 36, 4] Hiera-L / H).
_C.HIERA.STAGES = [2, 3, 16, 3]
# Number of stage changes (from the first) that max-pool the queries by Q_STRIDE: 3 official, 2 for BMViT (keeps
# a 16x16 token grid at 256 px); parameters do not depend on it, so checkpoints load either way.
_C.HIERA.Q_POOL = 3
# Query pooling stride (T, H, W) at each pooling stage change; also the unroll stride of the token order.
_C.HIERA.Q_STRIDE = [1, 2, 2]
# Mask unit (T, H, W) in patch tokens, the window of mask-unit attention (a product of the first Q_STRIDE steps).
_C.HIERA.MASK_UNIT_SIZE = [1, 8, 8]
# Per stage: attend within mask units (True) or over all tokens (False).
_C.HIERA.MASK_UNIT_ATTN = [True, True, False, False]
# Width multiplier at each stage change.
_C.HIERA.DIM_MUL = 2.0
# Head-count multiplier at each stage change.
_C.HIERA.HEAD_MUL = 2.0
# Patch embedding Conv3d kernel (T, H, W).
_C.HIERA.PATCH_KERNEL = [3, 7, 7]
# Patch embedding stride (T, H, W).
_C.HIERA.PATCH_STRIDE = [2, 4, 4]
# Patch embedding padding (T, H, W).
_C.HIERA.PATCH_PADDING = [1, 3, 3]
# MLP hidden size as a multiple of the block width.
_C.HIERA.MLP_RATIO = 4.0
# Stochastic depth rate, increasing linearly from 0 to this value over the blocks.
_C.HIERA.DROPPATH_RATE = 0.0
# Separate spatial (H'*W') and temporal (T') position embeddings (the video models) instead of one T'*H'*W' table.
_C.HIERA.SEP_POS_EMBED = True
# Scale of the classifier head's initial weights and biases (the official 0.001).
_C.HIERA.HEAD_INIT_SCALE = 0.001

# ---------------------------------------------------------------------------- #
# BMViT options (this method's own knobs; docs/PAPER.md says which are the paper's and which are this package's)
# ---------------------------------------------------------------------------- #
_C.BMVIT = CfgNode()
# Backbone of the detection models (BMViT and the two-stage MViTRoI): "MViT" (MVIT keys), "ViT" (VIT keys) or
# "Hiera" (HIERA keys).
_C.BMVIT.BACKBONE = "MViT"
# Channels after the 1x1x1 projection of the backbone tokens (512 for MViTv2-S); 0: no projection, the heads read
# the backbone tokens (the ViT-B pipeline of the supplement).
_C.BMVIT.PROJ_DIM = 512
# Layers in each MLP head (hidden size PROJ_DIM, or the backbone width when PROJ_DIM is 0).
_C.BMVIT.HEAD_LAYERS = 3
# Class head: "mlp" (an MLP on each class token) or "cross_attention" (supplement Fig. 1b: each class token attends
# to every backbone token, then a 4x-wide MLP block and the class MLP; triplets stay one-to-one with the tokens).
_C.BMVIT.CLASS_HEAD = "mlp"
# Attention heads of the cross_attention class head (ViT-B: 12 at width 768).
_C.BMVIT.CROSS_ATTENTION_HEADS = 12
# Dropout before the class head's last layer.
_C.BMVIT.CLASS_DROPOUT = 0.0
# Token arrangement: "all", "center", "center_tpool", "two_halves", "all_tpool" (see token_selection.py).
_C.BMVIT.TOKEN_ARRANGEMENT = "center_tpool"
# Box parameterisation: "token_grid" (cx, cy relative to each token's cell centre) or "none" (absolute).
_C.BMVIT.BOX_REFERENCE = "token_grid"
# Matching cost weight of -p(actor).
_C.BMVIT.COST_ACTOR = 1.0
# Matching cost weight of the L1 box distance.
_C.BMVIT.COST_BBOX = 5.0
# Matching cost weight of -GIoU.
_C.BMVIT.COST_GIOU = 2.0
# Matching cost weight of the class term (0 disables it).
_C.BMVIT.COST_CLASS = 0.0
# Matching cost weight of the L1 distance between a token's cell centre and the person's box centre (a spatial
# prior that keeps each person on the tokens around its centre; 0, the paper's cost, disables it).
_C.BMVIT.COST_CENTRE = 0.0
# Loss weight of the actor / no-actor cross-entropy.
_C.BMVIT.LOSS_ACTOR = 1.0
# Relative weight of the no-actor class in the actor cross-entropy (DETR's eos_coef).
_C.BMVIT.NO_ACTOR_WEIGHT = 0.1
# Loss weight of the L1 box loss.
_C.BMVIT.LOSS_BBOX = 5.0
# Loss weight of the GIoU box loss.
_C.BMVIT.LOSS_GIOU = 2.0
# Loss weight of the class loss.
_C.BMVIT.LOSS_CLASS = 1.0
# Class loss: "bce" (multi-label, AVA) or "ce" (single-label, UCF101-24 / JHMDB).
_C.BMVIT.CLASS_LOSS = "bce"
# Auxiliary dense loss (not in the paper; 0 disables it): every token whose cell centre lies in the central region
# of an actor's box also gets that actor's box (L1, GIoU) and class losses, with the main loss weights, times this
# weight. The actor head stays one-to-one, while the backbone and the box and class heads get more supervised
# tokens per clip, and a neighbouring token that fires carries a good box, which BMVIT.NMS_IOU then removes as a
# duplicate. The SynthAVA demo uses weight 0.5 over the whole box (region 1.0) with NMS 0.5 (before the demo had
# its convolutional stem, weight 1 stalled the actor head; benchmarks/results/demo.md).
_C.BMVIT.AUX_DENSE_WEIGHT = 0.0
# Half-size of that central region as a fraction of the box's half-size (1.0: the whole box).
_C.BMVIT.AUX_DENSE_REGION = 0.5
# Also match annotated non-actor persons: box losses on their tokens, which keep the "no actor" target.
_C.BMVIT.BOX_LOSS_ON_NON_ACTORS = False
# Inference: keep triplets with p(actor) above this threshold.
_C.BMVIT.ACTOR_THRESH = 0.3
# Inference: keep at most this many triplets per clip (highest p(actor)); 0 for no limit.
_C.BMVIT.TOP_K = 0
# Inference: non-maximum suppression at this box IoU among the kept triplets, before TOP_K (0: off, the paper's
# NMS-free inference). Not part of the method; for small from-scratch models whose neighbouring tokens co-fire.
_C.BMVIT.NMS_IOU = 0.0
# Detection score of a (box, class) row: "class_x_actor" (p(class) * p(actor)) or "class" (p(class)).
_C.BMVIT.SCORE_RULE = "class_x_actor"

# ---------------------------------------------------------------------------- #
# Data options
# ---------------------------------------------------------------------------- #
_C.DATA = CfgNode()
# Root of Kinetics-style list files (refused: AVA uses AVA.*, UCF101-24 / JHMDB ACT.*, SynthAVA SYNTH.ROOT).
_C.DATA.PATH_TO_DATA_DIR = ""
# Separator of Kinetics-style list files (refused: not read).
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Prefix of the paths in Kinetics-style list files (refused: not read).
_C.DATA.PATH_PREFIX = ""
# Frames sampled per clip.
_C.DATA.NUM_FRAMES = 16
# Temporal stride between sampled frames (in frames of the source rate).
_C.DATA.SAMPLING_RATE = 4
# Spatial resolution of training clips (pixels; square).
_C.DATA.TRAIN_CROP_SIZE = 224
# Spatial resolution of test clips (pixels; square).
_C.DATA.TEST_CROP_SIZE = 224
# [min, max] short-side scale jitter for training.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Relative area range of RandomResizedCrop jitter (classification; refused).
_C.DATA.TRAIN_JITTER_SCALES_RELATIVE = []
# Relative aspect-ratio range of RandomResizedCrop jitter (classification; refused).
_C.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []
# Per-channel mean (RGB, on [0,1] pixels).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel standard deviation (RGB, on [0,1] pixels).
_C.DATA.STD = [0.225, 0.225, 0.225]
# Input channels per pathway.
_C.DATA.INPUT_CHANNEL_NUM = [3]
# Multi-label classification (refused: detection labels are multi-hot per box anyway).
_C.DATA.MULTI_LABEL = False
# Ensemble method of multi-view classification testing (refused).
_C.DATA.ENSEMBLE_METHOD = "sum"
# Reverse the input channel order (refused: use AVA.BGR).
_C.DATA.REVERSE_INPUT_CHANNEL = False
# Video decoding backend (refused unless "pyav").
_C.DATA.DECODING_BACKEND = "pyav"
# Sample Kinetics clips at offsets (classification; refused).
_C.DATA.USE_OFFSET_SAMPLING = False
# Frame rate of decoded videos (refused unless 30: AVA frames are extracted at 30 fps, ACT videos are read frame by frame).
_C.DATA.TARGET_FPS = 30
# Spatial resize policy of detection clips: "square" (resize to CROP x CROP, BMViT) or "short_side" (jitter + crop).
_C.DATA.RESIZE_MODE = "square"
# Random horizontal flip in training.
_C.DATA.RANDOM_FLIP = True
# Corrupt or unreadable image, or frames missing from a video file: "error" stops with the path (and the first
# missing frame); "skip" counts it and uses the nearest readable image, or skips the keyframes needing missing frames.
_C.DATA.ON_BAD_FRAME = "error"

# ---------------------------------------------------------------------------- #
# Solver options
# ---------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
# Base learning rate (per NUM_SHARDS shard when BASE_LR_SCALE_NUM_SHARDS).
_C.SOLVER.BASE_LR = 0.1
# Learning rate policy: "cosine", "steps_with_relative_lrs" or "constant".
_C.SOLVER.LR_POLICY = "cosine"
# Final learning rate of the cosine schedule.
_C.SOLVER.COSINE_END_LR = 0.0
# Start the cosine decay after the warmup (rather than from epoch 0).
_C.SOLVER.COSINE_AFTER_WARMUP = False
# LR decay between the stages of multigrid's long cycle (SOLVER.LRS = GAMMA^stage), as upstream.
_C.SOLVER.GAMMA = 0.1
# Step size of upstream's "steps_with_decay" policy (refused: not offered).
_C.SOLVER.STEP_SIZE = 1
# Epochs at which the step schedule changes, starting with 0.
_C.SOLVER.STEPS = []
# Learning rate multipliers of the step schedule.
_C.SOLVER.LRS = []
# Number of training epochs.
_C.SOLVER.MAX_EPOCH = 300
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# SGD dampening.
_C.SOLVER.DAMPENING = 0.0
# Nesterov momentum.
_C.SOLVER.NESTEROV = True
# L2 weight decay.
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Linear warmup start learning rate.
_C.SOLVER.WARMUP_START_LR = 0.01
# Warmup length in epochs (fractions allowed).
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Optimizer: "sgd", "adam" or "adamw".
_C.SOLVER.OPTIMIZING_METHOD = "sgd"
# Multiply BASE_LR by NUM_SHARDS.
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
# Clip gradients by value (None: off).
_C.SOLVER.CLIP_GRAD_VAL = None
# Clip gradients by global L2 norm (None: off).
_C.SOLVER.CLIP_GRAD_L2NORM = None
# Zero weight decay for 1-D parameters (biases, norms, tables) and the model's no_weight_decay() names.
_C.SOLVER.ZERO_WD_1D_PARAM = False
# Layer-wise learning rate decay (1.0: off); layer 0 = cls/pos/patch_embed, i+1 = blocks.i (MViT and ViT alike).
_C.SOLVER.LAYER_DECAY = 1.0
# Learning rate multiplier of the detection heads relative to the backbone.
_C.SOLVER.HEAD_LR_MULT = 1.0
# Adam betas.
_C.SOLVER.BETAS = (0.9, 0.999)

# ---------------------------------------------------------------------------- #
# Distributed and misc options
# ---------------------------------------------------------------------------- #
# Processes (GPUs) per machine; 0 runs on the CPU (world size 1 unless launched by torchrun).
_C.NUM_GPUS = 1
# Number of machines.
_C.NUM_SHARDS = 1
# Index of this machine.
_C.SHARD_ID = 0
# Output directory for logs, checkpoints and results.
_C.OUTPUT_DIR = "./output"
# Seed for Python, numpy and torch.
_C.RNG_SEED = 1
# Log every this many iterations.
_C.LOG_PERIOD = 10
# Log the model's parameter count and GFLOPs of one clip (main process): when training starts at
# DATA.TRAIN_CROP_SIZE, and when the test starts at DATA.TEST_CROP_SIZE.
_C.LOG_MODEL_INFO = True
# torch.distributed backend of multi-process GPU runs ("nccl" or "gloo"); CPU runs always use "gloo".
_C.DIST_BACKEND = "nccl"
# Make runs bit-reproducible on CPU (deterministic algorithms, single-threaded data order).
_C.DETERMINISTIC = False

# ---------------------------------------------------------------------------- #
# Data loader options
# ---------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
# Worker processes per data loader.
_C.DATA_LOADER.NUM_WORKERS = 2
# Pin host memory for faster GPU transfer.
_C.DATA_LOADER.PIN_MEMORY = True
# Decode videos with several threads (PyAV thread_type AUTO).
_C.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False

# ---------------------------------------------------------------------------- #
# Detection options (two-stage baseline head)
# ---------------------------------------------------------------------------- #
_C.DETECTION = CfgNode()
# The task is spatio-temporal detection (AVA-style batches with boxes): the training and test loops need True
# (False, upstream's clip classification, is for model definitions such as configs/Kinetics; it cannot train here).
_C.DETECTION.ENABLE = False
# RoIAlign output size of the two-stage head.
_C.DETECTION.ROI_XFORM_RESOLUTION = 7
# Feature stride of the backbone output in input pixels (RoIAlign spatial_scale = 1/this; 32 for MViTv2-S).
_C.DETECTION.SPATIAL_SCALE_FACTOR = 32
# RoIAlign with half-pixel alignment (aligned=True).
_C.DETECTION.ALIGNED = True

# ---------------------------------------------------------------------------- #
# AVA dataset options (PySlowFast layout)
# ---------------------------------------------------------------------------- #
_C.AVA = CfgNode()
# Frames: FRAME_DIR/<video>/<video>_%06d.jpg.
_C.AVA.FRAME_DIR = "/mnt/fair-flash3-east/ava_trainval_frames.img/"
# Folder of the frame lists train.csv / val.csv.
_C.AVA.FRAME_LIST_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
# Folder of the box CSVs, exclusions and label map.
_C.AVA.ANNOTATION_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
# Frame lists used for training (inside FRAME_LIST_DIR).
_C.AVA.TRAIN_LISTS = ["train.csv"]
# Frame lists used for testing (inside FRAME_LIST_DIR).
_C.AVA.TEST_LISTS = ["val.csv"]
# Ground-truth box CSVs used for training (inside ANNOTATION_DIR).
_C.AVA.TRAIN_GT_BOX_LISTS = ["ava_train_v2.2.csv"]
# Extra predicted person boxes used for training (inside ANNOTATION_DIR).
_C.AVA.TRAIN_PREDICT_BOX_LISTS = []
# Boxes used at test: predicted person boxes for the two-stage baseline (inside ANNOTATION_DIR).
_C.AVA.TEST_PREDICT_BOX_LISTS = ["ava_val_predicted_boxes.csv"]
# Models that read person boxes (two-stage): test on GROUNDTRUTH_FILE's boxes instead of TEST_PREDICT_BOX_LISTS.
# A model that finds the persons itself (BMViT) always tests every keyframe of GROUNDTRUTH_FILE.
_C.AVA.TEST_USE_GT_BOXES = False
# Score threshold of predicted person boxes.
_C.AVA.DETECTION_SCORE_THRESH = 0.9
# Feed the model BGR channels (reversed after normalisation), as models trained on BGR frames expect.
_C.AVA.BGR = False
# Colour augmentation in training.
_C.AVA.TRAIN_USE_COLOR_AUGMENTATION = False
# Use PCA jitter in colour augmentation.
_C.AVA.TRAIN_PCA_JITTER_ONLY = True
# Eigenvalues for PCA jitter.
_C.AVA.TRAIN_PCA_EIGVAL = [0.225, 0.224, 0.229]
# Eigenvectors for PCA jitter.
_C.AVA.TRAIN_PCA_EIGVEC = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
]
# Test on the flipped clip as well (refused: TEST.FLIP_AVERAGE does it).
_C.AVA.TEST_FORCE_FLIP = False
# Evaluate every keyframe of val, not only sec % 4 == 0.
_C.AVA.FULL_TEST_ON_VAL = False
# Label map used for evaluation (inside ANNOTATION_DIR).
_C.AVA.LABEL_MAP_FILE = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
# Exclusions used for evaluation (inside ANNOTATION_DIR).
_C.AVA.EXCLUSION_FILE = "ava_val_excluded_timestamps_v2.2.csv"
# Ground truth used for evaluation (inside ANNOTATION_DIR).
_C.AVA.GROUNDTRUTH_FILE = "ava_val_v2.2.csv"
# Image decoding backend (refused unless "cv2").
_C.AVA.IMG_PROC_BACKEND = "cv2"
# Evaluation protocol: "pyslowfast" (no per-image cap) or "activitynet" (top-50 rows per image).
_C.AVA.EVAL_PROTOCOL = "pyslowfast"

# ---------------------------------------------------------------------------- #
# UCF101-24 / JHMDB-21 options (ACT-style ground truth)
# ---------------------------------------------------------------------------- #
_C.ACT = CfgNode()
# ACT ground-truth pickle (labels, train/test videos, nframes, resolution, gttubes).
_C.ACT.GT_FILE = ""
# Root of FRAME_DIR/<Class>/<video>/FRAME_PATTERN frames, or of <Class>/<video>VIDEO_EXT (or <video>VIDEO_EXT) videos.
_C.ACT.FRAME_DIR = ""
# Where frames come from: "frames" (JPEG folders) or "videos" (decoded with PyAV).
_C.ACT.SOURCE = "frames"
# Frame file name pattern inside each video folder.
_C.ACT.FRAME_PATTERN = "{:05d}.jpg"
# Video file extension when SOURCE is "videos".
_C.ACT.VIDEO_EXT = ".mp4"
# Split index (1-based; UCF101-24 has split 1 only, JHMDB 1..3).
_C.ACT.SPLIT = 1
# Test every k-th annotated frame (every k-th frame with TEST_ALL_FRAMES; 1: all).
_C.ACT.TEST_FRAME_STRIDE = 1
# Test on every frame of the test videos, not only annotated ones (ACT protocol; video-mAP's temporal extent needs it).
_C.ACT.TEST_ALL_FRAMES = False
# Decoded video frames kept per data-loader process when SOURCE is "videos" (LRU over videos; 0: none).
_C.ACT.DECODED_FRAME_CACHE = 512
# Train on every k-th annotated keyframe (1: all).
_C.ACT.TRAIN_FRAME_STRIDE = 1

# ---------------------------------------------------------------------------- #
# SynthAVA options (the built-in generated AVA-format dataset)
# ---------------------------------------------------------------------------- #
_C.SYNTH = CfgNode()
# Root folder of the generated dataset (frames/, frame_lists/, annotations/).
_C.SYNTH.ROOT = "./data_synth/synthava"
# Generate the dataset there when it is missing.
_C.SYNTH.GENERATE_IF_MISSING = True
# Generator seed.
_C.SYNTH.SEED = 0
# Number of training videos.
_C.SYNTH.NUM_TRAIN_VIDEOS = 24
# Number of validation videos.
_C.SYNTH.NUM_VAL_VIDEOS = 8
# Length of each video in seconds (keyframes are the inner seconds).
_C.SYNTH.VIDEO_SECONDS = 12
# Frame size (height, width) in pixels.
_C.SYNTH.FRAME_SIZE = [128, 160]
# How hard the scenes are to see (datasets/synthetic_render.py SceneStyle; the actions do not change). The defaults
# are SynthAVA's original look; a dataset generated with other values lives at another SYNTH.ROOT.
# Background texture and panel contrast, 0 (flat wall and floor) .. 1 (original) .. 4.
_C.SYNTH.CLUTTER = 1.0
# Limb width as a fraction of a person's standing height.
_C.SYNTH.LIMB_THICKNESS = 0.075
# At most this many people per video (1-4).
_C.SYNTH.MAX_PEOPLE = 4
# Chance that a video has an occluding pole in front of the people.
_C.SYNTH.OCCLUDER_PROBABILITY = 0.35

# ---------------------------------------------------------------------------- #
# Multigrid training options
# ---------------------------------------------------------------------------- #
_C.MULTIGRID = CfgNode()
# Multiplier of the epoch count under multigrid (multigrid epochs are cheaper).
_C.MULTIGRID.EPOCH_FACTOR = 1.5
# Enable the short cycle: iterations cycle through SHORT_CYCLE_FACTORS x the crop (batch enlarged by the squared
# crop ratio) and the full crop; the train loader does it (datasets/short_cycle.py).
_C.MULTIGRID.SHORT_CYCLE = False
# Short cycle additional spatial dimensions relative to the default crop size.
_C.MULTIGRID.SHORT_CYCLE_FACTORS = [0.5, 0.5**0.5]
# Enable the long cycle (T, S shapes change between LR stages).
_C.MULTIGRID.LONG_CYCLE = False
# (Temporal, spatial) dimensions relative to the default shape of the long cycle.
_C.MULTIGRID.LONG_CYCLE_FACTORS = [
    (0.25, 0.5**0.5),
    (0.5, 0.5**0.5),
    (0.5, 1),
    (1, 1),
]
# Batch size for sub-batch BN under multigrid (refused: not offered).
_C.MULTIGRID.BN_BASE_SIZE = 8
# Evaluate this many times per long-cycle stage under multigrid.
_C.MULTIGRID.EVAL_FREQ = 3
# Temporal sampling rate used by the long cycle (0: keep DATA.SAMPLING_RATE scaled by the T factor).
_C.MULTIGRID.LONG_CYCLE_SAMPLING_RATE = 0
# Default (full) batch size, filled in at runtime.
_C.MULTIGRID.DEFAULT_B = 0
# Default temporal size, filled in at runtime.
_C.MULTIGRID.DEFAULT_T = 0
# Default spatial size, filled in at runtime.
_C.MULTIGRID.DEFAULT_S = 0

# ---------------------------------------------------------------------------- #
# Tensorboard options
# ---------------------------------------------------------------------------- #
_C.TENSORBOARD = CfgNode()
# Write TensorBoard event files (needs the optional tensorboard package): the json_stats scalars, learning rate,
# per-class AP and the AP plots of every evaluation.
_C.TENSORBOARD.ENABLE = False
# Event file folder: a relative path is inside OUTPUT_DIR ("" means OUTPUT_DIR/runs-<TRAIN.DATASET>).
_C.TENSORBOARD.LOG_DIR = ""

# ---------------------------------------------------------------------------- #
# Demo / visualisation options
# ---------------------------------------------------------------------------- #
_C.DEMO = CfgNode()
# Number of keyframes with drawn detections written after testing.
_C.DEMO.NUM_VIS_KEYFRAMES = 4
# Write the per-class AP plot after testing.
_C.DEMO.PLOT_AP = True
# The keys below are read by tools/demo_net.py only (engine/demo.py: a trained model on a video or frame folder).
# Frames between keyframes: a clip (DATA.NUM_FRAMES x DATA.SAMPLING_RATE) is centred on frames 0, STRIDE, 2 STRIDE...
_C.DEMO.STRIDE = 8
# Actions drawn per person box (highest scores first).
_C.DEMO.TOP_K_ACTIONS = 3
# Actions scored below this are neither drawn nor written to detections.csv / detections.json.
_C.DEMO.ACTION_SCORE_THRESH = 0.1
# Tracking: a person at a keyframe continues the track whose last box overlaps it with at least this IoU.
_C.DEMO.TRACK_IOU = 0.3
# Tracking: a track not continued for more than this many keyframes ends (a later match starts a new id).
_C.DEMO.TRACK_MAX_GAP = 2
# H.264 quality of the annotated video (libx264 constant rate factor: 0 lossless, 18 visually lossless, 23 default).
_C.DEMO.VIDEO_CRF = 18
# Frame rate (frames per second) of a folder of frames given to tools/demo_net.py or tools/visualize_tokens.py, and of
# a video whose stream states none.
_C.DEMO.FOLDER_FPS = 30.0


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default configuration."""
    return _C.clone()
