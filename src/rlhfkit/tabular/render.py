"""Show grid-world results: utilities and policies as text grids, JSON-ready dicts, and heat maps.

Rows are printed top row first, so the picture matches the map; labels are (col, row) with (1, 1)
bottom-left. matplotlib is imported only inside `plot_panels` (Agg backend, files only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.gridworld import ACTIONS, ARROWS, WALL, GridWorld, cell_name


def _kind(world: GridWorld, cell) -> str:
    """'wall', 'exit', 'hazard' or 'open'."""
    symbol = world.map.symbol(cell)
    if symbol == WALL:
        return "wall"
    entry = world.map.legend.get(symbol)
    return entry.kind if entry else "open"


def format_utilities(world: GridWorld, utilities: np.ndarray, digits: int = 3) -> str:
    """A text grid of U(s); walls show as '#', exits with a sign (e.g. +1.000)."""
    width = digits + 5
    lines = ["    " + "".join(f"{col:>{width}}" for col in range(1, world.map.width + 1))]
    for row in range(world.map.height, 0, -1):
        text = f"{row:>3} "
        for col in range(1, world.map.width + 1):
            cell = (col, row)
            kind = _kind(world, cell)
            if kind == "wall":
                text += f"{'#':>{width}}"
            else:
                value = utilities[world.state(cell)]
                text += f"{value:>+{width}.{digits}f}" if kind == "exit" else f"{value:>{width}.{digits}f}"
        lines.append(text)
    return "\n".join(lines)


def format_policy(world: GridWorld, policy: np.ndarray) -> str:
    """A text grid of arrows; exits show their map symbol, walls '#', sandstorm-type hazards '~' before the arrow."""
    lines = ["    " + "".join(f"{col:>3}" for col in range(1, world.map.width + 1))]
    for row in range(world.map.height, 0, -1):
        text = f"{row:>3} "
        for col in range(1, world.map.width + 1):
            cell = (col, row)
            kind, symbol = _kind(world, cell), world.map.symbol(cell)
            if kind in ("wall", "exit"):
                text += f"{symbol:>3}"
            else:
                arrow = ARROWS[ACTIONS[policy[world.state(cell)]]]
                text += f" {symbol}{arrow}" if kind == "hazard" else f"  {arrow}"
        lines.append(text)
    return "\n".join(lines)


def utilities_by_cell(world: GridWorld, utilities: np.ndarray) -> dict[str, float]:
    """{"(col,row)": U} for every non-wall cell."""
    return {cell_name(cell): round(float(utilities[i]), 6) for i, cell in enumerate(world.cells)}


def policy_by_cell(world: GridWorld, policy: np.ndarray) -> dict[str, str]:
    """{"(col,row)": action name} for every non-terminal cell."""
    return {
        cell_name(cell): ACTIONS[policy[i]] for i, cell in enumerate(world.cells) if not world.mdp.terminal[i]
    }


def exit_label(world: GridWorld, state: int) -> str:
    """How an exit is named in outcome tables, e.g. 'crater (2,2)'."""
    cell = world.cells[state]
    entry = world.map.legend[world.map.symbol(cell)]
    return f"{entry.name} {cell_name(cell)}"


@dataclass(frozen=True)
class Panel:
    """One heat map: a world, its utilities and policy, and a title."""

    world: GridWorld
    utilities: np.ndarray
    policy: np.ndarray
    title: str


def plot_panels(panels: list[Panel], path: str) -> None:
    """Draw each panel as a utility heat map with policy arrows, side by side, into an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    first = panels[0].world.map
    figure, axes = plt.subplots(
        rows, columns, figsize=(columns * (first.width * 0.75 + 1.2), rows * (first.height * 0.75 + 0.8)), squeeze=False
    )
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        world = panel.world
        height, width = world.map.height, world.map.width
        image = np.full((height, width), np.nan)  # (H, W), image row 0 = top map row
        for i, (col, row) in enumerate(world.cells):
            image[height - row, col - 1] = panel.utilities[i]
        colormap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.25")  # walls are NaN
        shown = ax.imshow(image, cmap=colormap, vmin=np.nanmin(image), vmax=np.nanmax(image))
        for i, (col, row) in enumerate(world.cells):
            x, y = col - 1, height - row
            kind, symbol = _kind(world, (col, row)), world.map.symbol((col, row))
            if kind == "exit":
                ax.text(x, y, f"{symbol}\n{panel.utilities[i]:+g}", ha="center", va="center", fontsize=9, weight="bold")
            else:
                arrow = ARROWS[ACTIONS[panel.policy[i]]]
                ax.text(x, y - 0.12, arrow, ha="center", va="center", fontsize=14)
                ax.text(x, y + 0.3, f"{panel.utilities[i]:.2f}", ha="center", va="center", fontsize=6)
                if (col, row) == world.map.start:
                    ax.text(x - 0.42, y - 0.3, "S", ha="left", va="center", fontsize=7, weight="bold")
                if kind == "hazard":
                    ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="..", edgecolor="0.4", lw=0))
        ax.set_xticks(range(width), [str(c) for c in range(1, width + 1)])
        ax.set_yticks(range(height), [str(r) for r in range(height, 0, -1)])
        ax.set_title(panel.title, fontsize=9)
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
