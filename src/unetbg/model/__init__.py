"""The attention U-Net, its losses, metrics, checkpoints and batched prediction (torch only)."""

from unetbg.model.attention import ATTENTIONS, Attention, AttentionGate
from unetbg.model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build_checkpoint,
    half_precision,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from unetbg.model.config import ModelConfig, Preprocessing
from unetbg.model.decoder import DecoderBlock, UnetDecoder
from unetbg.model.encoder import ENCODERS, EncoderWeightsError, ResNetEncoder, get_encoder
from unetbg.model.heads import ReconstructionHead, SegmentationHead
from unetbg.model.losses import CompositeLoss
from unetbg.model.metrics import (
    SegmentationMeter,
    confusion,
    dice_score,
    iou_score,
    pixel_accuracy,
)
from unetbg.model.net import AttentionUNet, create_model
from unetbg.model.predict import letterbox_geometry, predict_probabilities, resolve_device
from unetbg.model.profile import count_flops, count_parameters

__all__ = [
    "ATTENTIONS",
    "ENCODERS",
    "FORMAT_VERSION",
    "Attention",
    "AttentionGate",
    "AttentionUNet",
    "CheckpointError",
    "CompositeLoss",
    "DecoderBlock",
    "EncoderWeightsError",
    "ModelConfig",
    "Preprocessing",
    "ReconstructionHead",
    "ResNetEncoder",
    "SegmentationHead",
    "SegmentationMeter",
    "UnetDecoder",
    "build_checkpoint",
    "half_precision",
    "confusion",
    "count_flops",
    "count_parameters",
    "create_model",
    "dice_score",
    "get_encoder",
    "iou_score",
    "letterbox_geometry",
    "load_checkpoint",
    "load_model",
    "pixel_accuracy",
    "predict_probabilities",
    "resolve_device",
    "save_checkpoint",
]
