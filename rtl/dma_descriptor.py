"""The DMA descriptor and the DMA error codes: the contract between the DMA, the register file and
(later) the LOAD/STORE instructions.

A descriptor moves ``rows`` rows of ``row_bytes`` bytes between external memory and consecutive
rows of one on-chip buffer::

    for i in range(rows):
        memory[dram_addr + i * dram_stride : + row_bytes]  <->  buffer[sram_row + i][0 : row_bytes]

``direction`` 0 (LOAD) copies memory into the buffer and zero-fills the rest of each buffer row;
``direction`` 1 (STORE) copies the first ``row_bytes`` bytes of each buffer row to memory and
touches no other memory byte. Buffer rows are ``lanes`` bytes in the scratchpad (int8 lanes) and
``4 * lanes`` bytes in the accumulator (int32 lanes, little-endian).
"""

import enum

from amaranth.hdl import Mux, unsigned
from amaranth.lib import data

__all__ = ["Buffer", "Direction", "DmaError", "DmaDescriptor", "descriptor_error"]


class Buffer(enum.IntEnum):
    SCRATCHPAD = 0
    ACCUMULATOR = 1


class Direction(enum.IntEnum):
    LOAD = 0    # memory -> buffer
    STORE = 1   # buffer -> memory


class DmaError(enum.IntEnum):
    """Error codes latched by the DMA (0 = no error). Values are part of the register map."""
    NONE = 0
    ZERO_ROWS = 1       # descriptor with rows == 0
    ZERO_BYTES = 2      # descriptor with row_bytes == 0
    ROW_TOO_LONG = 3    # row_bytes larger than a row of the target buffer
    SRAM_RANGE = 4      # sram_row + rows beyond the depth of the target buffer
    READ_SLVERR = 5     # memory answered SLVERR to a read
    READ_DECERR = 6     # memory answered DECERR to a read
    WRITE_SLVERR = 7    # memory answered SLVERR to a write
    WRITE_DECERR = 8    # memory answered DECERR to a write


class DmaDescriptor(data.StructLayout):
    """One 2-D transfer (128 bits)."""
    def __init__(self):
        super().__init__({
            "dram_addr":   unsigned(32),   # byte address of the first row in memory
            "dram_stride": unsigned(32),   # bytes from one row's start to the next in memory
            "rows":        unsigned(16),   # number of rows, >= 1
            "row_bytes":   unsigned(16),   # bytes per row, >= 1, <= bytes of a buffer row
            "sram_row":    unsigned(16),   # first buffer row
            "buffer":      unsigned(1),    # Buffer
            "direction":   unsigned(1),    # Direction
            "reserved":    unsigned(14),
        })


def descriptor_error(*, zero_rows, zero_bytes, too_long, beyond):
    """The :class:`DmaError` of a descriptor from its checks (1-bit values), the first failing in
    the order of the codes: ``rows == 0``, ``row_bytes == 0``, ``row_bytes`` above a row of the
    target buffer, ``sram_row + rows`` beyond its depth; NONE if all pass."""
    return Mux(zero_rows, DmaError.ZERO_ROWS,
               Mux(zero_bytes, DmaError.ZERO_BYTES,
                   Mux(too_long, DmaError.ROW_TOO_LONG,
                       Mux(beyond, DmaError.SRAM_RANGE, DmaError.NONE))))
