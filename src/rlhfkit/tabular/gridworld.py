"""Grid worlds from text maps, turned into `FiniteMDP`s with slip noise.

Map format (one cell per non-space character; spaces between cells are optional):

    ; comment to the end of the line
    G: exit +1 landing pad      <- legend: SYMBOL: exit REWARD [name]   (terminal cell)
    ~: hazard -0.3 sandstorm    <- legend: SYMBOL: hazard PENALTY [name] (added to the step reward)
    . . . G                     <- grid, top row first
    . # ~ .
    S . . .

Built-in symbols: `.` open cell, `#` wall, `S` start (an open cell; at most one). Every other
symbol must be defined in the legend. Cells are named (col, row) with (1, 1) bottom-left, as in
AIMA. Moving into a wall or off the map leaves the agent where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import FiniteMDP

OPEN, WALL, START = ".", "#", "S"
ACTIONS = ("up", "right", "down", "left")
ARROWS = {"up": "↑", "right": "→", "down": "↓", "left": "←"}
MOVES = {"up": (0, 1), "right": (1, 0), "down": (0, -1), "left": (-1, 0)}  # (Δcol, Δrow)
PERPENDICULAR = {"up": ("left", "right"), "down": ("left", "right"), "left": ("up", "down"), "right": ("up", "down")}

Cell = tuple[int, int]


class MapError(ValueError):
    """A text map is malformed. The message names the source, line and column and what is wrong."""

    def __init__(self, source: str, line: int | None, column: int | None, problem: str):
        where = source if line is None else f"{source}, line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {problem}")
        self.source, self.line, self.column, self.problem = source, line, column, problem


@dataclass(frozen=True)
class LegendEntry:
    """One legend line: what a map symbol means.

    kind: "exit" (terminal cell whose reward is `reward`) or "hazard" (open cell whose reward is
    the step reward plus `reward`, a penalty when negative).
    """

    symbol: str
    kind: str
    reward: float
    name: str


@dataclass(frozen=True)
class GridMap:
    """A parsed text map.

    Attributes:
        name: where it came from (a built-in world name or a file path).
        rows: the grid as symbol strings, top row first, all of length `width`.
        legend: symbol -> LegendEntry for the exit and hazard symbols.
        start: the start cell (col, row), or None when the map has no `S`.
    """

    name: str
    rows: tuple[str, ...]
    legend: dict[str, LegendEntry]
    start: Cell | None

    @property
    def width(self) -> int:
        return len(self.rows[0])

    @property
    def height(self) -> int:
        return len(self.rows)

    def symbol(self, cell: Cell) -> str:
        """The map symbol at (col, row), (1, 1) bottom-left."""
        col, row = cell
        return self.rows[self.height - row][col - 1]

    def cells(self) -> list[Cell]:
        """All non-wall cells, bottom row first, left to right: (1,1), (2,1), ..."""
        return [
            (col, row)
            for row in range(1, self.height + 1)
            for col in range(1, self.width + 1)
            if self.symbol((col, row)) != WALL
        ]


_LEGEND_LINE = re.compile(r"^(\s*)(\S)\s*:(.*)$")


def parse_map(text: str, source: str = "<map>") -> GridMap:
    """Parse a text map (format in the module docstring). Raises `MapError` naming line and column."""
    legend: dict[str, LegendEntry] = {}
    grid: list[tuple[int, list[tuple[int, str]]]] = []  # (line number, [(column, symbol)])
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].rstrip()
        if not line.strip():
            continue
        match = _LEGEND_LINE.match(line)
        if match:
            if grid:
                raise MapError(source, line_number, 1, "legend lines must come before the grid")
            entry = _parse_legend(match, source, line_number)
            legend[entry.symbol] = entry
            continue
        grid.append((line_number, [(col, ch) for col, ch in enumerate(line, start=1) if not ch.isspace()]))

    if not grid:
        raise MapError(source, None, None, "the map has no grid rows")
    first_line, first_row = grid[0]
    for line_number, row in grid[1:]:
        if len(row) != len(first_row):
            column = row[-1][0] + 1 if len(row) < len(first_row) else row[len(first_row)][0]
            raise MapError(
                source, line_number, column,
                f"row has {len(row)} cells but the first row (line {first_line}) has {len(first_row)}",
            )

    known = f"'{OPEN}' open, '{WALL}' wall, '{START}' start" + "".join(f", '{s}' {e.kind}" for s, e in legend.items())
    start, start_at, has_exit = None, None, False
    height = len(grid)
    for row_index, (line_number, row) in enumerate(grid):
        for col_index, (column, symbol) in enumerate(row):
            if symbol == START:
                if start is not None:
                    raise MapError(
                        source, line_number, column,
                        f"second start cell '{START}' (the first is at line {start_at[0]}, column {start_at[1]})",
                    )
                start, start_at = (col_index + 1, height - row_index), (line_number, column)
            elif symbol not in (OPEN, WALL) and symbol not in legend:
                raise MapError(source, line_number, column, f"unknown cell '{symbol}' (known: {known})")
            has_exit |= symbol in legend and legend[symbol].kind == "exit"
    if not has_exit:
        raise MapError(source, None, None, "the map has no exit cell; define one in the legend, e.g. 'G: exit +1'")
    rows = tuple("".join(symbol for _, symbol in row) for _, row in grid)
    return GridMap(name=source, rows=rows, legend=legend, start=start)


def _parse_legend(match: re.Match, source: str, line_number: int) -> LegendEntry:
    """Parse `SYMBOL: exit|hazard REWARD [name]`."""
    symbol_column = len(match.group(1)) + 1
    symbol, rest = match.group(2), match.group(3)
    if symbol in (OPEN, WALL, START):
        raise MapError(source, line_number, symbol_column, f"'{symbol}' is built in and cannot be redefined")
    words = rest.split()
    value_column = match.start(3) + 1 + (len(rest) - len(rest.lstrip()))
    if len(words) < 2 or words[0] not in ("exit", "hazard"):
        raise MapError(
            source, line_number, value_column,
            f"legend for '{symbol}' must read '{symbol}: exit REWARD [name]' or '{symbol}: hazard PENALTY [name]'",
        )
    try:
        reward = float(words[1])
    except ValueError:
        column = match.start(3) + 1 + rest.index(words[1], rest.index(words[0]) + len(words[0]))
        raise MapError(source, line_number, column, f"'{words[1]}' is not a number") from None
    name = " ".join(words[2:]) or f"{words[0]} {reward:+g}"
    return LegendEntry(symbol=symbol, kind=words[0], reward=reward, name=name)


@dataclass(frozen=True)
class GridWorld:
    """A grid map made into an MDP: state i is cell `cells[i]`.

    Attributes:
        map: the parsed map.
        mdp: the FiniteMDP (actions `ACTIONS`).
        cells: (S,) the (col, row) of each state.
        step_reward: reward of an ordinary open cell.
        noise: probability of slipping sideways (half to each perpendicular direction).
    """

    map: GridMap
    mdp: FiniteMDP
    cells: tuple[Cell, ...]
    step_reward: float
    noise: float

    def state(self, cell: Cell) -> int:
        """The state index of cell (col, row)."""
        return self.cells.index(cell)

    @property
    def start_state(self) -> int | None:
        return None if self.map.start is None else self.state(self.map.start)


def cell_name(cell: Cell) -> str:
    """'(col,row)', the key used in JSON output."""
    return f"({cell[0]},{cell[1]})"


def build_gridworld(grid: GridMap, step_reward: float = -0.04, noise: float = 0.2, gamma: float = 1.0) -> GridWorld:
    """Make the MDP of a grid map.

    Each action goes the intended way with probability 1 − noise and slips to each perpendicular
    direction with probability noise / 2 (AIMA §17.1: 0.8 / 0.1 / 0.1 for noise 0.2). Bumping into a
    wall or the edge means staying put. Open and start cells give `step_reward`, hazard cells
    `step_reward + penalty`, exit cells their own reward and end the episode.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    cells = grid.cells()
    index = {cell: i for i, cell in enumerate(cells)}
    S, A = len(cells), len(ACTIONS)
    transitions = np.zeros((S, A, S))
    rewards = np.full(S, float(step_reward))
    terminal = np.zeros(S, dtype=bool)

    def landing(cell: Cell, direction: str) -> int:
        col, row = cell[0] + MOVES[direction][0], cell[1] + MOVES[direction][1]
        inside = 1 <= col <= grid.width and 1 <= row <= grid.height
        return index[(col, row)] if inside and grid.symbol((col, row)) != WALL else index[cell]

    for i, cell in enumerate(cells):
        entry = grid.legend.get(grid.symbol(cell))
        if entry is not None and entry.kind == "exit":
            rewards[i], terminal[i] = entry.reward, True
            transitions[i, :, i] = 1.0  # absorbing, by convention
            continue
        if entry is not None:  # hazard
            rewards[i] = step_reward + entry.reward
        for a, action in enumerate(ACTIONS):
            transitions[i, a, landing(cell, action)] += 1.0 - noise
            for side in PERPENDICULAR[action]:
                transitions[i, a, landing(cell, side)] += noise / 2

    mdp = FiniteMDP(
        state_names=tuple(cell_name(c) for c in cells),
        action_names=ACTIONS,
        transitions=transitions,
        rewards=rewards,
        terminal=terminal,
        gamma=gamma,
    )
    return GridWorld(map=grid, mdp=mdp, cells=tuple(cells), step_reward=step_reward, noise=noise)
