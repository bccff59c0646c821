"""The accelerator configuration shared by host software: compiler, simulators, driver.

One :class:`AcceleratorConfig` describes a built Tessera (the values its ROWS .. BUS_WIDTH
registers read back, plus build options that programs cannot see). Defaults are
:data:`tessera.rtl.registers.DEFAULT_CONFIG`, the one place the default configuration is written.
"""

from dataclasses import asdict, dataclass, field

from tessera.rtl.cores import CORES
from tessera.rtl.registers import DEFAULT_CONFIG, _check_config
from tessera.rtl.requant import check_units

__all__ = ["AcceleratorConfig"]


@dataclass(frozen=True)
class AcceleratorConfig:
    """Array size, buffer depths (rows) and AXI data width of one accelerator build.

    ``requant_units``: multiplier pipelines of the requantizer, in [1, lanes], or None (one per
    lane). With fewer, the store path requantizes a row every ``ceil(lanes / requant_units)``
    cycles instead of every cycle; results are the same, no register shows it, so it does not
    take part in comparisons (a program compiled for one build runs unchanged on the other, and
    a configuration read back from a board's registers equals the one it was built from).

    ``core``: which implementation of the accelerator is built, one of :data:`tessera.rtl.cores.CORES`:
    ``"tessera"`` (:class:`~tessera.rtl.top.Tessera`, the default) or ``"small"``
    (:class:`~tessera.rtl.small.top.TesseraSmall`, for small FPGAs: the same instruction set,
    registers and results, one instruction at a time, a 32-bit bus). Like ``requant_units`` it
    is invisible to programs and does not take part in comparisons.
    """
    rows: int = DEFAULT_CONFIG["rows"]
    cols: int = DEFAULT_CONFIG["cols"]
    scratchpad_depth: int = DEFAULT_CONFIG["scratchpad_depth"]
    accumulator_depth: int = DEFAULT_CONFIG["accumulator_depth"]
    bus_width: int = DEFAULT_CONFIG["bus_width"]
    requant_units: int | None = field(default=None, compare=False)
    core: str = field(default="tessera", compare=False)

    def __post_init__(self):
        _check_config(self.rows, self.cols, self.scratchpad_depth, self.accumulator_depth,
                      self.bus_width)
        check_units(self.requant_units, lanes=self.lanes, name="requant_units")
        if self.core not in CORES:
            raise ValueError(f"core must be one of {', '.join(CORES)}, not {self.core!r}")
        if self.core == "small":
            if self.bus_width != 32:
                raise ValueError(f"the small core has a 32-bit bus, not bus_width="
                                 f"{self.bus_width!r}")
            if self.requant_units is not None:
                raise ValueError("the small core has one serial requantizer: requant_units "
                                 f"must be None, not {self.requant_units!r}")

    @property
    def lanes(self):
        """Lanes of a buffer row: ``max(rows, cols)`` (int8 in the scratchpad, int32 in the
        accumulator)."""
        return max(self.rows, self.cols)

    def as_dict(self):
        """The build's keyword arguments for :class:`~tessera.rtl.top.Tessera` (and the
        harnesses and board tops that pass them on): every field, ``requant_units`` only when it
        is set (so a default configuration's dictionary, and with it the key of its cached
        simulation build, is what it was before the option existed); ``core`` only when it is not
        the default ``"tessera"``."""
        values = asdict(self)
        if values["requant_units"] is None:
            del values["requant_units"]
        if values["core"] == "tessera":
            del values["core"]
        return values
