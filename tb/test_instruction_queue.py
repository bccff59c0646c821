"""An engine's instruction queue (rtl/engine.py, ``InstructionQueue``) in Amaranth's simulator,
cycle by cycle against a Python model of what it promises:

* entries come out in the order they went in, each exactly once;
* it accepts a push exactly when fewer than ``depth`` entries are in it (wherever they are:
  input register, storage or head), counting an entry taken in the previous cycle as still in it
  (a take is counted a cycle late), so its capacity is ``depth`` (the instruction-level
  simulator's DEADLOCK depends on it);
* ``empty`` is false from the cycle after a push until two cycles after the last entry is taken
  (the FENCE and end-of-program checks must never miss an entry on its way to the head);
* an entry pushed into an empty queue is at the head three cycles later, the next entry two
  cycles after a ``take``;
* ``flush`` drops every entry;
* ``tokens_ready`` is the head's pops against ``avail``.
"""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from tessera.rtl.engine import InstructionQueue
from tessera.rtl.isa import QUEUE_DEPTH, Engine, Opcode, encode

#: Cycles from a push into an empty queue to ``valid``, and from a ``take`` to the next entry's
#: ``valid`` (the docstring's promises).
PUSH_TO_HEAD = 3
TAKE_TO_HEAD = 2


def _entry(index):
    """A queue entry whose index and instruction both identify it; its pops are bits of the
    index."""
    pops = [e for e in Engine if (index >> e) & 1]
    word = encode(Opcode.LOAD, pop=pops, row_bytes=1 + index % 8, rows=1,
                  dram_addr=(index * 2654435761) % (1 << 32))
    return {"word": word, "index": index, "pop": index & 0b111}


def _run(dut, bench, cycles):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(cycles * 1e-6)


@pytest.mark.parametrize("depth", [1, 2, 3, QUEUE_DEPTH])
def test_queue_against_model(depth, seed):
    """Random pushes, takes, ``avail`` and rare flushes for 3000 cycles, checked every cycle."""
    rng = random.Random(seed)
    dut = InstructionQueue(depth=depth)
    checked = {"taken": 0, "full": 0}

    async def bench(ctx):
        model = []                 # entries in the queue, oldest first
        arrivals = []              # cycle at which each entry of ``model`` may be at the head
        next_index = 0
        was_empty = True
        took = False               # an entry was taken in the previous cycle (not yet counted)
        for cycle in range(3000):
            push_prob = rng.choice([0.2, 0.6, 0.95])
            take_prob = rng.choice([0.2, 0.6, 0.95])
            flush = rng.random() < 0.01
            push = rng.random() < push_prob
            avail = rng.randrange(8)
            ctx.set(dut.flush, flush)
            ctx.set(dut.avail, avail)
            ctx.set(dut.push.valid, push)
            offered = _entry(next_index)
            ctx.set(dut.push.payload.word.bits, offered["word"])
            ctx.set(dut.push.payload.index, offered["index"])
            ready = ctx.get(dut.push.ready)
            valid = ctx.get(dut.valid)
            take = valid and rng.random() < take_prob
            ctx.set(dut.take, take)

            assert ctx.get(dut.empty) == (was_empty and not took), f"cycle {cycle}: empty"
            if not flush:
                assert ready == (len(model) + took < depth), \
                    f"cycle {cycle}: ready {ready} with {len(model)} of {depth} entries"
                checked["full"] += len(model) == depth
            if valid:
                assert model, f"cycle {cycle}: a head in an empty queue"
                index = model[0]["index"]
                got = ctx.get(dut.head.index)
                assert got == index, f"cycle {cycle}: head {got}, expected {index}"
                assert ctx.get(dut.head.word.bits) == model[0]["word"], f"cycle {cycle}: word"
                assert ctx.get(dut.tokens_ready) == ((model[0]["pop"] & ~avail) == 0)
            elif model and arrivals[0] <= cycle and not flush:
                raise AssertionError(f"cycle {cycle}: entry {model[0]['index']} not at the head "
                                     f"{PUSH_TO_HEAD} cycles after its push")
            await ctx.tick()
            took = take and not flush
            if flush:
                model.clear()
                arrivals.clear()
            else:
                if take:
                    model.pop(0)
                    arrivals.pop(0)
                    checked["taken"] += 1
                    if arrivals:   # the next one follows two cycles after the take
                        arrivals[0] = max(arrivals[0], cycle + TAKE_TO_HEAD)
                if push and ready:
                    model.append(_entry(next_index))
                    arrivals.append(cycle + PUSH_TO_HEAD)
                    next_index += 1
            was_empty = not model
        assert checked["taken"] > 400 and checked["full"] > 50, checked

    _run(dut, bench, 3100)


def test_queue_rejects_a_zero_depth():
    # The half-built component is collected here, its "created but never used" warning silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="depth must be at least 1, not 0") as info:
            InstructionQueue(depth=0)
        del info
        gc.collect()
