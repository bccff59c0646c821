"""Test harness and reference model of a register file (rtl/csr.py), shared by the cocotb testbench
(tb/csr_tb.py) and the Amaranth-simulator tests (tb/test_csr.py).

* :class:`CsrHarness` wraps a :class:`~tessera.rtl.csr.RegisterFile`: it passes the AXI4-Lite port
  and every hardware-side port through unchanged (Verilog ``s_axil__*``, ``<register>__<field>``)
  and adds a 16-bit counter per PULSE field (``pulse_count__<register>_<field>``) that counts the
  cycles in which the pulse output is non-zero, so a testbench checks pulses per transaction
  instead of watching every clock edge.
* :class:`RegisterModel` is the host-visible behaviour of the same register map in plain Python:
  what a read returns, what a write changes, what the hardware ports show. Both come from the one
  register definition, so the expected values are never written down a second time.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from tessera.rtl.axi import Resp
from tessera.rtl.csr import Access, RegisterFile, RegisterMap

__all__ = ["CsrHarness", "RegisterModel", "pulse_fields"]

#: Width of the pulse counters.
COUNT_WIDTH = 16


def pulse_fields(register_map):
    """``[(register, field)]`` of every PULSE field."""
    return [(r, f) for r in register_map for f in r.fields if f.access is Access.PULSE]


class CsrHarness(wiring.Component):
    """A RegisterFile with its ports passed through and pulse counters added."""
    def __init__(self, register_map):
        if not isinstance(register_map, RegisterMap):
            raise TypeError(f"register_map must be a RegisterMap, not {register_map!r}")
        self.register_map = register_map
        self.regfile = RegisterFile(register_map)
        members = dict(self.regfile.signature.members)
        counters = {f"{r.port_name}_{f.name}": Out(COUNT_WIDTH)
                    for r, f in pulse_fields(register_map)}
        if counters:
            members["pulse_count"] = Out(wiring.Signature(counters))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.regfile = regfile = self.regfile
        for name in regfile.signature.members:
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(regfile, name))
        for register, field in pulse_fields(self.register_map):
            pulse = getattr(getattr(regfile, register.port_name), field.name)
            count = getattr(self.pulse_count, f"{register.port_name}_{field.name}")
            with m.If(pulse.any()):
                m.d.sync += count.eq(count + 1)
        return m


class RegisterModel:
    """Reference behaviour of a register map as seen from the bus and from the hardware ports.

    ``inputs[(register, field)]`` are the values driven on RO inputs; :meth:`hw_set` and
    :meth:`hw_clear` model the W1C ``_set`` and W1S ``_clear`` inputs; ``pulses`` counts the pulses
    each PULSE field should have produced.
    """
    def __init__(self, register_map):
        self.map = register_map
        self.stored = {}
        self.inputs = {}
        self.pulses = {}
        for register in register_map:
            for field in register.fields:
                key = (register.name, field.name)
                if field.access.stored:
                    self.stored[key] = field.reset
                elif field.access is Access.RO:
                    self.inputs[key] = 0
                elif field.access is Access.PULSE:
                    self.pulses[key] = 0

    def field_value(self, register, field):
        key = (register.name, field.name)
        if field.access is Access.CONST:
            return field.reset
        if field.access is Access.RO:
            return self.inputs[key]
        if field.access is Access.PULSE:
            return 0
        return self.stored[key]

    def value(self, name):
        """The word register ``name`` reads now."""
        register = self.map[name]
        return sum(self.field_value(register, f) << f.lsb for f in register.fields)

    def read(self, address):
        """``(data, resp)`` of a read of byte ``address``."""
        register = self.map.at(address)
        if register is None:
            return 0, Resp.SLVERR
        return self.value(register.name), Resp.OKAY

    def write(self, address, data, strb=0xF):
        """Apply a write; returns the response."""
        register = self.map.at(address)
        if register is None:
            return Resp.SLVERR
        bit_en = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)
        for field in register.fields:
            key = (register.name, field.name)
            mask = (1 << field.width) - 1
            written = (data >> field.lsb) & mask
            enable = (bit_en >> field.lsb) & mask
            if field.access is Access.RW:
                self.stored[key] = (self.stored[key] & ~enable) | (written & enable)
            elif field.access is Access.W1C:
                self.stored[key] &= ~(written & enable)
            elif field.access is Access.W1S:
                self.stored[key] |= written & enable
            elif field.access is Access.PULSE:
                if written & enable:
                    self.pulses[key] += 1
        return Resp.OKAY

    def hw_set(self, name, field, bits):
        """The hardware sets W1C bits (``<field>_set`` high for one cycle)."""
        self.stored[(name, field)] |= bits

    def hw_clear(self, name, field, bits):
        """The hardware clears W1S bits (``<field>_clear`` high for one cycle)."""
        self.stored[(name, field)] &= ~bits

    def outputs(self):
        """``{(register, field): value}`` expected on the stored fields' output ports."""
        return dict(self.stored)

    def addresses(self):
        """Every mapped word offset."""
        return [r.offset for r in self.map]

    def unmapped(self):
        """A selection of unmapped word offsets: gaps, reserved windows, the top of the space."""
        size = 1 << self.map.addr_width
        mapped = set(self.addresses())
        picks = {size - 4}
        for window in self.map.reserved:
            picks |= {window.offset, window.end - 4}
        for offset in sorted(mapped):
            if offset + 4 < size and offset + 4 not in mapped:
                picks.add(offset + 4)
        return sorted(picks - mapped)
