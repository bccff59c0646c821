"""Accumulator: the on-chip buffer of int32 rows that collects the tensor core's results.

One row is ``lanes`` int32 values (one per output channel). Each write carries a mode: OVERWRITE
stores the row (first K tile, or a bias row loaded by the DMA), ACCUMULATE adds it lane by lane to
the row already there (later K tiles), wrapping in two's complement exactly like
``tessera.sim.golden.wrap_int32``. The store path reads rows back through the read port.

The storage is one ``amaranth.lib.memory.Memory`` with one write port and two read ports (one for
the read-modify-write of ACCUMULATE, one for the ``read`` port, so the store path never waits for
the tensor core), which synthesis maps onto block RAM (ECP5 DP16KD in pseudo-dual-port mode, two
copies for the two read ports). Everything else is a short
pipeline whose size does not depend on ``depth``::

                 write.addr/data/mode/en                                   read.addr/en
                        ▼                                                      ▼
    IN (cycle t)    [request]                                             [request]
                        │                                                      │
    S0 (t+1)            ├──── ACCUMULATE? ── RAM read port 0   RAM read port 1 ◄┘
                        ▼                         │
    S1 (t+2)        [request]               [RAM read data]    (block RAM output)
                        ▼                         ▼
    S2 (t+3)        [request]               [rdata]            (register: keeps the RAM's slow
                        │                         │             clock-to-out off the adder path)
                        │                         │
                        ├─► rdata + data, S3 + data, H4 + data (three adders)
                        │   forward: the newest of S3, H4 with the same address, else rdata
                        ├─► sum = forwarded sum (ACCUMULATE) or data (OVERWRITE)  old ──► [read.data]
                        ▼                                                                 (t+4)
    S3 (t+4)        [sum] ──► RAM write port
    H4              [sum] one cycle later (written, but after the read of a younger request)

The IN registers take both ports' requests as they come (the block RAMs' address inputs and
bypass comparators start at flip-flops, not at the writer's or reader's logic); from S0 on, times
are counted from S0. Consistency: a write in S0 in cycle t is committed to the RAM at the end of
cycle t+3, but every access behaves as if writes took effect in issue order, one per cycle. The
RAM read port is transparent (a read sees a write to the same row in the same cycle), so a RAM
read in S0 in cycle t sees the writes that were in S0 up to cycle t-3; those of cycles t-2 and
t-1 are in H4 and S3 when the request reaches S2 and are forwarded from there, newest first. So
back-to-back ACCUMULATEs to the same row are exact, at any distance, and the read port returns a
row including every write issued in an *earlier* cycle.

Rules of the ports (both accept at most one request per cycle):

* ``write`` never stalls: a request with ``en`` high is taken in that cycle.
* ``read`` has its own RAM read port and never stalls: ``read.ready`` is always high (kept so that
  readers are written for a port that may stall). A read and a write of the same row in the same
  cycle return the row *before* that write; a read sees every write issued in an earlier cycle
  (forwarded from S3/H4 like the read-modify-write).
* ``read.data`` is valid, with ``read.valid`` high, exactly ``read_latency`` (4) cycles after the
  cycle that took the request, for one cycle.
* Addresses at or above ``depth`` are not allowed (the DMA checks them, ``DmaError.SRAM_RANGE``).
* Reset (``rst``) drops requests in flight; the RAM contents are kept.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import check_dimension

__all__ = ["LANE", "AccumulatorRow", "WriteMode", "WriteSignature", "ReadSignature",
           "Accumulator"]

#: Shape of one accumulator lane.
LANE = signed(32)

#: Largest depth: buffer rows are addressed by 16-bit fields (``DmaDescriptor.sram_row``).
MAX_DEPTH = 1 << 16


class AccumulatorRow(data.ArrayLayout):
    """One accumulator row: ``lanes`` int32 lanes, lane 0 in the least significant bits."""
    def __init__(self, lanes):
        super().__init__(LANE, lanes)


class WriteMode(enum.Enum, shape=1):
    """What a write does with the row already stored."""
    OVERWRITE = 0   # row := data
    ACCUMULATE = 1  # row := wrap_int32(row + data), lane by lane


class WriteSignature(wiring.Signature):
    """Accumulator write port, from the writer's side: ``addr``, ``data``, ``mode``, ``en``."""
    def __init__(self, *, addr_width, lanes):
        self.addr_width = addr_width
        self.lanes = lanes
        super().__init__({
            "addr": Out(addr_width),
            "data": Out(AccumulatorRow(lanes)),
            "mode": Out(WriteMode),
            "en":   Out(1),
        })


class ReadSignature(wiring.Signature):
    """Accumulator read port, from the reader's side.

    ``addr`` and ``en`` out, ``ready`` in (request taken when ``en & ready``), ``data`` and
    ``valid`` in (``read_latency`` cycles after the request was taken).
    """
    def __init__(self, *, addr_width, lanes):
        self.addr_width = addr_width
        self.lanes = lanes
        super().__init__({
            "addr":  Out(addr_width),
            "en":    Out(1),
            "ready": In(1),
            "data":  In(AccumulatorRow(lanes)),
            "valid": In(1),
        })


class Accumulator(wiring.Component):
    """``depth`` rows of ``lanes`` int32 lanes; overwrite or accumulate writes, one row per cycle.

    Parameters
    ----------
    lanes : int
        int32 lanes per row, 1 .. 256 (the tensor core's ``cols``).
    depth : int
        Number of rows, 1 .. 65536.

    Attributes
    ----------
    read_latency : int
        Cycles from a taken read request to ``read.valid`` (4).
    write_latency : int
        Cycles from a write request to the RAM write (4); invisible to users, see the module doc.
    row_bytes : int
        Bytes per row (``4 * lanes``), as the DMA sees it.
    """
    read_latency = 4
    write_latency = 4

    def __init__(self, *, lanes=8, depth=256):
        self.lanes = check_dimension("lanes", lanes)
        self.depth = check_dimension("depth", depth, maximum=MAX_DEPTH)
        self.row_bytes = 4 * lanes
        self.addr_width = max(1, (depth - 1).bit_length())
        super().__init__({
            "write": In(WriteSignature(addr_width=self.addr_width, lanes=lanes)),
            "read":  In(ReadSignature(addr_width=self.addr_width, lanes=lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, aw = self.lanes, self.addr_width
        # Rows inside are plain 32*lanes-bit values: Yosys 0.70's ABC9 flow can crash ("Assert
        # `count_id(wire->name) == 0'", YosysHQ/yosys#4349) on the `x` + `x[0]` wire names that
        # Amaranth emits for array-shaped signals, and it did for this block with lanes=4.
        width = LANE.width * lanes

        def lane(value, i):
            return value.word_select(i, LANE.width).as_signed()

        m.submodules.memory = memory = Memory(shape=width, depth=self.depth, init=[])
        mem_wr = memory.write_port()
        # Transparent: ECP5 block RAM leaves a same-row read/write collision undefined, so Yosys
        # adds a bypass for either choice; transparency lets that bypass replace one history stage.
        mem_rd = memory.read_port(transparent_for=(mem_wr,))

        # The external read port has its own RAM read port (the store path reads while the tensor
        # core accumulates); Yosys duplicates the block RAM for it.
        mem_rd_ext = memory.read_port(transparent_for=(mem_wr,))

        # --- IN: both ports' requests, registered ----------------------------------------------
        # The block RAMs' address inputs and read-during-write bypass comparators start at these
        # flip-flops, not at the writer's and reader's logic (in a 12 x 12 build the RAM copies
        # spread over the die and those paths were the longest). Every request is delayed by
        # the same cycle, so the rules below hold as seen from the ports.
        w_en = Signal()
        w_mode = Signal(WriteMode, reset_less=True)
        w_addr = Signal(aw, reset_less=True)
        w_data = Signal(width, reset_less=True)
        r_en = Signal()
        r_addr = Signal(aw, reset_less=True)
        m.d.sync += [
            w_en.eq(self.write.en), w_mode.eq(self.write.mode), w_addr.eq(self.write.addr),
            w_data.eq(self.write.data.as_value()),
            r_en.eq(self.read.en), r_addr.eq(self.read.addr),
        ]

        # --- S0: requests ---------------------------------------------------------------------
        accumulate = Signal()
        read_take = Signal()
        m.d.comb += [
            accumulate.eq(w_en & (w_mode == WriteMode.ACCUMULATE)),
            self.read.ready.eq(1),
            read_take.eq(r_en),
            # The RAM read ports read in every cycle (the stages' flags say which data is used):
            # with an enable, the block RAMs' output and bypass registers get a clock enable
            # behind the request logic (16 ns in a routed 12 x 12).
            mem_rd.addr.eq(w_addr),
            mem_rd.en.eq(1),
            mem_rd_ext.addr.eq(r_addr),
            mem_rd_ext.en.eq(1),
        ]

        def stage(name, prev):
            """Register the request fields of ``prev`` (a dict of values) as stage ``name``."""
            regs = {}
            for field, value in prev.items():
                valid = field in ("wen", "acc", "ren")
                regs[field] = Signal(len(value), name=f"{name}_{field}", reset_less=not valid)
                m.d.sync += regs[field].eq(value)
            return regs

        s0 = {
            "wen":   w_en,
            "acc":   accumulate,
            "waddr": w_addr,
            "wdata": w_data,
            "ren":   read_take,
            "raddr": r_addr,
        }
        s1 = stage("s1", s0)
        s2 = stage("s2", s1)

        # --- S1 -> S2: register the RAM output ----------------------------------------------------
        rdata = Signal(width, name="s2_rdata", reset_less=True)
        rdata_ext = Signal(width, name="s2_rdata_ext", reset_less=True)
        m.d.sync += [rdata.eq(mem_rd.data), rdata_ext.eq(mem_rd_ext.data)]

        # --- write stage S3 and the row written in the previous cycle (H4) ------------------------
        history = []
        for name in ("s3", "h4"):
            history.append({
                "valid": Signal(name=f"{name}_valid"),
                "addr":  Signal(aw, name=f"{name}_addr", reset_less=True),
                "data":  Signal(width, name=f"{name}_data", reset_less=True),
            })
        for newer, older in zip(history, history[1:]):
            m.d.sync += [older[key].eq(newer[key]) for key in ("valid", "addr", "data")]

        # --- S2: forwarding, add, read output -----------------------------------------------------
        # Each request in S2 gets the row its RAM read returned, overridden by the newest write
        # still in S3 or H4 to the same row. Which one is decided a cycle earlier, in S1, and
        # registered: the write that will be in S3 is now in S2, the one that will be in H4 is
        # now in S3 (so the address comparators are not in front of the adders).
        def matches(name, addr):
            hits = []
            for entry, now in (("s3", {"valid": s2["wen"], "addr": s2["waddr"]}),
                               ("h4", history[0])):
                hit = Signal(name=f"{name}_from_{entry}")
                m.d.sync += hit.eq(now["valid"] & (now["addr"] == addr))
                hits.append(hit)
            return hits

        def forward_values(ram_value, history_values, hits):
            value = ram_value
            for entry_value, hit in reversed(list(zip(history_values, hits))):  # newest wins
                value = Mux(hit, entry_value, value)
            return value

        def forward(ram_data, hits):
            return forward_values(ram_data, [entry["data"] for entry in history], hits)

        old_ext = Signal(width)
        m.d.comb += old_ext.eq(forward(rdata_ext, matches("s2_read", s1["raddr"])))

        # The read-modify-write adds the new data to each candidate for the old row (the RAM's,
        # S3's, H4's) in parallel and forwards among the sums: the forwarding selects (a
        # register each, with a load per bit of the row) come after the adders, not in front of
        # them.
        s3 = history[0]
        m.d.sync += [s3["valid"].eq(s2["wen"]), s3["addr"].eq(s2["waddr"])]
        write_hits = matches("s2_write", s1["waddr"])
        for i in range(lanes):
            sums = []
            for source, candidate in (("ram", rdata), *((entry, h["data"]) for entry, h
                                                        in zip(("s3", "h4"), history))):
                total = Signal(signed(LANE.width + 1), name=f"sum_{source}_{i}")
                m.d.comb += total.eq(lane(candidate, i) + lane(s2["wdata"], i))
                # Keeping the low 32 bits of the 33-bit sum is the two's-complement wrap.
                sums.append(total[:LANE.width])
            ram_sum, *history_sums = sums
            m.d.sync += s3["data"].word_select(i, LANE.width).eq(
                Mux(s2["acc"], forward_values(ram_sum, history_sums, write_hits),
                    lane(s2["wdata"], i)))

        m.d.comb += [
            mem_wr.en.eq(s3["valid"]),
            mem_wr.addr.eq(s3["addr"]),
            mem_wr.data.eq(s3["data"]),
        ]

        read_data = Signal(width, reset_less=True)
        read_valid = Signal()
        m.d.sync += [read_valid.eq(s2["ren"]), read_data.eq(old_ext)]
        m.d.comb += [self.read.valid.eq(read_valid), self.read.data.eq(read_data)]
        return m
