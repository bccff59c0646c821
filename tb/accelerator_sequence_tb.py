"""cocotb test: several programs, one after another, on one accelerator without a reset between them.

Used by tb/test_accelerator.py (:func:`tessera.tb.test_accelerator.run_sequence`) to check that the
accelerator runs the next program normally after any error, and to amortise the simulator's start
over many programs. Request (``.npz``, path in ``TESSERA_REQUEST``): ``images`` (all images
concatenated, uint8), ``sizes``, ``program_addrs``, ``lengths``, ``stall_thresholds``,
``watchdogs`` (-1 = reset value), ``hang_afters`` (-1 = never), ``soft_reset_afters`` (cycles
after START at which the host writes CTRL.soft_reset; -1 = never), ``timeout``. Before each program
the whole memory image is loaded through the backdoor and the memory's limit is set to its size;
after it, the image is read back. Response (``TESSERA_RESPONSE``): ``images`` (final images,
concatenated), ``errors``, ``error_indices``, ``counters`` (programs x PERF_COUNTERS),
``timed_out``.
"""

import os

import cocotb
import numpy as np

from tessera.rtl.registers import PERF_COUNTERS

from cocotb.triggers import Timer

from .accelerator_tb import PERIOD_NS, Host, ProgramTimeout

__all__ = []


async def _soft_reset_after(host, cycles):
    await Timer(cycles * PERIOD_NS, "ns")
    await host.write("CTRL", irq_enable=1, soft_reset=1)


@cocotb.test()
async def sequence(dut):
    with np.load(os.environ["TESSERA_REQUEST"], allow_pickle=False) as request:
        blob = request["images"].astype(np.uint8).tobytes()
        sizes = [int(x) for x in request["sizes"]]
        addrs = [int(x) for x in request["program_addrs"]]
        lengths = [int(x) for x in request["lengths"]]
        stalls = [int(x) for x in request["stall_thresholds"]]
        watchdogs = [int(x) for x in request["watchdogs"]]
        hang_afters = [int(x) for x in request["hang_afters"]]
        soft_resets = [int(x) for x in request["soft_reset_afters"]]
        timeout = int(request["timeout"])
    host = Host(dut)
    await host.start(cocotb.RANDOM_SEED)
    finals, errors, indices, counters, timed_out = [], [], [], [], []
    offset = 0
    for i, size in enumerate(sizes):
        image = blob[offset:offset + size]
        offset += size
        if size > host.mem_size:
            raise ValueError(f"image {i} of {size} bytes does not fit the build's memory of "
                             f"{host.mem_size} bytes")
        host.configure_memory(stall_threshold=stalls[i], limit=size, hang=0)
        await host.load_image(image)
        resetter = None
        if soft_resets[i] >= 0:
            resetter = cocotb.start_soon(_soft_reset_after(host, soft_resets[i]))
        try:
            result = await host.run_program(
                addrs[i], lengths[i], timeout,
                watchdog=None if watchdogs[i] < 0 else watchdogs[i],
                hang_after=None if hang_afters[i] < 0 else hang_afters[i])
            errors.append(int(result.error))
            indices.append(result.error_index)
            counters.append([result.counters[name] for name in PERF_COUNTERS])
            timed_out.append(False)
        except ProgramTimeout as exc:
            dut._log.error("program %d: %s", i, exc)
            errors.append(-1)
            indices.append(0)
            counters.append([0] * len(PERF_COUNTERS))
            timed_out.append(True)
        if resetter is not None:
            resetter.cancel()
        host.configure_memory(hang=0)
        if hang_afters[i] >= 0:
            # The memory stopped answering: the accelerator was reset by its watchdog and has
            # forgotten the transactions the memory still holds, so the memory is reset too.
            await host.reset_memory()
        finals.append(await host.read_image(size))
        if timed_out[-1]:
            break
    assert not int(dut.violation.value), "the memory saw a malformed or unsupported burst"
    np.savez(os.environ["TESSERA_RESPONSE"],
             images=np.frombuffer(b"".join(finals), np.uint8),
             errors=np.array(errors), error_indices=np.array(indices, np.uint64),
             counters=np.array(counters, np.uint64).reshape(len(errors), len(PERF_COUNTERS)),
             timed_out=np.array(timed_out))
