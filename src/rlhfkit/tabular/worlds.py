"""Built-in grid-world maps (text, in the format of gridworld.py). No imports: `--help` reads these names.

aima4x3 — Russell & Norvig, AIMA 3rd ed., Fig. 17.1: a 4 × 3 grid, start (1,1), exits +1 at
(4,3) and −1 at (4,2), a wall at (2,2). With step reward −0.04, γ = 1 and noise 0.2 its
utilities are the book's Fig. 17.3 and its policy Fig. 17.2(a).

lander — a Mars lander that came down at S, 7 cells west of its landing pad G (+1), with a
sandstorm (~, −0.08 per cell on top of the step reward) in between and a crater C (−1, an exit:
the mission ends there) one cell south-east of S:

        1 2 3 4 5 6 7 8
    6   . . . . . . . .
    5   . . . ~ ~ ~ ~ .
    4   . . . ~ ~ ~ ~ .
    3   S . . ~ ~ ~ ~ G
    2   . C . . . . . .
    1   . . . . . . . .

From S there are four ways to finish, and the step reward (the cost of each move) picks one
(γ = 1, noise 0.2; the route is the path of intended moves, exact crater odds in brackets):

    −0.04  step north first, away from the crater, then round the storm's south side  (0 %)
    −0.05  step east over the crater's rim once, then round the storm's south side    (2.5 %)
    −0.1   east along row 3 to the storm's edge, then round its south side            (11 %)
    −0.2   straight east through the sandstorm (4 storm cells)                         (17 %)
    −0.5   dive into the crater two cells away: living costs more than crashing     (99.9 %)

The route from S changes at step rewards ≈ −0.018, −0.046, −0.054, −0.120, −0.234 and −0.265.
"""

AIMA_4X3 = """\
; Russell & Norvig, AIMA 3rd ed., Fig. 17.1.
+: exit +1
-: exit -1
. . . +
. # . -
S . . .
"""

LANDER = """\
; Mars lander: reach the landing pad G; sandstorms cost extra; the crater ends the mission.
G: exit +1 landing pad
C: exit -1 crater
~: hazard -0.08 sandstorm
. . . . . . . .
. . . ~ ~ ~ ~ .
. . . ~ ~ ~ ~ .
S . . ~ ~ ~ ~ G
. C . . . . . .
. . . . . . . .
"""

WORLDS = {"aima4x3": AIMA_4X3, "lander": LANDER}
"""Built-in world name -> map text."""
