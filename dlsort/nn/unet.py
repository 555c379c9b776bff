"""Per-frame U-Net: DeepInterpolation's ``unet_single_ephys_1024`` (Lecoq et al., Nature Methods 2021) in torch.

The original predicts one frame of a probe image (rows x columns) from the ``pre_frames`` frames
before it and the ``post_frames`` after it, leaving out ``omission`` frames on each side; the
context frames are the input channels of a 2-D U-Net (four poolings over rows, the first also
over columns; skip connections by concatenation; ReLU everywhere but the linear 1 x 1 output).
Written from the paper's description and the published architecture table, not from its code.

``PerFrameUNet`` has the interface of ``BlindSpotInterpolator``: it takes a chunk of frames and
returns every frame predicted, by unfolding each frame's context window and running the U-Net on
``frames_per_batch`` windows at a time. Frames missing before the chunk's first frame or after its
last are zeros (the normalised mean), as in the blind-spot network, so callers add margins of
``context + omission + 1`` frames and crop them, as ``DeepInterpolatedSegment`` does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

POOLS = ((2, 2), (2, 1), (2, 1), (2, 1))  # encoder max-pooling (rows, columns); the decoder upsamples in reverse
ROW_MULTIPLE, COLUMN_MULTIPLE = 16, 2  # what the poolings need; other grids are padded (bottom, right) and cropped


def _keras_same(x: torch.Tensor, convolution: nn.Conv2d) -> torch.Tensor:
    """``convolution`` with Keras' "same" padding: ``(k - 1) // 2`` before, the rest after (bottom/right for k=2)."""
    pads = []
    for size in reversed(convolution.kernel_size):  # functional.pad lists the last axis first
        before = (size - 1) // 2
        pads += [before, size - 1 - before]
    return convolution(functional.pad(x, pads))


class PerFrameUNet(nn.Module):
    """DeepInterpolation's per-frame U-Net, applied to every frame of a chunk.

    Parameters
    ----------
    pre_frames, post_frames : int, default: 30
        Context frames before and after the predicted one (its input channels, earliest first).
    omission : int, default: 1
        Frames left out on each side of the predicted one (DeepInterpolation's ``pre_post_omission``).
    filters : int, default: 64
        Filters of the first convolution; the encoder doubles them at each of its five levels
        (64 to 1024 in ``unet_single_ephys_1024``).
    frames_per_batch : int, default: 256
        Frames whose windows are unfolded and run together: bounds memory, does not change outputs.
        An inference setting, not a hyper-parameter of the weights.
    """

    def __init__(self, pre_frames: int = 30, post_frames: int = 30, omission: int = 1, filters: int = 64,
                 frames_per_batch: int = 256):
        super().__init__()
        if min(pre_frames, post_frames, filters, frames_per_batch) < 1 or omission < 0:
            raise ValueError(f"need pre_frames, post_frames, filters, frames_per_batch >= 1 and omission >= 0; got "
                             f"{pre_frames}, {post_frames}, {filters}, {frames_per_batch}, {omission}")
        self.hyperparameters = dict(pre_frames=pre_frames, post_frames=post_frames, omission=omission, filters=filters)
        self.omission = omission
        self.context = max(pre_frames, post_frames)
        self.frames_per_batch = frames_per_batch
        self.register_buffer("offsets", torch.cat([torch.arange(-omission - pre_frames, -omission),
                                                   torch.arange(omission + 1, omission + post_frames + 1)]),
                             persistent=False)
        widths = [filters * 2 ** level for level in range(5)]  # 64, 128, 256, 512, 1024
        kernels = [(2, 2), (3, 1), (3, 1), (3, 1), (3, 1)]
        inputs = [pre_frames + post_frames, *widths[:-1]]
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, k) for i, o, k in zip(inputs, widths, kernels))
        # each decoder level reads the upsampled level below concatenated with the encoder's skip
        self.decoder = nn.ModuleList(nn.Conv2d(widths[level + 1] + widths[level], widths[level], kernels[level])
                                     for level in reversed(range(4)))
        self.output = nn.Conv2d(filters, 1, 1)

    def convolutions(self) -> list[nn.Conv2d]:
        """The convolutions in the order Keras lists ``unet_single_ephys_1024``'s layers (input to output)."""
        return [*self.encoder, *self.decoder, self.output]

    def predict_frames(self, windows: torch.Tensor) -> torch.Tensor:
        """The U-Net on context windows.

        Parameters
        ----------
        windows : torch.Tensor
            (frames, pre_frames + post_frames, rows, columns), rows a multiple of 16 and columns of 2.

        Returns
        -------
        torch.Tensor
            (frames, rows, columns), the predicted middle frames.
        """
        x, skips = windows, []
        for level, convolution in enumerate(self.encoder):
            x = torch.relu(_keras_same(x, convolution))
            if level < len(POOLS):
                skips.append(x)
                x = functional.max_pool2d(x, POOLS[level])
        for convolution, pool, skip in zip(self.decoder, reversed(POOLS), reversed(skips)):
            x = x.repeat_interleave(pool[0], dim=2).repeat_interleave(pool[1], dim=3)  # nearest upsampling
            x = torch.relu(_keras_same(torch.cat([x, skip], dim=1), convolution))
        return self.output(x)[:, 0]

    def forward(self, traces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every frame predicted from the frames around it.

        Parameters
        ----------
        traces : torch.Tensor
            (batch, samples, rows, columns), normalised (zero mean, unit variance).
        mask : torch.Tensor
            (rows, columns) or (batch, rows, columns), 1 where a channel sits, 0 in empty cells.

        Returns
        -------
        torch.Tensor
            (batch, samples, rows, columns), zero in empty cells. Frames within ``context +
            omission`` of an edge see zeros in place of the frames beyond it, so callers add margins.
        """
        if traces.ndim != 4:
            raise ValueError(f"traces must be (batch, samples, rows, columns), got shape {tuple(traces.shape)}")
        batch, samples, rows, columns = traces.shape
        mask = mask.to(traces.dtype)
        mask = mask.unsqueeze(1) if mask.ndim == 3 else mask  # broadcasts over samples
        reach = self.context + self.omission
        padded = functional.pad(traces * mask, (0, -columns % COLUMN_MULTIPLE, 0, -rows % ROW_MULTIPLE, reach, reach))
        predicted = []
        for block in torch.arange(batch * samples, device=traces.device).split(self.frames_per_batch):
            chunk, frame = (block // samples)[:, None], (block % samples + reach)[:, None]  # of each output frame
            predicted.append(self.predict_frames(padded[chunk, frame + self.offsets]))
        if not predicted:
            return torch.zeros_like(traces)
        output = torch.cat(predicted).reshape(batch, samples, *padded.shape[2:])
        return output[..., :rows, :columns] * mask

    def multiply_adds_per_frame(self, rows: int, columns: int) -> int:
        """Multiply-adds of the U-Net for one output frame of a ``rows`` x ``columns`` grid (after its padding).

        Counts every convolution (in x out channels x kernel cells, at each output position);
        pooling, upsampling and ReLU add no multiply-adds.
        """
        counts = []
        hooks = [convolution.register_forward_hook(
            lambda module, _, output: counts.append(module.weight[0].numel() * output.numel()))
            for convolution in self.convolutions()]
        try:
            with torch.no_grad():
                self.predict_frames(torch.zeros(1, self.offsets.numel(), rows + -rows % ROW_MULTIPLE,
                                                columns + -columns % COLUMN_MULTIPLE))
        finally:
            for hook in hooks:
                hook.remove()
        return sum(counts)
