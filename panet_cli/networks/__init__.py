"""Plain torch.nn networks of the paper. Nothing here imports the rest of the package."""

from panet_cli.networks.half_res import HalfResPANet
from panet_cli.networks.pa_edsr import PAEDSR
from panet_cli.networks.panet import PANet
from panet_cli.networks.pyramid_attention import PyramidAttention, pyramid_attention_direct

__all__ = ["HalfResPANet", "PANet", "PAEDSR", "PyramidAttention", "pyramid_attention_direct"]
