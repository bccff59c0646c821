"""The accelerator configuration shared by host software: compiler, simulators, driver.

One :class:`AcceleratorConfig` describes a built Tessera (the values its ROWS .. BUS_WIDTH
registers read back). Defaults are :data:`tessera.rtl.registers.DEFAULT_CONFIG`, the one place the
default configuration is written.
"""

from dataclasses import asdict, dataclass

from tessera.rtl.registers import DEFAULT_CONFIG, _check_config

__all__ = ["AcceleratorConfig"]


@dataclass(frozen=True)
class AcceleratorConfig:
    """Array size, buffer depths (rows) and AXI data width of one accelerator build."""
    rows: int = DEFAULT_CONFIG["rows"]
    cols: int = DEFAULT_CONFIG["cols"]
    scratchpad_depth: int = DEFAULT_CONFIG["scratchpad_depth"]
    accumulator_depth: int = DEFAULT_CONFIG["accumulator_depth"]
    bus_width: int = DEFAULT_CONFIG["bus_width"]

    def __post_init__(self):
        _check_config(self.rows, self.cols, self.scratchpad_depth, self.accumulator_depth,
                      self.bus_width)

    @property
    def lanes(self):
        """Lanes of a buffer row: ``max(rows, cols)`` (int8 in the scratchpad, int32 in the
        accumulator)."""
        return max(self.rows, self.cols)

    def as_dict(self):
        return asdict(self)
