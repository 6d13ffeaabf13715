"""From a file or a state_dict to a ready network with its description.

    from panet_cli.loading import load_model
    desc = load_model("model_x4.pt")          # published .pt, our .safetensors, or a state_dict
    desc.arch, desc.scale, desc.tasks          # ("PAEDSR", 4, ("sr",))
    out = desc.model(x)                        # eval mode, on the requested device

Submodules: ``checkpoint`` (safe file reading), ``architectures`` (detect + load per layout),
``descriptor`` (ModelDescriptor, load_model), ``convert`` (published .pt -> our safetensors).
"""

from panet_cli.loading.convert import convert_checkpoint
from panet_cli.loading.descriptor import ModelDescriptor, load_model

__all__ = ["ModelDescriptor", "load_model", "convert_checkpoint"]
