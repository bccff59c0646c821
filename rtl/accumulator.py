"""Accumulator: the on-chip buffer of int32 rows that collects the tensor core's results.

One row is ``lanes`` int32 values (one per output channel). Each write carries a mode: OVERWRITE
stores the row (first K tile, or a bias row loaded by the DMA), ACCUMULATE adds it lane by lane to
the row already there (later K tiles), wrapping in two's complement exactly like
``tessera.sim.golden.wrap_int32``. The store path reads rows back through the read port.

The storage is one ``amaranth.lib.memory.Memory`` per lane, each with one write port and two read
ports (one for the read-modify-write of ACCUMULATE, one for the ``read`` port, so the store path
never waits for the tensor core), which synthesis maps onto block RAM (ECP5 DP16KD in
pseudo-dual-port mode, two copies for the two read ports). Each memory's address and enable inputs
come from its own copies of the registers (a wide row's block RAMs spread over the die).
Everything else is a short pipeline whose size does not depend on ``depth``::

                 write.addr/data/mode/en                                   read.addr/en
                        ▼                                                      ▼
    PORT (cycle t)  [request]                                             [request]
    IN (t+1)        [request] (+ a copy of the address per lane)          [request] (+ copies)
                        │                                                      │
    S0 (t+2)            ├──── RAM read port 0                  RAM read port 1 ◄┘
                        ▼          │                                 │
    S1 (t+3)        [request]   [RAM data] (block RAM's read register) [RAM data]
                        ▼          ▼                                 ▼
    S2 (t+4)        [request]   [RAM data] (block RAM's output register) [RAM data]
                        │          │                                 │
                        ├─► pdata = data (+ the pdata of the write ahead on CHAIN: the same
                        │   row, one cycle apart), pre = the newest of S4 .. H7 with the same
                        │   row (these are H5 .. H8 a cycle later), the one-hot choice of S3
                        ▼          ▼                                 ▼
    S3 (t+5)        [pdata, pre] [rdata] (fabric)                 [rdata_ext] (fabric)
                        │          │                                 │
                        ├─► old = S4's old row (CHAIN), pre (H5 .. H8), rdata (ACCUMULATE) or 0
                        ├─► sum = old + pdata                          forward from S4 .. H8
                        ▼                                            ▼
    S4 (t+6)        [sum, old]                                    [read.data] (t+6)
    H5              [sum] one cycle later, in two copies: one for forwarding, one ──► RAM write port
                          (with per-lane copies of the address and enable)
    H6 .. H8        [sum] one to three more cycles later (for forwarding only)

The PORT registers take both ports' requests as they come, the IN registers (with the per-lane
address copies) take them from PORT, so the block RAMs' address inputs and the forwarding
comparators start at flip-flops loaded from flip-flops, not at the writer's or reader's logic;
from S0 on, times are counted from S0. The RAM data is registered twice inside the block RAM
(read and output registers) and once more in the fabric (S3), so that the route from a block
RAM to its lane's adder, across the die on a wide row, has a cycle of its own. Consistency: a
write in S0 in cycle t is committed to the RAM at the end of cycle t+5, but every access behaves
as if writes took effect in issue order, one per cycle. A RAM read in S0 in cycle t sees the
writes committed up to the end of cycle t-1 (those that were in S0 up to cycle t-6); a read of a
row written at the same clock edge may return either row (ECP5 block RAM leaves it undefined,
and the memories are marked ``no_rw_check`` so that Yosys adds no bypass logic; simulation
returns the old row). The writes of cycles t-5 .. t-1 are in H8, H7, H6, H5 and S4 when the
request reaches S3 and are forwarded from there, newest first, whatever the RAM returned. So
back-to-back ACCUMULATEs to the same row are exact, at any distance, and the read port returns a
row including every write issued in an *earlier* cycle. An OVERWRITE takes no forwarded row: its
old row is zero (not the RAM's) and its data is added to that. The read-modify-write has no
adder that feeds itself through the forwarding: a write that accumulates onto the write just
ahead (CHAIN) takes that write's old row (kept in S4 beside its sum) and the two writes' data
summed in S2 (``pdata``), since ``(old + a) + b == old + (a + b)`` in wrapping int32. The RAM
data registers (S1's in the block RAM, S2's) are plain registers, so that the FPGA build moves
S2's into the block RAM as its output register (``tessera.fpga.bram_outreg``).

Rules of the ports (both accept at most one request per cycle):

* ``write`` never stalls: a request with ``en`` high is taken in that cycle.
* ``read`` has its own RAM read port and never stalls: ``read.ready`` is always high (kept so that
  readers are written for a port that may stall). A read and a write of the same row in the same
  cycle return the row *before* that write; a read sees every write issued in an earlier cycle
  (forwarded from S4 .. H8 like the read-modify-write).
* ``read.data`` is valid, with ``read.valid`` high, exactly ``read_latency`` (6) cycles after the
  cycle that took the request, for one cycle.
* Addresses at or above ``depth`` are not allowed (the DMA checks them, ``DmaError.SRAM_RANGE``).
* Reset (``rst``) drops requests in flight; the RAM contents are kept.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import check_dimension, replicate

__all__ = ["LANE", "AccumulatorRow", "WriteMode", "WriteSignature", "ReadSignature",
           "Accumulator"]

#: Shape of one accumulator lane.
LANE = signed(32)

#: Largest depth: buffer rows are addressed by 16-bit fields (``DmaDescriptor.sram_row``).
MAX_DEPTH = 1 << 16

#: Lanes whose address copies load from one copy of the PORT address registers.
LANE_GROUP = 4


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
        Cycles from a taken read request to ``read.valid`` (6).
    write_latency : int
        Cycles from a write request to the RAM write (7); invisible to users, see the module doc.
    row_bytes : int
        Bytes per row (``4 * lanes``), as the DMA sees it.
    """
    read_latency = 6
    write_latency = 7

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

        # One memory per lane, each with its own copies of the address (and write enable)
        # registers: the block RAMs of a wide row spread over the die, and one register driving
        # all of their address inputs was a long route (routed 12 x 12: 12 ns to an address).
        # Each memory has a write port and two read ports: one for the read-modify-write of
        # ACCUMULATE, one for the ``read`` port, so the store path never waits for the tensor
        # core (Yosys duplicates the block RAM for the second one). Neither is transparent: a
        # same-row read/write collision is left undefined and covered by forwarding from H8
        # (until the twelfth session they were, and the bypass Yosys built for that sat between
        # every block RAM and S2: up to 10.9 ns in a routed 12 x 12). The RAM read ports read in
        # every cycle (the stages' flags say which data is used): with an enable, the block RAMs'
        # output registers get a clock enable behind the request logic (16 ns in a routed
        # 12 x 12).
        # --- PORT, IN: both ports' requests, registered twice ------------------------------------
        # PORT takes the requests as they come, next to the writer's and reader's logic; IN
        # holds them again, with a copy of the RAM addresses per lane, so the per-lane copies
        # (beside their block RAMs, across the die) load from flip-flops, not from the writer's
        # address logic (routed 12 x 12: 8.6 ns of routing from EXEC's address multiplexer to
        # one lane's copy). Every request is delayed by the same cycles, so the rules hold as
        # seen from the ports.
        p_w_en = Signal()
        p_w_mode = Signal(WriteMode, reset_less=True)
        p_w_addr = Signal(aw, reset_less=True)
        p_w_data = Signal(LANE.width * lanes, reset_less=True)
        p_r_en = Signal()
        p_r_addr = Signal(aw, reset_less=True)
        m.d.sync += [
            p_w_en.eq(self.write.en), p_w_mode.eq(self.write.mode), p_w_addr.eq(self.write.addr),
            p_w_data.eq(self.write.data.as_value()),
            p_r_en.eq(self.read.en), p_r_addr.eq(self.read.addr),
        ]
        w_en = Signal()
        w_mode = Signal(WriteMode, reset_less=True)
        w_addr = Signal(aw, reset_less=True)
        r_en = Signal()
        r_addr = Signal(aw, reset_less=True)
        m.d.sync += [
            w_en.eq(p_w_en), w_mode.eq(p_w_mode), w_addr.eq(p_w_addr),
            r_en.eq(p_r_en), r_addr.eq(p_r_addr),
        ]
        w_data = [Signal(LANE, name=f"w_data_{i}", reset_less=True) for i in range(lanes)]
        m.d.sync += [w_data[i].eq(p_w_data.word_select(i, LANE.width)) for i in range(lanes)]
        # The per-lane copies load from PORT copies, one per group of LANE_GROUP lanes: one PORT
        # register loading copies beside every lane's block RAMs across the die was up to
        # 10.9 ns of routing (routed 12 x 12).
        groups = -(-lanes // LANE_GROUP)
        p_w_addrs = replicate(m, self.write.addr, groups, "port_write_addr", reset_less=True)
        p_r_addrs = replicate(m, self.read.addr, groups, "port_read_addr", reset_less=True)
        rmw_addr, ext_addr = [], []
        for i in range(lanes):
            rmw_addr += replicate(m, p_w_addrs[i // LANE_GROUP], 1, f"rmw_addr_{i}",
                                  reset_less=True)
            ext_addr += replicate(m, p_r_addrs[i // LANE_GROUP], 1, f"ext_addr_{i}",
                                  reset_less=True)

        # The read ports are asynchronous, their address from the per-lane copies; synthesis
        # takes the register after the read data (``s1_ram``) into the block RAM. ``no_rw_check``:
        # a read and a write of the same row at the same clock edge may return either row (ECP5
        # leaves it undefined), so Yosys adds no bypass logic between the block RAM and S3; the
        # forwarding from H8 covers that case (see the module doc).
        memories = []
        for i in range(lanes):
            memory = Memory(shape=LANE, depth=self.depth, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"memory_{i}"] = memory
            wr = memory.write_port()
            rd = memory.read_port(domain="comb")
            rd_ext = memory.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(rmw_addr[i]), rd_ext.addr.eq(ext_addr[i])]
            memories.append((wr, rd, rd_ext))

        # --- S0: requests ---------------------------------------------------------------------
        accumulate = Signal()
        m.d.comb += [
            accumulate.eq(w_en & (w_mode == WriteMode.ACCUMULATE)),
            self.read.ready.eq(1),
        ]

        def lane_copies(value, name, *, reset_less=False):
            """``value`` two cycles later, in a register per lane: a copy per group of
            LANE_GROUP lanes, and each lane's copy loaded from its group's. One register loading
            every lane's copy across the die was up to 10.2 ns of routing (routed 12 x 12)."""
            groups = replicate(m, value, -(-lanes // LANE_GROUP), f"{name}_group",
                               reset_less=reset_less)
            return [replicate(m, groups[i // LANE_GROUP], 1, f"{name}_{i}",
                              reset_less=reset_less)[0] for i in range(lanes)]

        def stage(name, prev):
            """Register the request fields of ``prev`` (a dict of values) as stage ``name``."""
            regs = {}
            for field, value in prev.items():
                valid = field in ("wen", "ren")
                regs[field] = Signal(value.shape(), name=f"{name}_{field}", reset_less=not valid)
                m.d.sync += regs[field].eq(value)
            return regs

        s0 = {"wen": w_en, "acc": accumulate, "waddr": w_addr, "ren": r_en, "raddr": r_addr,
              **{f"wdata{i}": w_data[i] for i in range(lanes)}}
        s1 = stage("s1", s0)
        s2 = stage("s2", s1)
        # (S3's data is ``pdata`` below.)
        s3_req = stage("s3", {field: value for field, value in s2.items()
                              if not field.startswith("wdata")})

        # --- S1 -> S2 -> S3: the RAM output, registered twice ----------------------------------
        # S2's are plain registers, so that the FPGA build moves them into the block RAMs as
        # their output registers (tessera.fpga.bram_outreg); S3's are fabric registers between
        # the block RAM and the lane's adder and read multiplexer, which sit far from it on a
        # wide row (routed 12 x 12: a RAM in row 70, its adder in row 16, 5.1 ns of routing).
        rdata = [Signal(LANE, name=f"s3_rdata_{i}", reset_less=True) for i in range(lanes)]
        rdata_ext = [Signal(LANE, name=f"s3_rdata_ext_{i}", reset_less=True)
                     for i in range(lanes)]
        for i, (_, rd, rd_ext) in enumerate(memories):
            ram = Signal(LANE, name=f"s1_ram_{i}", reset_less=True)
            ram_ext = Signal(LANE, name=f"s1_ram_ext_{i}", reset_less=True)
            out = Signal(LANE, name=f"s2_rdata_{i}", reset_less=True)
            out_ext = Signal(LANE, name=f"s2_rdata_ext_{i}", reset_less=True)
            m.d.sync += [ram.eq(rd.data), ram_ext.eq(rd_ext.data),
                         out.eq(ram), out_ext.eq(ram_ext),
                         rdata[i].eq(out), rdata_ext[i].eq(out_ext)]

        # --- write stage S4 and the rows written in the four cycles before (H5 .. H8) ----------
        # The RAM is written from H5: its copy of S4 for the RAM (per lane, with per-lane copies
        # of the address and enable) is separate from the copy the forwarding adds to, so
        # neither the adders nor the block RAMs pull one register across the die.
        history = []
        for name in ("s4", "h5", "h6", "h7", "h8"):
            history.append({
                "valid": Signal(name=f"{name}_valid"),
                "addr":  Signal(aw, name=f"{name}_addr", reset_less=True),
                "data":  [Signal(LANE, name=f"{name}_data_{i}", reset_less=True)
                          for i in range(lanes)],
            })
        s4, h5, h6, h7, h8 = history
        m.d.sync += [s4["valid"].eq(s3_req["wen"]), s4["addr"].eq(s3_req["waddr"])]
        for newer, older in zip(history, history[1:]):
            m.d.sync += [older["valid"].eq(newer["valid"]), older["addr"].eq(newer["addr"])]
        for newer, older in zip(history[1:], history[2:]):
            m.d.sync += [older["data"][i].eq(newer["data"][i]) for i in range(lanes)]
        ram_wen = lane_copies(s3_req["wen"], "ram_write_en")
        ram_waddr = lane_copies(s3_req["waddr"], "ram_write_addr", reset_less=True)
        for i, (wr, _, _) in enumerate(memories):
            forward_copy, ram_copy = replicate(m, s4["data"][i], 2, f"h5_data_{i}",
                                               reset_less=True)
            m.d.comb += [h5["data"][i].eq(forward_copy),
                         wr.en.eq(ram_wen[i]), wr.addr.eq(ram_waddr[i]), wr.data.eq(ram_copy)]

        # --- forwarding ----------------------------------------------------------------------
        # A request in S3 gets the row its RAM read returned, overridden by the newest write
        # still in S4 .. H8 to the same row.
        def forward(ram_value, history_values, hits):
            value = ram_value
            for entry_value, hit in reversed(list(zip(history_values, hits))):  # newest wins
                value = Mux(hit, entry_value, value)
            return value

        def hits(kind, stage, addr, ahead, entries, when=None):
            """Whether ``addr`` is the row of each write in ``ahead`` (and ``when`` holds, if
            given), registered in ``stage`` (named ``{stage}_{kind}_from_{entry}``), then copied
            to every lane in two steps (:func:`lane_copies`): per lane, three cycles later. (Not
            reset: a request's hits are its own comparisons, and none is in flight after a
            reset. A reset term made Yosys share one gate among all the copies of a hit, which
            then reached every lane across the die: 10.9 ns in a routed 12 x 12.)"""
            copies = []
            for entry, now in zip(entries, ahead, strict=True):
                hit = Signal(name=f"{stage}_{kind}_from_{entry}", reset_less=True)
                valid = now["valid"] if when is None else when & now["valid"]
                m.d.sync += hit.eq(valid & (now["addr"] == addr))
                copies.append(lane_copies(hit, f"{kind}_from_{entry}", reset_less=True))
            return copies

        def request(stage):
            return {"valid": stage["wen"], "addr": stage["waddr"]}

        # Reads: which entry to take is decided in S0, registered, and copied in two steps into
        # one register per lane in S3 (each drives that lane's 32 multiplexers; the lanes'
        # memories spread over the die, so the copies load from flip-flops, not from the
        # comparators): the write that will be in S4 when the read is in S3 is now in S1, the
        # one that will be in H5 is now in S2, and so on.
        read_hits = hits("read", "s1", r_addr,
                         [request(s1), request(s2), request(s3_req), s4, h5],
                         ("s4", "h5", "h6", "h7", "h8"))

        # Writes (read-modify-write) are forwarded without an adder in a one-cycle loop. A write
        # that accumulates onto the write just ahead of it (CHAIN: same row, one cycle apart)
        # is not added to that write's sum (S4) but takes the same old row (S4's ``base``) plus
        # both writes' data, added while it is in S2 (``pdata``: its data plus, on CHAIN, the
        # ``pdata`` of the write ahead). Every other write takes the old row from the RAM or
        # from H5 .. H8, which hold finished sums; the choice among H5 .. H8 is made in S2 from
        # the registers that will be H5 .. H8 (S4 .. H7), into ``pre``. So S3 is one selection
        # (CHAIN base, ``pre`` or RAM row: one-hot, registered) and one adder, and no adder
        # feeds itself back through the forwarding. The comparisons are made at PORT (against
        # the writes that will then be ahead), registered, and copied per lane in two steps.
        p_accumulate = p_w_en & (p_w_mode == WriteMode.ACCUMULATE)
        write_hits = hits("write", "s0", p_w_addr,
                          [{"valid": w_en, "addr": w_addr}, request(s1), request(s2),
                           request(s3_req), s4],
                          ("chain", "h5", "h6", "h7", "h8"), when=p_accumulate)
        s2_accumulates = lane_copies(accumulate, "s2_acc", reset_less=True)

        # (Rows inside are per-lane signals, not array-shaped ones: Yosys 0.70's ABC9 flow can
        # crash on the ``x`` + ``x[0]`` wire names Amaranth emits for those, YosysHQ/yosys#4349.)
        read_data = [Signal(LANE, name=f"read_data_{i}", reset_less=True) for i in range(lanes)]
        read_valid = Signal()
        for i in range(lanes):
            chain, from_h5, from_h6, from_h7, from_h8 = (copies[i] for copies in write_hits)
            # S2: the data to add (``pdata``), the old row if from H5 .. H8 (``pre``), and the
            # one-hot choice of S3's old row.
            pdata = Signal(LANE, name=f"s3_pdata_{i}", reset_less=True)
            pre = Signal(LANE, name=f"s3_pre_{i}", reset_less=True)
            take_chain = Signal(name=f"s3_take_chain_{i}")
            take_pre = Signal(name=f"s3_take_pre_{i}")
            take_ram = Signal(name=f"s3_take_ram_{i}")
            in_history = from_h5 | from_h6 | from_h7 | from_h8
            m.d.sync += [
                # Keeping the low 32 bits of the sums is the two's-complement wrap.
                pdata.eq(Mux(chain, pdata, 0) + s2[f"wdata{i}"]),
                pre.eq(forward(h7["data"][i], [s4["data"][i], h5["data"][i], h6["data"][i]],
                               [from_h5, from_h6, from_h7])),
                take_chain.eq(chain),
                take_pre.eq(~chain & in_history),
                take_ram.eq(~chain & ~in_history & s2_accumulates[i]),
            ]
            # S3: the old row (zero for an OVERWRITE), and its sum with ``pdata``.
            base = Signal(LANE, name=f"s4_base_{i}", reset_less=True)
            old_row = ((Mux(take_chain, base, 0) | Mux(take_pre, pre, 0)) |
                       Mux(take_ram, rdata[i], 0))
            m.d.sync += [base.eq(old_row), s4["data"][i].eq(old_row + pdata)]
            m.d.sync += read_data[i].eq(
                forward(rdata_ext[i], [h["data"][i] for h in history],
                        [h[i] for h in read_hits]))
        m.d.sync += read_valid.eq(s3_req["ren"])
        m.d.comb += [self.read.valid.eq(read_valid),
                     self.read.data.as_value().eq(Cat(*read_data))]
        return m
