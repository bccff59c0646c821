"""Tensor core: a weight-stationary systolic array of ``rows`` x ``cols`` processing elements.

It computes, for one weight tile ``W`` (``rows`` x ``cols`` int8) and a stream of activation rows
``a`` (``rows`` int8 each), the result rows ``a @ W`` (``cols`` int32 each). Row ``k`` of the array
holds ``W[k, :]``: the reduction dimension runs down the array, output channels across it.

Streams (``amaranth.lib.stream``, valid/ready)::

    weights      In   cols x int8          one row W[k, :] per transfer, k = 0 .. rows-1, per tile
    activations  In   rows x int8 + last   one row a[m, :] per transfer; `last` ends the tile
    results      Out  cols x int32 + last  one row (a @ W)[m, :] per transfer, in input order

Block diagram::

     weights ─► load control ─► column skew (column c delayed c cycles) ─► down each column
                                                                                │
     activations ─► issue control ─► row skew (row r delayed r cycles) ─► PE ─► PE ─► ...
                          │                                            │      │
                          │                                            ▼      ▼
                          │                                      column deskew (c delayed cols-1-c)
                          │                                                   │
                          └── valid/last delay line (latency cycles) ──► result FIFOs ─► slices ─► results

Double buffering: every PE has two weight banks. Tile t uses bank t mod 2; the bank travels with each
activation row through the array, so different PEs may use different banks in the same cycle while a
tile boundary passes through. Weight beats travel with the same skew as activations, so the loader
may overwrite a bank as soon as the last row of the tile that used it has *entered* the array. With
``M >= rows`` activation rows per tile, ``T`` back-to-back tiles take ``T*M + O(rows + cols)`` cycles.

Back-pressure: the array itself never stalls (no clock enables in the PEs). An activation row is
accepted only when the result FIFO is guaranteed to have room for its result (a credit counter of
``fifo_depth`` credits), so output back-pressure stops the input instead of losing data.

Numerics: exact int8 x int8 products summed over ``rows`` without overflow (``psum_shape``), then
sign-extended to int32. Accumulation across tiles (K > rows) happens outside the core, in the
accumulator, with int32 wrap-around as defined in ``tessera.sim.golden``.
"""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .credit_fifo import CreditFIFO
from .multiplier import LATENCY, check_primitive
from .pe import OPERAND, ProcessingElement, WeightBeat, psum_shape
from .register_slice import RegisterSlice
from .util import REPLICA, check_dimension, delay, replicate, wrap_increment, zero_unless

__all__ = ["TensorCore", "ActivationRow", "ResultRow", "WeightRow"]

#: Shape of a result lane.
RESULT = signed(32)


class WeightRow(data.ArrayLayout):
    """One row ``W[k, :]`` of a weight tile: ``cols`` int8 lanes."""
    def __init__(self, cols):
        super().__init__(OPERAND, cols)


class ActivationRow(data.StructLayout):
    """One activation row ``a[m, :]`` (``rows`` int8 lanes); ``last`` marks the tile's last row."""
    def __init__(self, rows):
        super().__init__({"data": data.ArrayLayout(OPERAND, rows), "last": unsigned(1)})


class ResultRow(data.StructLayout):
    """One result row (``cols`` int32 lanes); ``last`` is copied from the activation row."""
    def __init__(self, cols):
        super().__init__({"data": data.ArrayLayout(RESULT, cols), "last": unsigned(1)})


class TensorCore(wiring.Component):
    """Weight-stationary ``rows`` x ``cols`` int8 systolic array with double-buffered weights.

    Parameters
    ----------
    rows : int
        Number of PE rows = length of the reduction (K) per tile.
    cols : int
        Number of PE columns = output channels (N) per tile.
    multiplier : str
        ``"auto"``, ``"generic"``, ``"ecp5"`` or ``"lut"``: how each PE's multiplier is built
        (:class:`~tessera.rtl.multiplier.RegisteredMultiplier`).
    ready_copies : bool
        Add the input ``ready_copies`` (``cols + 1`` bits): copies of ``results.ready``, one for
        each result FIFO's output slice, which the driver must keep equal to ``results.ready``
        (registers of the same value, kept apart): one ``ready`` net would reach every column's
        slice, some 900 flip-flops across the array's width. Without it the slices use
        ``results.ready``.

    Attributes
    ----------
    latency : int
        Cycles from the cycle an activation row is accepted to the cycle its result enters the
        result FIFO (``rows + cols + 1``; one more with ``"lut"`` multipliers, whose latency is 3).
        Results leave the FIFOs through register slices, one cycle more to ``results``.
    fifo_depth : int
        Depth of the result FIFO and number of rows that may be in flight; large enough that an
        always-ready consumer sees one result per cycle.
    """
    def __init__(self, *, rows=4, cols=4, multiplier="auto", ready_copies=False):
        self.rows = check_dimension("rows", rows)
        self.cols = check_dimension("cols", cols)
        self.multiplier = check_primitive(multiplier, "multiplier")
        self.psum_shape = psum_shape(rows)
        # The last row's activation reaches column c after rows - 1 + c cycles, its sum leaves
        # the PE LATENCY + 1 cycles later, and the deskew adds cols - 1 - c.
        self.latency = rows + cols + LATENCY[multiplier] - 1
        # Credits for every result on its way: through the array, the result FIFO (whose reader
        # sees a write two cycles later), its output slice and the credit's way back.
        self.fifo_depth = self.latency + 5
        self.has_ready_copies = bool(ready_copies)
        super().__init__({
            "weights":     In(stream.Signature(WeightRow(cols))),
            "activations": In(stream.Signature(ActivationRow(rows))),
            "results":     Out(stream.Signature(ResultRow(cols))),
            **({"ready_copies": In(cols + 1)} if ready_copies else {}),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # --- bank bookkeeping --------------------------------------------------------------------
        # bank_full[b]: bank b holds a complete tile that has not been fully issued yet.
        bank_full = Signal(2)
        load_bank = Signal()        # bank the next weight row is written to
        load_row = Signal(range(rows))
        exec_bank = Signal()        # bank the next activation row uses
        credits = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)

        # --- weight loading -----------------------------------------------------------------------
        w_accept = Signal()
        tile_loaded = Signal()
        m.d.comb += [
            self.weights.ready.eq(~bank_full.bit_select(load_bank, 1)),
            w_accept.eq(self.weights.valid & self.weights.ready),
            tile_loaded.eq(w_accept & (load_row == rows - 1)),
        ]
        with m.If(w_accept):
            m.d.sync += load_row.eq(wrap_increment(load_row, rows))
            with m.If(tile_loaded):
                m.d.sync += load_bank.eq(~load_bank)

        # --- activation issue ---------------------------------------------------------------------
        a_accept = Signal()
        tile_issued = Signal()
        fifo_pop = Signal()
        m.d.comb += [
            self.activations.ready.eq(bank_full.bit_select(exec_bank, 1) & (credits != 0)),
            a_accept.eq(self.activations.valid & self.activations.ready),
            tile_issued.eq(a_accept & self.activations.payload.last),
        ]
        with m.If(tile_issued):
            m.d.sync += exec_bank.eq(~exec_bank)
        m.d.sync += credits.eq(credits - a_accept + fifo_pop)

        set_full = Signal(2)
        clear_full = Signal(2)
        m.d.comb += [
            set_full.eq(tile_loaded << load_bank),
            clear_full.eq(tile_issued << exec_bank),
        ]
        m.d.sync += bank_full.eq((bank_full | set_full) & ~clear_full)

        # --- the PE array -------------------------------------------------------------------------
        pe = [[ProcessingElement(row=r, rows=rows, multiplier=self.multiplier) for c in range(cols)]
              for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pe[r][c]

        # Weight beats enter column c after c cycles of skew, then travel down the column.
        beat_shape = WeightBeat(rows)
        for c in range(cols):
            beat = Signal(beat_shape, name=f"w_beat_{c}")
            m.d.comb += [
                beat.valid.eq(w_accept),
                beat.bank.eq(load_bank),
                beat.row.eq(load_row),
                beat.value.eq(self.weights.payload[c]),
            ]
            # Only ``valid`` is reset: the rest of a beat is data that ``valid`` qualifies.
            # The skew registers of the beat's control fields (and of the bank select below)
            # hold the same values as the PE registers on their anti-diagonal; named as replicas
            # (like those), the FPGA flows keep them apart instead of merging one column's skew
            # with PEs across the array.
            skewed = delay(m, beat, c, f"w_skew_{c}{REPLICA}", reset_less=True)
            m.d.comb += [
                pe[0][c].w_in.eq(skewed),
                pe[0][c].w_in.valid.eq(delay(m, beat.valid, c, f"w_skew_valid_{c}{REPLICA}")),
            ]
            for r in range(1, rows):
                m.d.comb += pe[r][c].w_in.eq(pe[r - 1][c].w_out)

        # Activations enter row r after r cycles of skew, then travel right along the row.
        for r in range(rows):
            act = Signal(OPERAND, name=f"a_lane_{r}")
            sel = Signal(name=f"a_bank_{r}")
            m.d.comb += [
                act.eq(zero_unless(a_accept, self.activations.payload.data[r])),
                sel.eq(exec_bank),
            ]
            m.d.comb += [
                pe[r][0].act_in.eq(delay(m, act, r, f"a_skew_{r}", reset_less=True)),
                pe[r][0].sel_in.eq(delay(m, sel, r, f"a_bank_skew_{r}{REPLICA}",
                                         reset_less=True)),
            ]
            for c in range(1, cols):
                m.d.comb += [
                    pe[r][c].act_in.eq(pe[r][c - 1].act_out),
                    pe[r][c].sel_in.eq(pe[r][c - 1].sel_out),
                ]

        # Partial sums flow down; column c's result leaves c cycles after column 0's.
        for c in range(cols):
            m.d.comb += pe[0][c].psum_in.eq(0)
            for r in range(1, rows):
                m.d.comb += pe[r][c].psum_in.eq(pe[r - 1][c].psum_out)

        # --- result collection --------------------------------------------------------------------
        # One result FIFO per column (and one for ``last``), each with its own copy of the write
        # enable: a column's results leave the array at its bottom PE, and on a large array the
        # columns span the die, so one FIFO for the whole row had its storage, write enables and
        # output register spread over the die behind shared control. The FIFOs are written and
        # read in the same cycles, so they always hold the same number of rows; the first one's
        # ``r_rdy`` stands for all.
        tag = delay(m, Cat(a_accept, self.activations.payload.last), self.latency - 1,
                    "result_tag")
        write = replicate(m, tag[0], cols + 1, "result_write")
        last = Signal()
        m.d.sync += last.eq(tag[1])
        aligned = [delay(m, pe[rows - 1][c].psum_out, cols - 1 - c, f"deskew_{c}",
                         reset_less=True)
                   for c in range(cols)]
        # Each FIFO's output goes through its own register slice, so the FIFO's read side
        # starts at the slice's registered ``ready``, not at the consumer's far away (the FIFOs'
        # level and output logic were some 40 routed groups of up to 12.3 ns in a 12 x 12). The
        # slices, like the FIFOs, move in lockstep; the first one's ``valid`` stands for all.
        # The FIFOs are CreditFIFOs (the credits above keep them from overflowing): the write
        # side is the write pointer and the storage's write enable, under the column's copy of
        # ``write`` alone, and the read side sees the writes through a registered copy of the
        # write pointer, so nothing joins the array's edge and the consumer's side in one cycle
        # (SlicedFIFOs' shared level: routed 12 x 12, 10-11.5 ns to their level, flags and
        # storage write enables; SyncFIFOBuffered's inner level before them, up to 10.8 ns).
        fifos, slices = [], []
        for c, value in enumerate([*aligned, last]):
            name = f"result_fifo_{c}" if c < cols else "result_fifo_last"
            fifo = CreditFIFO(width=len(value), depth=self.fifo_depth)
            out = RegisterSlice(len(value))
            m.submodules[name] = fifo
            m.submodules[f"{name}_out"] = out
            m.d.comb += [fifo.w_en.eq(write[c]), fifo.w_data.eq(value),
                         out.i.valid.eq(fifo.r_rdy), out.i.payload.eq(fifo.r_data),
                         fifo.r_en.eq(out.i.ready),
                         out.o.ready.eq(self.ready_copies[c] if self.has_ready_copies
                                        else self.results.ready)]
            fifos.append(fifo)
            slices.append(out)
        m.d.comb += [
            self.results.valid.eq(slices[0].o.valid),
            self.results.payload.last.eq(slices[-1].o.payload),
            fifo_pop.eq(fifos[0].r_rdy & fifos[0].r_en),
        ]
        for c in range(cols):
            # sign-extends to int32
            m.d.comb += self.results.payload.data[c].eq(slices[c].o.payload.as_signed())

        return m
