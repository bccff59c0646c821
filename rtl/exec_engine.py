"""EXEC engine: executes MATMUL instructions on the tensor core.

A MATMUL is split into three jobs that run decoupled, so consecutive MATMULs stream back to back
(the next weight tile is read while this tile's activations stream; the tensor core's double
buffered weights take it)::

                     ┌─► weight job FIFO ─► WeightReader ── scratchpad port B ─► weights ─┐
    queue ─► issue ──┼─► act job FIFO ────► ActReader ───── scratchpad port A ─► acts ────┤ TensorCore
    (pop tokens)     └─► result job FIFO ─► ResultWriter ◄── results ─────────────────────┘
                                              │ accumulator write port (OVERWRITE/ACCUMULATE)
                                              └─► after the last row is committed: push tokens

Issue takes the queue head when its tokens are available and every job FIFO has room (counted
by the engine: the jobs enter their FIFOs a cycle after the issue, from registers). Tokens are
pushed only when the instruction's last result row has been written (and ``COMMIT_DELAY`` cycles
more, so the accumulator RAM holds it: the store path reads without forwarding from the writes).
Accumulator lanes ``>= cols`` (when rows > cols) are written with 0 (OVERWRITE) or +0 (ACCUMULATE).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import Accumulator, AccumulatorRow, WriteMode
from .engine import INDEX, EngineControl, QueueEntry, attach_queue
from .scratchpad import Scratchpad, ScratchpadRow
from .tensor_core import TensorCore
from .sliced_fifo import SlicedFIFO, sliced_fifo_for
from .util import delay, replicate

__all__ = ["ExecEngine"]

#: MATMULs that may be issued ahead of the one whose results are being written.
JOB_DEPTH = 4

#: Cycles from an accumulator write request to its row being in the RAM.
COMMIT_DELAY = Accumulator.write_latency + 1

ROW = unsigned(16)


def _job_fifo(m, name, layout):
    """A job FIFO: a SlicedFIFO of slices of at most 32 bits, so that taking a job (``r_en``)
    moves read pointers only (a buffered FIFO loaded its output register under the writer's
    end-of-job decision: routed 12 x 12, 60 enables at up to 11.2 ns). Returns the FIFO and a
    view of its head."""
    size = data.Layout.cast(layout).size
    fifo = sliced_fifo_for(size, JOB_DEPTH)
    m.submodules[name] = fifo
    head = data.View(layout, fifo.r_data[:size])
    return fifo, head


def _row_address(m, name, base, step, last, width):
    """The address of a job's rows with no adder in front of the RAM: ``base`` for the job's
    first row, then the register ``following`` (the previous address + 1). ``step``: a row is
    addressed in this cycle; ``last``: it is the job's last."""
    first = Signal(name=f"{name}_first", init=1)
    following = Signal(width, name=f"{name}_following")
    addr = Signal(width, name=f"{name}_addr")
    m.d.comb += addr.eq(Mux(first, base, following))
    with m.If(step):
        m.d.sync += [first.eq(last), following.eq(addr + 1)]
    return addr


class _RowReader:
    """Reads scratchpad rows ``base + i`` (i <= final_index) into a valid/ready stream, one per
    cycle.

    The scratchpad reads with a fixed latency and no enable (``latency`` cycles from an address
    to its row on ``port.data``). A row asked for goes, ``latency`` cycles later, into a small
    FIFO whose head is the stream (``valid``, ``data``, ``last``). A row is asked for
    only while the FIFO is sure to have room for it: ``in_use`` counts the rows asked for and not
    yet taken from the stream, and ``full`` (a register) says it reached the FIFO's depth. So the
    decision to read (``issue``) is one gate on two flip-flops (the job FIFO's ``valid`` and
    ``full``) and waits for nothing downstream: the tensor core's ``ready`` only pops the FIFO.
    The job carries the index of its last row (rows - 1, computed when the job is issued) and
    whether that is 0 (``single``), so whether the row read now is the job's last is one
    multiplexer on registers: ``single`` for the job's first row, else ``at_last`` (``index + 1
    == final_index``, compared as the row before was read). A comparison of ``index`` with the
    job FIFO's ``final`` in front of its read enable was a routed 12 x 12 path of 9.6 ns.
    """
    def __init__(self, m, name, port, job_valid, base, final_index, single, out_ready, width,
                 latency):
        # Room for every row in flight at full rate: the read latency, the FIFO's cycle from
        # write to output, the cycle the credit takes to come back, and one spare. The FIFO is
        # unbuffered (the stream's data is its storage's read data), in 32-bit slices each with
        # its own pointers: the consumer's ``ready`` moves read pointers only, where a buffered
        # FIFO's output register loaded its row under that ready (routed 12 x 12: 126 endpoints
        # up to 10.3 ns).
        depth = latency + 3
        slices = -(-(width + 1) // 32)
        fifo = SlicedFIFO(slice_width=32, slices=slices, depth=depth)
        m.submodules[f"{name}_rows"] = fifo
        self.index = Signal(ROW, name=f"{name}_index")
        self.done_job = Signal(name=f"{name}_done_job")   # the job's last row is read this cycle
        issue = Signal(name=f"{name}_issue")
        in_use = Signal(range(depth + 1), name=f"{name}_in_use")
        in_use_next = Signal.like(in_use, name=f"{name}_in_use_next")
        full = Signal(name=f"{name}_full")
        first_row = Signal(name=f"{name}_first_row", init=1)
        at_last = Signal(name=f"{name}_at_last")
        final = Mux(first_row, single, at_last)
        m.d.comb += [
            issue.eq(job_valid & ~full),
            port.addr.eq(_row_address(m, name, base, issue, final, len(port.addr))),
            self.done_job.eq(issue & final),
            in_use_next.eq(in_use + issue - (fifo.r_rdy & out_ready)),
        ]
        m.d.sync += [in_use.eq(in_use_next), full.eq(in_use_next == depth)]
        with m.If(issue):
            m.d.sync += [self.index.eq(Mux(final, 0, self.index + 1)), first_row.eq(final),
                         at_last.eq(self.index + 1 == final_index)]
        arrives = delay(m, issue, latency, f"{name}_arrives")
        arrives_last = delay(m, final, latency, f"{name}_arrives_last", reset_less=True)
        m.d.comb += [
            fifo.w_en.eq(arrives.replicate(slices)),
            fifo.w_data.eq(Cat(port.data.as_value()[:width], arrives_last)),
            fifo.r_en.eq(out_ready),
        ]
        self.valid = fifo.r_rdy
        self.data = fifo.r_data[:width]
        self.last = fifo.r_data[width]


class ExecEngine(wiring.Component):
    """Ports: ``queue``, ``control`` (EngineControl), scratchpad read ports ``act_read`` (A) and
    ``wgt_read`` (B) (addr out, data in ``read_latency`` cycles later), accumulator write port
    ``acc_write`` (addr/data/mode/en out) with ``acc_write_ready`` in (the port is shared with
    the DMA) and ``acc_write_ready_copies`` in (``cols + 1`` copies of ``acc_write_ready``, kept
    equal to it by the driver, for the tensor core's result slices), and ``mac_active`` out (an
    activation row entered the array this cycle)."""
    def __init__(self, *, rows, cols, lanes, scratchpad_addr_width, accumulator_addr_width,
                 multiplier="auto", read_latency=Scratchpad.read_latency):
        self.rows, self.cols, self.lanes = rows, cols, lanes
        self.read_latency = read_latency
        self.core = TensorCore(rows=rows, cols=cols, multiplier=multiplier, ready_copies=True)
        row = ScratchpadRow(lanes)
        super().__init__({
            "queue":           In(stream.Signature(QueueEntry())),
            "control":         Out(EngineControl()),
            "act_read":        Out(wiring.Signature({"addr": Out(scratchpad_addr_width),
                                                     "data": In(row)})),
            "wgt_read":        Out(wiring.Signature({"addr": Out(scratchpad_addr_width),
                                                     "data": In(row)})),
            "acc_write":       Out(wiring.Signature({
                "addr": Out(accumulator_addr_width), "data": Out(AccumulatorRow(lanes)),
                "mode": Out(WriteMode), "en": Out(1)})),
            "acc_write_ready": In(1),
            "acc_write_ready_copies": In(cols + 1),
            "mac_active":      Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = self.control
        core = m.submodules.core = self.core
        q = attach_queue(m, self)

        wgt_fifo, wgt_job = _job_fifo(m, "wgt_jobs", data.StructLayout({"row": ROW}))
        # Jobs carry the index of their last row (``final``: rows - 1).
        act_fifo, act_job = _job_fifo(m, "act_jobs", data.StructLayout({"row": ROW, "final": ROW,
                                                                         "single": 1}))
        # ``single``: the job has one row (final == 0), so that the result writer's end-of-job
        # flag comes from flip-flops (see "results into the accumulator").
        res_layout = data.StructLayout({"row": ROW, "final": ROW, "single": 1, "accumulate": 1,
                                        "push": 3, "index": INDEX})
        res_fifo, res_job = _job_fifo(m, "res_jobs", res_layout)

        # --- issue ------------------------------------------------------------------------------
        # The jobs of an issued MATMUL are written into their FIFOs a cycle later, from
        # registers (``job_write``, and data registers loaded every cycle from the queue head), so
        # the issue decision (which depends on the controller's tokens) drives one flip-flop
        # instead of the FIFOs' write enables. Room is counted here: ``jobs`` = MATMULs issued
        # whose result job has not left its FIFO (the last of a MATMUL's three jobs to leave), so
        # the FIFOs always have room when ``job_write`` is high.
        mm = q.head.word.matmul
        in_flight = Signal(range(2 * JOB_DEPTH + 2))
        jobs = Signal(range(JOB_DEPTH + 1))
        jobs_full = Signal()
        issue = Signal()
        retire = Signal()
        res_done = Signal()
        m.d.comb += [
            issue.eq(q.valid & q.tokens_ready & ~jobs_full & ~ctl.abort),
            q.take.eq(issue),
            ctl.pop_en.eq(issue),
            ctl.busy.eq((in_flight != 0) | issue),
            ctl.stall.eq(q.valid & ~issue & (in_flight == 0)),
            ctl.blocked.eq(q.valid & ~q.tokens_ready),
        ]
        with m.If(issue & ~res_done):
            m.d.sync += [jobs.eq(jobs + 1), jobs_full.eq(jobs == JOB_DEPTH - 1)]
        with m.Elif(res_done & ~issue):
            m.d.sync += [jobs.eq(jobs - 1), jobs_full.eq(0)]
        # One copy of the write for each slice of the three job FIFOs.
        fifos = (wgt_fifo, act_fifo, res_fifo)
        job_write = replicate(m, issue, sum(fifo.slices for fifo in fifos), "job_write")
        wgt_in = Signal(wgt_fifo.width, reset_less=True)
        act_in = Signal(act_fifo.width, reset_less=True)
        res_in = Signal(res_layout, reset_less=True)
        m.d.sync += [
            wgt_in.eq(mm.wgt_row),
            act_in.eq(Cat(mm.act_row, (mm.rows - 1)[:ROW.width], mm.rows == 1)),
            res_in.row.eq(mm.acc_row), res_in.final.eq(mm.rows - 1),
            res_in.single.eq(mm.rows == 1),
            res_in.accumulate.eq(mm.accumulate), res_in.push.eq(q.head.word.header.push),
            res_in.index.eq(q.head.index),
        ]
        for fifo, value in zip(fifos, (wgt_in, act_in, res_in.as_value())):
            m.d.comb += [fifo.w_en.eq(Cat(job_write[:fifo.slices])), fifo.w_data.eq(value)]
            job_write = job_write[fifo.slices:]
        m.d.sync += in_flight.eq(in_flight + issue - retire)

        # --- weights: R rows of the scratchpad, first `cols` lanes --------------------------------
        wgt = _RowReader(m, "wgt", self.wgt_read, wgt_fifo.r_rdy, wgt_job.row, self.rows - 1,
                         self.rows == 1, core.weights.ready, 8 * self.cols, self.read_latency)
        m.d.comb += [
            wgt_fifo.r_en.eq(wgt.done_job),
            core.weights.valid.eq(wgt.valid),
            core.weights.payload.as_value().eq(wgt.data),
        ]

        # --- activations: `rows` rows, first R lanes, `last` on the job's last row --------------
        act = _RowReader(m, "act", self.act_read, act_fifo.r_rdy, act_job.row, act_job.final,
                         act_job.single, core.activations.ready, 8 * self.rows,
                         self.read_latency)
        m.d.comb += [
            act_fifo.r_en.eq(act.done_job),
            core.activations.valid.eq(act.valid),
            core.activations.payload.data.as_value().eq(act.data),
            core.activations.payload.last.eq(act.last),
            self.mac_active.eq(core.activations.valid & core.activations.ready),
        ]

        # --- results into the accumulator -------------------------------------------------------
        # Whether the row written now is its job's last (``final``) is one multiplexer on
        # flip-flops: the job's ``single`` bit for its first row, else ``out_last``, set by the
        # previous write (index + 1 == final, compared a cycle ahead). It ends the job, so it
        # decides the job FIFO's pop and the token push.
        out_index = Signal(ROW)             # index of the next row within its job
        out_first = Signal(init=1)          # the next row is its job's first
        out_last = Signal()                 # (not the first) the next row is its job's last
        final = Signal()
        m.d.comb += final.eq(Mux(out_first, res_job.single, out_last))
        write = Signal()
        m.d.comb += [
            core.results.ready.eq(self.acc_write_ready),
            core.ready_copies.eq(self.acc_write_ready_copies),
            write.eq(core.results.valid & core.results.ready),
            self.acc_write.en.eq(write),
            self.acc_write.addr.eq(_row_address(m, "out", res_job.row, write, final,
                                                len(self.acc_write.addr))),
            self.acc_write.mode.eq(Mux(res_job.accumulate, WriteMode.ACCUMULATE,
                                       WriteMode.OVERWRITE)),
            self.acc_write.data.as_value().eq(core.results.payload.data.as_value()),
            res_done.eq(write & final),
            res_fifo.r_en.eq(res_done),
        ]
        with m.If(write):
            m.d.sync += [out_index.eq(Mux(final, 0, out_index + 1)), out_first.eq(final),
                         out_last.eq(out_index + 1 == res_job.final)]

        # Push the finished instruction's tokens once its last row is in the RAM.
        done = res_done
        pending_push = res_job.push
        pending_index = res_job.index
        for i in range(COMMIT_DELAY):
            # Only ``done`` is reset: the tokens and index are read when it is high.
            d_done = Signal(name=f"done_d{i}")
            d_push = Signal(3, name=f"push_d{i}", reset_less=True)
            d_index = Signal(INDEX, name=f"index_d{i}", reset_less=True)
            m.d.sync += [d_done.eq(done), d_push.eq(pending_push), d_index.eq(pending_index)]
            done, pending_push, pending_index = d_done, d_push, d_index
        m.d.comb += [
            retire.eq(done),
            ctl.push_en.eq(done),
            ctl.push.eq(pending_push),
            ctl.push_index.eq(pending_index),
        ]
        return m
