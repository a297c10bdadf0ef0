"""A tiny random-initialised open_clip model, written by the tests (never the network): its config JSON and a
whole-CLIP state dict, with a logit scale unlike open_clip's initial one so that a head that ignored it shows."""

from __future__ import annotations

import json
import math

# a ViT of one block at 32 px and a one-block text transformer: ~1M parameters, most of them the BPE vocabulary
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}
LOGIT_SCALE = 23.0


def tiny_clip(directory, seed: int = 0):
    """(config path, weights path, the open_clip CLIP model) in `directory`."""
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "tiny_clip.json"
    config.write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(seed)
    clip = open_clip.CLIP(**TINY_CONFIG).eval()
    with torch.no_grad():
        clip.logit_scale.fill_(math.log(LOGIT_SCALE))
    weights = directory / "tiny_clip.pt"
    torch.save(clip.state_dict(), weights)
    return config, weights, clip
