"""The instruction set definition (rtl/isa.py): assembler errors, round trips, generated docs."""

import importlib.util
from pathlib import Path

import pytest

from tessera.rtl.isa import (LAYOUTS, Engine, IsaError, Opcode, assemble, decode, disassemble,
                             encode)

ROOT = Path(__file__).resolve().parent.parent


def test_every_format_is_128_bits():
    from amaranth.hdl import Shape
    for opcode, (_, layout) in LAYOUTS.items():
        assert Shape.cast(layout).width == 128, opcode


def test_round_trip_extremes():
    word = encode(Opcode.LOAD, pop=[Engine.EXEC, Engine.STORE], push=[Engine.EXEC],
                  buffer=1, row_bytes=4095, sram_row=65535, rows=65535,
                  dram_addr=(1 << 32) - 1, dram_stride=(1 << 32) - 1)
    opcode, fields = decode(word)
    assert opcode is Opcode.LOAD
    assert fields["pop"] == {Engine.EXEC, Engine.STORE} and fields["push"] == {Engine.EXEC}
    assert fields["row_bytes"] == 4095 and fields["dram_stride"] == (1 << 32) - 1
    word = encode(Opcode.CONFIG, zero_point=-128, act_min=-128, act_max=127, params_row=3)
    assert decode(word)[1]["zero_point"] == -128
    assert disassemble(assemble([word, encode(Opcode.HALT)])) == [word, encode(Opcode.HALT)]


@pytest.mark.parametrize("call,message", [
    (lambda: encode(Opcode.LOAD, rows=1 << 16), "LOAD.rows must be in [0, 65535], not 65536"),
    (lambda: encode(Opcode.CONFIG, act_min=-129), "CONFIG.act_min must be in [-128, 127]"),
    (lambda: encode(Opcode.MATMUL, row_bytes=3), "MATMUL has no field 'row_bytes'"),
    (lambda: encode(9), "opcode must be one of"),
    (lambda: encode(Opcode.HALT, pop=[7]), "pop must name engines"),
    (lambda: decode(0), "illegal opcode 0"),
    (lambda: disassemble(b"x" * 17), "multiple of 16 bytes, not 17"),
])
def test_errors_name_the_bad_value(call, message):
    with pytest.raises(IsaError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


def test_generated_docs_are_current():
    spec = importlib.util.spec_from_file_location("gen_regmap", ROOT / "scripts" / "gen_regmap.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = gen.ISA_DOC.read_text()
    assert gen.isa_doc_text(current) == current, \
        "docs/isa.md is out of date: run python scripts/gen_regmap.py"
