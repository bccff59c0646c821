"""Tessera top level: the whole accelerator behind two standard AXI ports and an interrupt.

::

    host ─ s_axil ─► RegisterFile ─ start, PROGRAM_ADDR/LEN ─► Controller ◄─ status of everything
                          ▲   status, errors, counters, irq       │ begin / stop / force reset
                          │                                        ▼
                          │        ┌──────────── FetchUnit ◄── DMA rows (owner = fetch)
                          │        ▼
                          │   Dispatcher ─┬─► LoadEngine ──── descriptors ───┐
                          │               ├─► ExecEngine (TensorCore)        ├─► DMA arbiter ─► Dma ─ m_axi ─► memory
                          │               └─► StoreEngine ─── descriptors ───┘   (fetch, load,
                          │                    │ CONFIG, requant params            store, DMA hook)
                          │                    ▼
       Scratchpad (int8 rows): write ◄ DMA rows; port A ► EXEC activations (or DMA hook reads);
                               port B ► EXEC weights
       Accumulator (int32 rows): write ◄ DMA rows (priority) or EXEC results; read ► store path:
                               Requantizer (STORE requant) or raw ─► read FIFO ─► DMA ─► memory

Buffer rows: both buffers have ``lanes = max(rows, cols)`` lanes, so one scratchpad row can feed
the array's activations (``rows`` lanes) or weights (``cols`` lanes). A scratchpad row is ``lanes``
bytes; an accumulator row is ``4 * lanes`` bytes, int32 lanes little-endian (lane 0 first), which is
exactly the DMA's byte order, so rows pass between the DMA and the buffers without reordering.

The DMA is shared: an arbiter grants it, while it is idle, to the STORE engine, the fetch unit,
the LOAD engine and the DMA test hook, in that priority, and routes ``done``/``error`` and the
row streams to the owner of the running descriptor.

Register behaviour (see docs/register-map.md for the map, docs/isa.md for programs):

* ``CTRL.start`` (while no program runs): clears ERROR_CODE/ERROR_INFO, the tokens and the
  performance counters, and runs the program at PROGRAM_ADDR (PROGRAM_LEN instructions). At the
  end STATUS.done is set; ERROR_CODE says whether it failed (STATUS.error).
* ``DMA_START.start`` (the DMA test hook, while no program runs): launches the descriptor in
  DMA_ADDR .. DMA_SRAM; a start while the DMA is busy waits (one deep).
* ``STATUS.busy``: a program or a hook transfer is running or waiting. ``STATUS.done`` (write 1
  to clear): a program or hook transfer completed, with or without error. ``STATUS.error``: the
  last program stopped with an error, or the last hook transfer failed (DMA_ERROR says why).
* ``irq`` = ``CTRL.irq_enable & (STATUS.done | STATUS.error)``: level, cleared by clearing done.
* ``CTRL.soft_reset``: stops a running program (nothing new starts; it ends with ERROR_CODE
  ABORTED, STATUS.done and the interrupt), and as soon as the DMA is idle (it always finishes its
  bursts protocol-correctly, so this is bounded) resets the engines, the DMA and the buffers'
  pipelines for one cycle. Registers (STATUS too) and buffer contents keep their values. The AXI
  ports never see an abandoned transaction.
* The watchdog (WATCHDOG cycles without progress) stops a program whose memory stopped answering:
  it resets the engines and the DMA at once (transactions the memory still holds are forgotten).
"""

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, DomainRenamer, Module, Mux,
                          ResetSignal, Signal)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from .accumulator import Accumulator, WriteMode
from .axi import AXI4LiteSignature, AXI4Signature, any_handshake
from .controller import Controller
from .dispatcher import Dispatcher
from .dma import Dma
from .dma_descriptor import Buffer, DmaDescriptor, DmaError
from .exec_engine import ExecEngine
from .fetch import FetchUnit
from .load_engine import LoadEngine
from .register_slice import RegisterSlice
from .registers import ADDR_WIDTH, PERF_COUNTERS, dma_descriptor, register_file
from .requant import Requantizer, check_units
from .scratchpad import Scratchpad
from .sliced_fifo import SlicedFIFO
from .store_engine import StoreEngine
from .util import delay, one_hot_select, replicate

__all__ = ["Tessera", "accelerator_ports"]

#: Buffer rows the store path may have requested but not yet handed to the DMA: covers the
#: accumulator's and the requantizer's latency, so stores stream at full rate (a row per cycle;
#: requantized rows one per ``beats`` cycles with a time-shared requantizer). Checked in
#: ``Tessera.elaborate``.
READ_SLOTS = 24

#: Read bursts the DMA keeps in flight. Six, not the DMA's default four: a burst counts as in
#: flight until its last beat has left the DMA's R register slice, and with four the short bursts
#: of small layers lost bus cycles (the digits demo took 73,152 cycles with four, 70,710 with
#: six, 70,278 without the slice).
OUTSTANDING_READS = 6

#: Buffer rows the DMA requests ahead of its write packer on STORE (the DMA's default is four).
#: A requantized row takes about 20 cycles from its request to the DMA (accumulator read,
#: requantizer, the FIFO and its input and output registers), so with four the short rows of
#: small layers left the bus idle. Digits demo: 73,068 cycles with 4, 65,784 with 6, 63,012
#: with 8, 61,206 with 12, 60,828 with 16 (at most READ_SLOTS are useful).
ROW_PREFETCH = 16

#: DMA clients in grant priority order.
CLIENTS = ("store", "fetch", "load", "hook")


def accelerator_ports(*, bus_width, id_width):
    """The ports of an accelerator (this one and rtl/small/top.py's): ``s_axil`` (registers),
    ``m_axi`` (memory, ``bus_width`` bits of data), ``irq``."""
    return {
        "s_axil": In(AXI4LiteSignature(addr_width=ADDR_WIDTH)),
        "m_axi": Out(AXI4Signature(addr_width=32, data_width=bus_width, id_width=id_width)),
        "irq": Out(1),
    }


class Tessera(wiring.Component):
    """The accelerator's top level.

    Parameters (keyword-only)
    -------------------------
    rows, cols : int
        PE array size (read back in ROWS/COLS); buffer rows have ``max(rows, cols)`` lanes.
    scratchpad_depth, accumulator_depth : int
        Rows of each buffer.
    bus_width : int
        AXI4 data width: 32, 64 or 128.
    id_width : int
        AXI4 ID width.
    multiplier : str
        PE multiplier implementation (``auto``, ``generic``, ``ecp5``, ``lut``), see
        rtl/multiplier.py.
    requant_units : int or None
        Multiplier pipelines of the requantizer, in [1, lanes]; None: one per lane (a
        requantized row every cycle). Fewer are time-shared across the lanes (a requantized row
        every ``ceil(lanes / requant_units)`` cycles; rtl/requant.py). Not visible in the
        registers, and not part of ``config``.
    """
    def __init__(self, *, rows=8, cols=8, scratchpad_depth=4096, accumulator_depth=512,
                 bus_width=64, id_width=4, multiplier="auto", requant_units=None):
        self.config = dict(rows=rows, cols=cols, scratchpad_depth=scratchpad_depth,
                           accumulator_depth=accumulator_depth, bus_width=bus_width)
        # Constructing the register file validates the configuration with clear messages.
        self.regs = register_file(**self.config)
        self.lanes = lanes = max(rows, cols)
        self.dma = Dma(data_width=bus_width, id_width=id_width, lanes=lanes,
                       scratchpad_depth=scratchpad_depth, accumulator_depth=accumulator_depth,
                       max_outstanding_reads=OUTSTANDING_READS, row_prefetch=ROW_PREFETCH)
        self.scratchpad = Scratchpad(lanes=lanes, depth=scratchpad_depth)
        self.accumulator = Accumulator(lanes=lanes, depth=accumulator_depth)
        self.fetch = FetchUnit(rows=rows, cols=cols, lanes=lanes,
                               scratchpad_depth=scratchpad_depth,
                               accumulator_depth=accumulator_depth)
        self.dispatcher = Dispatcher()
        self.load_engine = LoadEngine()
        self.exec_engine = ExecEngine(rows=rows, cols=cols, lanes=lanes,
                                      scratchpad_addr_width=self.scratchpad.addr_width,
                                      accumulator_addr_width=self.accumulator.addr_width,
                                      multiplier=multiplier,
                                      read_latency=self.scratchpad.read_latency)
        self.store_engine = StoreEngine(lanes=lanes,
                                        accumulator_addr_width=self.accumulator.addr_width)
        self.requant_units = check_units(requant_units, lanes=lanes, name="requant_units")
        self.requantizer = Requantizer(lanes=lanes, units=self.requant_units)
        self.controller = Controller()
        super().__init__(accelerator_ports(bus_width=bus_width, id_width=id_width))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        regs = m.submodules.regs = self.regs
        dma, spad, acc = self.dma, self.scratchpad, self.accumulator
        fetch, disp, ctrl = self.fetch, self.dispatcher, self.controller
        load, exe, store, rq = self.load_engine, self.exec_engine, self.store_engine, \
            self.requantizer

        # --- soft reset and watchdog reset ------------------------------------------------------
        soft_reset_pending = Signal()
        dma_busy = Signal()            # the DMA runs a descriptor or the arbiter holds one for it
        soft_reset = Signal()          # the cycle the engines' reset is decided by CTRL.soft_reset
        # The engines' reset comes from a register (a cycle after the soft reset or watchdog
        # decided it): it reaches every register of the engines, the buffers' pipelines and the
        # DMA, the design's largest fan-out, so it leaves straight from a flip-flop. The
        # controller cannot start a program in that cycle (it sees the DMA busy).
        # That register is the reset of the ``engines`` domain (the ``sync`` clock): it is 1
        # while ``sync`` is in reset and for a cycle after, so it covers the board's reset too,
        # and the engines' synchronous resets start at this one flip-flop, with no gate OR-ing
        # two resets in front of them.
        engine_reset = Signal(init=1)
        m.d.comb += soft_reset.eq(soft_reset_pending & ~dma_busy)
        m.d.sync += engine_reset.eq(soft_reset | ctrl.force_reset)
        m.domains.engines = ClockDomain("engines", local=True)
        m.d.comb += [ClockSignal("engines").eq(ClockSignal("sync")),
                     ResetSignal("engines").eq(engine_reset)]
        with m.If(regs.ctrl.soft_reset):
            m.d.sync += soft_reset_pending.eq(1)
        with m.Elif(soft_reset):
            m.d.sync += soft_reset_pending.eq(0)
        engines = DomainRenamer("engines")
        for name, block in (("dma", dma), ("scratchpad", spad), ("accumulator", acc),
                            ("fetch", fetch), ("dispatcher", disp), ("load_engine", load),
                            ("exec_engine", exe), ("store_engine", store), ("requantizer", rq)):
            m.submodules[name] = engines(block)
        # The controller is not reset: it returns to IDLE by itself once the engines are quiet,
        # and keeps ERROR_CODE (ABORTED for a program stopped by the soft reset).
        m.submodules.controller = ctrl

        connect(m, flipped(self.s_axil), regs.s_axil)
        connect(m, dma.m_axi, flipped(self.m_axi))

        # --- program control --------------------------------------------------------------------
        # The fetch unit's abort is a register (a cycle after ``stop`` or the end of the
        # program): it gates the fetch FIFO's writes and the descriptor, far from the controller.
        # (In that cycle the fetch unit may still issue a descriptor, which it then waits for;
        # the rows are dropped.)
        fetch_abort = Signal(init=1)
        # The controller sees the DMA's state a cycle late, from one register (the OR of the
        # DMA's and the arbiter's flags across the die is not on its start path). It starts a
        # program only when the DMA was idle a cycle ago; what may enter the DMA in that cycle
        # is the DMA_START hook, which a program's fetch waits for as for any DMA work (see the
        # arbiter). The engine reset and the decisions that start it count as busy.
        dma_busy_q = Signal(init=1)
        # (``dma_busy | soft_reset`` is ``dma_busy | soft_reset_pending``: written so, the
        # register does not wait for the soft reset's decision.)
        m.d.sync += dma_busy_q.eq(dma_busy | engine_reset | soft_reset_pending | ctrl.force_reset)
        m.d.sync += fetch_abort.eq(~ctrl.running | ctrl.stop)
        m.d.comb += [
            ctrl.start.eq(regs.ctrl.start),
            ctrl.soft_abort.eq(soft_reset_pending),
            ctrl.watchdog.eq(regs.watchdog.cycles),
            fetch.start.eq(ctrl.begin_fetch),
            fetch.abort.eq(fetch_abort),
            fetch.program_addr.eq(regs.program_addr.addr),
            fetch.program_len.eq(regs.program_len.length),
            disp.start.eq(ctrl.begin_dispatch),
            disp.stop.eq(ctrl.stop | ~ctrl.running),
            disp.program_len.eq(regs.program_len.length),
            disp.fault.eq(fetch.fault),
            disp.fault_index.eq(fetch.fault_index),
            # An engine takes its queue's head together with the head's tokens (``pop_en``).
            disp.load_taken.eq(load.control.pop_en),
            disp.exec_taken.eq(exe.control.pop_en),
            disp.store_taken.eq(store.control.pop_en),
            disp.engines_idle.eq(load.control.empty & exe.control.empty & store.control.empty &
                                 ~load.control.busy & ~exe.control.busy & ~store.control.busy &
                                 ~load.control.stall & ~exe.control.stall &
                                 ~store.control.stall),
            ctrl.halted.eq(disp.halted),
            ctrl.stuck.eq(disp.stuck),
            ctrl.dispatched.eq(disp.dispatched),
            ctrl.dispatch_index.eq(disp.index),
            ctrl.dispatch_error.eq(disp.error),
            ctrl.dispatch_error_en.eq(disp.error_en),
            ctrl.dispatch_error_index.eq(disp.error_index),
            ctrl.fetch_busy.eq(fetch.busy),
            ctrl.dma_busy.eq(dma_busy_q),
            ctrl.mac_active.eq(exe.mac_active),
            ctrl.bytes_read.eq(dma.bytes_read),
            ctrl.bytes_written.eq(dma.bytes_written),
        ]
        connect(m, fetch.insn, disp.insn)
        connect(m, disp.load, load.queue)
        connect(m, disp.exec, exe.queue)
        connect(m, disp.store, store.queue)
        connect(m, load.control, ctrl.load)
        connect(m, exe.control, ctrl.exec)
        connect(m, store.control, ctrl.store)
        m.d.comb += ctrl.progress.eq(any_handshake(self.m_axi))

        # --- DMA arbiter ---------------------------------------------------------------------------
        hook_pending = Signal()
        hook_valid = Signal()
        grant_hook = Signal()
        with m.If(regs.dma_start.start & ~soft_reset_pending):
            m.d.sync += hook_pending.eq(1)
        with m.Elif(grant_hook | engine_reset):
            m.d.sync += hook_pending.eq(0)
        # ``~running`` a cycle late (a register beside the arbiter, not the controller's state
        # decode across the die): the hook may be granted in the first cycle of RUN as it may in
        # BEGIN; the program's fetch then waits for the hook's transfer, as it waits for any
        # DMA work (the controller starts a program only while the DMA is idle).
        program_idle = Signal()
        m.d.sync += program_idle.eq(~ctrl.running)
        m.d.comb += hook_valid.eq(hook_pending & ~soft_reset_pending & program_idle)
        # Each client's descriptor enters the arbiter through two register slices in series (in
        # the engines' domain, so the engine reset empties them): the priority and the holding
        # register start at flip-flops next to the arbiter, not at the clients' state machines
        # and the controller's ``abort`` on the other side of the die, a client sees a
        # registered ``ready``, and the placer can put one slice near the client and one near
        # the arbiter (one register in the middle of a die-wide connection left 9 ns of routing
        # on one side). A client has one descriptor outstanding at a time, so the slices need no
        # spare entry (half rate); a descriptor in a slice is committed, as one in the holding
        # register is.
        clients = {"store": store, "fetch": fetch, "load": load}    # the engines among CLIENTS
        slices = {}
        in_transit = []                 # valid flags of the slices near the clients
        for name, client in clients.items():
            near_client = RegisterSlice(DmaDescriptor(), full_rate=False)
            in_transit.append(near_client.o.valid)
            request = slices[name] = RegisterSlice(DmaDescriptor(), full_rate=False)
            m.submodules[f"{name}_request_out"] = engines(near_client)
            m.submodules[f"{name}_request"] = engines(request)
            connect(m, client.descriptor, near_client.i)
            connect(m, near_client.o, request.i)
        # The hook's descriptor (register fields, and a valid decided from the controller's and
        # the soft reset's flags) enters through one slice too, so the priority starts at
        # flip-flops for every request; the hook is taken (``grant_hook``) when it enters it.
        hook_request = slices["hook"] = RegisterSlice(DmaDescriptor(), full_rate=False)
        m.submodules.hook_request = engines(hook_request)
        m.d.comb += [hook_request.i.valid.eq(hook_valid),
                     hook_request.i.payload.eq(dma_descriptor(regs)),
                     grant_hook.eq(hook_valid & hook_request.i.ready)]
        requests = {name: (request.o.valid, request.o.payload) for name, request in slices.items()}
        # The winner's descriptor goes into a holding register (``held``), which offers it to the
        # DMA: the DMA's descriptor register is loaded from flip-flops, not through the clients'
        # request logic and the priority. A client's request is taken when it is picked (below)
        # and the holding register is free or being emptied this cycle; ``owner`` is set when the
        # DMA takes the descriptor.
        owner = Signal(range(len(CLIENTS)))
        held = Signal.like(dma.descriptor.payload, reset_less=True)   # ``held_valid`` says what
        held_valid = Signal()                                           # it holds
        held_owner = Signal(range(len(CLIENTS)))
        hold_free = Signal()
        m.d.comb += [
            dma.descriptor.valid.eq(held_valid),
            dma.descriptor.payload.eq(held),
            hold_free.eq(~held_valid | dma.descriptor.ready),
            dma_busy.eq(dma.busy | held_valid |
                        Cat(*(request.o.valid for request in slices.values()),
                            *in_transit).any()),
        ]
        with m.If(held_valid & dma.descriptor.ready):
            m.d.sync += [held_valid.eq(0), owner.eq(held_owner)]
        granted = [Signal(name=f"grant_{name}") for name in CLIENTS]
        # The choice is registered (``pick``, one-hot): while nothing is picked, ``pick`` takes
        # the highest-priority valid request; the picked request's payload moves into the holding
        # register when it is free, and the request is granted then (a request stays valid until
        # granted, so the picked one is still there). The holding register's data input is then
        # one AND-OR of flip-flops (``pick`` and the payloads), not the priority chain behind the
        # requests' valid flags (routed 12 x 12: 14.6 ns, a 7.8 ns hop from that chain).
        pick = Signal(len(CLIENTS))
        first = Signal(len(CLIENTS))        # the highest-priority valid request, one-hot
        earlier = 0
        for i, name in enumerate(CLIENTS):
            valid, _ = requests[name]
            m.d.comb += [first[i].eq(valid & ~earlier),
                         granted[i].eq(pick[i] & hold_free)]
            earlier = earlier | valid
        with m.If(~pick.any()):
            m.d.sync += pick.eq(first)
        with m.Elif(hold_free):
            m.d.sync += pick.eq(0)
        with m.If(hold_free):
            m.d.sync += [
                held.eq(one_hot_select(pick, [requests[name][1].as_value()
                                              for name in CLIENTS])),
                held_owner.eq(one_hot_select(pick, range(len(CLIENTS)))),
                held_valid.eq(pick.any()),
            ]
        with m.If(engine_reset):
            m.d.sync += [held_valid.eq(0), pick.eq(0)]
        for i, name in enumerate(CLIENTS):
            if name in clients:
                client = clients[name]
                m.d.comb += [
                    slices[name].o.ready.eq(granted[i]),
                    client.dma_done.eq(dma.done & (owner == i)),
                    client.dma_error.eq(dma.error),
                ]
        m.d.comb += slices["hook"].o.ready.eq(granted[CLIENTS.index("hook")])
        owned_by = {name: owner == i for i, name in enumerate(CLIENTS)}

        # --- status, errors, interrupt --------------------------------------------------------------
        hook_error = Signal()
        hook_done = Signal()
        m.d.comb += hook_done.eq(dma.done & owned_by["hook"])
        with m.If(hook_done):
            m.d.sync += hook_error.eq(dma.error != DmaError.NONE)
        with m.Elif(ctrl.begin):
            m.d.sync += hook_error.eq(0)
        # STATUS's inputs come from registers (a cycle later, all three together), so the
        # register file's read multiplexer starts at flip-flops.
        status_busy, status_done, status_error = Signal(), Signal(), Signal()
        m.d.sync += [
            status_busy.eq(ctrl.running | hook_pending | dma_busy),
            status_done.eq(ctrl.done | hook_done),
            status_error.eq((ctrl.error_code != 0) | hook_error),
        ]
        m.d.comb += [
            regs.status.busy.eq(status_busy),
            regs.status.done_set.eq(status_done),
            regs.status.error.eq(status_error),
            regs.error_code.code.eq(ctrl.error_code),
            regs.error_info.index.eq(ctrl.error_index),
            regs.dma_error.code.eq(dma.error),
            regs.dma_error_addr.addr.eq(dma.error_addr),
            self.irq.eq(regs.ctrl.irq_enable & (regs.status.done | regs.status.error)),
        ]
        for name in PERF_COUNTERS:
            m.d.comb += getattr(regs, name.lower()).count.eq(
                getattr(ctrl, f"count_{name.lower()}"))

        # --- DMA rows in: fetch unit, scratchpad, accumulator -----------------------------------
        # The fetch unit registers its rows itself. The buffers' rows are registered here, a
        # cycle after the DMA writes them (``row_q``, its write flags): the block RAM write ports
        # and the accumulator's port arbitration — EXEC's ``acc_write_ready``, which stops the
        # array's result stream — start at flip-flops, not at the DMA. (A LOAD's rows are
        # written long before its tokens reach an engine that reads them.)
        row = dma.row_write.payload
        to_fetch = owned_by["fetch"]
        row_q = Signal.like(row, reset_less=True)
        spad_dma_write = Signal()
        acc_dma_write = Signal()
        m.d.engines += [
            spad_dma_write.eq(dma.row_write.valid & ~to_fetch &
                              (row.buffer == Buffer.SCRATCHPAD)),
            acc_dma_write.eq(dma.row_write.valid & ~to_fetch &
                             (row.buffer == Buffer.ACCUMULATOR)),
        ]
        m.d.sync += row_q.eq(row)
        m.d.comb += [
            dma.row_write.ready.eq(1),
            fetch.row_valid.eq(dma.row_write.valid & to_fetch),
            fetch.row_data.eq(row.data.as_value()),
            spad.write.addr.eq(row_q.row),
            spad.write.data.as_value().eq(row_q.data.as_value()[:8 * lanes]),
            spad.write.en.eq(spad_dma_write),
        ]
        # The accumulator's rows take one more register stage, a copy of the row per 32-bit lane
        # (``acc_row_i``) with a copy of the write flag per lane for its multiplexer: the row
        # register sits by the DMA, the accumulator's lanes and their input registers spread
        # over the die (106 endpoints of up to 12.4 ns from ``row_q`` in a routed 12 x 12).
        # EXEC's results wait while the DMA's row uses the port.
        acc_row = [Signal(32, name=f"acc_row_{i}", reset_less=True) for i in range(lanes)]
        acc_row_addr = Signal.like(row_q.row, reset_less=True)
        acc_dma_write_q = Signal()
        acc_dma_lane = replicate(m, acc_dma_write, lanes, "acc_dma_write", domain="engines")
        m.d.sync += [acc_row[i].eq(row_q.data.as_value()[32 * i:32 * i + 32])
                     for i in range(lanes)]
        m.d.sync += acc_row_addr.eq(row_q.row)
        m.d.engines += acc_dma_write_q.eq(acc_dma_write)
        # EXEC's ``acc_write_ready`` stops the tensor core's result slices, one per column across
        # the array: each slice has its own copy of the register (one net reached some 900 of
        # their flip-flops; routed 12 x 12: 11-13 ns).
        acc_dma_copies = replicate(m, acc_dma_write, len(exe.acc_write_ready_copies),
                                   "acc_dma_write_slice", domain="engines")
        m.d.comb += [exe.acc_write_ready.eq(~acc_dma_write_q),
                     exe.acc_write_ready_copies.eq(~Cat(*acc_dma_copies))]
        with m.If(acc_dma_write_q):
            m.d.comb += [
                acc.write.addr.eq(acc_row_addr),
                acc.write.mode.eq(WriteMode.OVERWRITE),
                acc.write.en.eq(1),
            ]
        with m.Else():
            m.d.comb += [
                acc.write.addr.eq(exe.acc_write.addr),
                acc.write.mode.eq(exe.acc_write.mode),
                acc.write.en.eq(exe.acc_write.en),
            ]
        for i in range(lanes):
            m.d.comb += acc.write.data[i].eq(Mux(acc_dma_lane[i], acc_row[i],
                                                 exe.acc_write.data[i]))

        # --- scratchpad reads: EXEC (both ports) or the DMA hook's store path (port A) -------------
        req = dma.row_read_req
        to_spad = Signal()
        take = Signal()
        m.d.comb += [
            to_spad.eq(req.payload.buffer == Buffer.SCRATCHPAD),
            spad.read.addr.eq(Mux(take & to_spad, req.payload.row, exe.act_read.addr)),
            exe.act_read.data.eq(spad.read.data),
            spad.read_b.addr.eq(exe.wgt_read.addr),
            exe.wgt_read.data.eq(spad.read_b.data),
        ]

        # --- accumulator reads: CONFIG parameters or the store path -------------------------------
        param_read = store.param_read
        dma_acc_read = Signal()
        m.d.comb += [
            dma_acc_read.eq(take & ~to_spad),
            acc.read.addr.eq(Mux(param_read.en, param_read.addr, req.payload.row)),
            acc.read.en.eq(param_read.en | dma_acc_read),
            store.acc_data.eq(acc.read.data),
            store.acc_valid.eq(delay(m, param_read.en, acc.read_latency, "param_read")),
        ]

        # --- store path: rows to the DMA through a FIFO with credits ------------------------------
        # A request is taken only when the FIFO is sure to have room for its data, so the
        # fixed-latency read ports and the requantizer never overflow it. All requests of one
        # descriptor go to one buffer in one mode, so data comes back in request order.
        # The requantizer accepts a row at most every `rq.beats` cycles (with requant_units <
        # lanes it time-shares its multiplier pipelines across the lanes): after a take that it
        # will requantize, no request is taken for beats - 1 cycles.
        # The credits alone keep the FIFO from overflowing, whatever the latencies. For full rate
        # a credit must be free for every row in flight: a row holds one from its take through
        # the read latency, the requantizer's latency, the FIFO's input register, its cycle
        # from write to output, the cycle the credit takes to come back and one spare, and rows
        # come every beats cycles.
        in_flight = -(-(max(acc.read_latency, spad.read_latency) + rq.latency + 4) // rq.beats)
        assert READ_SLOTS >= in_flight, \
            f"READ_SLOTS = {READ_SLOTS} credits do not cover the {in_flight} rows in flight"
        # Unbuffered (its storage's read data goes straight to the register slice below): a
        # buffered FIFO's output register would be a second row-wide register with an enable of
        # hundreds of flip-flops behind the FIFO's logic (13.1 ns in a routed 12 x 12). Sliced
        # per 32-bit lane, each slice with its own write enable and pointer registers (the
        # row's storage spans the die: one write enable and one pointer pair for all of it were
        # 160 routed groups of up to 10.1 ns in a routed 12 x 12).
        fifo = SlicedFIFO(slice_width=32, slices=lanes, depth=READ_SLOTS, split_read=True)
        m.submodules.read_fifo = engines(fifo)
        in_use = Signal(range(READ_SLOTS + 1))
        in_use_next = Signal.like(in_use)
        full = Signal()            # in_use == READ_SLOTS, a register (the request's ready)
        pop = Signal()
        requant = Signal()
        ready = ~full
        if rq.beats > 1:
            requant_wait = Signal(range(rq.beats))
            with m.If(engine_reset):
                m.d.sync += requant_wait.eq(0)
            with m.Elif(dma_acc_read & requant):
                m.d.sync += requant_wait.eq(rq.beats - 1)
            with m.Elif(requant_wait != 0):
                m.d.sync += requant_wait.eq(requant_wait - 1)
            ready = ready & (requant_wait == 0)
        m.d.comb += [
            requant.eq(store.requant & owned_by["store"]),
            req.ready.eq(ready),
            take.eq(req.valid & req.ready),
            pop.eq(fifo.r_rdy & fifo.r_en),
        ]
        m.d.comb += in_use_next.eq(Mux(engine_reset, 0, in_use + take - pop))
        m.d.sync += [in_use.eq(in_use_next), full.eq(in_use_next == READ_SLOTS)]
        # (The last stage of the scratchpad's delay line is per lane below; ``spad_valid`` is
        # that stage's single copy.)
        spad_early = delay(m, take & to_spad, spad.read_latency - 1, "spad_read")
        spad_valid = delay(m, spad_early, 1, "spad_valid")
        acc_valid = delay(m, dma_acc_read, acc.read_latency, "acc_read")
        m.d.comb += [
            rq.i_valid.eq(acc_valid & requant),
            rq.i_data.eq(acc.read.data),
            rq.multiplier.eq(store.multiplier),
            rq.shift.eq(store.shift),
            rq.zero_point.eq(store.zero_point),
            rq.act_min.eq(store.act_min),
            rq.act_max.eq(store.act_max),
        ]
        # The row for the FIFO is registered first (``fifo_in``): the buffers' block RAM
        # outputs and the requantizer's output reach one register, not the FIFO's storage. Which
        # source it takes is decided by registers with one copy per 32-bit lane of the row (each
        # selects that lane's 32 bits): the sources sit far apart (the requantizer's units on
        # three DSP rows), and one select register for the whole row was a 384-load net.
        # (Not reset: ``fifo_in_valid`` says when ``fifo_in`` holds a row. With a reset term
        # Yosys shared one gate, which read the board's reset, among the copies: routed 12 x 12,
        # 10.9 ns from the reset register.)
        spad_select = replicate(m, spad_early, lanes, "fifo_from_spad", reset_less=True)
        raw_select = replicate(m, delay(m, dma_acc_read & ~requant, acc.read_latency - 1,
                                        "raw_read", reset_less=True),
                               lanes, "fifo_from_acc", reset_less=True)
        fifo_in = [Signal(32, name=f"fifo_in_{i}", reset_less=True) for i in range(lanes)]
        # Whether ``fifo_in`` holds a row: one copy per lane, the FIFO's slice enables.
        fifo_in_valid = replicate(m, spad_valid | (acc_valid & ~requant) | rq.o_valid, lanes,
                                  "fifo_in_valid", domain="engines")
        spad_row = spad.read.data.as_value()
        acc_row = acc.read.data.as_value()
        rq_row = rq.o_data.as_value()
        for i in range(lanes):
            with m.If(spad_select[i]):
                m.d.sync += fifo_in[i].eq(spad_row[32 * i:32 * i + 32])
            with m.Elif(raw_select[i]):
                m.d.sync += fifo_in[i].eq(acc_row[32 * i:32 * i + 32])
            with m.Else():
                m.d.sync += fifo_in[i].eq(rq_row[32 * i:32 * i + 32])
        m.d.comb += [fifo.w_en.eq(Cat(*fifo_in_valid)), fifo.w_data.eq(Cat(*fifo_in))]
        # The FIFO's output enters the DMA through a register slice and a second small FIFO: the
        # FIFO's read side (its level and output register) starts at the slice's registered
        # ``ready``, not at the DMA's write packer. The row crosses from the buffers to the DMA
        # between the two (one slice left 192 routed endpoints of up to 10.9 ns between it and
        # the packer in a routed 12 x 12). (The credits count the read FIFO only: the others
        # have their own handshakes.) At the DMA the row waits in a two-entry
        # SlicedFIFO (a slice per 32-bit lane, each with its own write pointer and room flag):
        # an entry is written under flip-flops beside it, never behind the packer's ``ready``,
        # which only moves the read pointers (a register slice there loaded its 384 flip-flops
        # under an enable from the packer's logic: 150 routed endpoints of up to 10.8 ns in a
        # routed 12 x 12; a half-rate slice cost 1.3 % of the digits demo's cycles).
        # The register slice is one per 32-bit lane (``read_slice_{i}``), each with its own
        # flags, between the FIFOs' per-slice copies of their read and write enables and flags:
        # all lanes move alike (equal inputs), and no net from one flag reaches the whole row
        # (one 384-bit slice: its ``spare_valid`` and the read FIFO's pointers were routed
        # 12 x 12 endpoints of up to 10 ns).
        near_dma = SlicedFIFO(slice_width=32, slices=lanes, depth=2)
        m.submodules.read_near_dma = engines(near_dma)
        for i in range(lanes):
            lane_slice = RegisterSlice(32)
            m.submodules[f"read_slice_{i}"] = engines(lane_slice)
            m.d.comb += [
                lane_slice.i.valid.eq(fifo.r_rdy_copies[i]),
                lane_slice.i.payload.eq(fifo.r_data[32 * i:32 * i + 32]),
                fifo.r_en[i].eq(lane_slice.i.ready),
                near_dma.w_en[i].eq(lane_slice.o.valid),
                near_dma.w_data[32 * i:32 * i + 32].eq(lane_slice.o.payload),
                lane_slice.o.ready.eq(near_dma.w_rdy_copies[i]),
            ]
        m.d.comb += [
            dma.row_read_data.valid.eq(near_dma.r_rdy),
            dma.row_read_data.payload.as_value().eq(near_dma.r_data),
            near_dma.r_en.eq(dma.row_read_data.ready),
        ]
        return m
