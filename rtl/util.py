"""Small elaboration helpers shared by the gateware: parameter checks, delay lines and register
replicas."""

import operator
from functools import reduce

from amaranth.hdl import Mux, Signal

__all__ = ["REPLICA", "check_dimension", "delay", "replicate", "wrap_increment", "zero_unless",
           "one_hot_select", "NO_RW_CHECK", "registered_read", "is_ice40"]

#: Name infix of the registers made by :func:`replicate` (the FPGA build selects them by it).
REPLICA = "_replica"

#: ``attrs`` of a ``Memory`` none of whose reads is used in the cycle its word is written (read
#: with :func:`registered_read`): Yosys then adds no logic emulating a read of the old data
#: (on iCE40 it does for a synchronous Amaranth read port, even with this attribute).
NO_RW_CHECK = {"no_rw_check": 1}


def check_dimension(name, value, *, maximum=256):
    """Return ``value`` if it is an integer in [1, maximum], else raise with a one-line message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [1, {maximum}], not {value!r}")
    return value


def is_ice40(platform):
    """Whether ``platform`` (an Amaranth platform, or None in simulation) is an iCE40 device: the
    gateware leaves some timing registers out there, where the small design fills the device."""
    return str(getattr(platform, "family", "")).lower() == "ice40"


def zero_unless(condition, value):
    """``value`` when ``condition`` holds, else zero."""
    return Mux(condition, value, 0)


def one_hot_select(select, values):
    """The entry of ``values`` whose bit of ``select`` is set, as an AND-OR (``select`` must be
    one-hot or zero; zero gives zero)."""
    return reduce(operator.or_, (zero_unless(select[i], value) for i, value in enumerate(values)))


def wrap_increment(value, modulus):
    """``value + 1``, or 0 when ``value`` is ``modulus - 1`` (a pointer or index that wraps)."""
    return Mux(value == modulus - 1, 0, value + 1)


def registered_read(m, memory, name):
    """``(port, data)``: an asynchronous read port of ``memory`` and a register ``name`` of its
    data, the word addressed in the previous cycle -- a synchronous read, which Yosys maps into
    the block RAM (with :data:`NO_RW_CHECK` on the memory, without old-data emulation)."""
    port = memory.read_port(domain="comb")
    data = Signal(memory.shape, name=name, reset_less=True)
    m.d.sync += data.eq(port.data)
    return port, data


def delay(m, value, cycles, name, *, reset_less=False):
    """Return ``value`` delayed by ``cycles`` registers (named ``{name}_0`` ...) added to ``m``.

    ``value`` may be a plain value or a data view; the registers take its shape or layout.
    ``reset_less``: data whose validity travels in another (reset) delay line, so a reset need not
    reach these registers.
    """
    for i in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_{i}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value


def replicate(m, value, copies, name, *, reset_less=False, domain="sync"):
    """Return ``copies`` registers of ``domain`` that all take ``value`` (a cycle later), named
    ``{name}_replica{i}``: copies of a signal with many loads spread over the die, one copy per
    group of loads, so that the placer can put each copy beside its group and no net crosses the
    die with hundreds of loads. Synthesis would merge identical flip-flops back into one; the FPGA
    build marks these ``keep`` (``tessera.fpga.synth.KEEP_REPLICAS``)."""
    regs = []
    for i in range(copies):
        reg = Signal(value.shape(), name=f"{name}{REPLICA}{i}", reset_less=reset_less)
        m.d[domain] += reg.eq(value)
        regs.append(reg)
    return regs
