"""``unetbg train --help``: one line per :class:`~unetbg.training.config.TrainConfig` field.

Kept apart from the config so that the dataclass and its checks stay one readable module.
"""

#: One line per field for ``unetbg train --help``.
FIELD_HELP: dict[str, str] = {
    "coco_root": "COCO 2017 folder (annotations/, train2017/, val2017/).",
    "train_split": "Split to train on (train or val).",
    "val_split": "Split to validate and finally evaluate on.",
    "data": "Data source KIND:PATH[:WEIGHT] (coco or masks), repeatable.",
    "val_percent": "Share (%) of each mask folder kept for validation, by file-name hash.",
    "partial_sources": "Source NAME whose masks label only some people (ccp-person: the main "
    "person); background the model calls person away from them is not taught as background. "
    "Repeatable; 'none' clears the preset's or the resumed run's.",
    "samples_per_epoch": "Samples per epoch from mixed sources (default: all their images).",
    "copy_paste": "Probability of pasting people from the training data into a sample.",
    "copy_paste_max": "Most people pasted into one sample.",
    "empty_share": "Share of each epoch drawn from training photos without any person.",
    "copy_paste_empty": "Also paste into photos without anyone (--no-copy-paste-empty keeps "
    "them as pure negatives).",
    "background_swap": "Probability of moving a sample's people onto a new backdrop "
    "(colours, gradients, textures, photos without people), from small to close-up.",
    "swap_sources": "Source NAME whose samples the background swap may move (default: "
    "every source), repeatable; 'none' clears it.",
    "swap_close_ups": "Share of swapped samples framed head and shoulders (cut by the "
    "frame); the rest whole people and half bodies.",
    "swap_objects": "Lay cut-outs of the COCO sources' other objects (cups, dogs, cars) on "
    "swapped backdrops as things that are not people.",
    "swap_hard_cases": "Probability of each hard case on a swapped sample: the person cut "
    "by an edge of the frame, darkened as if back-lit, or partly covered by a thing.",
    "augment_range": "Augmentation range: standard, or wide (±90° rotations at a low rate, "
    "any hue, strong colour jitter, blur, noise, JPEG quality 30-95).",
    "init_weights": "Start a fresh run from these weights: 'default' (the shipped model) or "
    "a checkpoint path of the same architecture.",
    "distill_from": "Teacher weights: 'default' (the shipped model) or a checkpoint of the same "
    "architecture. Its soft masks are a second target on samples that keep their own photo, "
    "so a fine-tune keeps what the teacher finds there.",
    "distill_weight": "Weight of the teacher's term beside the labels' BCE and Dice.",
    "distill_sources": "Source NAME whose unswapped samples get the teacher's term (default: "
    "every source), repeatable; 'none' clears it.",
    "ema_decay": "Keep and evaluate an exponential moving average of the weights.",
    "epochs": "Number of epochs.",
    "batch_size": "Images per optimisation step.",
    "lr": "Peak learning rate (AdamW).",
    "weight_decay": "AdamW weight decay.",
    "image_size": "Letterbox size in pixels (multiple of 32).",
    "optimizer": "Optimizer (adamw).",
    "scheduler": "LR schedule (cosine: linear warm-up, then cosine decay).",
    "warmup_fraction": "Share of all steps spent warming the lr up.",
    "min_lr_ratio": "Final lr as a share of the peak lr.",
    "grad_clip": "Max gradient L2 norm.",
    "patience": "Epochs without val IoU gain before stopping early.",
    "min_delta": "Smallest val IoU gain that counts as a gain.",
    "augment": "Random augmentation of training images.",
    "max_zoom": "Largest random zoom into a training photo before the crop (1 to 4).",
    "device": "auto, cpu, cuda or cuda:N (cuda without a GPU fails).",
    "seed": "Seed for weights, image order and augmentation.",
    "num_workers": "DataLoader workers (default: 0 on CPU, min(8, cpus) on CUDA).",
    "pin_memory": "Pinned host memory (default: on with CUDA).",
    "amp": "Mixed precision: float16 on CUDA, bfloat16 on CPU (default: on with CUDA, and on "
    "CPUs that compute bfloat16 natively).",
    "channels_last": "Channels-last memory layout (default: with amp's default).",
    "max_steps_per_epoch": "Cap on steps per epoch (smoke runs).",
    "train_limit": "Use only the first N training images.",
    "val_limit": "Validate and evaluate on the first N images only.",
    "threshold": "Probability from which a pixel counts as person.",
    "final_evaluation": "Score best_model.pth at the original resolution at the end.",
    "min_area": "Smaller person annotations (pixels) become ignore pixels.",
    "crowd": "Crowd regions: ignore, background or skip (leave the image out).",
    "encoder": "Encoder architecture.",
    "encoder_weights": "Initial encoder weights: imagenet, a local file, or none.",
    "attention": "Skip-connection attention (gate) or none.",
    "reconstruction": "Add the person reconstruction head.",
    "bce_weight": "Weight of the BCE loss.",
    "dice_weight": "Weight of the Dice loss.",
    "recon_weight": "Weight of the reconstruction loss (needs --reconstruction).",
}
