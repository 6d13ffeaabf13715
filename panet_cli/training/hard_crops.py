"""Online hard-patch mining: each batch replays the crops the previous step found hardest.

Why: uniform random crops are mostly easy (flat sky, gentle gradients); the errors users see sit on the few
hard ones (saturated colour edges for a demosaicer, fine texture for a denoiser). Gharbi et al. (2016) mined
the patches a trained demosaicer got most wrong and trained on them; this is the same idea done online, at
no extra cost: the per-crop losses come from the training step itself.
"""

from __future__ import annotations

import torch


class HardCropReplay:
    """Keeps the ``count`` hardest fresh crops of one step and hands them back for the next.

    Each replayed crop gets a new flip and rotation (a demosaicer then sees its edges at another Bayer
    phase) and the task's degradation is drawn anew (other noise, another JPEG quality). A crop is replayed
    once: replayed crops are never offered again, so a few unlearnable crops cannot take over the batches.
    ``count`` of 0 turns the replay off.
    """

    def __init__(self, count: int, generator: torch.Generator) -> None:
        if count < 0:
            raise ValueError("the hard-crop count must be 0 or more")
        self.count = count
        self.generator = generator
        self._pending: torch.Tensor | None = None

    def take(self) -> torch.Tensor | None:
        """The crops to replay in this step's batch (newly flipped and rotated), or None."""
        crops, self._pending = self._pending, None
        if crops is None:
            return None
        g = self.generator
        out = []
        for crop in crops:
            if torch.rand(1, generator=g) < 0.5:
                crop = crop.flip(2)
            out.append(torch.rot90(crop, int(torch.randint(4, (1,), generator=g)), dims=(1, 2)))
        return torch.stack(out)

    def remember(self, fresh: torch.Tensor, losses: torch.Tensor) -> None:
        """Keep the hardest ``count`` of this step's fresh crops (their per-crop losses given)."""
        if self.count == 0 or fresh.shape[0] == 0:
            return
        k = min(self.count, fresh.shape[0])
        hardest = torch.topk(losses.detach().float().cpu(), k).indices
        self._pending = fresh[hardest].detach().cpu().clone()
