"""`make gpu-check` (tools/gpu_check.py): everything that needs an NVIDIA GPU, in one time-boxed run.

run.py runs the steps (subprocesses with time boxes, some groups concurrently) and collects their
outputs; steps.py says what each step runs, on a GPU and in the dry run; summary.py reads the outputs
into the summary; environment.py, build.py and sanitize_driver.py are steps of their own.
"""
