"""Control and status registers: a register description, a register map, and the AXI4-Lite
register file generated from them.

The register map is written once, as Python objects (:class:`Field`, :class:`Register`,
:class:`Reserved`, collected in a :class:`RegisterMap`). From that one description come the
hardware (:class:`RegisterFile`), the documentation (:meth:`RegisterMap.markdown`) and the
host-side encoding (:meth:`Register.pack`, :meth:`Register.unpack`), so they cannot disagree.

Registers are 32 bits wide at 4-byte aligned offsets. Each field has an access type
(:class:`Access`)::

    access  host read          host write (per strobed byte)     hardware port(s) of field `f`
    CONST   reset value        ignored                           none
    RO      hardware value     ignored                           f: In(width)
    RW      stored value       stores the written bits           f: Out(width)
    W1C     stored value       1 clears the bit                  f: Out(width), f_set: In(width)
    W1S     stored value       1 sets the bit                    f: Out(width), f_clear: In(width)
    PULSE   0                  1 -> f high for one cycle         f: Out(width)

W1C bits are set by ``f_set`` (bit for bit, level-sensitive: a bit is set in every cycle its
``f_set`` bit is high); if the host clears a bit in the cycle hardware sets it, it stays set, so no
event is lost. W1S bits are cleared by ``f_clear``; if the host sets a bit in the cycle hardware
clears it, it stays set. A PULSE output is high for one cycle, right after the write.
Reads have no side effects.

The hardware ports of register ``NAME`` are the members of the component's port ``name`` (lower
case), so field ``busy`` of ``STATUS`` is ``regfile.status.busy`` in Amaranth and
``status__busy`` in Verilog. Registers without ports (all fields CONST) have no member.

AXI4-Lite subordinate (``s_axil``)::

            ┌── AW: decoded into selects ┐
    AW ────►│ awready = AW register empty│──┐
            └────────────────────────────┘  ├─► both full and B free: perform the write ──► B
            ┌──── W holding register ────┐  │   (OKAY, or SLVERR for an unmapped address)
    W ─────►│ wready = W register empty  │──┘
            └────────────────────────────┘
    AR ────► arready = no read in progress; the address is decoded into selects, the addressed
             register is sampled by its group in the next cycle, the word in the one after ──► R

* AW and W are accepted independently, in either order or in the same cycle, into holding
  registers (``awready``/``wready`` = holding register empty: registered, never combinational
  from a VALID); the AW address is held decoded, as one select flip-flop per register. The write is performed in the first cycle in which both are held and no write
  response is pending: registers change, PULSE outputs rise and BVALID rises at the end of that
  cycle. A new AW/W may be accepted while BVALID waits for BREADY.
* BVALID and RVALID (with their payloads) hold until BREADY/RREADY. ``arready`` is high while no
  read is in progress; the address is registered when AR is accepted, the next cycle each group
  of :data:`READ_GROUP` registers samples its addressed word, and the cycle after that the word
  is registered and RVALID rises (three cycles from AR to RVALID, which keeps the address decoder
  and the two halves of the read multiplexer on separate register stages).
* Unmapped offsets (gaps, :class:`Reserved` windows, beyond the map) answer SLVERR: a write there
  changes nothing, a read returns 0. Writes to read-only registers or bits are ignored with OKAY.
* WSTRB is honoured per byte: a field bit is written only if the strobe of its byte is set.
* ``awaddr[1:0]``/``araddr[1:0]`` are ignored (AXI4-Lite data is always the aligned word);
  ``awprot``/``arprot`` are ignored.
* Throughput: one write every 2 cycles and one read every 3 cycles (with BREADY/RREADY high),
  independently of each other: ample for control registers.
"""

import enum
import re

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, Resp
from .util import is_ice40

__all__ = ["Access", "Field", "Register", "Reserved", "RegisterMap", "RegisterFile"]

#: Width of every register and of the AXI4-Lite data bus.
WIDTH = 32
#: Registers per first-stage group of the read multiplexer (:class:`RegisterFile`).
READ_GROUP = 4

_REGISTER_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class Access(enum.Enum):
    """How the host and the hardware see a field (see the module documentation)."""
    CONST = "CONST"
    RO = "RO"
    RW = "RW"
    W1C = "W1C"
    W1S = "W1S"
    PULSE = "PULSE"

    @property
    def stored(self):
        """The register file holds a flip-flop per bit of the field."""
        return self in (Access.RW, Access.W1C, Access.W1S)


#: Plain-language meaning of each access type, for the documentation.
ACCESS_DOC = {
    Access.CONST: "read-only constant (the reset value); writes are ignored",
    Access.RO: "read-only, the hardware's current value; writes are ignored",
    Access.RW: "read/write",
    Access.W1C: "set by hardware; write 1 to clear (writing 0 has no effect)",
    Access.W1S: "write 1 to set (writing 0 has no effect); cleared by hardware",
    Access.PULSE: "write 1 to trigger (a one-cycle pulse to the hardware); reads as 0",
}


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
    return value


class Field:
    """A named group of bits of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier (``[a-z][a-z0-9_]*``); names the hardware port.
    width : int
        1 .. 32 bits.
    access : Access
    reset : int
        Value after reset (CONST: the constant). Must be 0 for RO and PULSE fields.
    description : str
        One line for the register map.
    lsb : int or None
        Position of the least significant bit; ``None`` places the field just above the previous
        one.
    """
    def __init__(self, name, width, access, *, reset=0, description="", lsb=None):
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise ValueError(f"field name must be a lower-case identifier, not {name!r}")
        self.name = name
        self.width = _check_int(f"width of field {name!r}", width, 1, WIDTH)
        if not isinstance(access, Access):
            raise TypeError(f"access of field {name!r} must be an Access, not {access!r}")
        self.access = access
        self.reset = _check_int(f"reset of field {name!r}", reset, 0, (1 << width) - 1)
        if access in (Access.RO, Access.PULSE) and reset != 0:
            raise ValueError(f"field {name!r}: a {access.value} field has no reset value, "
                             f"not {reset!r}")
        self.description = str(description)
        self.lsb = None if lsb is None else _check_int(f"lsb of field {name!r}", lsb, 0, WIDTH - 1)

    @property
    def msb(self):
        return self.lsb + self.width - 1

    @property
    def mask(self):
        """The field's bits within the register word."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def bits(self):
        """``"[msb:lsb]"`` or ``"[lsb]"``."""
        return f"[{self.msb}:{self.lsb}]" if self.width > 1 else f"[{self.lsb}]"

    def ports(self):
        """``{port name: (direction, width)}`` of this field toward the hardware."""
        if self.access is Access.CONST:
            return {}
        if self.access is Access.RO:
            return {self.name: (In, self.width)}
        ports = {self.name: (Out, self.width)}
        if self.access is Access.W1C:
            ports[f"{self.name}_set"] = (In, self.width)
        if self.access is Access.W1S:
            ports[f"{self.name}_clear"] = (In, self.width)
        return ports

    def _placed(self, lsb):
        return Field(self.name, self.width, self.access, reset=self.reset,
                     description=self.description, lsb=lsb)

    def __repr__(self):
        where = "" if self.lsb is None else f" {self.bits}"
        return f"Field({self.name!r}{where}, {self.width}, {self.access.value})"


class Register:
    """A 32-bit register: a name, an offset and its fields (least significant first).

    Parameters
    ----------
    name : str
        Upper-case identifier (``[A-Z][A-Z0-9_]*``); its lower-case form names the hardware port.
    fields : list of Field
        At least one; fields with ``lsb=None`` are packed upward from the previous field.
    offset : int or None
        Byte offset (a multiple of 4); ``None`` takes the word after the previous entry of the map.
    description : str
    """
    def __init__(self, name, fields, *, offset=None, description=""):
        if not isinstance(name, str) or not _REGISTER_NAME.match(name):
            raise ValueError(f"register name must be an upper-case identifier, not {name!r}")
        self.name = name
        if offset is not None:
            _check_int(f"offset of register {name}", offset, 0, (1 << 32) - 4)
            if offset % 4:
                raise ValueError(f"offset of register {name} must be a multiple of 4, "
                                 f"not {offset:#x}")
        self.offset = offset
        self.description = str(description)
        fields = list(fields)
        if not fields:
            raise ValueError(f"register {name} must have at least one field")
        placed, used, port_names, lsb = [], 0, set(), 0
        for field in fields:
            if not isinstance(field, Field):
                raise TypeError(f"fields of register {name} must be Field objects, not {field!r}")
            if field.name in (f.name for f in placed):
                raise ValueError(f"register {name}: field name {field.name!r} is used twice")
            lsb = field.lsb if field.lsb is not None else lsb
            if lsb + field.width > WIDTH:
                raise ValueError(f"field {field.name!r} of register {name} does not fit: bits "
                                 f"[{lsb + field.width - 1}:{lsb}] exceed {WIDTH} bits")
            field = field._placed(lsb)
            if used & field.mask:
                raise ValueError(f"field {field.name!r} of register {name} overlaps another field "
                                 f"at bits {field.bits}")
            for port in field.ports():
                if port in port_names:
                    raise ValueError(f"register {name}: port name {port!r} is used twice")
                port_names.add(port)
            used |= field.mask
            placed.append(field)
            lsb = field.lsb + field.width
        self.fields = tuple(placed)

    @property
    def reset(self):
        """Word read after reset, with RO fields shown as 0."""
        return sum(f.reset << f.lsb for f in self.fields if f.access is not Access.PULSE)

    @property
    def access(self):
        """The access types of the fields, e.g. ``"RW"`` or ``"RO, W1C"``."""
        kinds = []
        for field in self.fields:
            if field.access.value not in kinds:
                kinds.append(field.access.value)
        return ", ".join(kinds)

    @property
    def port_name(self):
        return self.name.lower()

    def field(self, name):
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"register {self.name} has no field {name!r}")

    def ports(self):
        """``{port name: (direction, width)}`` of all fields."""
        ports = {}
        for field in self.fields:
            ports.update(field.ports())
        return ports

    def signature(self):
        """Signature of the hardware-side port, or None if the register has no ports."""
        ports = self.ports()
        if not ports:
            return None
        return wiring.Signature({name: direction(width)
                                 for name, (direction, width) in ports.items()})

    def pack(self, **values):
        """Register word with the given field values (others 0); for host software and tests."""
        word = 0
        for name, value in values.items():
            field = self.field(name)
            if not 0 <= int(value) < (1 << field.width):
                raise ValueError(f"{self.name}.{name} must be in [0, {(1 << field.width) - 1}], "
                                 f"not {value!r}")
            word |= int(value) << field.lsb
        return word

    def unpack(self, word):
        """``{field name: value}`` of a register word."""
        return {f.name: (word >> f.lsb) & ((1 << f.width) - 1) for f in self.fields}

    def _placed(self, offset):
        return Register(self.name, self.fields, offset=offset, description=self.description)

    def __repr__(self):
        where = "" if self.offset is None else f" @ {self.offset:#05x}"
        return f"Register({self.name!r}{where}, {list(self.fields)!r})"


class Reserved:
    """An address window kept free for registers to come; it answers SLVERR until then."""
    def __init__(self, name, offset, size, *, description=""):
        self.name = str(name)
        self.offset = _check_int(f"offset of reserved window {name!r}", offset, 0, (1 << 32) - 4)
        self.size = _check_int(f"size of reserved window {name!r}", size, 4, 1 << 32)
        if offset % 4 or size % 4:
            raise ValueError(f"reserved window {name!r}: offset and size must be multiples of 4, "
                             f"not {offset:#x} and {size:#x}")
        self.description = str(description)

    @property
    def end(self):
        return self.offset + self.size

    def __repr__(self):
        return f"Reserved({self.name!r}, {self.offset:#x}..{self.end - 1:#x})"


class RegisterMap:
    """Registers and reserved windows at their offsets, checked for overlaps; iterable by offset.

    Parameters
    ----------
    entries : list of Register and Reserved
        In address order for auto-placed registers: a register with ``offset=None`` takes the word
        after the previous entry (a reserved window counts with its full size).
    addr_width : int
        Byte address width of the AXI4-Lite port (4 .. 32); every offset must fit.
    """
    def __init__(self, entries, *, addr_width=12):
        self.addr_width = _check_int("addr_width", addr_width, 4, 32)
        registers, reserved, cursor = [], [], 0
        taken = {}
        for entry in entries:
            if isinstance(entry, Reserved):
                reserved.append(entry)
                cursor = entry.end
                continue
            if not isinstance(entry, Register):
                raise TypeError(f"register map entries must be Register or Reserved, "
                                f"not {entry!r}")
            offset = cursor if entry.offset is None else entry.offset
            if entry.name in taken:
                raise ValueError(f"register name {entry.name} is used twice")
            if entry.port_name == "s_axil":
                raise ValueError("register name S_AXIL is reserved for the bus port")
            register = entry._placed(offset)
            registers.append(register)
            taken[entry.name] = register
            cursor = offset + 4
        size = 1 << self.addr_width
        spans = [(r.offset, r.offset + 4, f"register {r.name}") for r in registers]
        spans += [(w.offset, w.end, f"reserved window {w.name!r}") for w in reserved]
        spans.sort()
        for (start, end, what), (next_start, _, next_what) in zip(spans, spans[1:]):
            if next_start < end:
                raise ValueError(f"{next_what} at {next_start:#x} overlaps {what} at {start:#x}")
        for start, end, what in spans:
            if end > size:
                raise ValueError(f"{what} at {start:#x} is outside the {self.addr_width}-bit "
                                 f"address space")
        self.registers = tuple(sorted(registers, key=lambda r: r.offset))
        self.reserved = tuple(sorted(reserved, key=lambda w: w.offset))
        self._by_name = taken
        self._by_offset = {r.offset: r for r in registers}

    def __iter__(self):
        return iter(self.registers)

    def __len__(self):
        return len(self.registers)

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no register named {name!r}") from None

    def __contains__(self, name):
        return name in self._by_name

    def at(self, address):
        """The register that answers byte ``address`` (low two bits ignored), or None."""
        return self._by_offset.get(address & ~3 & ((1 << self.addr_width) - 1))

    def markdown(self, *, reset_notes=None):
        """The register map as Markdown: one table row per register, then the access types.

        ``reset_notes`` maps register names to a note shown after the reset value (e.g. which
        parameter a constant comes from).
        """
        reset_notes = reset_notes or {}
        digits = max(3, (self.addr_width + 3) // 4)
        lines = [
            "| Offset | Name | Access | Reset | Fields |",
            "|---|---|---|---|---|",
        ]
        rows = [(r.offset, r) for r in self.registers] + [(w.offset, w) for w in self.reserved]
        for _, entry in sorted(rows, key=lambda row: row[0]):
            if isinstance(entry, Reserved):
                text = _md(entry.name) + (f": {_md(entry.description)}" if entry.description
                                          else "")
                first, last = f"{entry.offset:#0{digits + 2}x}", f"{entry.end - 1:#0{digits + 2}x}"
                lines.append(f"| `{first}`–`{last}` | *reserved* | — | — | {text} "
                             f"(answers SLVERR until defined) |")
                continue
            fields = []
            for f in reversed(entry.fields):
                text = f"`{f.bits}` **{f.name}** ({f.access.value})"
                if f.description:
                    text += f": {_md(f.description)}"
                fields.append(text)
            reset = f"`{entry.reset:#010x}`"
            if entry.name in reset_notes:
                reset += f" ({_md(reset_notes[entry.name])})"
            description = f"{_md(entry.description)}<br>" if entry.description else ""
            lines.append(f"| `{entry.offset:#0{digits + 2}x}` | **{entry.name}** | "
                         f"{entry.access} | {reset} | {description}{'<br>'.join(fields)} |")
        lines += ["", "Access types:", ""]
        used = {f.access for r in self.registers for f in r.fields}
        for access in Access:
            if access in used:
                lines.append(f"- **{access.value}**: {ACCESS_DOC[access]}.")
        return "\n".join(lines) + "\n"


def _md(text):
    """Escape a string for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


class RegisterFile(wiring.Component):
    """The registers of a :class:`RegisterMap` behind an AXI4-Lite subordinate port.

    Parameters
    ----------
    register_map : RegisterMap

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=register_map.addr_width))
    <register name in lower case> : Out(register.signature())
        One per register that has hardware ports; see :class:`Access` for the field ports.
    """
    def __init__(self, register_map):
        if not isinstance(register_map, RegisterMap):
            raise TypeError(f"register_map must be a RegisterMap, not {register_map!r}")
        self.register_map = register_map
        members = {"s_axil": In(AXI4LiteSignature(addr_width=register_map.addr_width))}
        for register in register_map:
            signature = register.signature()
            if signature is not None:
                members[register.port_name] = Out(signature)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil

        # --- write address and data holding registers --------------------------------------------
        aw_full = Signal()
        w_full = Signal()
        w_data = Signal(WIDTH)
        w_strb = Signal(WIDTH // 8)
        b_valid = Signal()
        b_resp = Signal(2)
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            bus.bvalid.eq(b_valid),
            bus.bresp.eq(b_resp),
        ]
        # The holding registers (and the selects below) load in every cycle while they are empty,
        # so they hold the values of the handshake's cycle: their enables are the ``full`` flags,
        # not the manager's VALID (routed 12 x 12: the UART bridge's state through AWVALID and
        # WVALID to WDATA's 35 enables, 9.1 ns).
        # (Not on iCE40, whose small design fills the device: there they load at the handshake,
        # as before the seventeenth session, which keeps that build's placement.)
        ice40 = is_ice40(platform)
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += aw_full.eq(1)
        if ice40:
            with m.If(bus.wvalid & ~w_full):
                m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        else:
            with m.If(bus.wvalid & ~w_full):
                m.d.sync += w_full.eq(1)
            with m.If(~w_full):
                m.d.sync += [w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        write = Signal()                    # perform the held write in this cycle
        m.d.comb += write.eq(aw_full & w_full & ~b_valid)
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), b_valid.eq(1)]
        with m.Elif(b_valid & bus.bready):
            m.d.sync += b_valid.eq(0)

        # Bit mask of the strobed bytes of the held write.
        bit_en = Signal(WIDTH)
        m.d.comb += bit_en.eq(Cat(w_strb[i].replicate(8) for i in range(WIDTH // 8)))

        # --- read channel ------------------------------------------------------------------------
        # AR is decoded into one select register per register (``r_busy``); the next cycle each
        # group of READ_GROUP registers samples its selected word into a group register
        # (``gather``), and the cycle after that the OR of the groups goes into ``r_data``
        # (``read``) and RVALID rises. The two stages keep the read multiplexer, whose inputs
        # come from every block of the design, to a short path on each side of a register.
        r_valid = Signal()
        r_busy = Signal()
        r_gather = Signal()
        r_data = Signal(WIDTH)
        r_resp = Signal(2)
        gather = Signal()
        read = Signal()
        m.d.comb += [
            bus.arready.eq(~r_valid & ~r_busy & ~r_gather),
            bus.rvalid.eq(r_valid),
            bus.rdata.eq(r_data),
            bus.rresp.eq(r_resp),
            gather.eq(r_busy),
            read.eq(r_gather),
        ]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += r_busy.eq(1)
        m.d.sync += r_gather.eq(gather)
        with m.If(gather):
            m.d.sync += r_busy.eq(0)
        with m.If(read):
            m.d.sync += r_valid.eq(1)
        with m.Elif(r_valid & bus.rready):
            m.d.sync += r_valid.eq(0)

        # --- decode -------------------------------------------------------------------------------
        def word(addr):
            return addr[2:]

        w_hit = Signal()
        r_hit = Signal()
        w_hits = []
        r_hits = []
        read_words = []
        for register in self.register_map:
            index = register.offset >> 2
            w_sel = Signal(name=f"w_sel_{register.port_name}")
            r_sel = Signal(name=f"r_sel_{register.port_name}")
            # Both selects are decoded when the address is accepted, into registers: a
            # register's write enable is ``write`` and its select, both flip-flops. (They load
            # while the address may be accepted, whatever AWVALID or ARVALID.)
            with m.If((bus.awvalid & ~aw_full) if ice40 else ~aw_full):
                m.d.sync += w_sel.eq(word(bus.awaddr) == index)
            with m.If((bus.arvalid & bus.arready) if ice40 else bus.arready):
                m.d.sync += r_sel.eq(word(bus.araddr) == index)
            w_hits.append(w_sel)
            r_hits.append(r_sel)
            value = self._register_logic(m, register, write & w_sel, w_data, bit_en)
            read_words.append((r_sel, value))
        m.d.comb += [
            w_hit.eq(Cat(w_hits).any() if w_hits else 0),
            r_hit.eq(Cat(r_hits).any() if r_hits else 0),
        ]
        with m.If(write):
            m.d.sync += b_resp.eq(Mux(w_hit, Resp.OKAY, Resp.SLVERR))

        # The read word: OR of the selected register's value (offsets are unique: one-hot select),
        # in two stages: per group of READ_GROUP registers, then of the groups.
        read_value = C(0, WIDTH)
        for first in range(0, len(read_words), READ_GROUP):
            group = Signal(WIDTH, name=f"r_group_{first // READ_GROUP}")
            group_value = C(0, WIDTH)
            for r_sel, value in read_words[first:first + READ_GROUP]:
                group_value = group_value | (value & r_sel.replicate(WIDTH))
            with m.If(gather):
                m.d.sync += group.eq(group_value)
            read_value = read_value | group
        r_hit_held = Signal()
        with m.If(gather):
            m.d.sync += r_hit_held.eq(r_hit)
        with m.If(read):
            m.d.sync += [r_data.eq(read_value),
                         r_resp.eq(Mux(r_hit_held, Resp.OKAY, Resp.SLVERR))]
        return m

    def _register_logic(self, m, register, write, w_data, bit_en):
        """Storage and ports of one register; returns its 32-bit read value."""
        port = getattr(self, register.port_name, None)
        parts = []
        for field in register.fields:
            lo, hi = field.lsb, field.lsb + field.width
            data = w_data[lo:hi]
            enable = bit_en[lo:hi]
            name = f"{register.port_name}_{field.name}"
            if field.access is Access.CONST:
                value = C(field.reset, field.width)
            elif field.access is Access.RO:
                value = getattr(port, field.name)
            elif field.access is Access.PULSE:
                pulse = Signal(field.width, name=name)
                m.d.sync += pulse.eq(0)
                with m.If(write):
                    m.d.sync += pulse.eq(data & enable)
                m.d.comb += getattr(port, field.name).eq(pulse)
                value = C(0, field.width)
            else:
                value = Signal(field.width, name=name, init=field.reset)
                m.d.comb += getattr(port, field.name).eq(value)
                if field.access is Access.RW:
                    with m.If(write):
                        m.d.sync += value.eq((value & ~enable) | (data & enable))
                elif field.access is Access.W1C:
                    hw_set = getattr(port, f"{field.name}_set")
                    cleared = Signal(field.width, name=f"{name}_w1c")
                    m.d.comb += cleared.eq(data & enable & write.replicate(field.width))
                    m.d.sync += value.eq((value & ~cleared) | hw_set)
                elif field.access is Access.W1S:
                    hw_clear = getattr(port, f"{field.name}_clear")
                    set_bits = Signal(field.width, name=f"{name}_w1s")
                    m.d.comb += set_bits.eq(data & enable & write.replicate(field.width))
                    m.d.sync += value.eq((value & ~hw_clear) | set_bits)
            parts.append((lo, field.width, value))
        # Assemble the word, zero in the gaps between fields.
        pieces, bit = [], 0
        for lo, width, value in sorted(parts, key=lambda part: part[0]):
            if lo > bit:
                pieces.append(C(0, lo - bit))
            pieces.append(value)
            bit = lo + width
        if bit < WIDTH:
            pieces.append(C(0, WIDTH - bit))
        word = Signal(WIDTH, name=f"{register.port_name}_word")
        m.d.comb += word.eq(Cat(*pieces))
        return word
