"""The truth suite: reference servers whose timings are known by construction
(``tests.harness.reference_servers``), the truth of every metric of each case (``cases``),
one checker for every path (``compare``), and a module per path: a bare aiohttp client
(the servers keep time), the Python API, the CLI, pytest, drawn schedules, and a server
that never answers. A new behaviour is a new ``Case`` in ``cases.CASES``: every path picks
it up."""
