"""The benchmark runner behind `python -m gpuconv bench` (docs/performance.md says what it measures and how).

layers.py the cases; contenders.py gpuconv's backends and the peers as timed calls;
timing.py the measuring method; ceilings.py the ceilings; figures.py the arithmetic on
times; environment.py the machine record; runner.py one run; report.py the table, JSON and
plot; cli.py the command line.
"""
