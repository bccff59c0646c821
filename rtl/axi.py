"""AXI4 and AXI4-Lite interface signatures (AMBA AXI and ACE Protocol Specification, ARM IHI 0022).

Both signatures are written from the manager's (master's) side: ``Out`` members are driven by the
manager, ``In`` members by the subordinate. A subordinate port is ``In(AXI4LiteSignature(...))``
(the flipped signature). Member names are the specification's signal names in lower case
(``awaddr``, ``wstrb``, ``rresp`` ...), so a port ``m_axi`` of a
component becomes the Verilog ports ``m_axi__awaddr``, ``m_axi__wstrb`` ... — with cocotbext-axi,
``AxiBus.from_prefix(dut, "m_axi_")`` finds them (it joins prefix and name with one underscore).

Response codes (``bresp``/``rresp``) are :class:`Resp`.
"""

import enum

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Resp", "Burst", "AXI4Signature", "AXI4LiteSignature", "any_handshake"]


class Resp(enum.IntEnum):
    """xRESP encodings."""
    OKAY = 0b00
    EXOKAY = 0b01
    SLVERR = 0b10
    DECERR = 0b11


class Burst(enum.IntEnum):
    """AxBURST encodings."""
    FIXED = 0b00
    INCR = 0b01
    WRAP = 0b10


def _check_width(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")
    return value


class AXI4Signature(wiring.Signature):
    """Full AXI4 manager interface (five channels, bursts, IDs; no user, region or QoS signals).

    Parameters
    ----------
    addr_width : int
        Byte address width (default 32).
    data_width : int
        Data bus width in bits: 32, 64 or 128.
    id_width : int
        Transaction ID width, 1 .. 16.
    """
    def __init__(self, *, addr_width=32, data_width=64, id_width=4):
        self.addr_width = _check_width("addr_width", addr_width, range(12, 65))
        self.data_width = _check_width("data_width", data_width, {32, 64, 128})
        self.id_width = _check_width("id_width", id_width, range(1, 17))
        strb = data_width // 8
        super().__init__({
            # write address channel
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awlock": Out(1), "awcache": Out(4),
            "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            # write data channel
            "wdata": Out(data_width), "wstrb": Out(strb), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            # write response channel
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            # read address channel
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arlock": Out(1), "arcache": Out(4),
            "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            # read data channel
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and self.addr_width == other.addr_width and
                self.data_width == other.data_width and self.id_width == other.id_width)

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite manager interface with a 32-bit data bus."""
    def __init__(self, *, addr_width=12):
        self.addr_width = _check_width("addr_width", addr_width, range(4, 33))
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, AXI4LiteSignature) and self.addr_width == other.addr_width

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width})"


def any_handshake(bus):
    """1 in a cycle in which any of the five channels of the AXI4 or AXI4-Lite port ``bus``
    completes a transfer (VALID and READY both high): bus activity, e.g. for a watchdog."""
    return ((bus.arvalid & bus.arready) | (bus.rvalid & bus.rready) |
            (bus.awvalid & bus.awready) | (bus.wvalid & bus.wready) |
            (bus.bvalid & bus.bready))
