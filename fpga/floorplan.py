"""DSP floorplan for the ULX3S's LFE5U-85F: the MULT18X18D site of every PE and requantizer
multiplier.

Why: left to itself, nextpnr's placer scatters the PE multipliers of a large array over the
device's DSP sites with no regard to the array's neighbours (in a routed 12 x 12 attempt PE
(9, 3)'s multiplier sat 80 columns from its adder and registers), and the systolic wires then
cross the die in every direction: the 12 x 12 design did not route. Here each PE's multiplier
gets the site its neighbours need, and nextpnr places the rest of the logic around them.

The device: its 156 MULT18X18D sites are in three rows of DSP tiles (``y`` = 10, 34, 58), 13
tiles per row at ``x`` = 4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114; a tile has four
sites, ``X{x}/Y{y}/MULT18_0``, ``X{x+1}/Y{y}/MULT18_1``, ``X{x+4}/Y{y}/MULT18_4`` and
``X{x+5}/Y{y}/MULT18_5`` (nextpnr's BEL names).

The plan:

* The array's rows are cut into bands of four, one band per DSP row (one band: the middle row;
  two: the upper two; three: all).
* In a band, each array column takes one tile, its PEs top to bottom at the tile's four sites in
  order: a partial sum moves to the next site, an activation to the next tile.
* Requantizer unit ``u`` (its four partial products ``ll``, ``lh``, ``hl``, ``hh``) takes a tile
  of band ``u % bands``, between the left and the right half of the array's columns.
* A band's tiles are centred in the DSP row.

So the default 12 x 12 array with three requantizer units uses every site: per DSP row, twelve
tiles of PEs and one requantizer tile in the middle. A configuration the plan does not fit
(more than three bands, more than 13 tiles in a band) gets no floorplan and nextpnr places the
multipliers itself.

The plan is applied as Yosys commands after synthesis (:func:`yosys_commands`): each sets the
``BEL`` attribute of one MULT18X18D instance, found by its hierarchical name, and fails the build
if that instance does not exist (so a renamed block cannot silently lose its floorplan).
"""

from math import ceil

__all__ = ["DSP_ROWS", "TILE_X", "TILES_PER_ROW", "dsp_sites", "dsp_floorplan",
           "yosys_commands"]

#: ``y`` of the LFE5U-85F's three rows of DSP tiles.
DSP_ROWS = (10, 34, 58)
#: ``x`` of the first site of each DSP tile in a row.
TILE_X = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
TILES_PER_ROW = len(TILE_X)
SITES_PER_TILE = 4
#: Sites of a tile: (x offset, BEL suffix).
_TILE_SITES = ((0, 0), (1, 1), (4, 4), (5, 5))
#: DSP rows used by 1, 2 or 3 bands.
_BAND_ROWS = {1: (34,), 2: (10, 34), 3: (10, 34, 58)}

#: Hierarchical names of the MULT18X18D instances in the board top (``BoardTop``).
PE_CELL = "core.tessera.exec_engine.core.pe_{r}_{c}.mul.dsp"
REQUANT_CELL = "core.tessera.requantizer.pp_{part}_{u}"
REQUANT_PARTS = ("ll", "lh", "hl", "hh")


def dsp_sites(y, tile):
    """The four BEL names of DSP tile number ``tile`` (0 .. 12) in the DSP row at ``y``."""
    if y not in DSP_ROWS:
        raise ValueError(f"y must be one of {DSP_ROWS}, not {y!r}")
    if not 0 <= tile < TILES_PER_ROW:
        raise ValueError(f"tile must be in [0, {TILES_PER_ROW}), not {tile!r}")
    x = TILE_X[tile]
    return [f"X{x + dx}/Y{y}/MULT18_{suffix}" for dx, suffix in _TILE_SITES]


def dsp_floorplan(rows, cols, requant_units, pe_dsps=True):
    """``{instance name: BEL}`` for an array of ``rows`` x ``cols`` PEs (on MULT18X18D if
    ``pe_dsps``) and ``requant_units`` requantizer units, or ``None`` if the plan does not fit
    (see the module documentation)."""
    bands = ceil(rows / SITES_PER_TILE)
    if bands > len(DSP_ROWS):
        return None
    band_units = [[u for u in range(requant_units) if u % bands == band]
                  for band in range(bands)]
    plan = {}
    for band, y in enumerate(_BAND_ROWS[bands]):
        # The band's tiles, left to right: the left half of the columns, the requantizer units,
        # the right half.
        columns = [("pe", c) for c in range(cols)] if pe_dsps else []
        half = len(columns) // 2
        tiles = columns[:half] + [("rq", u) for u in band_units[band]] + columns[half:]
        if len(tiles) > TILES_PER_ROW:
            return None
        first = (TILES_PER_ROW - len(tiles)) // 2
        for offset, (kind, index) in enumerate(tiles):
            sites = dsp_sites(y, first + offset)
            if kind == "rq":
                for part, site in zip(REQUANT_PARTS, sites):
                    plan[REQUANT_CELL.format(part=part, u=index)] = site
            else:
                for k, r in enumerate(range(band * SITES_PER_TILE,
                                            min(rows, (band + 1) * SITES_PER_TILE))):
                    plan[PE_CELL.format(r=r, c=index)] = sites[k]
    return plan


def yosys_commands(plan):
    """Yosys commands that apply ``plan`` (from :func:`dsp_floorplan`) to a synthesized netlist:
    per instance, check that exactly one MULT18X18D has that name, then set its ``BEL``."""
    commands = []
    for name, site in sorted((plan or {}).items()):
        cell = f"t:MULT18X18D n:{name} %i"
        commands.append(f"select -assert-count 1 {cell}")
        commands.append(f'setattr -set BEL "{site}" {cell}')
    return commands
