"""The accelerator's implementations, chosen by name (``AcceleratorConfig.core``).

``"tessera"``: :class:`~tessera.rtl.top.Tessera`, the concurrent engines and the systolic array.
``"small"``: :class:`~tessera.rtl.small.top.TesseraSmall`, one instruction at a time, for small
FPGAs. Both have the same ports (``s_axil``, ``m_axi``, ``irq``), instruction set and registers.
"""

from .small.top import TesseraSmall
from .top import Tessera

__all__ = ["CORES", "accelerator"]

#: Implementations by name.
CORES = {"tessera": Tessera, "small": TesseraSmall}


def accelerator(*, core="tessera", **params):
    """The accelerator ``core`` built with ``params`` (the keyword arguments of its class).

    The small core has no choice of multiplier or requantizer: ``multiplier="auto"`` and
    ``requant_units=None`` (the defaults) are accepted and dropped, other values raise."""
    if core not in CORES:
        raise ValueError(f"core must be one of {', '.join(CORES)}, not {core!r}")
    if core == "small":
        for name, default in (("multiplier", "auto"), ("requant_units", None)):
            value = params.pop(name, default)
            if value != default:
                raise ValueError(f"the small core has no {name} option, not {name}={value!r}")
    return CORES[core](**params)
